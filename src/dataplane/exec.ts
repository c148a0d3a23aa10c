/**
 * The one module that starts processes. ipset and iptables are driven through their own CLIs
 * (no wrapper library); every call goes through `CommandRunner`, so tests can record or script
 * them, and every failure carries the command, its exit code and its stderr.
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Written to the command's stdin (restore scripts). */
  readonly input?: string;
  readonly timeoutMs?: number;
}

export interface CommandRunner {
  /** Runs a command; resolves with any exit code (callers decide what failure means). */
  run(cmd: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult>;
}

export class CommandError extends Error {
  constructor(
    readonly cmd: string,
    readonly args: readonly string[],
    readonly result: CommandResult,
  ) {
    super(`${cmd} ${args.join(' ')} exited ${result.code}: ${result.stderr.trim().slice(0, 2000) || '(no stderr)'}`);
    this.name = 'CommandError';
  }
}

/** Runs and throws CommandError on a non-zero exit. */
export async function runChecked(runner: CommandRunner, cmd: string, args: readonly string[], opts?: RunOptions): Promise<CommandResult> {
  const r = await runner.run(cmd, args, opts);
  if (r.code !== 0) throw new CommandError(cmd, args, r);
  return r;
}

const DEFAULT_TIMEOUT_MS = 60_000;

export const processRunner: CommandRunner = {
  run(cmd, args, opts = {}) {
    return new Promise((resolve) => {
      const child = spawn(cmd, [...args], { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' } });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      let settled = false;
      const finish = (r: CommandResult): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(r);
      };
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        finish({ code: -1, stdout: Buffer.concat(out).toString(), stderr: `timed out after ${opts.timeoutMs ?? DEFAULT_TIMEOUT_MS} ms` });
      }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
      child.stdout.on('data', (d: Buffer) => out.push(d));
      child.stderr.on('data', (d: Buffer) => err.push(d));
      child.on('error', (e) => finish({ code: -1, stdout: '', stderr: e.message }));
      child.on('close', (code, signal) =>
        finish({ code: code ?? -1, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() + (signal ? ` (killed by ${signal})` : '') }),
      );
      // A command that exits before reading its input raises EPIPE here; its exit code tells the story.
      child.stdin.on('error', () => undefined);
      child.stdin.end(opts.input ?? '');
    });
  },
};
