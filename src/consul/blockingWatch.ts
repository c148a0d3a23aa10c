/**
 * One Consul blocking-query loop, following Consul's own rules for clients (and what
 * consul-template learned running them at scale):
 *   - the index we send is the last one seen; if an answer's index is lower than the one sent
 *     (snapshot restore, key deletion, leader change) the next query starts again from 0;
 *   - an index below 1 is never sent back as is (it would not block): it becomes 1;
 *   - an answer with an unchanged index is normal (the wait ran out) and triggers nothing, unless
 *     it came back early: Consul only does that when it abandons its state store (a snapshot
 *     restore), and the restored store's index can be below ours, so that a blocking query
 *     would sit out the whole wait; the loop re-reads from index 0 at once instead;
 *   - a loop that does not progress is rate-limited (a token bucket, taken before a query that
 *     follows an answer whose index did not move, or an error); a stream of real changes has
 *     its own, much larger bucket (default 50 a second), so up to that rate each change is asked
 *     for as soon as the previous answer arrived, and a server that keeps moving the index
 *     without end is still capped;
 *   - errors back off exponentially with full jitter, reset by the next good answer, at most 5 s
 *     apart, and the query after an error does not block (index 0), so a recovery is seen at once;
 *     the agent only ever talks to its local Consul agent, so a fast return after that agent
 *     restarts matters more than sparing it a request every few seconds;
 *   - reads are stale (any server answers, the leader is not flooded) but an answer whose
 *     X-Consul-LastContact is above the bound, or that knows no leader, is re-read consistently.
 * The transport is injected, so the loop is tested against scripted answers.
 */

export interface BlockingQuery {
  readonly index: number;
  readonly waitMs: number;
  readonly stale: boolean;
  readonly signal: AbortSignal;
}

export interface BlockingAnswer<T> {
  readonly index: number;
  readonly data: T;
  /** X-Consul-LastContact in ms (stale reads), null when absent. */
  readonly lastContactMs: number | null;
  readonly knownLeader: boolean | null;
}

export type BlockingFetch<T> = (q: BlockingQuery) => Promise<BlockingAnswer<T>>;

export interface WatchOptions {
  /** Server-side wait; Consul caps it at 10 minutes. */
  readonly waitMs: number;
  /** Largest acceptable X-Consul-LastContact for a stale answer. */
  readonly maxStaleMs: number;
  /** Token bucket for queries after an answer that did not progress: burst size and refill per second. */
  readonly burst: number;
  readonly ratePerSec: number;
  /** Token bucket for queries after an answer that moved the index. */
  readonly progressBurst?: number;
  readonly progressRatePerSec?: number;
  readonly backoffBaseMs: number;
  readonly backoffMaxMs: number;
  readonly random: () => number;
  readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  readonly now: () => number;
}

export const DEFAULT_WATCH_OPTIONS: WatchOptions = {
  waitMs: 5 * 60_000,
  maxStaleMs: 5_000,
  burst: 10,
  ratePerSec: 10,
  progressBurst: 100,
  progressRatePerSec: 50,
  backoffBaseMs: 250,
  backoffMaxMs: 5_000,
  random: Math.random,
  sleep: abortableSleep,
  now: () => Date.now(),
};

export interface WatchEvents<T> {
  /**
   * A new answer (index moved, or the first one). Returns false when its data turned out to be
   * the same as before (an index that moved for writes elsewhere): the loop then counts it as no
   * progress, so a storm of unrelated writes cannot make it spin faster than the idle rate.
   */
  onData(data: T, meta: { index: number; stale: boolean; lastContactMs: number | null }): boolean | void;
  onError(err: Error, meta: { attempt: number; retryInMs: number }): void;
  /** For status and tests: the index was reset or corrected. */
  onIndexReset?(meta: { sent: number; got: number; next: number }): void;
}

export function abortableSleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/** The index to send next, given the one sent and the one received. */
export function nextIndex(sent: number, got: number): number {
  if (!Number.isFinite(got) || got < sent) return 0;
  return got < 1 ? 1 : got;
}

interface Bucket {
  tokens: number;
  at: number;
  readonly burst: number;
  readonly rate: number;
}

export class BlockingWatch<T> {
  private readonly abort = new AbortController();
  /** Aborts only the query in flight, for refresh(). */
  private inflight: AbortController | null = null;
  private refreshRequested = false;
  private readonly idle: Bucket;
  private readonly progress: Bucket;
  private running: Promise<void> | null = null;
  /** Answers received, for status. */
  answers = 0;
  errors = 0;

