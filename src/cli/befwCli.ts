/**
 * `befw-cli` (also `befw befw-cli ...`): BEFW's command-line tool (cmd/befw-cli/befw-cli.go), its
 * commands, arguments and answers, done by befw's own modules:
 *
 *   befw-cli [-config FILE] register NAME PROTO PORT   register a befw service with the local agent
 *   befw-cli [-config FILE] deregister NAME            remove one (not a service file's)
 *   befw-cli [-config FILE] reload                     `befw reload` (re-read config, rebuild, reconcile)
 *   befw-cli [-config FILE] refresh                    BEFW cleared its counts of refused clients; befw
 *                                                      keeps none: checks the agent answers, clears nothing
 *   befw-cli genrules                                  befw's per-service template (what rules= takes)
 *   befw-cli [-config FILE] show                       "Node: NAME @ DC", then each service set and its clients
 *   befw-cli help [COMMAND]
 *
 * Where befw answers differently, it is on purpose:
 *   - errors are "FATAL ERROR: ..." on stderr as BEFW printed them (befw/recovery.go:109-124), but
 *     the exit code says what happened: 0 on success (BEFW's tool exited 1 whatever happened,
 *     recovery.go:123), 1 on an error or a call with the wrong arguments (BEFW printed the usage
 *     and "succeeded");
 *   - `register` tags the service with its port as PORT/PROTO besides `befw` (and `udp`), so every
 *     BEFW release and befw name its set alike (BEFW's later releases read ports from tags only,
 *     and found none in what their own befw-cli registered: befw/state.go:161-171, 451-487);
 *   - `show` lists each set's clients (BEFW's listed none: it printed a map it never filled,
 *     befw/state.go:196, 281-285), on stdout (BEFW's Go println wrote to stderr);
 *   - `genrules` prints befw's template: befw does not read BEFW's JSON templates (yet);
 *   - `reload` and `refresh` ask befw's control socket (`socket=` of the config), not api.sock.
 */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { askAgent } from '../agent/control.js';
import { isControlFailure } from '../agent/controlProtocol.js';
import { readSnapshot } from '../agent/inputs/snapshot.js';
import { compileOptions } from '../agent/reconciler.js';
import { type Config, DEFAULT_CONFIG_PATH } from '../config/config.js';
import { loadConfig, resolveToken } from '../config/load.js';
import { createConsulApi } from '../consul/client.js';
import { compile } from '../core/compile.js';
import { BEFW_TAG, LOCAL_TAG, UDP_TAG } from '../core/services.js';
import { openConsul } from './access/context.js';
import { buildRegistration } from './access/service.js';
import { parseConfigLeniently } from './migrate.js';

export const BEFW_CLI_COMMANDS = ['register', 'deregister', 'reload', 'refresh', 'genrules', 'show'] as const;
type BefwCliCommand = (typeof BEFW_CLI_COMMANDS)[number];

const USAGE: Record<BefwCliCommand, [string, string]> = {
  register: ['register <service name> <protocol> <port>', 'Registers service on local consul agent'],
  deregister: ['deregister <service name>', 'Deregisters service from local consul agent'],
  reload: ['reload', 'Reloads befw rules from consul'],
  refresh: ['refresh', 'Refreshes missing stats cache (befw keeps none)'],
  genrules: ['genrules', "prints befw's per-service rule template (the file rules= takes)"],
  show: ['show', 'shows current befw state ( services / rules )'],
};

/** An answer BEFW's tool gave as a panic: printed as "FATAL ERROR: ..." and exit 1. */
class Fatal extends Error {}

interface Io {
  out(text: string): void;
  err(text: string): void;
}

const stdio: Io = {
  out: (t) => void process.stdout.write(t),
  err: (t) => void process.stderr.write(t),
};

