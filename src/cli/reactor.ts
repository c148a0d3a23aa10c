/**
 * The syslog reactor's commands: `befw syslog` (parser; `--test LINE` explains one line),
 * `befw responder`, the operator's `befw queue stats|kick|peek` and `befw reactor unban`. All
 * read one JSON config (-c, default /etc/befw/reactor.json); a config error names the file and
 * the JSON path, and `--check` also opens every file the config names and checks its mode.
 * Secrets (job keys, Consul token, VyOS keys) come from files named in the config or the
 * environment, never from argv.
 */
import { type Command, InvalidArgumentError } from 'commander';
import { createLogger } from '../log/logger.js';
import { ConfigError } from '../config/config.js';
import { kickBuried, peekBuried, queueStats } from '../reactor/queue/admin.js';
import { checkFiles } from '../reactor/checkFiles.js';
import { loadJobKeys } from '../reactor/queue/jobAuth.js';
import { explainLine } from '../reactor/syslog/testLine.js';
import { unban } from '../reactor/responder/unban.js';
import { createFleet } from '../reactor/responder/vyosActions.js';
import { connectKv } from '../reactor/responder/responderMain.js';
import { canonicalIp } from '../core/netMatch.js';
import { printable } from '../core/address.js';
import { formatTime } from '../core/timeText.js';
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
  test?: string;
  device?: string;
  udp?: boolean;
  buried?: boolean;
  forget?: boolean;
}

function address(value: string): string {
  const ip = canonicalIp(value);
  if (ip === null) throw new InvalidArgumentError('expected one IPv4 or IPv6 address');
  return ip;
}

