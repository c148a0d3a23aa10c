/**
 * The fan-out benchmark's inside: runs in a network namespace made for it (bench/fleet.ts),
 * where it starts one Consul server on loopback, writes the fleet's ~101,000 keys, and then, per
 * phase, restarts Consul (so no query parked by an earlier phase is still served), starts N
 * simulated agents (bench/helpers/fleetSim.ts), and makes single writes of each kind, one at a
 * time, measuring each:
 *
 *   woken      agents whose data changed (ScopedKv's `changed`)
 *   answered   agents that got any answer (an empty prefix answers on writes under its nearest
 *              existing ancestor: index moved, data did not)
 *   requests   answers Consul sent during the write
 *   bytes      what Consul sent the agents (counted on the agents' sockets), and Consul's wchar
 *              (/proc/<pid>/io: every byte it wrote, its raft log included) as a cross-check
 *   cpu        Consul's utime + stime (/proc/<pid>/stat)
 *   latency    PUT sent -> each affected agent's first changed answer, and the last of them
 *
 * A write counts as done when every affected agent (every agent, for whole-tree watches) has its
 * answer and no answer has arrived for a quiet period; every wait has a deadline. Input: one
 * JSON argument (FleetConfig). Output: JSON lines on stdout (`consul` with Consul's pid while it
 * runs, then `result`); progress on stderr.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WRITE_KINDS, type WriteKind, type WriteTarget, fleetKv, nodeOf, watchedSetsOf, writeTargets } from './fleetLayout.js';
import { PREFIX_ROLES, type PrefixRole, SimAgent, type WatchMode, nowMs } from './fleetSim.js';

export interface FleetConfig {
  readonly consulBin: string;
  readonly phases: readonly { readonly mode: WatchMode | 'none'; readonly n: number; readonly reps: number }[];
  /** Server-side wait of the simulated agents' queries: longer than a phase, so none expires inside one. */
  readonly waitMs: number;
  /** Hard stop for the whole run. */
  readonly deadlineMs: number;
}

export interface WriteSample {
  readonly rep: number;
  readonly putMs: number;
  readonly affected: number;
  readonly woken: number;
  readonly answered: number;
  readonly requests: number;
  readonly bytes: number;
  /** Of `bytes`, what went to the woken agents. */
  readonly bytesToWoken: number;
  readonly wchar: number;
  readonly cpuSec: number;
  /** CPU of this process (all the simulated agents, one thread) over the same window. */
  readonly benchCpuSec: number;
  /** Woken but not affected; affected but not woken (by the deadline). */
  readonly unexpected: number;
  readonly missing: number;
  /** PUT sent -> first changed answer, per affected agent (ms). */
  readonly latencies: number[];
  readonly lastMs: number;
  /** Answers whose data did not change (an empty prefix woken by a write under its nearest ancestor), by prefix role. */
  readonly unchanged: Record<PrefixRole, number>;
  readonly windowMs: number;
}

export interface PhaseResult {
  readonly mode: WatchMode | 'none';
  readonly n: number;
  readonly reps: number;
  readonly prefixesPerAgent: number;
  /** Start of every watch -> every agent's first complete answer. */
  readonly readyMs: number;
  readonly readyAgents: number;
  /** What Consul sent for the first complete answers, per agent (= one full listing of what it watches). */
  readonly initialBytesPerAgent: number;
  readonly initialCpuSec: number;
  /** Answers per agent until then (one per prefix, unless a watch re-read), and index resets seen over the phase. */
  readonly initialAnswersPerAgent: number;
  readonly indexResets: number;
  readonly consulRssMb: number;
  readonly benchRssMb: number;
  readonly errors: number;
  readonly writes: Record<WriteKind, WriteSample[]>;
}

export interface FleetResult {
  readonly keys: number;
  readonly loadMs: number;
  /** One listing of all of `befw/` and of each written prefix, as Consul sends it (bytes). */
  readonly treeBytes: number;
  readonly prefixBytes: Record<WriteKind, number>;
  readonly targets: { kind: WriteKind; label: string; prefix: string; affected: Record<number, number> }[];
  readonly phases: PhaseResult[];
  readonly totalMs: number;
}

const HOST = '127.0.0.1';
const PORT = 8500;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (msg: string): void => {
  process.stderr.write(`fleet: ${msg}\n`);
};
/** One JSON line on stdout; resolves once it is flushed (stdout is a pipe: exit() would cut it short). */
const emit = (o: Record<string, unknown>): Promise<void> =>
  new Promise((resolve) => {
    process.stdout.write(`${JSON.stringify(o)}\n`, () => resolve());
  });

const writer = new Agent({ keepAlive: true, maxSockets: 16 });