function help(io: Io, name: string, command?: string): number {
  if (command !== undefined) {
    const u = USAGE[command as BefwCliCommand] as [string, string] | undefined;
    if (u === undefined) {
      io.err(`Help on ${command} not found\n`);
      return 1;
    }
    io.out(`Usage: ${name} ${u[0]}\n${u[1]}\n`);
    return 0;
  }
  io.out(
    [
      'BEFW-CLI - a CLI tool for befw (BEFW compatible)',
      `Usage: ${name} [-config FILE] <command> [options]`,
      `Help: ${name} help <command>`,
      `Commands: ${BEFW_CLI_COMMANDS.join(', ')}`,
      '',
    ].join('\n'),
  );
  return 0;
}

/** Go's flag package: flags before the command, `-config FILE`, `-config=FILE`, `--config`; also befw's `-c`. */
export function parseBefwCliArgs(argv: readonly string[]): { config: string; args: string[]; help: boolean } | { error: string } {
  let config = DEFAULT_CONFIG_PATH;
  let i = 0;
  for (; i < argv.length; i++) {
    const a = argv[i] ?? '';
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || a === '-') break;
    const m = /^--?([^=]+)(?:=(.*))?$/.exec(a);
    const flag = m?.[1] ?? '';
    if (flag === 'h' || flag === 'help') return { config, args: [], help: true };
    if (flag !== 'config' && flag !== 'c') return { error: `flag provided but not defined: ${a}` };
    const value = m?.[2] ?? argv[++i];
    if (value === undefined) return { error: `flag needs an argument: ${a}` };
    config = value;
  }
  return { config, args: argv.slice(i), help: false };
}

async function register(args: readonly string[], config: Config, io: Io): Promise<void> {
  const [name = '', protocol = '', portText = ''] = args;
  if (!/^[+-]?[0-9]+$/.test(portText)) throw new Fatal(`Port must be integer value: ${portText}`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw new Fatal('port must be in (1..65535)');
  if (protocol !== 'tcp' && protocol !== 'udp') throw new Fatal('protocol must be in (tcp,udp)');
  const reg = buildRegistration(name, `${port}/${protocol}`, { port: [`${port}/${protocol}`] });
  const consul = await openConsul(config);
  try {
    // BEFW's checks (befw/state.go:459-474): the name is free, and so is the port.
    for (const s of await consul.services()) {
      if (s.id === name) throw new Fatal('this Name already exists');
      const proto = s.tags.includes(UDP_TAG) ? 'udp' : 'tcp';
      if (s.port === port && proto === protocol) throw new Fatal(`this port/protocol pair already exists with Name ${s.id}`);
    }
    await consul.register({ id: reg.id, name: reg.name, port: reg.port, tags: reg.tags });
  } finally {
    consul.close();
  }
  io.out('Service registered\n');
}

async function deregister(args: readonly string[], config: Config, io: Io): Promise<void> {
  const [name = ''] = args;
  const consul = await openConsul(config);
  try {
    const s = (await consul.services()).find((x) => x.id === name);
    if (s === undefined) throw new Fatal(`service ${name} not found on local agent`);
    if (!s.tags.includes(BEFW_TAG)) throw new Fatal('this service is not befw-tagged service');
    if (s.tags.includes(LOCAL_TAG))
      throw new Fatal(`this service is defined by a service file in ${config.servicesDir}: remove the file to remove it`);
    await consul.deregister(name);
  } finally {
    consul.close();
  }
  io.out('Service deregistered\n');
}

/** The control socket of the config, read leniently: reload must reach the agent even when the file is broken. */
async function socketOf(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Fatal(`cannot read ${path}: ${(err as Error).message}`);
  }
  return parseConfigLeniently(text, path).config.socketPath;
}

async function reload(configPath: string, io: Io): Promise<void> {
  const answer = await askAgent(await socketOf(configPath), 'reload');
  if (!answer.ok) throw new Fatal(answer.error ?? 'reload failed');
  io.out('Reloaded successfully\n');
}

