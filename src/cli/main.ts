/**
 * `befw` command line. Every command takes `-c FILE`; errors print one clear line to stderr (or
 * one JSON object under --json) and exit 2 for a usage error, 1 for any other failure
 * (errors.ts). The ACL token is never an argument: it comes from the config's token_file (or
 * token), or the environment.
 */
import { Command } from 'commander';
import { runAgent } from '../agent/supervisor.js';
import { computePlan } from '../agent/plan.js';
import { type Config, DEFAULT_CONFIG_PATH } from '../config/config.js';
import { loadTemplates } from '../config/load.js';
import type { Plan } from '../core/types.js';
import { VERSION } from '../core/version.js';
import { registerAccessCommands } from './access/index.js';
import { legacyStaticSetArgs } from './access/staticSets.js';
import { registerControlCommands } from './control.js';
import { formatPlan, formatShow } from './format.js';
import { registerReactorCommands } from './reactor.js';
import { registerMigrateCommands } from './migrate.js';
import { registerBefwCliCommand } from './befwCli.js';
import { registerExplainCommand } from './explain.js';
import { registerObservedCommand } from './observed.js';
import { registerEnforceSavedCommand } from './enforceSaved.js';
import { registerManualCommands } from './manual.js';
import { BACKENDS } from '../dataplane/registry.js';
import { parseTime } from './duration.js';
import { finish, routeErrors } from './errors.js';
import { CONFIG_OPTION_HELP, loadCliConfig } from './configSource.js';

/** `--at`: now, +2h, -30m, Unix seconds or ISO 8601 (duration.ts parseTime). */
function parseAt(value: string): number {
  return parseTime(value, '--at', Date.now());
}

interface ReadOpts {
  /** Absent: BEFW_CONFIG, /etc/befw.conf, or defaults (configSource.ts). */
  config?: string;
  json?: boolean;
  at?: number;
}

async function readPlan(opts: ReadOpts): Promise<{ config: Config; plan: Plan; now: number }> {
  const config = await loadCliConfig(opts.config);
  const now = opts.at ?? Date.now();
  return { config, plan: await computePlan(config, now), now };
}

export function buildProgram(): Command {
  const program = new Command();
  program
    .name('befw')
    .description('Host-based distributed firewall: Consul services and KV grants enforced as ipsets and the BEFW iptables chain.')
    .version(VERSION);

  const configOption = (cmd: Command): Command => cmd.option('-c, --config <file>', 'befw.conf to use', DEFAULT_CONFIG_PATH);

  configOption(program.command('agent'))
    .description(
      'run the agent in the foreground: enforce state.bin, then keep the kernel in line with Consul (SIGHUP reloads, SIGTERM stops and leaves the firewall as it is)',
    )
    .action(async (opts: { config: string }) => {
      await runAgent(opts.config);
      // Idle keep-alive sockets (Consul's HTTP agent) must not keep a stopped agent alive.
      process.exit(0);
    });

  // plan and show read Consul only: they run without a file (configSource.ts); the agent does not.
  const cliConfigOption = (cmd: Command): Command => cmd.option('-c, --config <file>', CONFIG_OPTION_HELP);

  cliConfigOption(program.command('plan'))
    .description(
      'print the sets and the rules the configured backend would apply now (iptables-restore or nft text), without touching the kernel',
    )
    .option('--json', 'print the plan as JSON')
    .option('--at <time>', 'compile for another moment to preview expiry: +2h, -30m, now, Unix seconds or ISO 8601', parseAt)
    .action(async (opts: ReadOpts) => {
      const { config, plan, now } = await readPlan(opts);
      if (opts.json) process.stdout.write(`${JSON.stringify(plan, null, 2)}\n`);
      else {
        const backend = config.firewall.backend;
        const text = BACKENDS[backend].render(plan, await loadTemplates(config), now);
        process.stdout.write(`${formatPlan(plan, `${backend} (${config.firewall.why})`, text)}\n`);
      }
    });

  cliConfigOption(program.command('show'))
    .description('list the services on this node with their effective clients and expiry')
    .option('--json', 'print services and sets as JSON')
    .option('--at <time>', 'show the state at another moment: +2h, -30m, now, Unix seconds or ISO 8601', parseAt)
    .action(async (opts: ReadOpts) => {
      const { plan, now } = await readPlan(opts);
      if (opts.json)
        process.stdout.write(
          `${JSON.stringify({ services: plan.services, sets: plan.setViews, diagnostics: plan.diagnostics }, null, 2)}\n`,
        );
      else process.stdout.write(`${formatShow(plan, now)}\n`);
    });

  registerControlCommands(program);
  registerAccessCommands(program);
  registerReactorCommands(program);
  registerMigrateCommands(program);
  registerBefwCliCommand(program);
  registerExplainCommand(program);
  registerObservedCommand(program);
  registerEnforceSavedCommand(program);
  registerManualCommands(program);

  return program;
}

/**
 * `-c FILE` / `--config FILE` given before the command (`befw -c ~/.befw.conf status`, what an
 * alias `befw='befw -c ~/.befw.conf'` produces) moves behind it, where every command takes it.
 */
export function hoistConfig(argv: readonly string[]): string[] {
  const out = argv.slice(0, 2);
  const moved: string[] = [];
  let i = 2;
  for (; i < argv.length; i++) {
    const a = argv[i] as string;
    if (a === '-c' || a === '--config') {
      if (i + 1 < argv.length) moved.push(a, argv[i + 1] as string);
      i++;
      continue;
    }
    if (a.startsWith('--config=')) {
      moved.push(a);
      continue;
    }
    break;
  }
  const rest = argv.slice(i);
  const dashdash = rest.indexOf('--');
  if (moved.length === 0) return [...out, ...rest];
  return dashdash < 0 ? [...out, ...rest, ...moved] : [...out, ...rest.slice(0, dashdash), ...moved, ...rest.slice(dashdash)];
}

/** Runs one command; every failure is reported in one place (errors.ts: one line, or JSON under --json). */
export async function main(argv: readonly string[]): Promise<number> {
  let where: { readonly current: () => string | null } | null = null;
  try {
    const program = buildProgram();
    where = routeErrors(program);
    await program.parseAsync(legacyStaticSetArgs(hoistConfig(argv)));
    // Commands that report a finding (drift, a rejected reload) set process.exitCode themselves.
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    return finish(err, where?.current() ?? null, argv, (text) => process.stderr.write(text));
  }
}
