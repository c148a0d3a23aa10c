/**
 * Prometheus metrics (prom-client), on their own registry so nothing global leaks in. The agent
 * records into them; the HTTP endpoint (off by default, loopback only) serves them.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { VERSION } from '../core/version.js';

export interface Metrics {
  readonly registry: Registry;
  readonly applyDuration: Histogram<'result' | 'mode'>;
  readonly applies: Counter<'result'>;
  readonly propagation: Histogram;
  readonly setMembers: Gauge<'set'>;
  readonly driftRepairs: Counter;
  readonly consulErrors: Counter<'watch'>;
  readonly consulStaleness: Gauge;
  /** KV answers by whether their data changed (an unchanged one only moved the index). */
  readonly kvAnswers: Counter<'changed'>;
  readonly lastGoodSync: Gauge;
  readonly diagnostics: Gauge<'severity'>;
  readonly guardHeld: Counter;
  readonly rollbacks: Counter;
  /** Reads the gauges that follow the agent's status at each scrape. */
  bindStatus(read: () => StatusFigures): void;
}

/** The figures the status-following gauges show. */
export interface StatusFigures {
  readonly guardHolding: boolean;
  readonly protectedClipped: number;
  readonly stateSaveFailing: boolean;
  readonly problems: number;
  readonly kvWatches: number;
  readonly ready: boolean;
  readonly consulReachable: boolean;
  /** Since the last completed request to Consul (since the start when there was none). */
  readonly consulSinceContactMs: number;
}

/**
 * Default metrics prom-client exports as gauges with a `_total` suffix, which `promtool check
 * metrics` rejects (only counters end in `_total`). Their unsuffixed siblings, labelled by
 * type, carry the same figures.
 */
const DROPPED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export function createMetrics(): Metrics {
  const registry = new Registry();
  // The standard process_* and nodejs_* names, which dashboards and alerts already know.
  collectDefaultMetrics({ register: registry });
  for (const name of DROPPED_DEFAULTS) registry.removeSingleMetric(name);
  new Gauge({
    name: 'befw_build_info',
    help: 'Always 1; the labels say which befw runs.',
    labelNames: ['version', 'node_version'],
    registers: [registry],
  }).set({ version: VERSION, node_version: process.versions.node }, 1);
  let read: (() => StatusFigures) | null = null;
  const follow = (name: string, help: string, pick: (f: StatusFigures) => number): Gauge =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        if (read !== null) this.set(pick(read()));
      },
    });
  follow('befw_ready', '1 once the first apply is done (from Consul, state.bin or the safety net).', (f) => (f.ready ? 1 : 0));
  follow(
    'befw_consul_up',
    '1 while the local Consul agent answered within 15 s and the watches are not failing (an open blocking query is no answer).',
    (f) => (f.consulReachable ? 1 : 0),
  );
  follow(
    'befw_consul_last_contact_seconds',
    'Seconds since a request to the local Consul agent last completed (since the start if none did).',
    (f) => f.consulSinceContactMs / 1000,
  );
  follow('befw_guard_holding', '1 while the guard holds a change that loosens the firewall.', (f) => (f.guardHolding ? 1 : 0));
  follow('befw_protected_clipped', 'Entries kept out of a deny because they would cut a protected path.', (f) => f.protectedClipped);
  follow('befw_state_save_failing', '1 while state.bin cannot be saved (a restart would enforce older state).', (f) =>
    f.stateSaveFailing ? 1 : 0,
  );
  follow(
    'befw_problems',
    'Problems /healthz reports (stuck or stale reconcile, unreadable files, failing state.bin saves).',
    (f) => f.problems,
  );
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
  const m: Metrics = {
    registry,
    applyDuration: new Histogram({
      name: 'befw_apply_duration_seconds',
      help: 'Time to apply a plan to the kernel.',
      labelNames: ['result', 'mode'],
      buckets,
      registers: [registry],
    }),
    applies: new Counter({
      name: 'befw_applies_total',
      help: 'Applies by result (applied, failed, unchanged, held).',
      labelNames: ['result'],
      registers: [registry],
    }),
    propagation: new Histogram({
      name: 'befw_propagation_seconds',
      help: 'From a Consul answer carrying a change to that change in the kernel.',
      buckets,
      registers: [registry],
    }),
    setMembers: new Gauge({
      name: 'befw_set_members',
      help: 'Members per kernel set as last applied.',
      labelNames: ['set'],
      registers: [registry],
    }),
    driftRepairs: new Counter({
      name: 'befw_drift_repairs_total',
      help: 'Repairs after the integrity check found the kernel changed.',
      registers: [registry],
    }),
    consulErrors: new Counter({
      name: 'befw_consul_request_errors_total',
      help: 'Failed Consul requests by watch.',
      labelNames: ['watch'],
      registers: [registry],
    }),
    kvAnswers: new Counter({
      name: 'befw_consul_kv_answers_total',
      help: 'Answers to the KV watches, by whether their data changed (false: only the index moved).',
      labelNames: ['changed'],
      registers: [registry],
    }),
    consulStaleness: new Gauge({
      name: 'befw_consul_staleness_seconds',
      help: 'X-Consul-LastContact of the last KV answer.',
      registers: [registry],
    }),
    lastGoodSync: new Gauge({
      name: 'befw_last_good_sync_timestamp_seconds',
      help: 'Unix time of the last successful apply or confirmed unchanged plan.',
      registers: [registry],
    }),
    diagnostics: new Gauge({
      name: 'befw_diagnostics',
      help: 'Entries ignored or reported in the plan in force, by severity.',
      labelNames: ['severity'],
      registers: [registry],
    }),
    guardHeld: new Counter({ name: 'befw_guard_held_total', help: 'Changes held by the guard.', registers: [registry] }),
    rollbacks: new Counter({
      name: 'befw_rollbacks_total',
      help: 'Rollbacks to the last good plan after a failed apply.',
      registers: [registry],
    }),
    bindStatus(r) {
      read = r;
    },
  };
  zeroLabels(m);
  return m;
}

/** Every known label value exported from the start, at zero: a rate() over a series that appears late misses its first events. */
function zeroLabels(m: Metrics): void {
  for (const result of ['applied', 'unchanged', 'held', 'apply-failed', 'read-failed']) m.applies.inc({ result }, 0);
  for (const watch of ['kv', 'services', 'agent/self', 'agent/members', 'agent/services']) m.consulErrors.inc({ watch }, 0);
  for (const changed of ['true', 'false']) m.kvAnswers.inc({ changed }, 0);
  for (const severity of ['error', 'warning']) m.diagnostics.set({ severity }, 0);
}