async function refresh(configPath: string, io: Io): Promise<void> {
  const answer = await askAgent(await socketOf(configPath), 'status');
  if (isControlFailure(answer)) throw new Fatal(answer.error);
  io.out('Missing stats were cleared (befw keeps no counts of refused clients: there was nothing to clear)\n');
}

async function genrules(io: Io): Promise<void> {
  // dist/src/cli/befwCli.js -> the package root, where templates/ ships.
  const path = new URL('../../../templates/iptables/service.rules', import.meta.url);
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new Fatal(`cannot read befw's template ${path.pathname}: ${(err as Error).message}`);
  }
  io.out(text.endsWith('\n') ? text : `${text}\n`);
}

/** BEFW's layout (befw/run.go:92-114): "Node: NAME @ DC", then "- Service: SET" and "--- CIDR" per client. */
export function formatBefwShow(node: { name: string; dc: string }, sets: readonly { set: string; members: readonly string[] }[]): string {
  const out = [`Node: ${node.name} @ ${node.dc}`, ''];
  for (const s of [...sets].sort((a, b) => (a.set < b.set ? -1 : a.set > b.set ? 1 : 0))) {
    out.push(`- Service: ${s.set}`, ...s.members.map((m) => `--- ${m}`), '', '');
  }
  return `${out.join('\n')}\n`;
}

async function show(config: Config, io: Io): Promise<void> {
  const token = await resolveToken(config);
  const consul = createConsulApi({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000 });
  const snapshot = await readSnapshot(consul, config);
  const plan = compile(snapshot, compileOptions(config), Date.now());
  const views = new Map(plan.setViews.map((v) => [v.logical, v]));
  const sets = plan.services.map((s) => ({ set: s.set, members: (views.get(s.set)?.members ?? []).map((m) => m.cidr) }));
  io.out(formatBefwShow(snapshot.node, sets));
}

/** Runs `befw-cli ARGS...`; returns the exit code. `name` is how usage lines call the tool. */
export async function befwCliMain(argv: readonly string[], name = 'befw-cli', io: Io = stdio): Promise<number> {
  const parsed = parseBefwCliArgs(argv);
  if ('error' in parsed) {
    io.err(`${parsed.error}\n`);
    help(io, name);
    return 2;
  }
  const [cmd, ...args] = parsed.args;
  if (parsed.help || cmd === undefined) return help(io, name);
  if (cmd === 'help') return help(io, name, args[0]);
  if (!(BEFW_CLI_COMMANDS as readonly string[]).includes(cmd)) {
    help(io, name);
    return 1;
  }
  const command = cmd as BefwCliCommand;
  const wanted: Record<BefwCliCommand, number> = { register: 3, deregister: 1, reload: 0, refresh: 0, genrules: 0, show: 0 };
  if (args[0] === 'help' || args.length !== wanted[command]) {
    const [usage, what] = USAGE[command];
    const text = `Usage: ${name} ${usage}\n${what}\n`;
    if (args[0] === 'help') io.out(text);
    else io.err(text);
    return args[0] === 'help' ? 0 : 1;
  }
  try {
    switch (command) {
      case 'register':
        await register(args, await loadConfig(parsed.config), io);
        break;
      case 'deregister':
        await deregister(args, await loadConfig(parsed.config), io);
        break;
      case 'reload':
        await reload(parsed.config, io);
        break;
      case 'refresh':
        await refresh(parsed.config, io);
        break;
      case 'genrules':
        await genrules(io);
        break;
      case 'show':
        await show(await loadConfig(parsed.config), io);
        break;
    }
    return 0;
  } catch (err) {
    io.err(`FATAL ERROR: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

/** `befw befw-cli ...`: the same tool under befw's own name. */
export function registerBefwCliCommand(program: Command): void {
  program
    .command('befw-cli')
    .description(`BEFW's befw-cli: ${BEFW_CLI_COMMANDS.join(', ')} (befw befw-cli help)`)
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[args...]')
    .action(async (args: string[]) => {
      process.exitCode = await befwCliMain(args, 'befw befw-cli');
    });
}
