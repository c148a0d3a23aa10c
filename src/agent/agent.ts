/**
 * The agent's composition root and loop. Builds the real adapters (Consul over HTTP, processes
 * for ipset/iptables, state.bin on disk) and runs reconciles one at a time, triggered by:
 *   - the watchers (KV and services blocking queries, directory watches),
 *   - the next expiry in the enforced plan, so an entry leaves at its second,
 *   - the periodic resync (jittered): everything re-read, the kernel checked member by member,
 *   - a retry after a failed apply, and `rebuild()` (a full rebuild on request).
 * Triggers are coalesced: a burst of changes gives one reconcile, at most COALESCE_MAX_MS after
 * its first change. The integrity check runs between reconciles, never during one. stop()
 * leaves the kernel exactly as it is. Signals, the control socket and metrics belong to the
 * supervisor, which can replace one agent by another on reload.
 */
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/config.js';
import { loadTemplates, resolveToken } from '../config/load.js';
import { DEFAULT_WATCH_OPTIONS } from '../consul/blockingWatch.js';
import { createConsulApi } from '../consul/client.js';
import { type Drift, createDataplane } from '../dataplane/iptables/driver.js';
import { type CommandRunner, createLauncherRunner, createPrewarmedRunner, processRunner } from '../dataplane/exec.js';
import { type Backend, detectBackend, toolsFor } from '../dataplane/iptables/iptables.js';
import { IPSET, RESTORE_ARGS } from '../dataplane/iptables/ipset.js';
import type { Diagnostic } from '../core/types.js';
import { createFileStateStore } from '../state/stateStore.js';
import { Coalescer } from './coalescer.js';
import { type Logger, createLogger } from '../log/logger.js';
import { COMPACT_ABOVE_KEYS, scheduleCompaction } from './memory.js';
import type { Metrics } from './metrics.js';
import { type Outcome, Reconciler, type ReconcilerStats } from './reconciler.js';
import { type ChangeReason, type ConsulHealth, WatchedInputs } from './inputs/watchedInputs.js';

/** Quiet period and ceiling for coalescing: small against the 20 ms propagation target. */
export const COALESCE_QUIET_MS = 1;
export const COALESCE_MAX_MS = 50;
/** Wake slightly after the expiry second so that the compile sees the entry as expired. */
const EXPIRY_SLACK_MS = 5;
/** Longest single timer (Node's limit is ~24.8 days; re-arming is cheap). */
const MAX_TIMER_MS = 60 * 60_000;
/** A reconcile running longer than this makes the agent unhealthy (/healthz). */
const STUCK_AFTER_MS = 5 * 60_000;

type Reason = ChangeReason | 'expiry' | 'resync' | 'rebuild' | 'retry';

/** Retries of a failed apply: 1 s, doubling, at most a minute apart. */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 60_000;

export interface AgentStatus {
  readonly startedAt: number;
  readonly backend: Backend;
  readonly consul: ConsulHealth;
  readonly stats: ReconcilerStats;
  readonly lastSource: string | null;
  readonly fingerprint: string | null;
  readonly nextExpiry: number | null;
  readonly sets: readonly { name: string; family: string; members: number }[];
  readonly diagnostics: readonly Diagnostic[];
  /** Ready: the first apply is done (from Consul, state.bin or the safety net). */
  readonly ready: boolean;
  /** Not stuck: no reconcile has been running for minutes. */
  readonly healthy: boolean;
}

export interface AgentHandle {
  stop(): Promise<void>;
  readonly done: Promise<void>;
  readonly reconciler: Reconciler;
  status(): AgentStatus;
  /** Compares the kernel with the plan, members included, without repairing. */
  check(): Promise<Drift[]>;
  /** Full rebuild of every set and the chain, now. */
  rebuild(): void;
}

