/**
 * Where every reconcile, repair and start outcome turns into status (`ready`) and metrics, so
 * that a new outcome kind or metric has one place to go. Without metrics (the endpoint is off)
 * only `ready` is kept.
 */
import { performance } from 'node:perf_hooks';
import { assertNever } from '../core/assertNever.js';
import type { WatchHooks } from './inputs/watchedInputs.js';
import type { Metrics } from './metrics.js';
import type { Outcome } from './reconciler.js';

type Applied = Extract<Outcome, { kind: 'applied' }>;

/** What the loop reports into; a test can record it instead. */
export interface OutcomeSink {
  /** The outcome of enforcing state.bin (or the safety net) at start; null: kernel kept as found. */
  recordStart(outcome: Outcome | null): void;
  record(outcome: Outcome, reasons: ReadonlySet<string>): void;
  /** The integrity check found drift and is about to repair it. */
  drift(): void;
}

export interface RecorderClock {
  /** Monotonic milliseconds, for durations. */
  readonly monotonic: () => number;
  /** Unix milliseconds, for timestamps. */
  readonly wall: () => number;
}

const SYSTEM_CLOCK: RecorderClock = { monotonic: () => performance.now(), wall: () => Date.now() };

/** The label of `befw_applies_total`: a failed read counts as what its fallback did. */
function resultLabel(outcome: Outcome): string {
  return outcome.kind === 'read-failed' ? (outcome.fallback?.kind ?? 'read-failed') : outcome.kind;
}

export class OutcomeRecorder implements OutcomeSink {
  /** When the last KV answer arrived: the start of the propagation it may carry. */
  private kvAnswerAt: number | null = null;

  constructor(
    private readonly metrics: Metrics | null,
    private readonly clock: RecorderClock = SYSTEM_CLOCK,
    /** The process's readiness (AgentLife): a reload keeps the kernel, so it keeps `ready` too. */
    private readonly readiness: { ready: boolean } = { ready: false },
  ) {}

  /** The first apply is done (from Consul, state.bin or the safety net). */
  get ready(): boolean {
    return this.readiness.ready;
  }

  /** The inputs' side: request errors per watch, staleness, and when KV answered. */
  watchHooks(): WatchHooks {
    return {
      onError: (watch) => this.metrics?.consulErrors.inc({ watch }),
      onKvAnswer: (lastContactMs) => {
        this.kvAnswerAt = this.clock.monotonic();
        this.metrics?.consulStaleness.set((lastContactMs ?? 0) / 1000);
      },
      onKvPrefixAnswer: (changed) => this.metrics?.kvAnswers.inc({ changed: changed ? 'true' : 'false' }),
    };
  }

  recordStart(outcome: Outcome | null): void {
    // With no state and a BEFW chain kept as it is, the node is as safe as it can be: ready.
    if (outcome === null) this.readiness.ready = true;
    else this.record(outcome, new Set());
  }

  record(outcome: Outcome, reasons: ReadonlySet<string>): void {
    // A held change still has its held-back plan enforced: the node is as ready as ever.
    if (outcome.kind === 'applied' || outcome.kind === 'unchanged' || outcome.kind === 'held') this.readiness.ready = true;
    if (this.metrics !== null) this.count(this.metrics, outcome, reasons);
  }

  drift(): void {
    this.metrics?.driftRepairs.inc();
  }

  private count(m: Metrics, outcome: Outcome, reasons: ReadonlySet<string>): void {
    m.applies.inc({ result: resultLabel(outcome) });
    switch (outcome.kind) {
      case 'applied':
        this.countApplied(m, outcome, reasons);
        m.lastGoodSync.set(this.clock.wall() / 1000);
        return;
      case 'unchanged':
        m.lastGoodSync.set(this.clock.wall() / 1000);
        return;
      case 'held':
        if (outcome.fresh) m.guardHeld.inc();
        return;
      case 'apply-failed':
        if (outcome.rolledBack) m.rollbacks.inc();
        return;
      case 'read-failed':
        if (outcome.fallback?.kind === 'applied') this.countApplied(m, outcome.fallback, reasons);
        return;
      default:
        return assertNever(outcome, 'reconcile outcome');
    }
  }

  private countApplied(m: Metrics, applied: Applied, reasons: ReadonlySet<string>): void {
    m.applyDuration.observe({ result: 'applied', mode: applied.report.mode }, applied.report.ms.total / 1000);
    m.setMembers.reset();
    for (const s of applied.plan.sets) m.setMembers.set({ set: s.name }, s.members.length);
    for (const severity of ['error', 'warning'] as const) {
      m.diagnostics.set({ severity }, applied.plan.diagnostics.filter((d) => d.severity === severity).length);
    }
    if (reasons.has('kv') && this.kvAnswerAt !== null) m.propagation.observe((this.clock.monotonic() - this.kvAnswerAt) / 1000);
  }
}
