/**
 * One pass of the loop: snapshot -> compile -> guard -> (unchanged? stop) -> apply -> save state.
 *
 * The failure branches are explicit outcomes, not exception handlers:
 *   - the inputs cannot be read: the last good snapshot is recompiled with the current time, so
 *     expiries still leave the kernel during an outage, and nothing is flushed;
 *   - the new plan loosens the firewall or removes much at once: the guard (guard.ts) holds
 *     those removals until the inputs have held steady for guard_hold seconds, and the plan
 *     with them put back is enforced meanwhile (additions pass at once);
 *   - the apply fails half-way: the last good plan is re-applied in full (rollback), the failure
 *     is reported with its step and stderr, and the new plan is retried later;
 *   - the kernel drifted from what was applied (integrity check): the last good plan is
 *     re-applied in full and the repair counted;
 *   - no Consul answer and no valid state at start: the safety net keeps the management networks
 *     reachable and changes nothing else.
 * Registering service files with Consul is not part of a pass (see serviceRegistrar.ts): a pass
 * only reads and enforces.
 */
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/config.js';
import type { ApplyReport, Dataplane, Drift } from '../dataplane/dataplane.js';
import { type GuardOptions } from '../core/blastRadius.js';
import { RULES_ALLOW, compile } from '../core/compile.js';
import { KvParseCache } from '../core/kvLayout.js';
import { planSetName } from '../core/planSets.js';
import type { CompileOptions, Plan, Snapshot } from '../core/types.js';
import type { StateStore } from '../state/stateStore.js';
import type { Logger } from '../log/logger.js';
import { Guard, type GuardStatus, type Hold } from './guard.js';
import { memoryFigures } from './memory.js';
import { logMemberChanges } from './memberLog.js';
import { newStats } from './agentLife.js';

export type Source = 'consul' | 'saved' | 'minimal';

export type Outcome =
  | { readonly kind: 'applied'; readonly plan: Plan; readonly report: ApplyReport; readonly source: Source }
  | { readonly kind: 'unchanged'; readonly plan: Plan; readonly source: Source }
  /** The guard holds `plan`'s loosening; `enforced` (the plan with it put back) is in the kernel. */
  | { readonly kind: 'held'; readonly plan: Plan; readonly enforced: Plan; readonly hold: Hold; readonly fresh: boolean }
  | { readonly kind: 'read-failed'; readonly error: Error; readonly fallback: Outcome | null }
  | { readonly kind: 'apply-failed'; readonly error: Error; readonly plan: Plan; readonly rolledBack: boolean };

export interface ReconcilerDeps {
  /** Where snapshots come from: the watchers' last answers in the agent. Rejects when unknown. */
  readonly source: () => Promise<Snapshot>;
  /** Asks the watchers for a fresh, independent read (to confirm a held plan). */
  readonly requestReread: () => void;
  readonly dataplane: Dataplane;
  readonly store: StateStore;
  readonly config: Config;
  readonly log: Logger;
  readonly now: () => number;
  /** Why the inputs look suspect right now (an index that went backwards), or null. */
  readonly inputsSuspect?: () => string | null;
  /** Counters to count into: the process's (AgentLife), so that a reload keeps them. */
  readonly stats?: ReconcilerStats;
}

/** A tree that lost more than half of at least this many keys in one read is suspect. */
const SHRINK_MIN_KEYS = 10;

export function compileOptions(config: Config): CompileOptions {
  return {
    customSets: config.customSets,
    managementNets: config.managementNets,
    protect: config.protect,
    ipsetFiles: config.ipsetFiles,
    setNaming: config.setNaming,
    nids: config.nids,
    observeDefault: config.observeDefault,
  };
}

export function guardOptions(config: Config): GuardOptions {
  return { share: config.guardShare / 100, minMembers: config.guardMin };
}

