/**
 * Running `befw` operator commands in a sandbox's node namespace, and reading what they wrote.
 *
 * Commands go to one long-lived process in the namespace (cliServer.ts) that calls the CLI's
 * `main()` per command: the same code as bin/befw without a Node start per command. `binary()`
 * runs the installed entry point itself for the checks that are about the binary. Every run is
 * kept in `transcript`, so a test can check that no output ever contained a secret.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { ROOT, type Sandbox } from './sandbox.js';

export interface Run {
  readonly args: readonly string[];
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The node flags bin/befw's shebang sets, so commands run under the installed settings. */
const NODE_FLAGS = (readFileSync(join(ROOT, 'bin/befw'), 'utf8').split('\n')[0] ?? '').split(/\s+/).filter((w) => w.startsWith('--'));
const SERVER = new URL('./cliServer.js', import.meta.url).pathname;

export class Cli {
  readonly transcript: Run[] = [];
  private readonly waiting = new Map<number, (r: Omit<Run, 'args'>) => void>();
  private seq = 0;

  private constructor(
    private readonly sb: Sandbox,
    private readonly config: string,
    private readonly proc: ChildProcess,
  ) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      if (line === 'ready') return;
      const msg = JSON.parse(line) as { id: number; code: number; stdout: string; stderr: string };
      this.waiting.get(msg.id)?.({ code: msg.code, stdout: msg.stdout, stderr: msg.stderr });
      this.waiting.delete(msg.id);
    });
  }

  static async start(sb: Sandbox, config: string): Promise<Cli> {
    const proc = sb.spawnIn(sb.nodeNs, process.execPath, [...NODE_FLAGS, SERVER], `cli-server-${Date.now()}.log`);
    await new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: proc.stdout! });
      rl.once('line', (l) => (l === 'ready' ? resolve() : reject(new Error(`cli server: ${l}`))));
      proc.once('exit', (code) => reject(new Error(`cli server exited ${code}`)));
    });
    return new Cli(sb, config, proc);
  }

  /** Runs `befw ARGS -c CONFIG` with `env` added (token variables of the test's own environment never pass). */
  async run(args: readonly string[], env: Record<string, string> = {}, config = this.config): Promise<Run> {
    const id = ++this.seq;
    const answer = new Promise<Omit<Run, 'args'>>((resolve) => this.waiting.set(id, resolve));
    this.proc.stdin!.write(`${JSON.stringify({ id, args: [...args, '-c', config], env })}\n`);
    const run = { args, ...(await answer) };
    this.transcript.push(run);
    return run;
  }

  /** The installed entry point, bin/befw, as a process of its own. */
  binary(args: readonly string[]): Run {
    const run = { args, ...this.sb.befw([...args, '-c', this.config]) };
    this.transcript.push(run);
    return run;
  }

  /** Runs and expects success; returns stdout. */
  async ok(args: readonly string[], env?: Record<string, string>, config?: string): Promise<string> {
    return expectOk(await this.run(args, env, config));
  }

  /** Runs and expects one clear error line matching `pattern`, and nothing on stdout. */
  async fails(args: readonly string[], pattern: RegExp, env?: Record<string, string>, config?: string): Promise<string> {
    return expectFailure(await this.run(args, env, config), pattern);
  }
}

export function expectOk(r: Run): string {
  assert.equal(r.code, 0, `befw ${r.args.join(' ')} exited ${r.code}:\n${r.stderr}${r.stdout}`);
  assert.equal(r.stderr, '', `befw ${r.args.join(' ')} wrote to stderr`);
  return r.stdout;
}

/** One error line on stderr, nothing on stdout; exit 2 for a usage error (the line ends "(try … --help)"), else 1. */
export function expectFailure(r: Run, pattern: RegExp): string {
  assert.equal(r.stdout, '', `befw ${r.args.join(' ')} printed on failure:\n${r.stdout}`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one error line expected:\n${r.stderr}`);
  const line = lines[0] ?? '';
  assert.match(line, /^befw: (config )?error: /);
  assert.match(line, pattern);
  const usage = /\(try befw[a-z -]* --help\)$/.test(line);
  assert.equal(r.code, usage ? 2 : 1, `befw ${r.args.join(' ')} exited ${r.code}: ${line}`);
  return line;
}

/** Decoded KV pairs under `prefix` in the sandbox's Consul. */
export async function kvTree(sb: Sandbox, prefix = 'befw/'): Promise<Record<string, string>> {
  const r = await sb.consul('GET', `/v1/kv/${prefix}?recurse`);
  if (r.status === 404) return {};
  assert.equal(r.status, 200, r.body);
  const items = JSON.parse(r.body) as { Key: string; Value: string | null }[];
  return Object.fromEntries(items.map((i) => [i.Key, i.Value === null ? '' : Buffer.from(i.Value, 'base64').toString()]));
}

/** The raw listing, ModifyIndex included: equal before and after means nothing was written. */
export async function kvRaw(sb: Sandbox): Promise<string> {
  const r = await sb.consul('GET', '/v1/kv/?recurse');
  return `${r.status} ${r.body}`;
}
