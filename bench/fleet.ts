/**
 * Fan-out benchmark (`npm run bench -- fleet`): what one KV write costs Consul and how fast it
 * reaches the agents it concerns, with N simulated agents running the agent's own watch code
 * (ScopedKv, BlockingWatch, the agent's Consul client) against one real Consul server holding
 * ~101,000 keys (bench/helpers/fleetLayout.ts). Whole-tree watches (`kv_watch=tree`, what befw
 * did before) and scoped watches run in the same run, on the same data, one phase after another:
 *
 *   none     N = 0: the write alone (Consul's own cost of a write: raft, fsync)
 *   tree     N = 50 only: each whole-tree answer is ~14 MB (the issue's 200 used 13 GB)
 *   scoped   N = 50, 200, 500
 *
 * Everything runs in one network namespace made here (Consul on its loopback, the simulated
 * agents beside it in one node process: bench/helpers/fleetMain.ts), removed afterwards. Figures
 * only: the targets are printed, not asserted.
 *   BENCH_FLEET_N=50,200,500  BENCH_FLEET_TREE_N=50 (0: none)  BENCH_FLEET_REPS=20  BENCH_FLEET_TREE_REPS=2
 *   BENCH_FLEET_NAMES=site    node names start with a site that is not their datacenter (fleetLayout.ts)
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, rmSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { WRITE_KINDS, type WriteKind } from './helpers/fleetLayout.js';
import type { FleetConfig, FleetResult, PhaseResult, WriteSample } from './helpers/fleetMain.js';
import { PREFIX_ROLES, type PrefixRole } from './helpers/fleetSim.js';

const RUNNER = new URL('./helpers/fleetMain.js', import.meta.url).pathname;
/** The fleet the README extrapolates to, its change rate, and the agents' default server-side wait. */
export const FLEET = 16_000;
const DEFAULT_WAIT_S = 300;

/** CONSUL_BIN, else .cache/consul/consul (scripts/install-deps.sh), else consul on PATH: as the tests find it. */
function consulBinary(): string {
  const env = process.env.CONSUL_BIN;
  if (env !== undefined && env !== '') return env;
  const cached = new URL('../../.cache/consul/consul', import.meta.url).pathname;
  if (existsSync(cached)) return cached;
  const r = spawnSync('sh', ['-c', 'command -v consul'], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim() !== '') return r.stdout.trim();
  throw new Error('no consul binary: set CONSUL_BIN or run scripts/install-deps.sh');
}

function numbers(env: string | undefined, dflt: number[]): number[] {
  if (env === undefined || env.trim() === '') return dflt;
  return env
    .split(',')
    .map((x) => Number(x.trim()))
    .filter((n) => Number.isInteger(n) && n > 0);
}

