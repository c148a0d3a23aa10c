/**
 * The agent's loop: runs reconciles one at a time, triggered by
 *   - the inputs (KV and services blocking queries, directory watches), through poke(),
 *   - the next expiry in the enforced plan, so an entry leaves at its second,
 *   - the periodic resync (jittered): everything re-read, the kernel then checked member by member,
 *   - a retry after a failed apply (1 s, doubling, at most a minute apart), and rebuild requests.
 * Triggers are coalesced: a burst of changes gives one reconcile, at most COALESCE_MAX_MS after
 * its first change. The integrity check runs on its own interval, between reconciles.
 *
 * It owns every timer of the agent and nothing else: what a reconcile does is the Reconciler's,
 * what an outcome means for status and metrics is the OutcomeSink's.
 */
import { assertNever } from '../core/assertNever.js';
import type { Drift } from '../dataplane/dataplane.js';
import type { Logger } from '../log/logger.js';
import { Coalescer } from './coalescer.js';
import { type CheckResult, IntegrityCheck } from './integrityCheck.js';
import type { ChangeReason } from './inputs/watchedInputs.js';
import { COMPACT_ABOVE_KEYS, scheduleCompaction } from './memory.js';
import type { OutcomeSink } from './outcomeRecorder.js';
import type { Outcome, Reconciler } from './reconciler.js';

/** Quiet period and ceiling for coalescing: small against the 20 ms propagation target. */
export const COALESCE_QUIET_MS = 1;
export const COALESCE_MAX_MS = 50;
/** Wake slightly after the expiry second so that the compile sees the entry as expired. */
const EXPIRY_SLACK_MS = 5;
/** Longest single timer (Node's limit is ~24.8 days; re-arming is cheap). */
const MAX_TIMER_MS = 60 * 60_000;
/** A reconcile running longer than this makes the agent unhealthy (/healthz). */
const STUCK_AFTER_MS = 5 * 60_000;
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 60_000;

export type LoopReason = ChangeReason | 'expiry' | 'resync' | 'rebuild' | 'retry' | 'release';

/** The inputs as the loop drives them (WatchedInputs in the agent). */
export interface LoopInputs {
  start(): void;
  stop(): Promise<void>;
  /** Re-read what has no blocking query behind it at the next snapshot. */
  invalidate(): void;
  /** A second, independent read of everything. */
  reread(): void;
  /** Keys in the last KV answer. */
  readonly kvSize: number;
}

export type LoopReconciler = Pick<Reconciler, 'enforceSaved' | 'reconcile' | 'repair' | 'nextExpiry'>;

export interface LoopTiming {
  readonly resyncMs: number;
  readonly integrityMs: number;
  readonly integrityFullMs: number;
}

export interface AgentLoopDeps {
  readonly reconciler: LoopReconciler;
  readonly inputs: LoopInputs;
  readonly verify: (opts: { readonly members: boolean }) => Promise<Drift[]>;
  readonly recorder: OutcomeSink;
  readonly log: Logger;
  readonly timing: LoopTiming;
  /** Told at every resync, for what re-reads beside the loop (the service registrar). */
  readonly onResync?: () => void;
  readonly now?: () => number;
  readonly random?: () => number;
}

/** At most one pending timeout; arming again replaces it. */
class Timer {
  private handle: NodeJS.Timeout | null = null;

  arm(ms: number, fn: () => void): void {
    this.clear();
    this.handle = setTimeout(() => {
      this.handle = null;
      fn();
    }, ms);
  }

  clear(): void {
    if (this.handle !== null) clearTimeout(this.handle);
    this.handle = null;
  }
}

export class AgentLoop {
  private readonly coalescer: Coalescer<LoopReason>;
  private readonly integrity: IntegrityCheck;
  private readonly now: () => number;
  private readonly expiryTimer = new Timer();
  private readonly resyncTimer = new Timer();
  private readonly retryTimer = new Timer();
  private integrityTimer: NodeJS.Timeout | null = null;
  /** Failed applies in a row: the exponent of the retry delay. */
  private failures = 0;
  private runningSince: number | null = null;
  private stopped = false;

  constructor(private readonly deps: AgentLoopDeps) {
    this.now = deps.now ?? (() => Date.now());
    this.coalescer = new Coalescer<LoopReason>(
      { quietMs: COALESCE_QUIET_MS, maxDelayMs: COALESCE_MAX_MS },
      (reasons) => this.run(reasons),
      (err) => this.crashed(err),
      this.now,
    );
    this.integrity = new IntegrityCheck({
      verify: deps.verify,
      repair: (drifts) => deps.reconciler.repair(drifts),
      exclusive: async (fn) => void (await this.coalescer.runExclusive(fn)),
      recorder: deps.recorder,
      log: deps.log,
      now: this.now,
      fullIntervalMs: deps.timing.integrityFullMs,
    });
  }