export async function startAgent(
  config: Config,
  log: Logger = createLogger(config.logLevel),
  metrics: Metrics | null = null,
): Promise<AgentHandle> {
  const startedAt = Date.now();
  const templates = await loadTemplates(config);
  const token = await resolveToken(config);
  const consul = createConsulApi({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000 });
  let coalescer: Coalescer<Reason> | null = null;
  let kvAnswerAt: number | null = null;
  const inputs = new WatchedInputs(
    consul,
    config,
    log,
    (reason) => {
      if (reason === 'kv') kvAnswerAt = performance.now();
      coalescer?.poke(reason);
    },
    { ...DEFAULT_WATCH_OPTIONS, waitMs: config.consulWait * 1000, maxStaleMs: config.maxStale * 1000 },
    {
      onError: (watch) => metrics?.consulErrors.inc({ watch }),
      onKvAnswer: (lastContactMs) => metrics?.consulStaleness.set((lastContactMs ?? 0) / 1000),
    },
  );
  const backend = await detectBackend(processRunner, config.iptablesBackend);
  log.info({ event: 'iptables-backend', backend: backend.backend, how: backend.how }, 'iptables backend');
  // Writes (with input) go to a prewarmed process: the delta's `ipset restore` is the one process
  // on the propagation path. Reads (the integrity check's listings) are started by a small
  // long-lived shell: forking the agent itself every 3 s would be most of its idle CPU.
  const writer = createPrewarmedRunner([[IPSET, RESTORE_ARGS]]);
  const reader = createLauncherRunner(processRunner);
  const runner: CommandRunner = {
    run: (cmd, args, opts) => (opts?.input !== undefined ? writer.run(cmd, args, opts) : reader.run(cmd, args, opts)),
  };
  const dataplane = createDataplane(runner, toolsFor(backend.backend));
  const reconciler = new Reconciler({
    source: () => inputs.snapshot(),
    requestReread: () => inputs.reread(),
    consul,
    dataplane,
    store: createFileStateStore(config.statePath),
    config,
    templates,
    log,
    now: () => Date.now(),
  });

  log.info(
    {
      event: 'start',
      config: config.file,
      consul: `${config.consul.host}:${config.consul.port}`,
      tokenSource: token === null ? 'none' : config.token !== null ? 'config' : config.tokenFile !== null ? 'token_file' : 'environment',
      state: config.statePath,
    },
    'befw agent starting',
  );

  let expiryTimer: NodeJS.Timeout | null = null;
  let resyncTimer: NodeJS.Timeout | null = null;
  let retryTimer: NodeJS.Timeout | null = null;
  let fullCheckDue = false;
  let ready = false;
  let runningSince: number | null = null;

  const armExpiry = (): void => {
    if (expiryTimer !== null) clearTimeout(expiryTimer);
    expiryTimer = null;
    const next = reconciler.nextExpiry;
    if (next === null) return;
    const delay = Math.max(0, next - Date.now() + EXPIRY_SLACK_MS);
    expiryTimer = setTimeout(() => coalescer?.poke('expiry'), Math.min(delay, MAX_TIMER_MS));
  };
  const armResync = (): void => {
    const base = config.resyncInterval * 1000;
    // Jitter spreads a fleet's resyncs (and their re-reads of Consul) over time.
    resyncTimer = setTimeout(
      () => {
        inputs.reread();
        fullCheckDue = true;
        coalescer?.poke('resync');
        armResync();
      },
      base * (0.9 + Math.random() * 0.2),
    );
  };

  const record = (outcome: Outcome, reasons: ReadonlySet<Reason>): void => {
    if (outcome.kind === 'applied' || outcome.kind === 'unchanged') ready = true;
    if (metrics === null) return;
    const result = outcome.kind === 'read-failed' ? (outcome.fallback?.kind ?? 'read-failed') : outcome.kind;
    metrics.applies.inc({ result });
    const applied =
      outcome.kind === 'applied'
        ? outcome
        : outcome.kind === 'read-failed' && outcome.fallback?.kind === 'applied'
          ? outcome.fallback
          : null;
    if (applied !== null && applied.kind === 'applied') {
      metrics.applyDuration.observe({ result: 'applied', mode: applied.report.mode }, applied.report.ms.total / 1000);
      metrics.setMembers.reset();
      for (const s of applied.plan.sets) metrics.setMembers.set({ set: s.name }, s.members.length);
      metrics.diagnostics.set(applied.plan.diagnostics.length);
      if (reasons.has('kv') && kvAnswerAt !== null) metrics.propagation.observe((performance.now() - kvAnswerAt) / 1000);
    }
    if (outcome.kind === 'applied' || outcome.kind === 'unchanged') metrics.lastGoodSync.set(Date.now() / 1000);
    if (outcome.kind === 'held') metrics.guardHeld.inc();
    if (outcome.kind === 'apply-failed' && outcome.rolledBack) metrics.rollbacks.inc();
  };

  let failures = 0;
  coalescer = new Coalescer<Reason>(
    { quietMs: COALESCE_QUIET_MS, maxDelayMs: COALESCE_MAX_MS },
    async (reasons) => {
      runningSince = Date.now();
      try {
        // A rebuild redoes everything; the periodic resync re-read the inputs (asked when it
        // fired) and proves the kernel with the next integrity check, in full.
        const full = reasons.has('rebuild');
        if (full) inputs.invalidate();
        const outcome = await reconciler.reconcile([...reasons].join(','), full);
        log.debug({ event: 'reconciled', reasons: [...reasons], outcome: outcome.kind }, 'reconcile done');
        record(outcome, reasons);
        if (inputs.kvSize > COMPACT_ABOVE_KEYS) {
          scheduleCompaction((before, after) =>
            log.debug({ event: 'heap-compacted', before, after }, 'memory handed back after a large reconcile'),
          );
        }
        if (outcome.kind === 'apply-failed') {
          // The last good plan is back in the kernel (rollback); try the new one again later.
          const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(failures, 16));
          failures++;
          log.warn({ event: 'retry-scheduled', inMs: delay, failures }, 'will retry the new plan');
          if (retryTimer !== null) clearTimeout(retryTimer);
          retryTimer = setTimeout(() => coalescer?.poke('retry'), delay);
        } else if (outcome.kind === 'applied' || outcome.kind === 'unchanged') {
          failures = 0;
        }
        armExpiry();
      } finally {
        runningSince = null;
      }
    },
    (err) =>
      log.error(
        { event: 'reconcile-crashed', err: err instanceof Error ? err.stack : String(err) },
        'reconcile threw; will retry on the next trigger',
      ),
  );

  // Integrity: cheap checks often (headers, counts, chain, jump), full member lists rarely (and
  // after every resync, which is how the resync proves the kernel equals the plan).
  let integrityBusy = false;
  let lastFullCheck = Date.now();
  const checkIntegrity = async (): Promise<void> => {
    if (integrityBusy) return;
    integrityBusy = true;
    try {
      const members = fullCheckDue || Date.now() - lastFullCheck >= config.integrityFullInterval * 1000;
      if (members) {
        lastFullCheck = Date.now();
        fullCheckDue = false;
      }
      await coalescer?.runExclusive(async () => {
        const t0 = performance.now();
        const drifts = await dataplane.verify({ members });
        log.debug({ event: 'integrity-check', members, drifts: drifts.length, ms: performance.now() - t0 }, 'integrity checked');
        if (drifts.length > 0) {
          metrics?.driftRepairs.inc();
          const outcome = await reconciler.repair(drifts);
          if (outcome !== null) record(outcome, new Set());
        }
      });
    } catch (err) {
      log.warn({ event: 'integrity-check-failed', err: (err as Error).message }, 'integrity check could not read the kernel');
    } finally {
      integrityBusy = false;
    }
  };
  const integrityTimer = setInterval(() => void checkIntegrity(), config.integrityInterval * 1000);

  const first = await reconciler.enforceSaved();
  if (first !== null) record(first, new Set());
  // With no state and a BEFW chain kept as it is, the node is as safe as it can be: ready.
  if (first === null) ready = true;
  armExpiry();
  inputs.start();
  armResync();

  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  return {
    done,
    reconciler,
    status() {
      const plan = reconciler.lastPlan;
      return {
        startedAt,
        backend: backend.backend,
        consul: inputs.consulHealth,
        stats: { ...reconciler.stats },
        lastSource: reconciler.lastSource,
        fingerprint: plan?.fingerprint ?? null,
        nextExpiry: plan?.nextExpiry ?? null,
        sets: (plan?.sets ?? []).map((s) => ({ name: s.name, family: s.family, members: s.members.length })),
        diagnostics: plan?.diagnostics ?? [],
        ready,
        healthy: runningSince === null || Date.now() - runningSince < STUCK_AFTER_MS,
      };
    },
    async check() {
      return (await coalescer?.runExclusive(() => dataplane.verify({ members: true }))) ?? [];
    },
    rebuild() {
      coalescer?.poke('rebuild');
    },
    async stop() {
      if (expiryTimer !== null) clearTimeout(expiryTimer);
      if (resyncTimer !== null) clearTimeout(resyncTimer);
      if (retryTimer !== null) clearTimeout(retryTimer);
      clearInterval(integrityTimer);
      await coalescer?.close();
      await inputs.stop();
      writer.close();
      reader.close();
      log.info({ event: 'stopped' }, 'befw agent stopped; firewall left as it is');
      resolveDone();
    },
  };
}
