/**
 * The integrity check: is the kernel still what was applied? Cheap checks often (set headers and
 * counts, the chain, the INPUT jump), the full member lists rarely, and after every resync (that
 * is how a resync proves the kernel equals the plan). Drift is repaired at once.
 *
 * It runs between reconciles, never during one (`exclusive`): a listing taken half-way through
 * an apply would read as drift. A check still running when the next is due is not doubled.
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
      this.deps.log.warn({ event: 'integrity-check-failed', err: (err as Error).message }, 'integrity check could not read the kernel');
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

  private async verifyAndRepair(members: boolean): Promise<void> {
    const { log, recorder } = this.deps;
    const t0 = performance.now();
    const drifts = await this.deps.verify({ members });
    log.debug({ event: 'integrity-check', members, drifts: drifts.length, ms: performance.now() - t0 }, 'integrity checked');
    if (drifts.length === 0) return;
    recorder.drift();
    const outcome = await this.deps.repair(drifts);
    if (outcome !== null) recorder.record(outcome, new Set());
  }
}
