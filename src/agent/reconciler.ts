/**
 * One pass of the loop: snapshot -> compile -> guard -> (unchanged? stop) -> apply -> save state.
 *
 * The failure branches are explicit outcomes, not exception handlers:
 *   - the inputs cannot be read: the last good snapshot is recompiled with the current time, so
 *     expiries still leave the kernel during an outage, and nothing is flushed;
 *   - the new plan would remove too much because of what a read returned: it is held until a
 *     second read confirms it (see core/blastRadius.ts);
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
import type { Templates } from '../config/load.js';
import type { ApplyReport, Dataplane, Drift } from '../dataplane/iptables/driver.js';
import { type GuardOptions, type SuspiciousRemoval, suspiciousRemovals } from '../core/blastRadius.js';
import { RULES_ALLOW, compile } from '../core/compile.js';
import { KvParseCache } from '../core/kvLayout.js';
import { v6Name } from '../core/setNames.js';
import type { CompileOptions, Plan, Snapshot } from '../core/types.js';
import type { StateStore } from '../state/stateStore.js';
import type { Logger } from '../log/logger.js';
import { memoryFigures } from './memory.js';

export type Source = 'consul' | 'saved' | 'minimal';

export type Outcome =
  | { readonly kind: 'applied'; readonly plan: Plan; readonly report: ApplyReport; readonly source: Source }
  | { readonly kind: 'unchanged'; readonly plan: Plan; readonly source: Source }
  | { readonly kind: 'held'; readonly plan: Plan; readonly removals: readonly SuspiciousRemoval[] }
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
  readonly templates: Templates;
  readonly log: Logger;
  readonly now: () => number;
}

export function compileOptions(config: Config): CompileOptions {
  return { customSets: config.customSets, managementNets: config.managementNets, protect: config.protect };
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
}

export class Reconciler {
  private lastGood: { snapshot: Snapshot; plan: Plan; source: Source } | null = null;
  private owned = new Set<string>();
  private baseInstalled = false;
  /** An apply failed since the last success: retry even if the plan looks unchanged. */
  private failedSince = false;
  /** The inputs of a plan held by the guard; a different read confirms or clears it. */
  private held: { kv: Snapshot['kv']; services: Snapshot['agentServices'] } | null = null;
  private readonly parseCache = new KvParseCache();
  readonly stats: ReconcilerStats = {
    applies: 0,
    applyFailures: 0,
    rollbacks: 0,
    repairs: 0,
    held: 0,
    lastApplyAt: null,
    lastResult: null,
  };

  constructor(private readonly deps: ReconcilerDeps) {}

  /** Earliest expiry in the enforced plan (Unix ms), for the expiry timer. */
  get nextExpiry(): number | null {
    return this.lastGood?.plan.nextExpiry ?? null;
  }

  get lastPlan(): Plan | null {
    return this.lastGood?.plan ?? null;
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
          { name: v6Name(RULES_ALLOW), family: 'inet6', members: v6 },
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
    return this.enforce(last.snapshot, last.source, true);
  }

  private compile(snapshot: Snapshot): Plan {
    // No per-member views in the agent: they cost memory at 100,000 members and only `befw
    // show` needs them.
    return compile(snapshot, compileOptions(this.deps.config), this.deps.now(), { views: false, cache: this.parseCache });
  }

  /** Removals the guard would hold, comparing against what the previous inputs give now. */
  private guard(plan: Plan): SuspiciousRemoval[] {
    const last = this.lastGood;
    if (last === null || last.source === 'minimal') return [];
    const cheap = suspiciousRemovals(last.plan, plan, guardOptions(this.deps.config));
    if (cheap.length === 0) return [];
    // Discount expiries: recompile the previous inputs at the current time (no cache: the cache
    // follows the newest listing).
    const baseline = compile(last.snapshot, compileOptions(this.deps.config), this.deps.now(), { views: false });
    return suspiciousRemovals(baseline, plan, guardOptions(this.deps.config));
  }

  private async enforce(snapshot: Snapshot, source: Source, full = false): Promise<Outcome> {
    const { log, templates } = this.deps;
    const t0 = performance.now();
    const plan = this.compile(snapshot);
    const compileMs = performance.now() - t0;

    if (source === 'consul') {
      const removals = this.guard(plan);
      const sameRead = this.held !== null && this.held.kv === snapshot.kv && this.held.services === snapshot.agentServices;
      if (removals.length > 0 && (this.held === null || sameRead)) {
        if (this.held === null) {
          this.held = { kv: snapshot.kv, services: snapshot.agentServices };
          this.stats.held++;
          log.warn(
            { event: 'guard-held', removals, fingerprint: plan.fingerprint },
            'plan removes too much at once; held until a second read confirms it',
          );
          this.deps.requestReread();
        }
        return { kind: 'held', plan, removals };
      }
      if (removals.length > 0) log.warn({ event: 'guard-confirmed', removals }, 'a second read confirms the removals; applying');
      else if (this.held !== null) log.info({ event: 'guard-cleared' }, 'the next read no longer removes that much; held plan dropped');
      this.held = null;
    }

    const installBase = templates.base !== null && !this.baseInstalled;
    const unchanged = this.lastGood !== null && this.lastGood.plan.fingerprint === plan.fingerprint && !this.failedSince;
    if (!installBase && !full && unchanged) {
      this.lastGood = { snapshot, plan, source };
      return { kind: 'unchanged', plan, source };
    }
    let report: ApplyReport;
    try {
      report = await this.deps.dataplane.apply({
        plan,
        owned: [...this.owned],
        template: templates.service,
        base: installBase ? templates.base : null,
        full,
      });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      this.stats.applyFailures++;
      this.stats.lastResult = `failed: ${error.message}`;
      log.error({ event: 'apply-failed', fingerprint: plan.fingerprint, err: error.message }, 'apply failed');
      this.failedSince = true;
      const rolledBack = await this.rollback();
      return { kind: 'apply-failed', error, plan, rolledBack };
    }
    if (installBase) this.baseInstalled = true;
    this.failedSince = false;
    this.owned = new Set([...plan.sets.map((s) => s.name), ...report.notDestroyed.map((f) => f.name)]);
    this.lastGood = { snapshot, plan, source };
    this.stats.applies++;
    this.stats.lastApplyAt = this.deps.now();
    this.stats.lastResult = 'applied';
    log.info(
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
        diagnostics: plan.diagnostics.length,
        nextExpiry: plan.nextExpiry === null ? null : new Date(plan.nextExpiry).toISOString(),
        ms: { compile: compileMs, ...report.ms },
        mem: memoryFigures(),
      },
      'plan applied',
    );
    for (const d of plan.diagnostics) log.warn({ event: 'diagnostic', severity: d.severity, code: d.code, subject: d.subject }, d.message);
    if (source !== 'minimal') await this.save(snapshot, plan);
    return { kind: 'applied', plan, report, source };
  }

  /** After a failed apply: the last good plan, recompiled for now, applied in full. */
  private async rollback(): Promise<boolean> {
    const last = this.lastGood;
    if (last === null) return false;
    const { dataplane, templates, log } = this.deps;
    const plan = compile(last.snapshot, compileOptions(this.deps.config), this.deps.now(), { views: false });
    try {
      dataplane.forget();
      await dataplane.apply({ plan, owned: [...this.owned], template: templates.service, base: null, full: true });
      this.stats.rollbacks++;
      this.lastGood = { ...last, plan };
      log.warn({ event: 'rolled-back', fingerprint: plan.fingerprint }, 'previous good state restored');
      return true;
    } catch (err) {
      log.error({ event: 'rollback-failed', err: (err as Error).message }, 'rollback failed too; the next pass retries in full');
      return false;
    }
  }

  private async save(snapshot: Snapshot, plan: Plan): Promise<void> {
    try {
      await this.deps.store.save({ savedAt: this.deps.now(), snapshot, owned: [...this.owned], fingerprint: plan.fingerprint });
    } catch (err) {
      // The kernel is right; only the restart path is weaker. Loud, but not a reason to stop.
      this.deps.log.error({ event: 'state-save-failed', err: (err as Error).message }, 'cannot save state');
    }
  }
}
