/**
 * The integrity check: is the kernel still what was applied? Cheap checks often (set headers and
 * counts, the chain, the INPUT jump), the full member lists rarely, and after every resync (that
 * is how a resync proves the kernel equals the plan). Drift is repaired at once.
 *
 * It runs between reconciles, never during one (`exclusive`): a listing taken half-way through
 * an apply would read as drift. A check still running when the next is due is not doubled.
 *
 * `befw check` asks for a check now (members included). Drift it finds is repaired at once too,
 * not at the next full check: the swap of one member for another keeps a set's count, so only a
 * member comparison sees it, and that runs every integrity_full_interval (300 s) on its own. With
 * `--repair` the answer waits for the repair and a second check; without, it comes first.
 */
import { performance } from 'node:perf_hooks';
import type { Drift } from '../dataplane/dataplane.js';
import type { Logger } from '../log/logger.js';
import type { OutcomeSink } from './outcomeRecorder.js';
import type { Outcome } from './reconciler.js';

export interface IntegrityDeps {
  readonly verify: (opts: { readonly members: boolean }) => Promise<Drift[]>;
  readonly repair: (drifts: readonly Drift[]) => Promise<Outcome | null>;
  /** Runs `fn` while no reconcile runs (the loop's coalescer). */
  readonly exclusive: (fn: () => Promise<void>) => Promise<void>;
  readonly recorder: OutcomeSink;
  readonly log: Logger;
  readonly now: () => number;
  /** How often the member lists are compared too. */
  readonly fullIntervalMs: number;
}

/** What `befw check` found and what was done about it. */
export interface CheckResult {
  readonly drifts: readonly Drift[];
  /** null: nothing to repair; `started`: repairing after the answer; `done`: the repair and a second check. */
  readonly repair: null | { readonly state: 'started' } | RepairDone;
}

export interface RepairDone {
  readonly state: 'done';
  /** The repair's outcome (`applied`, `apply-failed: ...`), or why there was none. */
  readonly outcome: string;
  /** What the second check still found. */
  readonly remaining: readonly Drift[];
}

function outcomeText(o: Outcome | null): string {
  if (o === null) return 'nothing to repair from: no plan applied yet';
  return o.kind === 'apply-failed' || o.kind === 'read-failed' ? `${o.kind}: ${o.error.message}` : o.kind;
}

export class IntegrityCheck {
  private busy = false;
  private fullDue = false;
  private lastFull: number;

  constructor(private readonly deps: IntegrityDeps) {
    this.lastFull = deps.now();
  }

  /** Compare the member lists at the next check. */
  requestFull(): void {
    this.fullDue = true;
  }

  async run(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const members = this.takeFull();
      await this.deps.exclusive(() => this.verifyAndRepair(members));
    } catch (err) {
      this.failed(err);
    } finally {
      this.busy = false;
    }
  }

  private takeFull(): boolean {
    const now = this.deps.now();
    if (!this.fullDue && now - this.lastFull < this.deps.fullIntervalMs) return false;
    this.lastFull = now;
    this.fullDue = false;
    return true;
  }

  /** `befw check`: members compared now; drift repaired at once, before the answer when `wait`. */
  async check(wait: boolean): Promise<CheckResult> {
    let result: CheckResult = { drifts: [], repair: null };
    await this.deps.exclusive(async () => {
      const drifts = await this.deps.verify({ members: true });
      if (drifts.length === 0 || !wait) {
        result = { drifts, repair: drifts.length === 0 ? null : { state: 'started' } };
        return;
      }
      const outcome = await this.repair(drifts);
      result = { drifts, repair: { state: 'done', outcome: outcomeText(outcome), remaining: await this.deps.verify({ members: true }) } };
    });
    if (result.repair?.state === 'started') {
      // Right after the answer; checked again first, in case a reconcile repaired it meanwhile.
      void this.deps.exclusive(() => this.verifyAndRepair(true)).catch((err: unknown) => this.failed(err));
    }
    return result;
  }

  private failed(err: unknown): void {
    this.deps.log.warn({ event: 'integrity-check-failed', err: (err as Error).message }, 'integrity check could not read the kernel');
  }

  private async verifyAndRepair(members: boolean): Promise<void> {
    const t0 = performance.now();
    const drifts = await this.deps.verify({ members });
    this.deps.log.debug({ event: 'integrity-check', members, drifts: drifts.length, ms: performance.now() - t0 }, 'integrity checked');
    if (drifts.length > 0) await this.repair(drifts);
  }

  private async repair(drifts: readonly Drift[]): Promise<Outcome | null> {
    this.deps.recorder.drift();
    const outcome = await this.deps.repair(drifts);
    if (outcome !== null) this.deps.recorder.record(outcome, new Set());
    return outcome;
  }
}
