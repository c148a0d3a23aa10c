/**
 * The one module that starts processes. ipset, iptables and nft are driven through their own CLIs
 * (no wrapper library); every call goes through `CommandRunner`, so tests can record or script
 * them, and every failure carries the command, its exit code and its stderr. Long-lived watchers
 * (a process whose output lines are events) start through `LineSpawner`.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Written to the command's stdin (restore scripts). */
  readonly input?: string;
  readonly timeoutMs?: number;
  /**
   * Told the process id before any input is written: a backend that watches the ruleset's
   * generations (nftables) recognises its own transactions by it.
   */
  readonly onSpawn?: (pid: number) => void;
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

/**
 * Tools get a minimal, fixed environment (C locale so their messages can be matched), plus
 * XTABLES_LOCKFILE when the operator set one: iptables-legacy takes its lock there.
 */
const TOOL_ENV: NodeJS.ProcessEnv = {
  PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
  LC_ALL: 'C',
  ...(process.env.XTABLES_LOCKFILE === undefined ? {} : { XTABLES_LOCKFILE: process.env.XTABLES_LOCKFILE }),
};

/** A started process whose input has not been written yet. */
interface Started {
  readonly child: ChildProcessWithoutNullStreams;
  readonly done: Promise<CommandResult>;
  /** Writes the input, closes stdin and arms the timeout. */
  feed(input: string, timeoutMs: number, onSpawn?: (pid: number) => void): Promise<CommandResult>;
}

function start(cmd: string, args: readonly string[]): Started {
  const child = spawn(cmd, [...args], { stdio: ['pipe', 'pipe', 'pipe'], env: TOOL_ENV });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  let timer: NodeJS.Timeout | null = null;
  let settle: (r: CommandResult) => void = () => undefined;
  const done = new Promise<CommandResult>((resolve) => {
    let settled = false;
    settle = (r) => {
      if (settled) return;
      settled = true;
      if (timer !== null) clearTimeout(timer);
      resolve(r);
    };
  });
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  child.on('error', (e) => settle({ code: -1, stdout: '', stderr: e.message }));
  child.on('close', (code, signal) =>
    settle({
      code: code ?? -1,
      stdout: Buffer.concat(out).toString(),
      stderr: Buffer.concat(err).toString() + (signal ? ` (killed by ${signal})` : ''),
    }),
  );
  // A command that exits before reading its input raises EPIPE here; its exit code tells the story.
  child.stdin.on('error', () => undefined);
  return {
    child,
    done,
    feed(input, timeoutMs, onSpawn) {
      if (onSpawn !== undefined && child.pid !== undefined) onSpawn(child.pid);
      timer = setTimeout(() => {
        child.kill('SIGKILL');
        settle({ code: -1, stdout: Buffer.concat(out).toString(), stderr: `timed out after ${timeoutMs} ms` });
      }, timeoutMs);
      child.stdin.end(input);
      return done;
    },
  };
}

export const processRunner: CommandRunner = {
  run(cmd, args, opts = {}) {
    return start(cmd, args).feed(opts.input ?? '', opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, opts.onSpawn);
  },
};

/**
 * A runner that keeps one process of each listed command already started and waiting for its
 * input, so a hot-path call (the `ipset restore` of a delta) costs writing the batch and the
 * tool's own work, not a fork and exec of the agent's process first. The next standby is started
 * right after one is used, off the critical path. A standby that died meanwhile (or a call with
 * other arguments) falls back to a fresh process. `close()` ends the standbys: an empty input
 * is a no-op for restore tools.
 */
export interface PrewarmedRunner extends CommandRunner {
  close(): void;
}

export function createPrewarmedRunner(commands: readonly (readonly [string, readonly string[]])[]): PrewarmedRunner {
  const signature = (cmd: string, args: readonly string[]): string => [cmd, ...args].join('\u0000');
  const wanted = new Map(commands.map(([cmd, args]) => [signature(cmd, args), { cmd, args }]));
  const standby = new Map<string, Started>();
  let closed = false;
  const warm = (sig: string): void => {
    const w = wanted.get(sig);
    if (closed || w === undefined) return;
    const s = start(w.cmd, w.args);
    standby.set(sig, s);
    void s.done.then(() => {
      if (standby.get(sig) === s) standby.delete(sig); // died before use
    });
  };
  for (const sig of wanted.keys()) warm(sig);
  return {
    run(cmd, args, opts = {}) {
      const sig = signature(cmd, args);
      const s = standby.get(sig);
      if (s === undefined || s.child.exitCode !== null || s.child.signalCode !== null) {
        standby.delete(sig);
        warm(sig);
        return processRunner.run(cmd, args, opts);
      }
      standby.delete(sig);
      const result = s.feed(opts.input ?? '', opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, opts.onSpawn);
      warm(sig);
      return result;
    },
    close() {
      closed = true;
      for (const s of standby.values()) void s.feed('', 5000);
      standby.clear();
    },
  };
}