export async function benchFleet(): Promise<FleetResult> {
  const scopedN = numbers(process.env.BENCH_FLEET_N, [50, 200, 500]);
  const treeN = numbers(process.env.BENCH_FLEET_TREE_N, [50]);
  const reps = Number(process.env.BENCH_FLEET_REPS ?? 20);
  const treeReps = Number(process.env.BENCH_FLEET_TREE_REPS ?? 2);
  const cfg: FleetConfig = {
    consulBin: consulBinary(),
    phases: [
      { mode: 'none', n: 0, reps: 5 },
      ...treeN.map((n) => ({ mode: 'tree' as const, n, reps: treeReps })),
      ...scopedN.map((n) => ({ mode: 'scoped' as const, n, reps })),
    ],
    // Longer than any phase, under Consul's 10-minute cap: no query's wait runs out mid-phase.
    waitMs: 540_000,
    deadlineMs: 20 * 60_000,
  };
  const ns = `befwt-${process.pid}-${randomBytes(3).toString('hex')}-fleet`;
  const run = (cmd: string, args: string[]): void => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr}`);
  };
  run('ip', ['netns', 'add', ns]);
  const consulPids = new Set<number>();
  const dataDirs = new Set<string>();
  let runnerPid: number | undefined;
  try {
    run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    // `ip netns exec` and `sh` both exec: the runner keeps the child's pid.
    const child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        'sh',
        '-c',
        'ulimit -n "$(ulimit -Hn)" && exec "$0" "$@"',
        process.execPath,
        '--max-old-space-size=16384',
        '--expose-gc',
        RUNNER,
        JSON.stringify(cfg),
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    runnerPid = child.pid;
    let result: FleetResult | null = null;
    createInterface({ input: child.stdout }).on('line', (line) => {
      let msg: { type: string; pid?: number; dataDir?: string; result?: FleetResult };
      try {
        msg = JSON.parse(line) as typeof msg;
      } catch {
        process.stderr.write(`fleet: unreadable line from the runner (${line.length} characters)\n`);
        return;
      }
      if (msg.type === 'consul' && msg.pid !== undefined) consulPids.add(msg.pid);
      if (msg.type === 'consul' && msg.dataDir !== undefined) dataDirs.add(msg.dataDir);
      if (msg.type === 'result' && msg.result !== undefined) result = msg.result;
    });
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => child.kill('SIGTERM'), cfg.deadlineMs + 5 * 60_000);
      child.once('exit', (c) => {
        clearTimeout(timer);
        resolve(c);
      });
    });
    if (result === null) throw new Error(`fleet runner exited ${code} without a result`);
    return result;
  } finally {
    // Only what this run started: the runner and the Consul processes it reported.
    for (const pid of [runnerPid, ...consulPids]) {
      if (pid === undefined) continue;
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    spawnSync('ip', ['netns', 'del', ns]);
    for (const d of dataDirs) rmSync(d, { recursive: true, force: true });
  }
}

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '-';
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 1e8 ? 0 : 1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 1e5 ? 0 : 1)} kB`;
  return `${n.toFixed(0)} B`;
}

const mean = (w: readonly WriteSample[], f: (x: WriteSample) => number): number => w.reduce((a, x) => a + f(x), 0) / Math.max(1, w.length);
const count = (x: number): string => (Number.isInteger(x) ? String(x) : x.toFixed(1));
const ms = (x: number): string => (Number.isFinite(x) ? (x >= 100 ? x.toFixed(0) : x.toFixed(1)) : '-');

export interface FleetRow {
  kind: WriteKind;
  mode: PhaseResult['mode'];
  n: number;
  writes: number;
  affected: number;
  woken: number;
  answered: number;
  requests: number;
  bytes: number;
  wchar: number;
  /** What each woken agent got (its changed prefix, and any other answers it had meanwhile). */
  bytesPerWoken: number;
  unchanged: Record<PrefixRole, number>;
  cpuSec: number;
  benchCpuSec: number;
  lastP50: number;
  lastP99: number;
  agentP50: number;
  agentP99: number;
  putP50: number;
  putP99: number;
  unexpected: number;
  missing: number;
}

export function fleetRows(r: FleetResult): FleetRow[] {
  const rows: FleetRow[] = [];
  for (const kind of WRITE_KINDS) {
    for (const p of r.phases) {
      const w = p.writes[kind];
      if (w.length === 0) continue;
      const woken = mean(w, (x) => x.woken);
      const b = mean(w, (x) => x.bytes);
      rows.push({
        kind,
        mode: p.mode,
        n: p.n,
        writes: w.length,
        affected: mean(w, (x) => x.affected),
        woken,
        answered: mean(w, (x) => x.answered),
        requests: mean(w, (x) => x.requests),
        bytes: b,
        wchar: mean(w, (x) => x.wchar),
        bytesPerWoken: woken === 0 ? NaN : mean(w, (x) => x.bytesToWoken) / woken,
        unchanged: Object.fromEntries(PREFIX_ROLES.map((r) => [r, mean(w, (x) => x.unchanged[r])])) as Record<PrefixRole, number>,
        cpuSec: mean(w, (x) => x.cpuSec),
        benchCpuSec: mean(w, (x) => x.benchCpuSec),
        lastP50: percentile(
          w.map((x) => x.lastMs),
          50,
        ),
        lastP99: percentile(
          w.map((x) => x.lastMs),
          99,
        ),
        agentP50: percentile(
          w.flatMap((x) => x.latencies),
          50,
        ),
        agentP99: percentile(
          w.flatMap((x) => x.latencies),
          99,
        ),
        putP50: percentile(
          w.map((x) => x.putMs),
          50,
        ),
        putP99: percentile(
          w.map((x) => x.putMs),
          99,
        ),
        unexpected: w.reduce((a, x) => a + x.unexpected, 0),
        missing: w.reduce((a, x) => a + x.missing, 0),
      });
    }
  }
  return rows;
}

