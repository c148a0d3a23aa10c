/**
 * Turns bursts of change notifications into single runs: a run starts after a short quiet
 * period with no new notification, but never later than a bounded delay after the first one.
 * Runs never overlap; notifications that arrive during a run schedule one more run after it.
 */
export interface CoalescerOptions {
  readonly quietMs: number;
  readonly maxDelayMs: number;
}

export class Coalescer<R extends string> {
  private pending = new Set<R>();
  private firstAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private closed = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly opts: CoalescerOptions,
    private readonly run: (reasons: ReadonlySet<R>) => Promise<void>,
    private readonly onError: (err: unknown) => void,
    private readonly now: () => number = () => Date.now(),
  ) {}

  poke(reason: R): void {
    if (this.closed) return;
    this.pending.add(reason);
    this.firstAt ??= this.now();
    if (this.running) return; // picked up when the current run ends
    this.schedule();
  }

  /** Resolves when no run is in progress (or scheduled). */
  idle(): Promise<void> {
    if (!this.running && this.timer === null) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.pending.clear();
    if (this.running) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  private schedule(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    const deadline = (this.firstAt ?? this.now()) + this.opts.maxDelayMs;
    const at = Math.min(this.now() + this.opts.quietMs, deadline);
    this.timer = setTimeout(() => void this.fire(), Math.max(0, at - this.now()));
  }

  /**
   * Runs `fn` while no run is in progress and none starts (the integrity check and its repair
   * must not interleave with an apply). Notifications meanwhile wait for it to finish.
   */
  async runExclusive<T>(fn: () => Promise<T>): Promise<T | undefined> {
    while (this.running) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    if (this.closed) return undefined;
    this.running = true;
    try {
      return await fn();
    } finally {
      this.running = false;
      if (this.pending.size > 0 && !this.closed) this.schedule();
      else for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  private async fire(): Promise<void> {
    this.timer = null;
    if (this.running) return; // an exclusive task holds the loop; it reschedules when done
    const reasons = this.pending;
    this.pending = new Set();
    this.firstAt = null;
    this.running = true;
    try {
      await this.run(reasons);
    } catch (err) {
      this.onError(err);
    } finally {
      this.running = false;
      if (this.pending.size > 0 && !this.closed) this.schedule();
      else for (const w of this.idleWaiters.splice(0)) w();
    }
  }
}