/** --check: the config's warnings and every file it names; exit 1 on a problem. */
async function check(config: ReactorConfig, section: 'parser' | 'responder', summary: string): Promise<void> {
  const files = await checkFiles(config, section);
  for (const w of config.warnings) process.stdout.write(`warning: ${w}\n`);
  for (const f of files) if (f.problem !== null) process.stdout.write(`error: ${f.what} ${f.path}: ${f.problem}\n`);
  if (files.some((f) => f.problem !== null)) {
    process.exitCode = 1;
    return;
  }
  process.stdout.write(`${config.file}: ok (${summary}; ${files.length} files checked)\n`);
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
    .option('--check', 'validate the config and every file it names (and their modes), then exit')
    .option('--test <line>', 'show what one syslog line would do (parse, device, trigger, job) and exit')
    .option('--device <address>', 'with --test: the sending device (default: the first address of the first device)', address)
    .option('--udp', 'with --test: as if it came over UDP')
    .option('--json', 'with --test: print as JSON')
    .action(async (opts: Opts) => {
      const config = await load(opts.config, 'parser');
      const p = config.parser!;
      if (opts.test !== undefined) {
        const device = opts.device ?? p.devices.nets.cidrs[0]?.cidr.split('/')[0] ?? '';
        const r = explainLine(config, opts.test, device, opts.udp === true ? 'udp' : 'tcp');
        if (opts.json === true) {
          process.stdout.write(`${JSON.stringify(r, (_k, v: unknown) => (v instanceof Set ? [...(v as Set<string>)] : v), 2)}\n`);
          return;
        }
        const out: string[] = [];
        const dev = r.device.policy === null ? 'not one of parser.devices' : `device "${r.device.policy.name}"`;
        out.push(`from ${r.device.address} over ${r.device.transport}: ${dev}`);
        if (!r.parse.ok) out.push(`parse: error: ${r.parse.error}`);
        else {
          const m = r.parse.value;
          out.push(
            `parse: ${m.format}, hostname ${m.hostname ?? '-'}, program ${m.app ?? '-'}, message ${JSON.stringify(m.msg)}${m.repeat > 1 ? `, repeated ${m.repeat} times` : ''}`,
          );
        }
        if (r.matches.length === 0) out.push('triggers: none matches');
        for (const m of r.matches)
          out.push(
            `trigger ${m.trigger}: event ${m.event}, subject ${m.subject} (a job at ${m.threshold.maxRetry} within ${m.threshold.findTimeMs / 1000} s)`,
          );
        for (const pr of r.problems) out.push(`refused: ${pr.reason}: ${pr.detail}`);
        for (const j of r.jobs) out.push(`job (tube ${tubeFor(config.queue.tubePrefix, j.event)}): ${JSON.stringify(j)}`);
        if (r.jobs.length === 0) out.push('job: none');
        process.stdout.write(`${out.join('\n')}\n`);
        return;
      }
      if (opts.check === true)
        return check(
          config,
          'parser',
          `${p.listeners.length} listeners, ${p.devices.size} device groups, ${p.triggers.triggers.length} triggers, ${config.queue.servers.length} queue servers`,
        );
      const log = createLogger(config.logLevel).child({ component: 'syslog' });
      await runUntilSignal(await startParser(config, log), log);
    });

  withConfig(program.command('responder'))
    .description('run a responder: take jobs from beanstalkd and act (ban in Consul, VyOS address group, disable an interface)')
    .option('--check', 'validate the config and every file it names (and their modes), then exit')
    .action(async (opts: Opts) => {
      const config = await load(opts.config, 'responder');
      if (opts.check === true) {
        const r = config.responder!;
        return check(
          config,
          'responder',
          `${r.actions.size} events with actions, ${r.devices.size} devices, ${config.queue.servers.length} queue servers`,
        );
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

  withConfig(queue.command('peek'))
    .description('show buried jobs: per tube how many, and the next one with why it was buried (the last error)')
    .requiredOption('--buried', 'buried jobs (the only kind peek shows)')
    .option('--event <event>', 'only this event type (repeatable)', eventName)
    .option('--json', 'print as JSON')
    .action(async (opts: Opts) => {
      const config = await load(opts.config, null);
      const tubes = opts.event === undefined ? null : opts.event.map((e) => tubeFor(config.queue.tubePrefix, e));
      const views = await peekBuried(config.queue.servers, tubes, config.queue.tubePrefix, config.queue.connectTimeoutMs);
      if (opts.json === true) {
        process.stdout.write(`${JSON.stringify(views, null, 2)}\n`);
      } else {
        if (views.length === 0) process.stdout.write('no buried jobs\n');
        for (const v of views) {
          if (v.error !== null) {
            process.stdout.write(`${v.server}: unreachable: ${v.error}\n`);
            continue;
          }
          process.stdout.write(`${v.server} ${v.tube}: ${v.buried} buried\n`);
          const n = v.next;
          if (n === null) continue;
          const field = (k: string): string => {
            const v = n.job?.[k];
            return typeof v === 'string' ? printable(v, 100) : '?';
          };
          process.stdout.write(
            `  next: queue id ${n.queueId}, ${n.signed ? 'signed' : 'UNSIGNED'}, event ${field('event')}, subject ${field('subject')}, job ${field('id')}\n`,
          );
          if (n.note !== null)
            process.stdout.write(
              `  buried ${formatTime(n.note.at)} by ${n.note.by}${n.note.attempt === undefined ? '' : ` at attempt ${n.note.attempt}`}: ${n.note.reason}: ${n.note.error}\n`,
            );
          else process.stdout.write('  (no note: buried before befw noted reasons, or by hand)\n');
          if (n.job === null) process.stdout.write(`  body: ${n.body}\n`);
        }
      }
      if (views.some((v) => v.error !== null)) process.exitCode = 1;
    });

  const reactor = program.command('reactor').description("operate the syslog reactor's reactions");

  withConfig(reactor.command('unban'))
    .description(
      "undo the reactor for ADDR: the deny in Consul, VyOS address-group entries, the parsers' de-duplication; the offence history too with --forget",
    )
    .argument('<addr>', 'the banned address', address)
    .option('--forget', 'also reset the offence history (the next ban is a first one)')
    .action(async (addr: string, opts: Opts) => {
      const config = await load(opts.config, 'responder');
      const rc = config.responder!;
      const keys = await loadJobKeys(config.queue.hmacKeyFile ?? '');
      const kv = await connectKv(rc);
      const steps = await unban(config, kv, createFleet(rc.devices), keys, addr, opts.forget === true);
      for (const st of steps) process.stdout.write(`${st.ok ? 'ok' : 'FAILED'}  ${st.step}: ${st.detail}\n`);
      if (steps.some((st) => !st.ok)) process.exitCode = 1;
    });
}
