/**
 * What every access command starts from: the config (for Consul's address, the KV datacenter
 * and the token), a connection to the local Consul agent, and the time. The token comes from
 * the config's token/token_file or the environment (resolveToken), never from the command line,
 * and is never printed.
 */
import type { Command } from 'commander';
import { type Config, DEFAULT_CONFIG_PATH } from '../../config/config.js';
import { loadConfig, resolveToken } from '../../config/load.js';
import { type OperatorConsul, createOperatorConsul } from '../../consul/kvWriter.js';

export interface CommonOpts {
  readonly config: string;
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
  const config = await loadConfig(opts.config);
  const consul = await openConsul(config);
  try {
    return await fn({ config, consul, nowMs: Date.now(), json: opts.json === true });
  } finally {
    consul.close();
  }
}

export function addCommonOptions(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'befw.conf to use (Consul address, dc, token_file)', DEFAULT_CONFIG_PATH)
    .option('--json', 'print the result as JSON');
}

export function addScopeOptions(cmd: Command): Command {
  return cmd
    .option('--dc <dc>', 'datacenter level: befw/<kind>/<dc>/…')
    .option('--node <node>', 'node level (with --dc): befw/<kind>/<dc>/<node>/…; the short, lower-case node name');
}

export function addExpiryOptions(cmd: Command): Command {
  return cmd
    .option('--ttl <duration>', 'lasts this long from now: 30s, 15m, 2h, 7d, 2w')
    .option('--until <time>', 'lasts until this ISO 8601 time with a zone, e.g. 2025-06-30T18:00:00Z')
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