/** Figures for status, logs and tests. */
export interface ReconcilerStats {
  applies: number;
  applyFailures: number;
  rollbacks: number;
  repairs: number;
  held: number;
  lastApplyAt: number | null;
  lastResult: string | null;
  /** Last pass that put (or confirmed) a plan from the inputs in the kernel. */
  lastSuccessAt: number | null;
}

/** Whether state.bin follows the kernel; a failing save means a restart would enforce older state. */
export interface StateSaveHealth {
  readonly failingSince: number | null;
  readonly lastError: string | null;
}

export class Reconciler {
  private lastGood: { snapshot: Snapshot; plan: Plan; source: Source } | null = null;
  private owned = new Set<string>();
  /** An apply failed since the last success: retry even if the plan looks unchanged. */
  private failedSince = false;
  /** The plan in the kernel: lastGood's, or the guard's held-back plan while a change waits. */
  private inForce: Plan | null = null;
  readonly guard: Guard;
  private readonly parseCache = new KvParseCache();
  readonly stats: ReconcilerStats;
  private saveHealth: StateSaveHealth = { failingSince: null, lastError: null };
  private saving: Promise<void> | null = null;
  /** Diagnostics already logged, by code, subject and message. */
  private logged = new Map<string, Plan['diagnostics'][number]>();
  private pendingSave: { snapshot: Snapshot; plan: Plan } | null = null;

  constructor(private readonly deps: ReconcilerDeps) {
    this.stats = deps.stats ?? newStats();
    this.guard = new Guard({
      options: () => guardOptions(deps.config),
      holdMs: () => deps.config.guardHold * 1000,
      log: deps.log,
      now: deps.now,
    });
  }

  /** When the plan changes by itself (Unix ms): the earliest expiry, or the end of a hold. */
  get nextExpiry(): number | null {
    const times = [this.inForce?.nextExpiry ?? this.lastGood?.plan.nextExpiry ?? null, this.guard.wakeAt];
    const set = times.filter((t): t is number => t !== null);
    return set.length === 0 ? null : Math.min(...set);
  }

  /** The plan in the kernel. */
  get lastPlan(): Plan | null {
    return this.inForce ?? this.lastGood?.plan ?? null;
  }

  get guardStatus(): GuardStatus {
    return this.guard.status;
  }

  get stateSave(): StateSaveHealth {
    return this.saveHealth;
  }

  /** Where the enforced plan came from: consul, saved (state.bin), minimal (safety net). */
  get lastSource(): Source | null {
    return this.lastGood?.source ?? null;
  }

  /** At start, before Consul answers: enforce state.bin if it is valid, else the safety net. */
  async enforceSaved(): Promise<Outcome | null> {
    const { log } = this.deps;
    const loaded = await this.deps.store.load();
    if (loaded.kind === 'ok') {
      for (const n of loaded.state.owned) this.owned.add(n);
      log.info({ event: 'state-loaded', savedAt: new Date(loaded.state.savedAt).toISOString() }, 'enforcing saved state');
      return this.enforce(loaded.state.snapshot, 'saved');
    }
    if (loaded.kind === 'missing') log.info({ event: 'state-missing', path: this.deps.config.statePath }, 'no saved state');
    else log.error({ event: 'state-invalid', path: this.deps.config.statePath, reason: loaded.reason }, 'saved state not applied');
    return this.enforceMinimal();
  }

