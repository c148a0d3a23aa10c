/**
 * `befw status`, `befw reload`, `befw check`: questions to the running agent over its control
 * socket (the path from the config's `socket=`).
 */
import type { Command } from 'commander';
import { ControlError, askAgent } from '../agent/control.js';
import { type ControlFailure, type GuardAnswer, MAX_HOLD_SECONDS, type StatusAnswer, isControlFailure } from '../agent/controlProtocol.js';
import type { GuardStatus } from '../agent/guard.js';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import { ConfigError, DEFAULT_CONFIG_PATH, DEFAULT_SOCKET_PATH } from '../config/config.js';
import { UsageError, quoted } from './access/errors.js';
import { checkExitCode, formatCheck } from './checkReport.js';
import { parseDuration } from './duration.js';
import { formatDuration, formatTime, formatWhen } from './format.js';

function holdSeconds(text: string): number {
  const seconds = parseDuration(text, '--for');
  if (seconds > MAX_HOLD_SECONDS) throw new UsageError(quoted('--for', text), 'at most 30d; without --for the hold lasts until released');
  return seconds;
}

interface Opts {
  config: string;
  json?: boolean;
}

function ago(ms: number | null, now: number): string {
  return ms === null ? 'never' : formatWhen(ms, now);
}

export function formatStatus(s: StatusAnswer, now = Date.now()): string {
  const out: string[] = [];
  out.push(`befw agent ${s.version}, pid ${s.pid}, up ${formatDuration(now - s.startedAt)}, config ${s.config}, firewall ${s.backend}`);
  out.push(
    s.consul.reachable
      ? `Consul:      reachable, last contact ${ago(s.consul.contactAt, now)}, staleness ${s.consul.lastContactMs === null ? 'n/a' : `${s.consul.lastContactMs} ms`}`
      : `Consul:      UNREACHABLE (${s.consul.lastError ?? 'no answer yet'}); last contact ${ago(s.consul.contactAt, now)}`,
  );
  out.push(
    `Enforcing:   ${s.fingerprint ?? 'nothing applied (kernel kept as found)'}${s.lastSource === null ? '' : ` from ${s.lastSource === 'saved' ? 'state.bin' : s.lastSource}`}`,
  );
  out.push(`Last apply:  ${ago(s.stats.lastApplyAt, now)}, ${s.stats.lastResult ?? 'none yet'}`);
  out.push(
    `Counters:    ${s.stats.applies} applies, ${s.stats.applyFailures} failed, ${s.stats.rollbacks} rollbacks, ${s.stats.repairs} drift repairs, ${s.stats.held} held by the guard`,
  );
  out.push(`Next expiry: ${s.nextExpiry === null ? 'none' : formatWhen(s.nextExpiry, now)}`);
  out.push(`Health:      ${s.problems.length === 0 ? 'ok' : 'PROBLEMS'}, ${s.ready ? 'ready' : 'not ready'}`);
  for (const p of s.problems) out.push(`             - ${p}`);
  out.push(...formatGuard(s.guard, now).map((l, i) => `${i === 0 ? 'Guard:      ' : '            '} ${l}`));
  if (s.protectedClipped > 0) out.push(`Protected:   ${s.protectedClipped} entr(y/ies) kept out of a deny (see below)`);
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

export function formatGuard(g: GuardStatus, now = Date.now()): string[] {
  const out: string[] = [];
  if (g.manual !== null) {
    out.push(
      `HOLDING every removal (befw guard hold) ${g.manual.until === null ? 'until released' : `until ${formatTime(g.manual.until)}`}`,
    );
  }
  const h = g.holding;
  if (h === null) {
    if (out.length === 0) out.push('nothing held');
    return out;
  }
  const until = h.until === null ? 'until released' : `until ${formatWhen(h.until, now)}`;
  out.push(`HOLDING a change since ${formatTime(h.since)} ${until}${h.suspect === null ? '' : `; longer because ${h.suspect}`}`);
  for (const r of h.reasons.slice(0, 10)) out.push(`  ${r}`);
  if (h.reasons.length > 10) out.push(`  ... and ${h.reasons.length - 10} more`);
  out.push('  befw guard release applies it now');
  return out;
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
  const path = line?.[1] ?? DEFAULT_SOCKET_PATH;
  // A relative socket= is read from the config file's directory, as the agent reads it.
  return isAbsolute(path) ? path : join(dirname(opts.config), path);
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

  const guard = program.command('guard').description('the guard that holds loosening changes: show, release or hold');
  const printGuard = (answer: GuardAnswer | ControlFailure, opts: Opts, what: string): void => {
    if (isControlFailure(answer)) return printFailure(what, answer, opts);
    process.stdout.write(`${opts.json ? JSON.stringify(answer, null, 2) : formatGuard(answer.guard).join('\n')}\n`);
  };
  cfg(guard.command('status'))
    .description('what the guard holds, why, since and until when')
    .option('--json', 'print the answer as JSON')
    .action(async (opts: Opts) => {
      const answer = await askAgent(await socketOf(opts), 'status');
      if (isControlFailure(answer)) return printFailure('guard status', answer, opts);
      process.stdout.write(`${opts.json ? JSON.stringify(answer.guard, null, 2) : formatGuard(answer.guard).join('\n')}\n`);
    });
  cfg(guard.command('release'))
    .description('apply the change the guard holds now, and end a `guard hold`')
    .option('--json', 'print the answer as JSON')
    .action(async (opts: Opts) => {
      const answer = await askAgent(await socketOf(opts), 'guard-release');
      if (!isControlFailure(answer) && !opts.json) {
        process.stdout.write(
          answer.released === null || answer.released === undefined ? 'nothing was held\n' : 'released: the held change goes in now\n',
        );
      }
      printGuard(answer, opts, 'guard release');
    });
  cfg(guard.command('hold'))
    .description('hold every removal (however small) until `befw guard release`, or for --for; additions still pass')
    .option('--for <duration>', 'hold for this long only (e.g. 30m, 2h, 1d)')
    .option('--json', 'print the answer as JSON')
    .action(async (opts: Opts & { for?: string }) => {
      const seconds = opts.for === undefined ? undefined : holdSeconds(opts.for);
      const answer = await askAgent(await socketOf(opts), 'guard-hold', 30_000, seconds === undefined ? {} : { seconds });
      printGuard(answer, opts, 'guard hold');
    });

  cfg(program.command('check'))
    .description(
      'compare the kernel (sets and their members, chains and their rules, INPUT jump) with the plan, naming what differs; ' +
        'the agent repairs drift at once. Exit 0: matched; 1: differed',
    )
    .option('--repair', 'wait for the agent to repair what differs, and check again')
    .option('--json', 'print the answer as JSON')
    .action(async (opts: Opts & { repair?: boolean }) => {
      const socket = await socketOf(opts);
      // The kernel is the running agent's: the CLI never writes it behind the agent's back. With
      // no agent, nothing repairs; starting it enforces state.bin, which is the repair.
      const answer = await askAgent(socket, 'check', 120_000, opts.repair === true ? { repair: true } : {}).catch((err: unknown) => {
        if (opts.repair === true && err instanceof ControlError) {
          throw new ControlError(socket, `${err.message}; nothing repaired: start the agent (it enforces state.bin as it starts)`);
        }
        throw err;
      });
      if (isControlFailure(answer)) return printFailure('check', answer, opts);
      process.stdout.write(`${opts.json ? JSON.stringify(answer, null, 2) : formatCheck(answer)}\n`);
      process.exitCode = checkExitCode(answer);
    });
}
