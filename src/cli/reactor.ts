/**
 * The syslog reactor's commands: `befw syslog` (parser), `befw responder`, and the operator's
 * `befw queue stats` / `befw queue kick`. All read one JSON config (-c, default
 * /etc/befw/reactor.json); a config error names the file and the JSON path. Secrets (Consul
 * token, VyOS keys) come from files named in the config or the environment, never from argv.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { createLogger } from '../log/logger.js';
import { ConfigError } from '../config/config.js';
import { kickBuried, queueStats } from '../reactor/queue/admin.js';
import { tubeFor } from '../reactor/queue/job.js';
import { startParser } from '../reactor/syslog/parserMain.js';
import { DEFAULT_REACTOR_CONFIG, type ReactorConfig, loadReactorConfig } from '../reactor/config/reactorConfig.js';
import { startResponder } from '../reactor/responder/responderMain.js';

interface Opts {
  config: string;
  check?: boolean;
  json?: boolean;
  event?: string[];
  bound?: number;
}

function positiveInt(value: string): number {
  if (!/^[1-9][0-9]{0,8}$/.test(value)) throw new InvalidArgumentError('expected a whole number from 1 to 999999999');
  return Number(value);
}

function eventName(value: string, previous: string[] | undefined): string[] {
  if (!/^[a-z0-9][a-z0-9-]{0,63}$/.test(value)) throw new InvalidArgumentError('expected an event name (lower-case letters, digits, "-")');
  return [...(previous ?? []), value];
}

async function load(path: string, section: 'parser' | 'responder' | null): Promise<ReactorConfig> {
  const config = await loadReactorConfig(path);
  if (section !== null && config[section] === null)
    throw new ConfigError(path, null, `/${section}`, `is required for befw ${section === 'parser' ? 'syslog' : 'responder'}`);
  return config;
}

/** Runs a daemon until SIGTERM/SIGINT, then lets it stop cleanly. */
async function runUntilSignal(
  running: { stop(): Promise<void>; done: Promise<void> },
  log: ReturnType<typeof createLogger>,
): Promise<void> {
  const stop = (signal: string): void => {
    log.info({ event: 'signal', signal }, 'stopping');
    void running.stop();
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
  await running.done;
}

export function registerReactorCommands(program: Command): void {
  const withConfig = (cmd: Command): Command => cmd.option('-c, --config <file>', 'reactor config (JSON)', DEFAULT_REACTOR_CONFIG);

  withConfig(program.command('syslog'))
    .description('run the syslog parser: receive syslog (UDP, TCP, PROXY protocol), match triggers, queue jobs on beanstalkd')
    .option('--check', 'validate the config and exit')
    .action(async (opts: Opts) => {
      const config = await load(opts.config, 'parser');
      if (opts.check === true) {
        const p = config.parser!;
        process.stdout.write(
          `${config.file}: ok (${p.listeners.length} listeners, ${p.triggers.triggers.length} triggers, ${config.queue.servers.length} queue servers)\n`,
        );
        return;
      }
      const log = createLogger(config.logLevel).child({ component: 'syslog' });
      await runUntilSignal(await startParser(config, log), log);
    });

  withConfig(program.command('responder'))
    .description('run a responder: take jobs from beanstalkd and act (ban in Consul, VyOS address group, disable an interface)')
    .option('--check', 'validate the config and exit')
    .action(async (opts: Opts) => {
      const config = await load(opts.config, 'responder');
      if (opts.check === true) {
        const r = config.responder!;
        process.stdout.write(
          `${config.file}: ok (${r.actions.size} events with actions, ${r.devices.size} devices, ${config.queue.servers.length} queue servers)\n`,
        );
        return;
      }
      const log = createLogger(config.logLevel).child({ component: 'responder' });
      await runUntilSignal(await startResponder(config, log), log);
    });

  const queue = program.command('queue').description("operate the reactor's queue (beanstalkd)");

  withConfig(queue.command('stats'))
    .description('jobs ready, reserved, delayed and buried per server and tube')
    .option('--json', 'print as JSON')
    .action(async (opts: Opts) => {
      const config = await load(opts.config, null);
      const stats = await queueStats(config.queue.servers, config.queue.tubePrefix, config.queue.connectTimeoutMs);
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(stats, null, 2)}\n`);
      } else {
        const rows = [['server', 'tube', 'ready', 'reserved', 'delayed', 'buried', 'total']];
        for (const s of stats) {
          if (s.error === null && s.tubes.length === 0) rows.push([s.server, '(no reactor tubes)', '', '', '', '', '']);
          for (const t of s.tubes)
            rows.push([s.server, t.tube, String(t.ready), String(t.reserved), String(t.delayed), String(t.buried), String(t.total)]);
        }
        const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
        process.stdout.write(
          `${rows
            .map((r) =>
              r
                .map((c, i) => c.padEnd(widths[i] ?? 0))
                .join('  ')
                .trimEnd(),
            )
            .join('\n')}\n`,
        );
        for (const s of stats) if (s.error !== null) process.stdout.write(`${s.server}: unreachable: ${s.error}\n`);
      }
      if (stats.some((s) => s.error !== null)) process.exitCode = 1;
    });

  withConfig(queue.command('kick'))
    .description('move buried jobs back to ready (after fixing what made them fail)')
    .option('--event <event>', 'only this event type (repeatable)', eventName)
    .option('--bound <n>', 'at most this many jobs per tube and server', positiveInt, 1000)
    .action(async (opts: Opts) => {
      const config = await load(opts.config, null);
      const tubes = opts.event === undefined ? null : opts.event.map((e) => tubeFor(config.queue.tubePrefix, e));
      const results = await kickBuried(
        config.queue.servers,
        tubes,
        config.queue.tubePrefix,
        opts.bound ?? 1000,
        config.queue.connectTimeoutMs,
      );
      for (const r of results) {
        process.stdout.write(r.error === null ? `${r.server} ${r.tube}: kicked ${r.kicked}\n` : `${r.server}: unreachable: ${r.error}\n`);
      }
      if (results.some((r) => r.error !== null)) process.exitCode = 1;
    });
}