/**
 * A runner for the read-only, input-less commands the integrity check repeats every few seconds
 * (`ipset list -t`, `iptables-save`): they are started by one long-lived `sh` instead of by the
 * agent itself. Forking the agent (a large process) costs milliseconds of CPU per command; forking
 * a shell costs almost nothing, and at one check every 3 s that difference is most of the agent's
 * idle CPU. Only plain words are passed to the shell (anything else, and every command with
 * input, goes to `fallback`), so nothing is ever interpreted. Output is stdout and stderr merged.
 */
export interface LauncherRunner extends CommandRunner {
  close(): void;
}

const PLAIN_WORD = /^[A-Za-z0-9_.,:/=+-]+$/;

export function createLauncherRunner(fallback: CommandRunner): LauncherRunner {
  const mark = `__befw_done_${Math.random().toString(16).slice(2)}__`;
  let shell: ChildProcessWithoutNullStreams | null = null;
  let chunks: string[] = [];
  let tail = '';
  let current: { resolve: (r: CommandResult) => void; timer: NodeJS.Timeout } | null = null;
  let queue: Promise<unknown> = Promise.resolve();

  const settle = (r: CommandResult): void => {
    const c = current;
    current = null;
    if (c === null) return;
    clearTimeout(c.timer);
    c.resolve(r);
  };
  const ensureShell = (): ChildProcessWithoutNullStreams => {
    if (shell !== null && shell.exitCode === null) return shell;
    const sh = spawn('sh', [], { stdio: ['pipe', 'pipe', 'pipe'], env: TOOL_ENV });
    chunks = [];
    tail = '';
    sh.stdout.setEncoding('utf8');
    sh.stdout.on('data', (d: string) => {
      chunks.push(d);
      // Look for the marker in the newest bytes only: outputs run to megabytes (ipset save).
      tail = (tail + d).slice(-(mark.length + 64));
      const t = tail.indexOf(`${mark} `);
      if (t < 0 || tail.indexOf('\n', t) < 0) return;
      const all = chunks.join('');
      const at = all.lastIndexOf(`${mark} `);
      const end = all.indexOf('\n', at);
      const code = Number(all.slice(at + mark.length + 1, end));
      // The marker line starts with the newline printf wrote before it.
      const output = all.slice(0, at > 0 && all.charCodeAt(at - 1) === 10 ? at - 1 : at);
      const rest = all.slice(end + 1);
      chunks = rest === '' ? [] : [rest];
      tail = rest;
      settle({ code, stdout: output, stderr: code === 0 ? '' : output });
    });
    sh.stdin.on('error', () => undefined);
    sh.on('exit', () => {
      if (shell === sh) shell = null;
      settle({ code: -1, stdout: '', stderr: 'launcher shell exited' });
    });
    shell = sh;
    return sh;
  };

  return {
    run(cmd, args, opts = {}) {
      // Writes (input, or a caller that tracks process ids) go to the fallback: the shell only reads.
      if (opts.input !== undefined || opts.onSpawn !== undefined || ![cmd, ...args].every((w) => PLAIN_WORD.test(w)))
        return fallback.run(cmd, args, opts);
      const next = queue.then(
        () =>
          new Promise<CommandResult>((resolve) => {
            const sh = ensureShell();
            const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
            const timer = setTimeout(() => {
              sh.kill('SIGKILL');
              settle({ code: -1, stdout: '', stderr: `timed out after ${timeoutMs} ms` });
            }, timeoutMs);
            current = { resolve, timer };
            // `printf` after the command: the marker always starts on a line of its own.
            sh.stdin.write(`${[cmd, ...args].join(' ')} 2>&1; printf '\\n${mark} %d\\n' "$?"\n`);
          }),
      );
      queue = next.catch(() => undefined);
      return next;
    },
    close() {
      shell?.stdin.end();
      shell = null;
    },
  };
}

/** A long-lived process whose stdout lines are events (a ruleset monitor). */
export interface LineProcess {
  readonly pid: number | undefined;
  /** Ends it (SIGTERM); `onExit` is still called. */
  stop(): void;
}

export type LineSpawner = (
  cmd: string,
  args: readonly string[],
  onLine: (line: string) => void,
  onExit: (code: number | null, stderr: string) => void,
) => LineProcess;

export const spawnLines: LineSpawner = (cmd, args, onLine, onExit) => {
  const child = spawn(cmd, [...args], { stdio: ['ignore', 'pipe', 'pipe'], env: TOOL_ENV });
  let tail = '';
  let err = '';
  let exited = false;
  const exit = (code: number | null): void => {
    if (exited) return;
    exited = true;
    onExit(code, err.trim().slice(0, 2000));
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    const lines = (tail + d).split('\n');
    tail = lines.pop() ?? '';
    for (const l of lines) onLine(l);
  });
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    if (err.length < 4000) err += d;
  });
  child.on('error', (e) => {
    err += e.message;
    exit(-1);
  });
  child.on('close', (code) => exit(code));
  return {
    pid: child.pid,
    stop: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    },
  };
};