  constructor(
    readonly name: string,
    private readonly fetch: BlockingFetch<T>,
    private readonly events: WatchEvents<T>,
    private readonly opts: WatchOptions = DEFAULT_WATCH_OPTIONS,
  ) {
    this.idle = { tokens: opts.burst, at: opts.now(), burst: opts.burst, rate: opts.ratePerSec };
    const pb = opts.progressBurst ?? 100;
    this.progress = { tokens: pb, at: opts.now(), burst: pb, rate: opts.progressRatePerSec ?? 50 };
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  /**
   * Re-read now, from index 0, and report the answer even if its index did not move: used to
   * confirm an answer that looked wrong with a second, independent read.
   */
  refresh(): void {
    this.refreshRequested = true;
    this.inflight?.abort();
  }

  /**
   * One consistent, non-blocking read beside the parked query, which is left alone: Consul 1.8
   * keeps serving a blocking query whose client went away, so aborting it to re-read would leave
   * an abandoned query parked on the servers for the rest of its wait.
   */
  async readNow(): Promise<T> {
    const answer = await this.fetch({ index: 0, waitMs: 0, stale: false, signal: this.abort.signal });
    return answer.data;
  }

  private async takeToken(b: Bucket): Promise<void> {
    const { opts } = this;
    for (;;) {
      const now = opts.now();
      b.tokens = Math.min(b.burst, b.tokens + ((now - b.at) / 1000) * b.rate);
      b.at = now;
      if (b.tokens >= 1) {
        b.tokens -= 1;
        return;
      }
      await opts.sleep(Math.ceil(((1 - b.tokens) / b.rate) * 1000), this.abort.signal);
      if (this.abort.signal.aborted) return;
    }
  }

  private async loop(): Promise<void> {
    const { opts, events } = this;
    const signal = this.abort.signal;
    let index = 0;
    let attempt = 0;
    let first = true;
    let progressed = true;
    while (!signal.aborted) {
      await this.takeToken(progressed ? this.progress : this.idle);
      if (signal.aborted) break;
      if (this.refreshRequested) {
        this.refreshRequested = false;
        index = 0;
        first = true;
      }
      const inflight = new AbortController();
      this.inflight = inflight;
      const onStop = (): void => inflight.abort();
      signal.addEventListener('abort', onStop, { once: true });
      const askedAt = opts.now();
      try {
        let answer = await this.fetch({ index, waitMs: opts.waitMs, stale: true, signal: inflight.signal });
        let stale = true;
        if ((answer.lastContactMs !== null && answer.lastContactMs > opts.maxStaleMs) || answer.knownLeader === false) {
          // Too old to trust: ask again, consistently and without blocking.
          answer = await this.fetch({ index: 0, waitMs: 0, stale: false, signal: inflight.signal });
          stale = false;
        }
        if (signal.aborted) break;
        if (inflight.signal.aborted) continue; // refresh() cut this query short: ask again
        this.answers++;
        attempt = 0;
        const next = nextIndex(index, answer.index);
        if (next !== answer.index || answer.index < index) events.onIndexReset?.({ sent: index, got: answer.index, next });
        if (!first && index > 0 && answer.index === index && opts.now() - askedAt < opts.waitMs / 2) {
          events.onIndexReset?.({ sent: index, got: answer.index, next: 0 });
          this.refreshRequested = true;
        }
        const changed = first || answer.index !== index || next === 0;
        first = false;
        index = next;
        const same = changed && events.onData(answer.data, { index: answer.index, stale, lastContactMs: answer.lastContactMs }) === false;
        progressed = changed && !same;
      } catch (err) {
        if (signal.aborted) break;
        if (inflight.signal.aborted) continue;
        this.errors++;
        // After a failure, ask without blocking: a blocking query on the old index would sit
        // out the whole wait on a Consul that came back unchanged, and whatever changed while
        // it was away arrives at once.
        index = 0;
        first = true;
        const ceiling = Math.min(opts.backoffMaxMs, opts.backoffBaseMs * 2 ** Math.min(attempt, 20));
        const delay = Math.floor(opts.random() * ceiling);
        attempt++;
        progressed = false;
        events.onError(err instanceof Error ? err : new Error(String(err)), { attempt, retryInMs: delay });
        await opts.sleep(delay, signal);
      } finally {
        signal.removeEventListener('abort', onStop);
        this.inflight = null;
      }
    }
  }
}