  /**
   * Neither Consul nor a valid state: management networks must stay reachable, and nothing may
   * open. A BEFW chain left by an earlier run stays exactly as it is (its sets only gain the
   * management networks); on a node without one, the minimal plan (rules_allow and rules_deny
   * only) is installed and everything else stays as the base ruleset has it.
   */
  private async enforceMinimal(): Promise<Outcome | null> {
    const { dataplane, log, config } = this.deps;
    try {
      if (await dataplane.hasChain()) {
        const v4 = config.managementNets.filter((n) => n.family === 4).map((n) => n.cidr);
        const v6 = config.managementNets.filter((n) => n.family === 6).map((n) => n.cidr);
        await dataplane.ensureMembers([
          { name: RULES_ALLOW, family: 'inet', members: v4 },
          { name: planSetName(RULES_ALLOW, 'inet6'), family: 'inet6', members: v6 },
        ]);
        log.warn(
          { event: 'safety-net', kept: 'existing BEFW chain', managementNets: config.managementNets.map((n) => n.cidr) },
          'no state: kept the kernel as it is, management networks ensured',
        );
        return null;
      }
    } catch (err) {
      log.error({ event: 'safety-net-failed', err: (err as Error).message }, 'cannot inspect the kernel');
      return null;
    }
    const empty: Snapshot = {
      node: { name: '', dc: '' },
      agentServices: [],
      fileServices: [],
      kv: [],
      ipsetFiles: [],
      inputDiagnostics: [],
    };
    log.warn(
      { event: 'safety-net', kept: 'minimal plan', managementNets: config.managementNets.map((n) => n.cidr) },
      'no state: installing the minimal plan',
    );
    return this.enforce(empty, 'minimal');
  }

  /**
   * `full` rebuilds every set and rewrites the chain even when the plan is unchanged: the
   * periodic resync that proves the kernel equals the plan.
   */
  async reconcile(reason: string, full = false): Promise<Outcome> {
    const { log } = this.deps;
    let snapshot: Snapshot;
    try {
      snapshot = await this.deps.source();
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      log.warn({ event: 'read-failed', reason, err: error.message }, 'cannot read inputs; keeping the last good state');
      const fallback =
        this.lastGood === null || this.lastGood.source === 'minimal' ? null : await this.enforce(this.lastGood.snapshot, 'saved', full);
      return { kind: 'read-failed', error, fallback };
    }
    return this.enforce(snapshot, 'consul', full);
  }

  /** The integrity check found drift: put the last good plan back, in full. */
  async repair(drifts: readonly Drift[]): Promise<Outcome | null> {
    const last = this.lastGood;
    if (last === null) return null;
    this.stats.repairs++;
    this.deps.log.warn({ event: 'drift', drifts, repairs: this.stats.repairs }, 'kernel drifted from the applied plan; repairing');
    this.deps.dataplane.forget();
    // What was in the kernel goes back, held-back plan included: a repair changes nothing else.
    const plan = this.inForce ?? last.plan;
    const r = await this.applyPlan(plan, true, 0, last.source);
    if (r.kind === 'failed') return r.outcome;
    return r.kind === 'applied'
      ? { kind: 'applied', plan, report: r.report, source: last.source }
      : { kind: 'unchanged', plan, source: last.source };
  }

  private compile(snapshot: Snapshot): Plan {
    // No per-member views in the agent: they cost memory at 100,000 members and only `befw
    // show` needs them.
    return compile(snapshot, compileOptions(this.deps.config), this.deps.now(), { views: false, cache: this.parseCache });
  }

  /** The previous inputs compiled for now: expiries since then never count as removals. */
  private baseline(snapshot: Snapshot): Plan {
    // No cache: the cache follows the newest listing.
    return compile(snapshot, compileOptions(this.deps.config), this.deps.now(), { views: false });
  }

  private suspect(snapshot: Snapshot, last: Snapshot): string | null {
    const note = this.deps.inputsSuspect?.() ?? null;
    if (note !== null) return note;
    const was = last.kv.length;
    if (was >= SHRINK_MIN_KEYS && snapshot.kv.length * 2 < was) return `the KV tree shrank from ${was} to ${snapshot.kv.length} keys`;
    return null;
  }

