/**
 * The agent's composition root and loop. Builds the real adapters (Consul over HTTP, processes
 * for ipset/iptables, state.bin on disk) and runs reconciles one at a time, triggered by:
 *   - the watchers (KV and services blocking queries, directory watches),
 *   - the next expiry in the enforced plan, so an entry leaves at its second,
 *   - the periodic full resync (jittered), which rebuilds every set and rewrites the chain,
 *   - SIGHUP (full reconcile now).
 * Triggers are coalesced: a burst of changes gives one reconcile, at most COALESCE_MAX_MS after
 * its first change. SIGTERM/SIGINT stop the loop and leave the kernel exactly as it is.
 */
import { performance } from 'node:perf_hooks';
import type { Config } from '../config/config.js';
import { loadTemplates, resolveToken } from '../config/load.js';
import { DEFAULT_WATCH_OPTIONS } from '../consul/blockingWatch.js';
import { createConsulApi } from '../consul/client.js';
import { createDataplane } from '../dataplane/driver.js';
import { type CommandRunner, createLauncherRunner, createPrewarmedRunner, processRunner } from '../dataplane/exec.js';
import { detectBackend, toolsFor } from '../dataplane/iptables.js';
import { IPSET, RESTORE_ARGS } from '../dataplane/ipset.js';
import { createFileStateStore } from '../state/stateStore.js';
import { Coalescer } from './coalescer.js';
import { type Logger, createLogger } from './logger.js';
import { COMPACT_ABOVE_KEYS, scheduleCompaction } from './memory.js';
import { Reconciler } from './reconciler.js';
import { type ChangeReason, WatchedInputs } from './watchedInputs.js';

/** Quiet period and ceiling for coalescing: small against the 20 ms propagation target. */
export const COALESCE_QUIET_MS = 1;
export const COALESCE_MAX_MS = 50;
/** Wake slightly after the expiry second so that the compile sees the entry as expired. */
const EXPIRY_SLACK_MS = 5;
/** Longest single timer (Node's limit is ~24.8 days; re-arming is cheap). */
const MAX_TIMER_MS = 60 * 60_000;

type Reason = ChangeReason | 'start' | 'expiry' | 'resync' | 'sighup' | 'retry';

/** Retries of a failed apply: 1 s, doubling, at most a minute apart. */
const RETRY_BASE_MS = 1000;
const RETRY_MAX_MS = 60_000;

export interface AgentHandle {
  stop(): Promise<void>;
  readonly done: Promise<void>;
  readonly reconciler: Reconciler;
}

export async function startAgent(config: Config, log: Logger = createLogger(config.logLevel)): Promise<AgentHandle> {
  const templates = await loadTemplates(config);
  const token = await resolveToken(config);
  const consul = createConsulApi({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000 });
  let coalescer: Coalescer<Reason> | null = null;
  const inputs = new WatchedInputs(consul, config, log, (reason) => coalescer?.poke(reason), {
    ...DEFAULT_WATCH_OPTIONS,
    waitMs: config.consulWait * 1000,
    maxStaleMs: config.maxStale * 1000,
  });
  const backend = await detectBackend(processRunner, config.iptablesBackend);
  log.info({ event: 'iptables-backend', backend: backend.backend, how: backend.how }, 'iptables backend');
  // Writes (with input) go to a prewarmed process: the delta's `ipset restore` is the one process
  // on the propagation path. Reads (the integrity check's listings) are started by a small
  // long-lived shell: forking the agent itself every 3 s would be most of its idle CPU.
  const writer = createPrewarmedRunner([[IPSET, RESTORE_ARGS]]);
  const reader = createLauncherRunner(processRunner);
  const runner: CommandRunner = { run: (cmd, args, opts) => (opts?.input !== undefined ? writer.run(cmd, args, opts) : reader.run(cmd, args, opts)) };
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
  let fullCheckDue = false;
  let resyncTimer: NodeJS.Timeout | null = null;
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
    resyncTimer = setTimeout(() => {
      inputs.reread();
      fullCheckDue = true;
      coalescer?.poke('resync');
      armResync();
    }, base * (0.9 + Math.random() * 0.2));
  };

  let retryTimer: NodeJS.Timeout | null = null;
  let failures = 0;
  coalescer = new Coalescer<Reason>(
    { quietMs: COALESCE_QUIET_MS, maxDelayMs: COALESCE_MAX_MS },
    async (reasons) => {
      // SIGHUP rebuilds everything; the periodic resync re-reads the inputs (its reread() was
      // asked when it fired) and then proves the kernel by a full integrity check.
      const full = reasons.has('sighup');
      if (full) inputs.invalidate();
      const outcome = await reconciler.reconcile([...reasons].join(','), full);
      if (inputs.kvSize > COMPACT_ABOVE_KEYS) {
        scheduleCompaction((before, after) => log.debug({ event: 'heap-compacted', before, after }, 'memory handed back after a large reconcile'));
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
    },
    (err) => log.error({ event: 'reconcile-crashed', err: err instanceof Error ? err.stack : String(err) }, 'reconcile threw; will retry on the next trigger'),
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
        if (drifts.length > 0) await reconciler.repair(drifts);
      });
    } catch (err) {
      log.warn({ event: 'integrity-check-failed', err: (err as Error).message }, 'integrity check could not read the kernel');
    } finally {
      integrityBusy = false;
    }
  };
  const integrityTimer = setInterval(() => void checkIntegrity(), config.integrityInterval * 1000);

  const onHup = (): void => {
    log.info({ event: 'sighup' }, 'full reconcile requested');
    coalescer?.poke('sighup');
  };
  process.on('SIGHUP', onHup);

  await reconciler.enforceSaved();
  armExpiry();
  inputs.start();
  armResync();

  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  return {
    done,
    reconciler,
    async stop() {
      process.off('SIGHUP', onHup);
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