function http(method: string, path: string, body?: string, timeoutMs = 30_000): Promise<{ status: number; body: string; index: number }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: HOST, port: PORT, method, path, agent: writer }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          body: Buffer.concat(chunks).toString(),
          index: Number(res.headers['x-consul-index'] ?? NaN),
        }),
      );
    });
    req.on('error', reject);
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path} timed out`)));
    req.end(body);
  });
}

/** Bytes Consul sends for one recursive listing of `prefix`, counted on a fresh connection. */
function listingBytes(prefix: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let sock: Socket | null = null;
    const req = request({ host: HOST, port: PORT, method: 'GET', path: `/v1/kv/${encodeKey(prefix)}?recurse`, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(sock?.bytesRead ?? 0));
    });
    req.on('socket', (s: Socket) => (sock = s));
    req.on('error', reject);
    req.setTimeout(60_000, () => req.destroy(new Error(`listing ${prefix} timed out`)));
    req.end();
  });
}

function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function procStat(pid: number): { cpuSec: number; wchar: number; rssMb: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSec = (Number(f[11]) + Number(f[12])) / 100;
  const wchar = Number(/^wchar:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))?.[1] ?? NaN);
  const rssMb = Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
  return { cpuSec, wchar, rssMb };
}

/** The KV table's index (an absent key answers with it): the last KV write the server has applied. */
async function kvIndex(): Promise<number> {
  return (await http('GET', '/v1/kv/befw-fleet-bench/probe')).index;
}

/** This process's (soft) limit on open files, which Consul inherits. */
function openFilesLimit(): number {
  const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m === null ? 1024 : Number(m[1]);
}

class Consul {
  private proc: ChildProcess | null = null;
  private starts = 0;
  readonly dataDir = mkdtempSync(join(tmpdir(), 'befw-fleet-'));

  constructor(private readonly bin: string) {}

  get pid(): number {
    const pid = this.proc?.pid;
    if (pid === undefined) throw new Error('consul is not running');
    return pid;
  }

  async start(): Promise<void> {
    const out = openSync(join(this.dataDir, `consul-${++this.starts}.log`), 'a');
    this.proc = spawn(
      this.bin,
      [
        'agent',
        '-server',
        '-bootstrap-expect',
        '1',
        '-data-dir',
        join(this.dataDir, 'data'),
        '-node',
        'fleet-server',
        '-datacenter',
        'dc1',
        '-bind',
        HOST,
        '-client',
        HOST,
        '-log-level',
        'warn',
        '-hcl',
        // Every simulated agent connects from 127.0.0.1: lift the per-client connection cap (200)
        // as far as the file descriptor limit allows (Consul wants 20 to spare).
        `limits { http_max_conns_per_client = ${openFilesLimit() - 100} }`,
        '-hcl',
        'performance { raft_multiplier = 1 }',
        '-hcl',
        'disable_update_check = true',
      ],
      { stdio: ['ignore', out, out] },
    );
    closeSync(out);
    void emit({ type: 'consul', pid: this.proc.pid, dataDir: this.dataDir });
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) break;
      try {
        const leader = await http('GET', '/v1/status/leader', undefined, 2000);
        const kv = await http('GET', '/v1/kv/befw-fleet-bench/probe', undefined, 2000);
        if (leader.status === 200 && leader.body.length > 4 && (kv.status === 404 || kv.status === 200)) return;
      } catch {
        // not up yet
      }
      await sleep(100);
    }
    throw new Error(`consul did not start: ${readFileSync(join(this.dataDir, `consul-${this.starts}.log`), 'utf8').slice(-2000)}`);
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = null;
    if (p === null || p.exitCode !== null || p.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
    p.kill('SIGTERM');
    await Promise.race([exited, sleep(10_000)]);
    if (p.exitCode === null && p.signalCode === null) {
      p.kill('SIGKILL');
      await Promise.race([exited, sleep(5_000)]);
    }
  }

  /**
   * Stops and starts Consul on the same data. A restarted server answers as soon as it is leader,
   * but re-applies its raft log only then, so the KV tree grows back over a second or more while
   * it already answers (raft's applied_index in /v1/agent/self did not tell: it was back before
   * the tree was): wait until the KV table's index is back where it was.
   */
  async restart(): Promise<void> {
    const before = await kvIndex();
    await this.stop();
    writer.destroy(); // its sockets went with the old process
    await this.start();
    const deadline = Date.now() + 120_000;
    for (;;) {
      const now = await kvIndex();
      if (now >= before) return;
      if (Date.now() > deadline) throw new Error(`consul re-applied its KV writes only up to index ${now} of ${before}`);
      await sleep(100);
    }
  }

  killSync(): void {
    this.proc?.kill('SIGKILL');
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

async function load(): Promise<{ keys: number; ms: number }> {
  const kv = fleetKv(Math.floor(Date.now() / 1000));
  const t0 = Date.now();
  const batches: string[] = [];
  for (let i = 0; i < kv.length; i += 64) {
    const ops = kv.slice(i, i + 64).map((p) => ({ KV: { Verb: 'set', Key: p.key, Value: Buffer.from(p.value ?? '').toString('base64') } }));
    batches.push(JSON.stringify(ops));
  }
  let next = 0;
  // A few transactions in flight: raft commits them together.
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < batches.length) {
        const b = batches[next++] as string;
        const r = await http('PUT', '/v1/txn', b);
        if (r.status !== 200) throw new Error(`txn: ${r.status} ${r.body.slice(0, 200)}`);
      }
    }),
  );
  return { keys: kv.length, ms: Date.now() - t0 };
}

let writeSeq = 0;

function sumUnchanged(sims: readonly SimAgent[]): Record<PrefixRole, number> {
  const out = Object.fromEntries(PREFIX_ROLES.map((r) => [r, 0])) as Record<PrefixRole, number>;
  for (const s of sims) for (const r of PREFIX_ROLES) out[r] += s.counters.unchangedByRole[r];
  return out;
}

async function measureWrite(
  consul: Consul,
  sims: readonly SimAgent[],
  mode: WatchMode | 'none',
  target: WriteTarget,
  rep: number,
  deadline: number,
): Promise<WriteSample> {
  const affected = target.affected(sims.length);
  const waitFor = mode === 'tree' ? sims.map((_, i) => i) : affected;
  const quietMs = mode === 'tree' ? 1000 : 300;
  for (const s of sims) s.mark();
  const before = sims.map((s) => ({ answers: s.counters.answers, changed: s.counters.changed, bytes: s.bytes }));
  const unchanged0 = sumUnchanged(sims);
  const p0 = procStat(consul.pid);
  const c0 = process.cpuUsage();
  const value = String(Math.floor(Date.now() / 1000) + 7 * 86400 + ++writeSeq);
  const t0 = nowMs();
  const r = await http('PUT', `/v1/kv/${encodeKey(target.key(rep))}`, value);
  if (r.status !== 200) throw new Error(`PUT ${target.key(rep)}: ${r.status} ${r.body}`);
  const tPut = nowMs();
  const until = Math.min(deadline, Date.now() + (mode === 'tree' ? 180_000 : 20_000));
  for (;;) {
    const now = nowMs();
    const all = waitFor.every((i) => sims[i]?.counters.firstChangeAt !== null);
    if (all && now - Math.max(SimAgent.lastAnswerAt, tPut) >= quietMs) break;
    if (Date.now() > until) break;
    await sleep(5);
  }
  const windowMs = nowMs() - t0;
  const p1 = procStat(consul.pid);
  const c1 = process.cpuUsage(c0);
  let woken = 0;
  let answered = 0;
  let requests = 0;
  let bytes = 0;
  let bytesToWoken = 0;
  let unexpected = 0;
  const affectedSet = new Set(affected);
  sims.forEach((s, i) => {
    const b = before[i] as { answers: number; changed: number; bytes: number };
    const a = s.counters.answers - b.answers;
    const c = s.counters.changed - b.changed;
    requests += a;
    bytes += s.bytes - b.bytes;
    if (a > 0) answered++;
    if (c > 0) {
      woken++;
      bytesToWoken += s.bytes - b.bytes;
      if (!affectedSet.has(i)) unexpected++;
    }
  });
  const latencies: number[] = [];
  let missing = 0;
  for (const i of affected) {
    const at = sims[i]?.counters.firstChangeAt ?? null;
    if (at === null) missing++;
    else latencies.push(at - t0);
  }
  const unchanged1 = sumUnchanged(sims);
  return {
    rep,
    putMs: tPut - t0,
    unchanged: Object.fromEntries(PREFIX_ROLES.map((r) => [r, unchanged1[r] - unchanged0[r]])) as Record<PrefixRole, number>,
    affected: affected.length,
    woken,
    answered,
    requests,
    bytes,
    bytesToWoken,
    wchar: p1.wchar - p0.wchar,
    cpuSec: p1.cpuSec - p0.cpuSec,
    benchCpuSec: (c1.user + c1.system) / 1e6,
    unexpected,
    missing,
    latencies,
    lastMs: latencies.length === 0 ? NaN : Math.max(...latencies),
    windowMs,
  };
}

async function runPhase(
  consul: Consul,
  cfg: FleetConfig,
  phase: FleetConfig['phases'][number],
  targets: readonly WriteTarget[],
  deadline: number,
): Promise<PhaseResult> {
  await consul.restart();
  (globalThis as { gc?: () => void }).gc?.();
  const sims: SimAgent[] = [];
  const writes = Object.fromEntries(WRITE_KINDS.map((k) => [k, [] as WriteSample[]])) as Record<WriteKind, WriteSample[]>;
  try {
    if (phase.mode !== 'none') {
      for (let i = 0; i < phase.n; i++) {
        sims.push(await SimAgent.create(i, nodeOf(i), watchedSetsOf(i), phase.mode, { host: HOST, port: PORT }, cfg.waitMs));
      }
    }
    const bytes0 = sims.reduce((a, s) => a + s.bytes, 0);
    const p0 = procStat(consul.pid);
    const t0 = nowMs();
    for (const s of sims) s.start();
    const readyWithin = Math.max(1000, Math.min(300_000, deadline - Date.now()));
    const ready = await Promise.all(sims.map((s) => s.whenReady(readyWithin)));
    const readyMs = nowMs() - t0;
    // Let the last first answers land and every watch park again.
    const settleUntil = Date.now() + 30_000;
    while (Date.now() < settleUntil && nowMs() - SimAgent.lastAnswerAt < 1000) await sleep(50);
    const p1 = procStat(consul.pid);
    const initialBytes = sims.reduce((a, s) => a + s.bytes, 0) - bytes0;
    const initialAnswers = sims.reduce((a, s) => a + s.counters.answers, 0);
    const readyAgents = ready.filter(Boolean).length;
    log(
      `${phase.mode} N=${phase.n}: ${readyAgents}/${phase.n} agents ready in ${readyMs.toFixed(0)} ms, ` +
        `${sims.length === 0 ? 0 : (sims.reduce((a, s) => a + s.prefixes, 0) / sims.length).toFixed(1)} prefixes each`,
    );
    for (const t of targets) {
      for (let rep = 0; rep < phase.reps && Date.now() < deadline; rep++) {
        writes[t.kind].push(await measureWrite(consul, sims, phase.mode, t, rep, deadline));
        await sleep(50);
      }
      const w = writes[t.kind];
      const mean = (f: (x: WriteSample) => number): number => w.reduce((a, x) => a + f(x), 0) / Math.max(1, w.length);
      log(
        `  ${t.kind}: ${w.length} writes, woken ${mean((x) => x.woken).toFixed(1)}, answered ${mean((x) => x.answered).toFixed(1)}, ` +
          `${(mean((x) => x.bytes) / 1e6).toFixed(2)} MB, cpu ${mean((x) => x.cpuSec).toFixed(3)} s, last ${mean((x) => x.lastMs).toFixed(0)} ms`,
      );
    }
    return {
      mode: phase.mode,
      n: phase.n,
      reps: phase.reps,
      prefixesPerAgent: sims.length === 0 ? 0 : sims.reduce((a, s) => a + s.prefixes, 0) / sims.length,
      readyMs,
      readyAgents,
      initialBytesPerAgent: sims.length === 0 ? 0 : initialBytes / sims.length,
      initialCpuSec: p1.cpuSec - p0.cpuSec,
      initialAnswersPerAgent: sims.length === 0 ? 0 : initialAnswers / sims.length,
      indexResets: sims.reduce((a, s) => a + s.counters.indexResets, 0),
      consulRssMb: procStat(consul.pid).rssMb,
      benchRssMb: process.memoryUsage().rss / 2 ** 20,
      errors: sims.reduce((a, s) => a + s.counters.errors, 0),
      writes,
    };
  } finally {
    await Promise.all(sims.map((s) => s.stop()));
  }
}

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as FleetConfig;
  const started = Date.now();
  const deadline = started + cfg.deadlineMs;
  const consul = new Consul(cfg.consulBin);
  const cleanup = (): void => consul.killSync();
  process.on('exit', cleanup);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => process.exit(1));
  await consul.start();
  const loaded = await load();
  log(`${loaded.keys} keys written in ${loaded.ms} ms (PUT /v1/txn, 64 a batch)`);
  const targets = writeTargets();
  const phases: PhaseResult[] = [];
  for (const phase of cfg.phases) {
    if (Date.now() > deadline) {
      log(`deadline reached: phase ${phase.mode} N=${phase.n} not run`);
      break;
    }
    phases.push(await runPhase(consul, cfg, phase, targets, deadline));
  }
  const treeBytes = await listingBytes('befw/');
  const prefixBytes = Object.fromEntries(await Promise.all(targets.map(async (t) => [t.kind, await listingBytes(t.prefix)]))) as Record<
    WriteKind,
    number
  >;
  await consul.stop();
  await emit({
    type: 'result',
    result: {
      keys: loaded.keys,
      loadMs: loaded.ms,
      treeBytes,
      prefixBytes,
      targets: targets.map((t) => ({
        kind: t.kind,
        label: t.label,
        prefix: t.prefix,
        affected: Object.fromEntries(cfg.phases.map((p) => [p.n, t.affected(p.n).length])),
      })),
      phases,
      totalMs: Date.now() - started,
    } satisfies FleetResult,
  });
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`fleet bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