/** The table `npm run bench -- fleet` prints: one line per write kind and phase, means per write. */
export function fleetTable(r: FleetResult): string {
  const head = [
    'write',
    'watch',
    'N',
    'writes',
    'affected',
    'woken',
    'not concerned',
    'answered',
    'requests',
    'Consul sent',
    'per woken',
    'wchar',
    'Consul CPU',
    'last p50/p99 ms',
    'agents p50/p99 ms',
    'PUT p50/p99 ms',
    'bench CPU',
  ];
  const lines: string[][] = [head];
  for (const x of fleetRows(r)) {
    const t = r.targets.find((y) => y.kind === x.kind);
    lines.push([
      x.mode === 'none' ? `${x.kind} (${t?.prefix ?? ''})` : x.kind,
      x.mode === 'none' ? 'no watchers' : x.mode,
      String(x.n),
      String(x.writes),
      count(x.affected),
      `${count(x.woken)}${x.missing > 0 ? ` (${x.missing} missed)` : ''}`,
      count(x.unexpected / x.writes),
      count(x.answered),
      count(x.requests),
      bytes(x.bytes),
      bytes(x.bytesPerWoken),
      bytes(x.wchar),
      `${x.cpuSec.toFixed(3)} s`,
      x.mode === 'none' ? '-' : `${ms(x.lastP50)} / ${ms(x.lastP99)}`,
      x.mode === 'none' ? '-' : `${ms(x.agentP50)} / ${ms(x.agentP99)}`,
      `${ms(x.putP50)} / ${ms(x.putP99)}`,
      `${x.benchCpuSec.toFixed(3)} s`,
    ]);
  }
  const widths = head.map((_, c) => Math.max(...lines.map((l) => (l[c] ?? '').length)));
  const fmt = (l: string[]): string =>
    l
      .map((v, c) => (c < 2 ? v.padEnd(widths[c] ?? 0) : v.padStart(widths[c] ?? 0)))
      .join('  ')
      .trimEnd();
  const out = [fmt(head), ...lines.slice(1).map(fmt)];
  out.push('');
  out.push(`tree: ${r.keys.toLocaleString('en')} keys, one listing of befw/ = ${bytes(r.treeBytes)}; written prefixes now list:`);
  for (const t of r.targets) out.push(`  ${t.kind.padEnd(10)} ${t.prefix.padEnd(44)} ${bytes(r.prefixBytes[t.kind])}   ${t.label}`);
  out.push('answers without a change, per write, by the role of the prefix that gave them (scoped):');
  for (const x of fleetRows(r).filter((y) => y.mode === 'scoped')) {
    const parts = PREFIX_ROLES.filter((role) => x.unchanged[role] > 0).map((role) => `${role} ${count(x.unchanged[role])}`);
    out.push(`  ${x.kind.padEnd(10)} N=${String(x.n).padEnd(4)} ${parts.length === 0 ? 'none' : parts.join(', ')}`);
  }
  out.push('phases (after a Consul restart each):');
  for (const p of r.phases) {
    if (p.mode === 'none') continue;
    out.push(
      `  ${p.mode.padEnd(6)} N=${String(p.n).padEnd(4)} ${p.prefixesPerAgent.toFixed(1)} prefixes/agent, first answers ${bytes(p.initialBytesPerAgent)}/agent ` +
        `(${p.initialAnswersPerAgent.toFixed(1)} answers; ${p.indexResets} index resets in the phase), ` +
        `all ${p.readyAgents}/${p.n} ready in ${ms(p.readyMs)} ms (Consul ${p.initialCpuSec.toFixed(2)} s CPU); Consul RSS ${p.consulRssMb.toFixed(0)} MB, ` +
        `bench RSS ${p.benchRssMb.toFixed(0)} MB, ${p.errors} errors`,
    );
  }
  return out.join('\n');
}

