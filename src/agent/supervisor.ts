/**
 * `befw agent`: runs one agent and everything around it that outlives a reload — the control
 * socket, the metrics/health endpoint, systemd notifications and the signals.
 *
 *   SIGHUP / `befw reload`  re-read the config; if it is valid, replace the agent with one built
 *                           from it (the new one enforces state.bin, then reconciles at once);
 *                           if not, keep running as before and report why
 *   SIGTERM / SIGINT        stop; the firewall stays exactly as it is
 *   READY=1                 once the first apply is done; WATCHDOG=1 while the loop is healthy
 */
import type { Server } from 'node:net';
import type { Server as HttpServer } from 'node:http';
import { type Config, ConfigError } from '../config/config.js';
import { loadConfig } from '../config/load.js';
import { type AgentHandle, startAgent } from './agent.js';
import { type ControlCommand, startControlServer } from './control.js';
import { startHttpEndpoint } from './httpEndpoint.js';
import { type Logger, createLogger } from '../log/logger.js';
import { createMetrics } from './metrics.js';
import { createNotifier } from './sdNotify.js';
import { VERSION } from '../core/version.js';

export async function runAgent(configPath: string): Promise<void> {
  let config: Config = await loadConfig(configPath);
  const log: Logger = createLogger(config.logLevel);
  const metrics = config.metrics === null ? null : createMetrics();
  const notifier = createNotifier(process.env, log);
  let agent: AgentHandle = await startAgent(config, log, metrics);
  let reloading: Promise<unknown> | null = null;
  let lastReload: { at: number; ok: boolean; error?: string } | null = null;

  const reload = async (): Promise<{ ok: boolean; error?: string; config: string }> => {
    let next: Config;
    try {
      next = await loadConfig(configPath);
    } catch (err) {
      const error = err instanceof ConfigError ? err.message : String(err);
      log.error({ event: 'reload-rejected', err: error }, 'new config rejected; still running with the old one');
      lastReload = { at: Date.now(), ok: false, error };
      return { ok: false, error, config: configPath };
    }
    notifier.notify('RELOADING=1');
    log.info({ event: 'reload', config: configPath }, 'reloading');
    await agent.stop();
    if (next.socketPath !== config.socketPath || JSON.stringify(next.metrics) !== JSON.stringify(config.metrics)) {
      log.warn({ event: 'reload-partial' }, 'socket and metrics settings change at the next restart');
    }
    log.level = next.logLevel;
    config = next;
    agent = await startAgent(config, log, metrics);
    lastReload = { at: Date.now(), ok: true };
    waitReady();
    return { ok: true, config: configPath };
  };
  const serialReload = (): Promise<{ ok: boolean; error?: string; config: string }> => {
    const p = (reloading ?? Promise.resolve()).then(reload);
    reloading = p.catch(() => undefined);
    return p;
  };

  const handle = async (cmd: ControlCommand): Promise<unknown> => {
    if (cmd === 'status') return { ok: true, version: VERSION, config: configPath, pid: process.pid, lastReload, ...agent.status() };
    if (cmd === 'reload') return serialReload();
    const drifts = await agent.check();
    return { ok: drifts.length === 0, drifts };
  };

  const control: Server = await startControlServer(config.socketPath, handle);
  let http: HttpServer | null = null;
  if (config.metrics !== null && metrics !== null) {
    http = await startHttpEndpoint(config.metrics.host, config.metrics.port, metrics, {
      healthy: () => {
        const s = agent.status();
        return { ok: s.healthy, detail: s.healthy ? 'ok' : 'a reconcile has been running for minutes' };
      },
      ready: () => {
        const s = agent.status();
        const enforced = s.lastSource === 'saved' || s.lastSource === 'minimal' || s.consul.reachable;
        const ok = s.ready && (s.consul.reachable || enforced);
        return {
          ok,
          detail: ok
            ? `ready (${s.lastSource ?? 'kernel kept'})`
            : s.ready
              ? 'Consul unreachable and nothing enforced yet'
              : 'first apply not done',
        };
      },
    });
    log.info({ event: 'metrics-listening', host: config.metrics.host, port: config.metrics.port }, 'metrics and health endpoint on');
  }

  // READY=1 once the first apply is done; STATUS= keeps `systemctl status` informative. The
  // timer stops once it has said so: an idle agent should not wake ten times a second.
  let readyTimer: NodeJS.Timeout | null = null;
  const waitReady = (): void => {
    if (readyTimer !== null) clearInterval(readyTimer);
    readyTimer = setInterval(() => {
      const s = agent.status();
      if (!s.ready) return;
      if (readyTimer !== null) clearInterval(readyTimer);
      readyTimer = null;
      notifier.notify(
        `READY=1\nSTATUS=enforcing ${s.fingerprint ?? 'kernel as found'} (${s.lastSource ?? 'no state'})\nMAINPID=${process.pid}`,
      );
    }, 100);
  };
  waitReady();
  const watchdogTimer =
    notifier.watchdogIntervalMs === null
      ? null
      : setInterval(() => {
          if (agent.status().healthy) notifier.notify('WATCHDOG=1');
        }, notifier.watchdogIntervalMs);

  await new Promise<void>((resolve) => {
    const onHup = (): void => void serialReload();
    const stop = (signal: string): void => {
      log.info({ event: 'signal', signal }, 'stopping; the firewall stays as it is');
      notifier.notify('STOPPING=1');
      process.off('SIGHUP', onHup);
      if (readyTimer !== null) clearInterval(readyTimer);
      if (watchdogTimer !== null) clearInterval(watchdogTimer);
      void (async () => {
        await reloading;
        await agent.stop();
        control.close();
        http?.close();
        notifier.close();
        resolve();
      })();
    };
    process.on('SIGHUP', onHup);
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
