/**
 * `befw status`, `befw reload`, `befw check`: questions to the running agent over its control
 * socket (the path from the config's `socket=`).
 */
import type { Command } from 'commander';
import { askAgent } from '../agent/control.js';
import { type ControlFailure, type StatusAnswer, isControlFailure } from '../agent/controlProtocol.js';
import { readFile } from 'node:fs/promises';
import { ConfigError, DEFAULT_CONFIG_PATH, DEFAULT_SOCKET_PATH } from '../config/config.js';
import type { Drift } from '../dataplane/iptables/driver.js';
import { formatDuration } from './format.js';

interface Opts {
  config: string;
  json?: boolean;
}

function ago(ms: number | null, now: number): string {
  return ms === null ? 'never' : `${new Date(ms).toISOString()} (${formatDuration(now - ms)} ago)`;
}

export function formatStatus(s: StatusAnswer, now = Date.now()): string {
  const out: string[] = [];
  out.push(
    `befw agent ${s.version}, pid ${s.pid}, up ${formatDuration(now - s.startedAt)}, config ${s.config}, iptables backend ${s.backend}`,
  );
  out.push(
    s.consul.reachable
      ? `Consul:      reachable, last answer ${ago(s.consul.lastAnswerAt, now)}, staleness ${s.consul.lastContactMs === null ? 'n/a' : `${s.consul.lastContactMs} ms`}`
      : `Consul:      UNREACHABLE (${s.consul.lastError ?? 'no answer yet'}); last answer ${ago(s.consul.lastAnswerAt, now)}`,
  );
  out.push(
    `Enforcing:   ${s.fingerprint ?? 'nothing applied (kernel kept as found)'}${s.lastSource === null ? '' : ` from ${s.lastSource === 'saved' ? 'state.bin' : s.lastSource}`}`,
  );
  out.push(`Last apply:  ${ago(s.stats.lastApplyAt, now)}, ${s.stats.lastResult ?? 'none yet'}`);
  out.push(
    `Counters:    ${s.stats.applies} applies, ${s.stats.applyFailures} failed, ${s.stats.rollbacks} rollbacks, ${s.stats.repairs} drift repairs, ${s.stats.held} held by the guard`,
  );
  out.push(
    `Next expiry: ${s.nextExpiry === null ? 'none' : `${new Date(s.nextExpiry).toISOString()} (in ${formatDuration(s.nextExpiry - now)})`}`,
  );
  out.push(`Health:      ${s.healthy ? 'ok' : 'STUCK (a reconcile has run for minutes)'}, ${s.ready ? 'ready' : 'not ready'}`);
  if (s.lastReload !== null)
    out.push(`Last reload: ${ago(s.lastReload.at, now)}, ${s.lastReload.ok ? 'ok' : `rejected: ${s.lastReload.error ?? ''}`}`);
  out.push('', `Sets (${s.sets.length}):`);
  for (const set of s.sets) out.push(`  ${set.name.padEnd(32)} ${String(set.members).padStart(7)} member(s)  ${set.family}`);
  if (s.diagnostics.length > 0) {
    out.push('', `Ignored or suspicious entries (${s.diagnostics.length}):`);
    for (const d of s.diagnostics) out.push(`  ${d.severity.padEnd(7)} ${d.code.padEnd(14)} ${d.subject}: ${d.message}`);
  }
  return out.join('\n');
}

function formatDrifts(drifts: readonly Drift[]): string {
  if (drifts.length === 0) return 'kernel matches the plan';
  return [
    `kernel differs from the plan (${drifts.length}):`,
    ...drifts.map(
      (d) => `  ${d.what}${d.set === undefined ? '' : ` ${d.set}`}${d.family === undefined ? '' : ` (IPv${d.family})`}: ${d.detail}`,
    ),
  ].join('\n');
}

/**
 * The socket path from the config, read leniently: `befw reload` must reach the agent even when
 * the file on disk is the broken config it is about to be told about (the agent validates it).
 */
async function socketOf(opts: Opts): Promise<string> {
  let text: string;
  try {
    text = await readFile(opts.config, 'utf8');
  } catch (err) {
    throw new ConfigError(opts.config, null, null, `cannot read: ${(err as Error).message}`);
  }
  const line = /^\s*socket\s*=\s*(\S+)\s*$/m.exec(text);
  return line?.[1] ?? DEFAULT_SOCKET_PATH;
}

/** The agent could not answer the question (it answered why): printed, and exit 1. */
function printFailure(what: string, failure: ControlFailure, opts: Opts): void {
  process.stdout.write(`${opts.json ? JSON.stringify(failure, null, 2) : `${what} failed: ${failure.error}`}\n`);
  process.exitCode = 1;
}

export function registerControlCommands(program: Command): void {
  const cfg = (c: Command): Command => c.option('-c, --config <file>', 'befw.conf to use', DEFAULT_CONFIG_PATH);

  cfg(program.command('status'))
    .description('ask the running agent: Consul reachability, last apply, sets, next expiry, repairs, ignored entries')
    .option('--json', 'print the answer as JSON')
    .action(async (opts: Opts) => {
      const answer = await askAgent(await socketOf(opts), 'status');
      if (isControlFailure(answer)) return printFailure('status', answer, opts);
      process.stdout.write(`${opts.json ? JSON.stringify(answer, null, 2) : formatStatus(answer)}\n`);
    });

  cfg(program.command('reload'))
    .description('make the running agent re-read its config and reconcile now (a bad config is rejected and the old one kept)')
    .option('--json', 'print the answer as JSON')
    .action(async (opts: Opts) => {
      // A rejected reload and a failed request read the same: not reloaded, and why.
      const answer = await askAgent(await socketOf(opts), 'reload');
      process.stdout.write(
        `${opts.json ? JSON.stringify(answer) : answer.ok ? 'reloaded' : `reload rejected: ${answer.error ?? 'unknown error'}`}\n`,
      );
      if (!answer.ok) process.exitCode = 1;
    });

  cfg(program.command('check'))
    .description('compare the kernel (sets, members, chain, INPUT jump) with the plan; exit 1 on drift')
    .option('--json', 'print the answer as JSON')
    .action(async (opts: Opts) => {
      const answer = await askAgent(await socketOf(opts), 'check', 120_000);
      if (isControlFailure(answer)) return printFailure('check', answer, opts);
      process.stdout.write(`${opts.json ? JSON.stringify(answer, null, 2) : formatDrifts(answer.drifts)}\n`);
      if (!answer.ok) process.exitCode = 1;
    });
}
