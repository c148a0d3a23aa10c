/**
 * The syslog reactor's parts, started inside a Sandbox's namespaces for integration tests, the
 * benchmark and the demo: a real beanstalkd, real HAProxy, `befw syslog` parsers and
 * `befw responder`s as separate processes, `logger` as the device. Everything listens on
 * loopback or the sandbox's documentation addresses inside the namespaces, and dies with the
 * sandbox (its destroy() kills every process it spawned).
 */
import type { ChildProcess } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { ROOT, type Sandbox, nsExec, sleep } from './sandbox.js';

const BEFW_BIN = join(ROOT, 'bin/befw');
const HELPERS = new URL('./', import.meta.url).pathname;
/** Node flags and environment from bin/befw's shebang, so the processes run as installed. */
const SHEBANG = (readFileSync(BEFW_BIN, 'utf8').split('\n')[0] ?? '').split(/\s+/);
const NODE_FLAGS = SHEBANG.filter((w) => w.startsWith('--'));
const NODE_ENV = Object.fromEntries(
  SHEBANG.filter((w) => /^[A-Z_]+=/.test(w)).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]),
);

export type LogEvent = Record<string, unknown> & { event?: string };

export interface LabProcess {
  readonly proc: ChildProcess;
  readonly logName: string;
  events(): LogEvent[];
  waitFor(pred: (e: LogEvent) => boolean, timeoutMs: number, what: string): Promise<LogEvent>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export class ReactorLab {
  constructor(readonly sb: Sandbox) {}

  events(logName: string): LogEvent[] {
    return this.sb
      .log(logName)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogEvent);
  }

  private wrap(proc: ChildProcess, logName: string): LabProcess {
    const events = (): LogEvent[] => this.events(logName);
    return {
      proc,
      logName,
      events,
      waitFor: async (pred, timeoutMs, what) => {
        const end = Date.now() + timeoutMs;
        for (;;) {
          const hit = events().find(pred);
          if (hit !== undefined) return hit;
          if (proc.exitCode !== null)
            throw new Error(`${logName}: process exited (${proc.exitCode}) before ${what}:\n${this.sb.log(logName).slice(-3000)}`);
          if (Date.now() > end) throw new Error(`${logName}: no ${what} within ${timeoutMs} ms:\n${this.sb.log(logName).slice(-3000)}`);
          await sleep(20);
        }
      },
      stop: (signal: NodeJS.Signals = 'SIGTERM') =>
        new Promise((resolve) => {
          if (proc.exitCode !== null || proc.signalCode !== null) return resolve(proc.exitCode);
          proc.once('exit', (code) => resolve(code));
          proc.kill(signal);
        }),
    };
  }

  /** Waits until something listens on TCP `port` inside the namespace. */
  async waitListening(ns: string, port: number, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (Date.now() < end) {
      const out = nsExec(ns, 'ss', ['-Hltn', `sport = :${port}`]);
      if (out.trim() !== '') return;
      await sleep(20);
    }
    throw new Error(`nothing listens on ${port} in ${ns}`);
  }

  async beanstalkd(port = 11300, logName = `beanstalkd-${port}.log`): Promise<ChildProcess> {
    const p = this.sb.spawnIn(this.sb.nodeNs, 'beanstalkd', ['-l', '127.0.0.1', '-p', String(port)], logName);
    await this.waitListening(this.sb.nodeNs, port);
    return p;
  }

  /** The job signing key file every lab config shares (mode 0600), made on first use. */
  keyFile(): string {
    const path = join(this.sb.dir, 'reactor-jobs.key');
    if (!existsSync(path)) {
      this.sb.writeFile('reactor-jobs.key', `${randomBytes(32).toString('base64url')}\n`);
      chmodSync(path, 0o600);
    }
    return path;
  }

  /** Writes a reactor config; one with a parser or a responder gets the lab's job key unless it names one. */
  writeConfig(name: string, config: unknown): string {
    const c = config as { queue?: { hmacKeyFile?: string }; parser?: unknown; responder?: unknown };
    if ((c.parser !== undefined || c.responder !== undefined) && c.queue !== undefined && c.queue.hmacKeyFile === undefined)
      c.queue.hmacKeyFile = this.keyFile();
    return this.sb.writeFile(name, `${JSON.stringify(config, null, 2)}\n`);
  }

  /** `befw <args>` as a long-running process in the namespace. */
  befwProcess(ns: string, args: string[], logName: string): LabProcess {
    const p = this.sb.spawnIn(ns, process.execPath, [...NODE_FLAGS, BEFW_BIN, ...args], logName, { ...process.env, ...NODE_ENV });
    return this.wrap(p, logName);
  }

