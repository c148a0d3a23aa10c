/**
 * One pass of the loop: snapshot -> compile -> (unchanged? stop) -> apply -> save state.
 *
 * The failure branches are explicit outcomes, not exception handlers:
 *   - Consul (or a local input) cannot be read: the last good snapshot is recompiled with the
 *     current time, so expiries still leave the kernel during an outage, and nothing is flushed.
 *   - the apply fails: reported with the failing step and stderr; the next pass tries again.
 */
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/config.js';
import type { Templates } from '../config/load.js';
import type { ConsulApi } from '../consul/client.js';
import type { ApplyReport, Dataplane } from '../dataplane/driver.js';
import { compile } from '../rules/compile.js';
import { KvParseCache } from '../rules/kvLayout.js';
import { planRegistrations } from '../rules/registrations.js';
import type { CompileOptions, Plan, Snapshot } from '../rules/types.js';
import type { StateStore } from '../state/stateStore.js';
import type { Logger } from './logger.js';
import { memoryFigures } from './memory.js';

export type Outcome =
  | { readonly kind: 'applied'; readonly plan: Plan; readonly report: ApplyReport; readonly source: 'consul' | 'saved' }
  | { readonly kind: 'unchanged'; readonly plan: Plan; readonly source: 'consul' | 'saved' }
  | { readonly kind: 'read-failed'; readonly error: Error; readonly fallback: Outcome | null }
  | { readonly kind: 'apply-failed'; readonly error: Error; readonly plan: Plan };

export interface ReconcilerDeps {
  /** Where snapshots come from: the watchers' last answers in the agent. Rejects when unknown. */
  readonly source: () => Promise<Snapshot>;
  /** For registering service files with the local agent. */
  readonly consul: ConsulApi;
  readonly dataplane: Dataplane;
  readonly store: StateStore;
  readonly config: Config;
  readonly templates: Templates;
  readonly log: Logger;
  readonly now: () => number;
}

export function compileOptions(config: Config): CompileOptions {
  return { customSets: config.customSets, managementNets: config.managementNets };
}

export class Reconciler {
  private lastGood: { snapshot: Snapshot; plan: Plan } | null = null;
  private owned = new Set<string>();
  private baseInstalled = false;
  /** An apply failed since the last success: retry even if the plan looks unchanged. */
  private failedSince = false;
  private readonly parseCache = new KvParseCache();

  constructor(private readonly deps: ReconcilerDeps) {}

  /** Earliest expiry in the enforced plan (Unix ms), for the expiry timer. */
  get nextExpiry(): number | null {
    return this.lastGood?.plan.nextExpiry ?? null;
  }

  get lastPlan(): Plan | null {
    return this.lastGood?.plan ?? null;
  }

  /** At start, before Consul answers: enforce state.bin if it is valid. */
  async enforceSaved(): Promise<Outcome | null> {
    const { log } = this.deps;
    const loaded = await this.deps.store.load();
    if (loaded.kind === 'missing') {
      log.info({ event: 'state-missing', path: this.deps.config.statePath }, 'no saved state; waiting for Consul');
      return null;
    }
    if (loaded.kind === 'invalid') {
      log.error({ event: 'state-invalid', path: this.deps.config.statePath, reason: loaded.reason }, 'saved state not applied');
      return null;
    }
    for (const n of loaded.state.owned) this.owned.add(n);
    log.info({ event: 'state-loaded', savedAt: new Date(loaded.state.savedAt).toISOString() }, 'enforcing saved state');
    return this.enforce(loaded.state.snapshot, 'saved');
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
      const fallback = this.lastGood === null ? null : await this.enforce(this.lastGood.snapshot, 'saved', full);
      return { kind: 'read-failed', error, fallback };
    }
    await this.syncServiceFiles(snapshot);
    return this.enforce(snapshot, 'consul', full);
  }

  private async enforce(snapshot: Snapshot, source: 'consul' | 'saved', full = false): Promise<Outcome> {
    const { config, log, templates } = this.deps;
    const t0 = performance.now();
    // No per-member views in the agent: they cost memory at 100,000 members and only `befw
    // show` needs them.
    const plan = compile(snapshot, compileOptions(config), this.deps.now(), { views: false, cache: this.parseCache });
    const compileMs = performance.now() - t0;
    const installBase = templates.base !== null && !this.baseInstalled;
    const unchanged = this.lastGood !== null && this.lastGood.plan.fingerprint === plan.fingerprint && !this.failedSince;
    if (!installBase && !full && unchanged) {
      this.lastGood = { snapshot, plan };
      return { kind: 'unchanged', plan, source };
    }
    let report: ApplyReport;
    try {
      report = await this.deps.dataplane.apply({ plan, owned: [...this.owned], template: templates.service, base: installBase ? templates.base : null, full });
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err));
      log.error({ event: 'apply-failed', fingerprint: plan.fingerprint, err: error.message }, 'apply failed');
      this.failedSince = true;
      return { kind: 'apply-failed', error, plan };
    }
    this.failedSince = false;
    if (installBase) this.baseInstalled = true;
    this.owned = new Set([...plan.sets.map((s) => s.name), ...report.notDestroyed.map((f) => f.name)]);
    this.lastGood = { snapshot, plan };
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
    await this.save(snapshot, plan);
    return { kind: 'applied', plan, report, source };
  }

  private async save(snapshot: Snapshot, plan: Plan): Promise<void> {
    try {
      await this.deps.store.save({ savedAt: this.deps.now(), snapshot, owned: [...this.owned], fingerprint: plan.fingerprint });
    } catch (err) {
      // The kernel is right; only the restart path is weaker. Loud, but not a reason to stop.
      this.deps.log.error({ event: 'state-save-failed', err: (err as Error).message }, 'cannot save state');
    }
  }

  private async syncServiceFiles(snapshot: Snapshot): Promise<void> {
    const { consul, log } = this.deps;
    const todo = planRegistrations(snapshot.agentServices, snapshot.fileServices);
    for (const r of todo.register) {
      try {
        await consul.register(r);
        log.info({ event: 'service-registered', id: r.id, port: r.port, tags: r.tags }, 'service file registered');
      } catch (err) {
        log.warn({ event: 'service-register-failed', id: r.id, err: (err as Error).message }, 'cannot register service file');
      }
    }
    for (const id of todo.deregister) {
      try {
        await consul.deregister(id);
        log.info({ event: 'service-deregistered', id }, 'service file gone; deregistered');
      } catch (err) {
        log.warn({ event: 'service-deregister-failed', id, err: (err as Error).message }, 'cannot deregister service');
      }
    }
  }
}