export interface FleetTarget {
  figure: string;
  value: string;
  note: string;
}

/** The issue's targets, as measured (printed, never asserted). */
export function fleetTargets(r: FleetResult): FleetTarget[] {
  const rows = fleetRows(r).filter((x) => x.mode === 'scoped');
  const out: FleetTarget[] = [];
  const maxN = Math.max(0, ...rows.map((x) => x.n));
  for (const x of rows.filter((y) => y.kind === 'node')) {
    out.push({ figure: `node-scope write, N=${x.n}: agents woken`, value: count(x.woken), note: 'target 1' });
  }
  for (const x of rows.filter((y) => y.kind === 'world' || y.kind === 'dc' || y.kind === 'alias')) {
    out.push({
      figure: `${x.kind} write, N=${x.n}: woken / agents it concerns`,
      value: `${count(x.woken)} / ${count(x.affected)}`,
      note: `only the agents running the service; ${x.unexpected} woken that it does not concern, ${x.missing} missed`,
    });
  }
  for (const x of rows.filter((y) => y.n === maxN)) {
    const prefix = r.prefixBytes[x.kind];
    out.push({
      figure: `${x.kind} write, N=${x.n}: Consul sent per woken agent`,
      value: bytes(x.bytesPerWoken),
      note: `target <= the changed prefix (${bytes(prefix)}): ${x.bytesPerWoken <= prefix ? 'met' : 'NOT met'}; all agents ${bytes(x.bytes)} a write`,
    });
  }
  for (const x of rows.filter((y) => y.n === maxN)) {
    out.push({
      figure: `${x.kind} write, N=${x.n}: write -> last affected agent answered, p99`,
      value: `${ms(x.lastP99)} ms`,
      note:
        `target <= 1000 ms: ${x.lastP99 <= 1000 ? 'met' : 'NOT met'}; p50 ${ms(x.lastP50)} ms over ${x.writes} writes; ` +
        `of which the PUT's commit p50/p99 ${ms(x.putP50)} / ${ms(x.putP99)} ms; bench CPU ${x.benchCpuSec.toFixed(3)} s a write`,
    });
  }
  return out;
}

/** 16,000 nodes at one change a second, scaled linearly from the largest measured N of each mode. */
export function fleetExtrapolation(r: FleetResult): string {
  const rows = fleetRows(r);
  const out: string[] = [
    `extrapolated to ${FLEET.toLocaleString('en')} nodes, one change a second (linear in N from the largest N measured):`,
  ];
  for (const mode of ['tree', 'scoped'] as const) {
    const ns = rows.filter((x) => x.mode === mode).map((x) => x.n);
    if (ns.length === 0) continue;
    const n = Math.max(...ns);
    const k = FLEET / n;
    for (const x of rows.filter((y) => y.mode === mode && y.n === n)) {
      out.push(
        `  ${mode.padEnd(6)} ${x.kind.padEnd(10)} ${bytes(x.bytes)} x ${FLEET}/${n} = ${bytes(x.bytes * k)}/s sent, ` +
          `${x.cpuSec.toFixed(3)} s x ${k.toFixed(0)} = ${(x.cpuSec * k).toFixed(1)} cores, ${count(x.requests)} x ${k.toFixed(0)} = ${(x.requests * k).toFixed(0)} answers/s`,
      );
    }
    const p = r.phases.find((y) => y.mode === mode && y.n === n);
    if (p !== undefined) {
      out.push(
        `  ${mode.padEnd(6)} idle       ${FLEET} x ${bytes(p.initialBytesPerAgent)} / ${DEFAULT_WAIT_S} s = ${bytes((FLEET * p.initialBytesPerAgent) / DEFAULT_WAIT_S)}/s, ` +
          `${FLEET} x ${p.prefixesPerAgent.toFixed(1)} prefixes / ${DEFAULT_WAIT_S} s = ${((FLEET * p.prefixesPerAgent) / DEFAULT_WAIT_S).toFixed(0)} answers/s (every wait running out)`,
      );
    }
  }
  return out.join('\n');
}
