/**
 * What every access command starts from: the config (for Consul's address, the KV datacenter
 * and the token), a connection to the local Consul agent, and the time. The token comes from
 * the config's token/token_file or the environment (resolveToken), never from the command line,
 * and is never printed.
 */
import type { Command } from 'commander';
import type { Config } from '../../config/config.js';
import { resolveToken } from '../../config/load.js';
import { CONFIG_OPTION_HELP, loadCliConfig } from '../configSource.js';
import { type OperatorConsul, createOperatorConsul } from '../../consul/kvWriter.js';

export interface CommonOpts {
  /** `-c FILE`; absent: BEFW_CONFIG, /etc/befw.conf, or defaults (configSource.ts). */
  readonly config?: string;
  readonly json?: boolean;
}

export interface AccessContext {
  readonly config: Config;
  readonly consul: OperatorConsul;
  readonly nowMs: number;
  readonly json: boolean;
}

export async function openConsul(config: Config): Promise<OperatorConsul> {
  const token = await resolveToken(config);
  return createOperatorConsul({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000, dc: config.dc });
}

/** Runs `fn` with a context and closes the connection whatever happens. */
export async function withContext<T>(opts: CommonOpts, fn: (ctx: AccessContext) => Promise<T>): Promise<T> {
  const config = await loadCliConfig(opts.config);
  const consul = await openConsul(config);
  try {
    return await fn({ config, consul, nowMs: Date.now(), json: opts.json === true });
  } finally {
    consul.close();
  }
}

export function addCommonOptions(cmd: Command): Command {
  return cmd.option('-c, --config <file>', CONFIG_OPTION_HELP).option('--json', 'print the result as JSON');
}

export function addScopeOptions(cmd: Command): Command {
  return cmd
    .option('--dc <dc>', 'datacenter level: befw/<kind>/<dc>/…')
    .option(
      '--node <node>',
      "node level: befw/<kind>/<dc>/<node>/…; the short, lower-case node name; without --dc, the node's datacenter from the catalog",
    );
}

export function addExpiryOptions(cmd: Command): Command {
  return cmd
    .option('--ttl <duration>', 'lasts this long from now: 30s, 15m, 1h30m, 2d, 1w (at most 3650d)')
    .option('--until <time>', 'lasts until this time: ISO 8601 with a zone (2025-06-30T18:00:00Z), +2h from now, or Unix seconds')
    .option('--forever', 'never expires (written as -1)');
}

/** `--yes` and `--force`: the two overrides of an add's safety checks (checks.ts). */
export function addGuardOptions(cmd: Command): Command {
  return cmd
    .option('--yes', 'accept a /0, or a world-scope network wider than cli_world_prefix (IPv4) or cli_world_prefix6 (IPv6)')
    .option('--force', 'write even when the catalog does not know the set, datacenter or node, or cannot be read');
}

export function addDryRunOption(cmd: Command, what = 'write or delete'): Command {
  return cmd.option('--dry-run', `make every check and print what would be done; ${what} nothing`);
}

export function print(text: string): void {
  process.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}