  private async enforce(read: Snapshot, source: Source, full = false): Promise<Outcome> {
    const last = this.lastGood;
    // Consul's peers stay protected across a restart until the local agent answers again.
    const peers = last?.snapshot.consulPeers;
    const snapshot = read.consulPeers === undefined && peers !== undefined ? { ...read, consulPeers: peers } : read;
    const t0 = performance.now();
    const plan = this.compile(snapshot);
    this.reportDiagnostics(plan);
    const compileMs = performance.now() - t0;
    if (source === 'consul' && last !== null && last.source !== 'minimal') {
      const inForce = this.inForce ?? last.plan;
      const d = this.guard.decide(inForce, () => this.baseline(last.snapshot), plan, this.suspect(snapshot, last.snapshot));
      if (d.kind === 'hold') {
        if (d.fresh) {
          this.stats.held++;
          this.deps.requestReread();
        }
        const r = await this.applyPlan(d.enforce, full, compileMs, source, snapshot);
        if (r.kind === 'failed') return r.outcome;
        this.stats.lastSuccessAt = this.deps.now();
        return { kind: 'held', plan, enforced: d.enforce, hold: d.hold, fresh: d.fresh };
      }
    }
    const r = await this.applyPlan(plan, full, compileMs, source, snapshot);
    if (r.kind === 'failed') return r.outcome;
    this.lastGood = { snapshot, plan, source };
    if (source === 'consul') this.stats.lastSuccessAt = this.deps.now();
    if (r.kind === 'unchanged') return { kind: 'unchanged', plan, source };
    if (source !== 'minimal') this.queueSave(snapshot, plan);
    return { kind: 'applied', plan, report: r.report, source };
  }

  /** Puts `plan` in the kernel unless it is there already; a failure rolls back. */
  private async applyPlan(
    plan: Plan,
    full: boolean,
    compileMs: number,
    source: Source,
    snapshot?: Snapshot,
  ): Promise<{ kind: 'unchanged' } | { kind: 'applied'; report: ApplyReport } | { kind: 'failed'; outcome: Outcome }> {
    const { log } = this.deps;
    const unchanged = this.inForce !== null && this.inForce.fingerprint === plan.fingerprint && !this.failedSince;
    if (!full && unchanged) {
      // Same sets and rules, so the kernel is right; but the plan's other parts may have moved
      // (diagnostics, a shortened expiry): status and the expiry timer must follow the newest.
      this.inForce = plan;
      return { kind: 'unchanged' };
    }
    let report: ApplyReport;
    try {
      // A real plan (not the safety net's) may take over what the other backend or BEFW left.
      report = await this.deps.dataplane.apply({ plan, owned: [...this.owned], full, adopt: source !== 'minimal' });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.stats.applyFailures++;
      this.stats.lastResult = `failed: ${error.message}`;
      log.error({ event: 'apply-failed', fingerprint: plan.fingerprint, err: error.message }, 'apply failed');
      this.failedSince = true;
      const rolledBack = await this.rollback();
      return { kind: 'failed', outcome: { kind: 'apply-failed', error, plan, rolledBack } };
    }
    this.failedSince = false;
    this.owned = new Set([...report.owned, ...report.notDestroyed.map((f) => f.name)]);
    logMemberChanges(this.deps.log, this.inForce, plan, snapshot ?? null, this.deps.now());
    this.inForce = plan;
    this.stats.applies++;
    this.stats.lastApplyAt = this.deps.now();
    this.stats.lastResult = 'applied';
    this.logApplied(plan, report, compileMs, source);
    return { kind: 'applied', report };
  }

  private logApplied(plan: Plan, report: ApplyReport, compileMs: number, source: Source): void {
    this.deps.log.info(
      {
        event: 'applied',
        source,
        mode: report.mode,
        added: report.added,
        deleted: report.deleted,
        chainWritten: report.chainWritten,
        fingerprint: plan.fingerprint,
        sets: plan.sets.length,
        rules: plan.rules.length,
        members: report.members,
        created: report.created.length,
        swapped: report.swapped.length,
        destroyed: report.destroyed,
        notDestroyed: report.notDestroyed,
        jumpInserted: report.jumpInserted,
        ...(report.takeover === null ? {} : { takeover: report.takeover }),
        diagnostics: plan.diagnostics.length,
        nextExpiry: plan.nextExpiry === null ? null : new Date(plan.nextExpiry).toISOString(),
        ms: { compile: compileMs, ...report.ms },
        mem: memoryFigures(),
      },
      'plan applied',
    );
  }