  async parser(configPath: string, logName: string, ns = this.sb.nodeNs): Promise<LabProcess> {
    const p = this.befwProcess(ns, ['syslog', '-c', configPath], logName);
    await p.waitFor((e) => e.event === 'listening', 15_000, 'listening event');
    return p;
  }

  async responder(configPath: string, logName: string, ns = this.sb.nodeNs): Promise<LabProcess> {
    const p = this.befwProcess(ns, ['responder', '-c', configPath], logName);
    await p.waitFor((e) => e.event === 'responder-ready', 15_000, 'responder-ready event');
    return p;
  }

  /** Real HAProxy in the foreground (-db) with the given config; waits for its frontend port. */
  async haproxy(configText: string, frontendPort: number, logName = 'haproxy.log'): Promise<ChildProcess> {
    const cfg = this.sb.writeFile('haproxy.cfg', configText);
    const check = spawnSync('haproxy', ['-c', '-q', '-f', cfg], { encoding: 'utf8' });
    if (check.status !== 0) throw new Error(`haproxy config invalid: ${check.stderr}${check.stdout}`);
    const p = this.sb.spawnIn(this.sb.nodeNs, 'haproxy', ['-db', '-f', cfg], logName);
    await this.waitListening(this.sb.nodeNs, frontendPort);
    return p;
  }

  /** util-linux logger in a namespace; lines on stdin become one message each, on one connection. */
  logger(ns: string, args: string[], lines: readonly string[]): void {
    const r = spawnSync('ip', ['netns', 'exec', ns, 'logger', ...args], { input: `${lines.join('\n')}\n`, encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`logger ${args.join(' ')} failed: ${r.stderr}`);
  }

  /** Sends raw bytes (TCP or UDP) from a namespace with test/helpers/syslogSend.js. */
  send(
    ns: string,
    opts: {
      proto: 'tcp' | 'udp';
      host: string;
      port: number;
      source?: string;
      payloads: readonly Buffer[];
      holdMs?: number;
      connections?: number;
    },
  ): { code: number; stdout: string; stderr: string } {
    const input = JSON.stringify({ ...opts, payloads: opts.payloads.map((p) => p.toString('base64')) });
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, join(HELPERS, 'syslogSend.js')], { input, encoding: 'utf8' });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** As send(), without blocking this process (for senders that must run side by side). */
  sendAsync(
    ns: string,
    opts: Parameters<ReactorLab['send']>[1] & { trickleMs?: number },
  ): Promise<{ code: number; stdout: string; stderr: string }> {
    const input = JSON.stringify({ ...opts, payloads: opts.payloads.map((p) => p.toString('base64')) });
    return new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', ns, process.execPath, join(HELPERS, 'syslogSend.js')], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
      p.stdin.end(input);
    });
  }

  /** `befw queue stats --json` run inside the node namespace. */
  queueStats(configPath: string): {
    server: string;
    error: string | null;
    tubes: { tube: string; ready: number; reserved: number; delayed: number; buried: number; total: number }[];
  }[] {
    const r = this.sb.befw(['queue', 'stats', '-c', configPath, '--json']);
    if (r.code !== 0) throw new Error(`befw queue stats failed: ${r.stderr}${r.stdout}`);
    return JSON.parse(r.stdout) as ReturnType<ReactorLab['queueStats']>;
  }

  /** The client namespace's veth (for adding more client addresses). */
  clientInterface(): string {
    const out = nsExec(this.sb.clientNs, 'ip', ['-o', 'link', 'show']);
    const name = out
      .split('\n')
      .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
      .find((n) => n !== undefined && n !== 'lo');
    if (name === undefined) throw new Error('no veth in the client namespace');
    return name;
  }

  addClientAddresses(cidrs: readonly string[]): void {
    const dev = this.clientInterface();
    for (const c of cidrs) nsExec(this.sb.clientNs, 'ip', ['addr', 'add', c, 'dev', dev, ...(c.includes(':') ? ['nodad'] : [])]);
  }
}

/** A reactor config with the lab's defaults, for tests to override piecewise. */
export function labConfig(parts: {
  queuePorts?: number[];
  parser?: Record<string, unknown>;
  responder?: Record<string, unknown>;
  /** The config's protect list. */
  protect?: string[];
  queue?: Record<string, unknown>;
}): Record<string, unknown> {
  return {
    logLevel: 'debug',
    protect: parts.protect ?? [],
    queue: {
      servers: (parts.queuePorts ?? [11300]).map((p) => `127.0.0.1:${p}`),
      ttrSec: 10,
      maxAttempts: 5,
      retryDelaySec: 1,
      retryDelayMaxSec: 4,
      connectTimeoutSec: 2,
      ...parts.queue,
    },
    ...(parts.parser === undefined ? {} : { parser: { statsIntervalSec: 1, ...parts.parser } }),
    ...(parts.responder === undefined ? {} : { responder: parts.responder }),
  };
}