  /** Enforces state.bin (or the safety net) first, then starts the inputs and the timers. */
  async start(): Promise<void> {
    const first = await this.coalescer.runExclusive(() => this.deps.reconciler.enforceSaved());
    if (this.stopped) return;
    this.deps.recorder.recordStart(first ?? null);
    this.armExpiry();
    this.deps.inputs.start();
    this.armResync();
    this.integrityTimer = setInterval(() => void this.integrity.run(), this.deps.timing.integrityMs);
  }

  poke(reason: LoopReason): void {
    this.coalescer.poke(reason);
  }

  /** Not stuck: no reconcile has been running for minutes. */
  get healthy(): boolean {
    return this.runningSince === null || this.now() - this.runningSince < STUCK_AFTER_MS;
  }

  /** `befw check`: the kernel against the plan, members included, between reconciles; drift is repaired at once. */
  check(wait = false): Promise<CheckResult> {
    return this.integrity.check(wait);
  }

  /** Stops the timers and the inputs, after the reconcile in progress (if any) ends. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.clearTimers();
    await this.coalescer.close();
    // The reconcile that was running re-armed the expiry timer as it ended.
    this.clearTimers();
    await this.deps.inputs.stop();
  }

  private clearTimers(): void {
    this.expiryTimer.clear();
    this.resyncTimer.clear();
    this.retryTimer.clear();
    if (this.integrityTimer !== null) clearInterval(this.integrityTimer);
    this.integrityTimer = null;
  }

  private async run(reasons: ReadonlySet<LoopReason>): Promise<void> {
    this.runningSince = this.now();
    try {
      const outcome = await this.reconcile(reasons);
      this.scheduleRetry(outcome);
      this.armExpiry();
    } finally {
      this.runningSince = null;
    }
  }

  private async reconcile(reasons: ReadonlySet<LoopReason>): Promise<Outcome> {
    const { reconciler, inputs, recorder, log } = this.deps;
    // A rebuild redoes everything; the periodic resync re-read the inputs (asked when it fired)
    // and proves the kernel with the next integrity check, in full.
    const full = reasons.has('rebuild');
    if (full) inputs.invalidate();
    const outcome = await reconciler.reconcile([...reasons].join(','), full);
    log.debug({ event: 'reconciled', reasons: [...reasons], outcome: outcome.kind }, 'reconcile done');
    recorder.record(outcome, reasons);
    if (inputs.kvSize > COMPACT_ABOVE_KEYS) {
      scheduleCompaction((before, after) =>
        log.debug({ event: 'heap-compacted', before, after }, 'memory handed back after a large reconcile'),
      );
    }
    return outcome;
  }

  private scheduleRetry(outcome: Outcome): void {
    switch (outcome.kind) {
      case 'apply-failed': {
        // The last good plan is back in the kernel (rollback); try the new one again later.
        const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(this.failures, 16));
        this.failures++;
        this.deps.log.warn({ event: 'retry-scheduled', inMs: delay, failures: this.failures }, 'will retry the new plan');
        this.retryTimer.arm(delay, () => this.poke('retry'));
        return;
      }
      case 'applied':
      case 'unchanged':
        this.failures = 0;
        return;
      case 'held':
      case 'read-failed':
        return;
      default:
        return assertNever(outcome, 'reconcile outcome');
    }
  }

  private armExpiry(): void {
    this.expiryTimer.clear();
    const next = this.deps.reconciler.nextExpiry;
    if (next === null) return;
    const delay = Math.max(0, next - this.now() + EXPIRY_SLACK_MS);
    this.expiryTimer.arm(Math.min(delay, MAX_TIMER_MS), () => this.poke('expiry'));
  }

  private armResync(): void {
    const random = this.deps.random ?? Math.random;
    // Jitter spreads a fleet's resyncs (and their re-reads of Consul) over time.
    this.resyncTimer.arm(this.deps.timing.resyncMs * (0.9 + random() * 0.2), () => {
      this.deps.inputs.reread();
      this.integrity.requestFull();
      this.deps.onResync?.();
      this.poke('resync');
      this.armResync();
    });
  }

  private crashed(err: unknown): void {
    this.deps.log.error(
      { event: 'reconcile-crashed', err: err instanceof Error ? err.stack : String(err) },
      'reconcile threw; will retry on the next trigger',
    );
  }
}