  /**
   * Each diagnostic is logged once when it appears (at its own severity) and once when it clears,
   * whether or not the plan changed: 20,000 bad keys are not re-logged at every apply, and a new
   * one is not missed because nothing else changed.
   */
  private reportDiagnostics(plan: Plan): void {
    const now = new Map(plan.diagnostics.map((d) => [`${d.code}\u0000${d.subject}\u0000${d.message}`, d]));
    for (const [k, d] of now) {
      if (this.logged.has(k)) continue;
      const fields = { event: 'diagnostic', severity: d.severity, code: d.code, subject: d.subject };
      if (d.severity === 'error') this.deps.log.error(fields, d.message);
      else this.deps.log.warn(fields, d.message);
    }
    for (const [k, d] of this.logged) {
      if (!now.has(k)) this.deps.log.info({ event: 'diagnostic-cleared', code: d.code, subject: d.subject }, 'no longer reported');
    }
    this.logged = now;
  }

  /** After a failed apply: the last good plan, recompiled for now, applied in full. */
  private async rollback(): Promise<boolean> {
    const last = this.lastGood;
    if (last === null) return false;
    const { dataplane, log } = this.deps;
    const plan = compile(last.snapshot, compileOptions(this.deps.config), this.deps.now(), { views: false });
    try {
      dataplane.forget();
      await dataplane.apply({ plan, owned: [...this.owned], full: true });
      this.stats.rollbacks++;
      this.lastGood = { ...last, plan };
      this.inForce = plan;
      log.warn({ event: 'rolled-back', fingerprint: plan.fingerprint }, 'previous good state restored');
      return true;
    } catch (err) {
      log.error({ event: 'rollback-failed', err: (err as Error).message }, 'rollback failed too; the next pass retries in full');
      return false;
    }
  }

  /**
   * state.bin is written beside the loop, not in it: an fsync that takes a while on a busy disk
   * must not delay the next change. Saves coalesce (only the newest state is written) and run
   * one at a time, so the file on disk is always a whole, recent good state.
   */
  private queueSave(snapshot: Snapshot, plan: Plan): void {
    this.pendingSave = { snapshot, plan };
    this.saving ??= this.drainSaves();
  }

  private async drainSaves(): Promise<void> {
    for (let next = this.pendingSave; next !== null; next = this.pendingSave) {
      this.pendingSave = null;
      await this.save(next.snapshot, next.plan);
    }
    this.saving = null;
  }

  /** Waits for the newest state to be on disk (at stop). */
  async flushSaves(): Promise<void> {
    await this.saving;
  }

  private async save(snapshot: Snapshot, plan: Plan): Promise<void> {
    try {
      await this.deps.store.save({ savedAt: this.deps.now(), snapshot, owned: [...this.owned], fingerprint: plan.fingerprint });
      if (this.saveHealth.failingSince !== null) this.deps.log.info({ event: 'state-saved-again' }, 'state.bin is saved again');
      this.saveHealth = { failingSince: null, lastError: null };
    } catch (err) {
      // The kernel is right; only the restart path is weaker (a restart during a Consul outage
      // would enforce older state). Loud and visible in status and health, not a reason to stop.
      const error = (err as Error).message;
      this.saveHealth = { failingSince: this.saveHealth.failingSince ?? this.deps.now(), lastError: error };
      this.deps.log.error({ event: 'state-save-failed', err: error }, 'cannot save state');
    }
  }
}
