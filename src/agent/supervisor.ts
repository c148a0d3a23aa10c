/**
 * `befw agent`: runs one agent and everything around it that outlives a reload — the control
 * socket, the metrics/health endpoint, systemd notifications and the signals.
 *
 *   SIGHUP / `befw reload`  re-read the config and build an agent from it; only if that worked,
 *                           replace the running agent by it (the new one enforces state.bin, then
 *                           reconciles at once); if not, keep running as before and report why
 *                           (agentSlot.ts)
 *   SIGTERM / SIGINT        stop; the firewall stays exactly as it is
 *   READY=1                 once the first apply is done; WATCHDOG=1 while the loop is healthy
 *
 * It also owns what outlives a reload (AgentLife: uptime, counters, readiness, Consul contact),
 * which every agent it builds counts into, so status and metrics go on across reloads.
 */
import type { Server as HttpServer } from 'node:http';
import type { Config } from '../config/config.js';
import { loadConfig } from '../config/load.js';
import { VERSION } from '../core/version.js';
import { type Logger, createLogger } from '../log/logger.js';
import { type AgentHandle, prepareAgent } from './agent.js';
import { AgentLife } from './agentLife.js';
import { AgentSlot } from './agentSlot.js';
import { startBefwApi } from './befwApi.js';
import { startControlServer } from './control.js';
import { takeNodeLock } from './nodeLock.js';
import type { ControlHandlers } from './controlProtocol.js';
import { startHttpEndpoint } from './httpEndpoint.js';
import { type Metrics, createMetrics } from './metrics.js';
import { type Notifier, createNotifier } from './sdNotify.js';
import { health, readiness } from './status.js';

/** After SIGTERM the process is gone within this long, whatever is still in flight. */
export const STOP_DEADLINE_MS = 1500;

export async function runAgent(configPath: string): Promise<void> {
  const config = await loadConfig(configPath);
  // Before anything touches the kernel: a second agent on this node stops here.
  const lock = await takeNodeLock();
  try {
    await runLocked(configPath, config);
  } finally {
    await lock.release();
  }
}

async function runLocked(configPath: string, config: Config): Promise<void> {
  const log = createLogger(config.logLevel);
  for (const warning of config.warnings) log.warn({ event: 'config-warning', config: configPath }, warning);
  const metrics = config.metrics === null ? null : createMetrics();
  const life = new AgentLife();
  const notifier = createNotifier(process.env, log);
  const readiness = new ReadinessNotice(notifier);
  let requestStop: (why: string, err?: Error) => void = () => undefined;
  const stopRequested = new Promise<{ why: string; err?: Error }>((resolve) => (requestStop = (why, err) => resolve({ why, err })));

  const slot = await AgentSlot.open(
    {
      configPath,
      loadConfig,
      prepare: (c) => prepareAgent(c, log, metrics, life),
      log,
      onSwap: () => notifier.notify('RELOADING=1'),
      onSwapped: (agent) => readiness.watch(agent),
      onFatal: (err) => requestStop('no agent after a failed reload', err instanceof Error ? err : new Error(String(err))),
    },
    config,
  );
  readiness.watch(slot.agent);
  const control = await startControlServer(config.socketPath, controlHandlers(slot, configPath));
  const befwApi = await startBefwApi(config.befwApi, { reload: () => slot.reload() }, log);
  const http = await startHealthEndpoint(config, metrics, slot, log);
  const watchdog = startWatchdog(notifier, slot);

  const onHup = (): void => void slot.reload();
  process.on('SIGHUP', onHup);
  process.once('SIGTERM', () => requestStop('SIGTERM'));
  process.once('SIGINT', () => requestStop('SIGINT'));
  const { why, err } = await stopRequested;

  if (err === undefined) log.info({ event: 'signal', signal: why }, 'stopping; the firewall stays as it is');
  notifier.notify('STOPPING=1');
  // A request still in flight (a Consul read, an apply) must not keep the process alive: the
  // kernel is consistent at every step, so leaving mid-way is safe.
  setTimeout(() => {
    log.warn({ event: 'stop-deadline', ms: STOP_DEADLINE_MS }, 'stop took too long; exiting now');
    process.exit(err === undefined ? 0 : 1);
  }, STOP_DEADLINE_MS).unref();
  process.off('SIGHUP', onHup);
  if (watchdog !== null) clearInterval(watchdog);
  await slot.stop();
  // After the stop: a reload that was still running may have watched its new agent.
  readiness.close();
  control.close();
  befwApi.close();
  http?.close();
  notifier.close();
  if (err !== undefined) throw err;
}

function controlHandlers(slot: AgentSlot, configPath: string): ControlHandlers {
  return {
    status: () =>
      Promise.resolve({
        ok: true,
        version: VERSION,
        config: configPath,
        pid: process.pid,
        lastReload: slot.lastReload,
        ...slot.agent.status(),
      }),
    reload: () => slot.reload(),
    check: async (req) => {
      const r = await slot.agent.check(req.repair === true);
      return { ok: r.drifts.length === 0, drifts: r.drifts, repair: r.repair };
    },
    'guard-release': () => Promise.resolve(slot.agent.guardRelease()),
    'guard-hold': (req) => Promise.resolve(slot.agent.guardHold(req.seconds === undefined ? null : req.seconds * 1000)),
  };
}

async function startHealthEndpoint(config: Config, metrics: Metrics | null, slot: AgentSlot, log: Logger): Promise<HttpServer | null> {
  if (config.metrics === null || metrics === null) return null;
  metrics.bindStatus(() => {
    const s = slot.agent.status();
    return {
      guardHolding: s.guard.holding !== null,
      protectedClipped: s.protectedClipped,
      stateSaveFailing: s.stateSave.failingSince !== null,
      problems: s.problems.length,
      kvWatches: s.kvPrefixes.length,
      ready: s.ready,
      consulReachable: s.consul.reachable,
      // Never reached: as long as the process has run.
      consulSinceContactMs: s.consul.sinceContactMs ?? Date.now() - s.startedAt,
    };
  });
  const http = await startHttpEndpoint(config.metrics.host, config.metrics.port, metrics, {
    healthy: () => health(slot.agent.status()),
    ready: () => readiness(slot.agent.status()),
  });
  log.info({ event: 'metrics-listening', host: config.metrics.host, port: config.metrics.port }, 'metrics and health endpoint on');
  return http;
}

function startWatchdog(notifier: Notifier, slot: AgentSlot): NodeJS.Timeout | null {
  if (notifier.watchdogIntervalMs === null) return null;
  return setInterval(() => {
    if (slot.agent.status().healthy) notifier.notify('WATCHDOG=1');
  }, notifier.watchdogIntervalMs);
}

/**
 * READY=1 once an agent's first apply is done; STATUS= keeps `systemctl status` informative. The
 * timer stops once it has said so: an idle agent should not wake ten times a second.
 */
class ReadinessNotice {
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly notifier: Notifier) {}

  watch(agent: AgentHandle): void {
    this.close();
    this.timer = setInterval(() => {
      const s = agent.status();
      if (!s.ready) return;
      this.close();
      this.notifier.notify(
        `READY=1\nSTATUS=enforcing ${s.fingerprint ?? 'kernel as found'} (${s.lastSource ?? 'no state'})\nMAINPID=${process.pid}`,
      );
    }, 100);
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
