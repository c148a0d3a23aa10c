/**
 * Live-propagation benchmarks, each in its own sandbox (real Consul dev agent, real kernel in a
 * network namespace, the real agent process):
 *   - propagation: KV PUT -> member visible in the kernel, 200 changes over 1,000 members;
 *   - single-entry change on a 65,000-member set: the agent's apply time against one raw
 *     `ipset add`, and the same change end to end;
 *   - cold apply of 100,000 members over 100 sets against a raw `ipset restore` of the same sets;
 *   - the agent's memory with those 100,000 members.
 * Addresses come from the benchmarking range 198.18.0.0/15 and documentation ranges.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { KvPair, Plan } from '../src/core/types.js';
import { renderFull } from '../src/dataplane/nft/render.js';
import { type AgentProcess, ROOT, Sandbox, sleep } from '../test/helpers/sandbox.js';
import { KernelWatch } from './helpers/kernelWatch.js';
import { syntheticInputs } from './plan.js';

const TIME_COMMAND = join(ROOT, 'dist/bench/helpers/timeCommand.js');

export function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}

function kvBulk(sb: Sandbox, pairs: readonly KvPair[]): Promise<void> {
  return sb.kvPutMany(pairs);
}

function startAgent(sb: Sandbox, extra: readonly string[] = []): AgentProcess {
  const level = process.env.BENCH_AGENT_LOG ?? 'debug';
  const config = sb.writeFile(
    'befw.conf',
    [`services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, `state=${sb.dir}/state.bin`, `log_level=${level}`, ...extra].join('\n'),
  );
  return sb.startAgent(config);
}

async function waitApplied(
  agent: AgentProcess,
  pred: (e: Record<string, unknown>) => boolean,
  timeoutMs: number,
  from = 0,
): Promise<Record<string, unknown>> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const hit = agent
      .events()
      .slice(from)
      .find((e) => e.event === 'applied' && pred(e));
    if (hit !== undefined) return hit;
    if (Date.now() > end) throw new Error('the agent did not apply in time');
    await sleep(20);
  }
}

function timeInNs(ns: string, n: number, args: string[]): number[] {
  const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, TIME_COMMAND, String(n), ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`timeCommand failed: ${r.stderr}`);
  return (JSON.parse(r.stdout) as { ms: number[] }).ms;
}

/**
 * CPU seconds used so far by a process and everything it started: its own user + system time,
 * its waited-for children's (cutime, cstime), and the same for children still running (the
 * launcher shell and the tools it ran). Clock ticks of 1/100 s.
 */
function treeCpuSeconds(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return 0; // exited meanwhile: its time is in its parent's cutime
  }
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let total = (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
  let children: string;
  try {
    children = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8');
  } catch {
    children = '';
  }
  for (const c of children.split(' ').filter((x) => x !== '')) total += treeCpuSeconds(Number(c));
  return total;
}

function rssOf(pid: number): { rssMb: number; peakMb: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rssMb: kb('VmRSS') / 1024, peakMb: kb('VmHWM') / 1024 };
}

export interface PropagationResult {
  changes: number;
  baseMembers: number;
  p50: number;
  p99: number;
  max: number;
}

/** 200 grants, one after another, each measured from its PUT to its member in the kernel. */
export async function benchPropagation(
  changes = Number(process.env.BENCH_CHANGES ?? 200),
  services = 10,
  perService = 100,
): Promise<PropagationResult> {
  const sb = await Sandbox.create();
  const kw = new KernelWatch(sb.nodeNs);
  try {
    const base: KvPair[] = [];
    for (let s = 0; s < services; s++) {
      await sb.registerService({ name: `svc${s}`, port: 10000 + s, tags: ['befw', 'enforcing'] });
      for (let c = 0; c < perService; c++) base.push({ key: `befw/$service$/svc${s}_tcp_${10000 + s}/198.18.${s}.${c}`, value: '-1' });
    }
    await kvBulk(sb, base);
    const agent = startAgent(sb);
    await waitApplied(agent, (e) => Number(e.members) >= services * perService, 30_000);
    const samples: number[] = [];
    for (let i = 0; i < changes; i++) {
      const s = i % services;
      const member = `198.19.${i >> 8}.${i & 255}`;
      const t0 = performance.timeOrigin + performance.now();
      await sb.kvPut(`befw/$service$/svc${s}_tcp_${10000 + s}/${member}`, '-1');
      const t1 = await kw.until(`svc${s}_tcp_${10000 + s}`, member, true, 10_000);
      samples.push(t1 - t0);
      // Changes arrive like human or automation writes, not as one burst (a burst is coalesced).
      await sleep(100);
    }
    await agent.stop();
    return {
      changes,
      baseMembers: services * perService,
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      max: Math.max(...samples),
    };
  } finally {
    kw.close();
    await sb.destroy();
  }
}

/**
 * A stream of grants to one set at `perSec` writes a second, each measured from its PUT to its
 * member in the kernel; the writes do not wait for the kernel (an automation writing grants).
 */
export async function benchStream(changes = 200, perSec = 20): Promise<PropagationResult> {
  const sb = await Sandbox.create();
  const kw = new KernelWatch(sb.nodeNs);
  try {
    await sb.registerService({ name: 'svc', port: 10000, tags: ['befw', 'enforcing'] });
    const base: KvPair[] = Array.from({ length: 1000 }, (_, c) => ({
      key: `befw/$service$/svc_tcp_10000/198.18.0.${c & 255}/32`,
      value: '-1',
    }));
    await kvBulk(sb, base.slice(0, 200));
    const agent = startAgent(sb);
    await waitApplied(agent, () => true, 30_000);
    const written: { member: string; at: number }[] = [];
    const samples: number[] = [];
    let done = false;
    const poller = (async () => {
      let next = 0;
      while (!done || next < written.length) {
        const w = written[next];
        if (w === undefined) {
          await sleep(1);
          continue;
        }
        const t = await kw.until('svc_tcp_10000', w.member, true, 10_000);
        samples.push(t - w.at);
        next++;
      }
    })();
    const gap = 1000 / perSec;
    const start = performance.now();
    for (let i = 0; i < changes; i++) {
      const due = start + i * gap;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      const member = `198.19.${i >> 8}.${i & 255}`;
      const at = performance.timeOrigin + performance.now();
      // Not awaited against the kernel: the next write goes at its time.
      await sb.kvPut(`befw/$service$/svc_tcp_10000/${member}`, '-1');
      written.push({ member, at });
    }
    done = true;
    await poller;
    await agent.stop();
    return { changes, baseMembers: 200, p50: percentile(samples, 50), p99: percentile(samples, 99), max: Math.max(...samples) };
  } finally {
    kw.close();
    await sb.destroy();
  }
}

export interface DeltaBySize {
  size: number;
  applyMsMedian: number;
  rawAddMsMedian: number;
  ratio: number;
}

/**
 * The driver alone on the real kernel (fresh namespace, no Consul): one-member delta applies on
 * sets of several sizes, against one raw `ipset add` into the same set from the same process.
 */
export function benchDeltaBySize(
  sizes: readonly number[] = [1_000, 10_000, 65_000],
  backend: 'iptables' | 'nft' = 'iptables',
): DeltaBySize[] {
  const ns = `befwt-${process.pid}-${Date.now().toString(16).slice(-6)}-delta`;
  spawnSync('ip', ['netns', 'add', ns]);
  try {
    const r = spawnSync(
      'ip',
      ['netns', 'exec', ns, process.execPath, join(ROOT, 'dist/bench/helpers/applyDelta.js'), backend, ...sizes.map(String)],
      { encoding: 'utf8' },
    );
    if (r.status !== 0) throw new Error(`applyDelta failed: ${r.stderr}`);
    const { sizes: results } = JSON.parse(r.stdout) as { sizes: { size: number; applyMs: number[]; rawMs: number[] }[] };
    return results.map((x) => {
      const applyMsMedian = percentile(x.applyMs, 50);
      const rawAddMsMedian = percentile(x.rawMs, 50);
      return { size: x.size, applyMsMedian, rawAddMsMedian, ratio: applyMsMedian / rawAddMsMedian };
    });
  } finally {
    spawnSync('ip', ['netns', 'del', ns]);
  }
}

export interface SingleChangeResult {
  setSize: number;
  applyMsMedian: number;
  applyMsRuns: number[];
  rawAddMsMedian: number;
  ratio: number;
  endToEndP50: number;
  endToEndMax: number;
}

/** One member added to a set of 65,000, twenty times. */
export async function benchSingleChange(setSize = 65_000, runs = 20): Promise<SingleChangeResult> {
  const sb = await Sandbox.create();
  const kw = new KernelWatch(sb.nodeNs);
  try {
    await sb.registerService({ name: 'big', port: 443, tags: ['befw', 'enforcing'] });
    const set = 'big_tcp_443';
    const pairs: KvPair[] = Array.from({ length: setSize }, (_, i) => ({
      key: `befw/$service$/${set}/198.18.${i >> 8}.${i & 255}`,
      value: '-1',
    }));
    await kvBulk(sb, pairs);
    const agent = startAgent(sb);
    await waitApplied(agent, (e) => Number(e.members) >= setSize, 120_000);
    const applyMs: number[] = [];
    const endToEnd: number[] = [];
    for (let i = 0; i < runs; i++) {
      const member = `203.0.113.${i + 10}`;
      const from = agent.events().length;
      const t0 = performance.timeOrigin + performance.now();
      await sb.kvPut(`befw/$service$/${set}/${member}`, '-1');
      endToEnd.push((await kw.until(set, member, true, 10_000)) - t0);
      const e = await waitApplied(agent, (x) => x.mode === 'delta' && x.added === 1, 10_000, from);
      applyMs.push((e.ms as { total: number }).total);
      await sleep(200);
    }
    const raw = timeInNs(sb.nodeNs, runs, ['--vary', 'ipset', 'add', set, '198.51.100.{i}']);
    await agent.stop();
    const applyMsMedian = percentile(applyMs, 50);
    const rawAddMsMedian = percentile(raw, 50);
    return {
      setSize,
      applyMsMedian,
      applyMsRuns: applyMs,
      rawAddMsMedian,
      ratio: applyMsMedian / rawAddMsMedian,
      endToEndP50: percentile(endToEnd, 50),
      endToEndMax: Math.max(...endToEnd),
    };
  } finally {
    kw.close();
    await sb.destroy();
  }
}

export interface ColdApplyResult {
  members: number;
  sets: number;
  agentSetsMs: number;
  agentTotalMs: number;
  rawRestoreMs: number;
  ratioSets: number;
  ratioTotal: number;
  /** Share of one core the idle agent used (integrity checks included). */
  idleCpuShare: number;
  /** Same with the default settings: quick checks only in the window. */
  idleCpuShareDefault: number;
  quickCheckMs: number;
  fullCheckMs: number;
  /** 7 s after the apply (the figure), and 2 s after it. */
  rssMb: number;
  rss2sMb: number;
  peakRssMb: number;
}

/**
 * 100 services with 1,000 members each, applied from scratch on one backend, against the raw tool
 * applying the same sets (`ipset restore` of the same sets; `nft -f` of the very text the agent
 * writes); then the idle agent's CPU (integrity checks) and its memory.
 */
export async function benchColdApply(backend: 'iptables' | 'nft' = 'iptables'): Promise<ColdApplyResult> {
  const sb = await Sandbox.create();
  // One KV query for the tree: 100 services' scoped prefixes open ~300 blocking queries at once,
  // more than a Consul dev agent serves per client (its http_max_conns_per_client is 200).
  const firewall = [`firewall=${backend}`, 'kv_watch=tree'];
  try {
    const now = Date.now();
    const { services, kv } = syntheticInputs(now);
    for (const s of services) await sb.registerService({ name: s.name, port: s.port, tags: [...s.tags] });
    await kvBulk(sb, kv);
    // The same sets and members as one raw file, applied in a fresh namespace, before the agent
    // runs (so neither competes with the other for the CPU).
    sb.writeFile(
      'befw.conf',
      [`services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, `state=${sb.dir}/state.bin`, ...firewall].join('\n'),
    );
    const planText = sb.befw(['plan', '-c', `${sb.dir}/befw.conf`, '--json']);
    if (planText.code !== 0) throw new Error(`befw plan failed: ${planText.stderr}`);
    const plan = JSON.parse(planText.stdout) as Plan;
    const file = join(sb.dir, backend === 'nft' ? 'raw.nft' : 'raw.restore');
    if (backend === 'nft') {
      writeFileSync(file, renderFull(plan, now).text);
    } else {
      const lines: string[] = [];
      for (const s of plan.sets) {
        lines.push(`create ${s.name} hash:net family ${s.family} maxelem ${s.maxelem}`);
        for (const m of s.members) lines.push(`add ${s.name} ${m}`);
      }
      writeFileSync(file, `${lines.join('\n')}\n`);
    }
    // Each run in a namespace of its own: the kernel frees a flushed table of 100,000 elements
    // in the background, and the next transaction in the same namespace would wait for it.
    const raw: number[] = [];
    for (let i = 0; i < 3; i++) {
      const rawNs = `${sb.nodeNs.slice(0, -4)}raw${i}`;
      spawnSync('ip', ['netns', 'add', rawNs]);
      try {
        if (backend === 'nft') raw.push(...timeInNs(rawNs, 1, ['nft', '-f', file]));
        else raw.push(...timeInNs(rawNs, 1, ['--stdin', file, 'ipset', 'restore']));
      } finally {
        spawnSync('ip', ['netns', 'del', rawNs]);
      }
    }
    const agent = startAgent(sb, ['integrity_full_interval=60', ...firewall]);
    const e = await waitApplied(agent, (x) => x.source === 'consul', 120_000);
    const ms = e.ms as { sets: number; total: number };
    const members = Number(e.members);

    await sleep(2000); // the post-apply work (state.bin, heap compaction) runs in this second
    const memEarly = rssOf(agent.proc.pid ?? 0);
    await sleep(Number(process.env.BENCH_SETTLE_MS ?? 5000));
    const mem = rssOf(agent.proc.pid ?? 0);
    // Idle CPU of the agent and the tools it runs, integrity checks included: every 3 s, and the
    // full member check every 60 s here (5 times the default rate), so 63 s hold 21 quick checks
    // and one full one.
    const pid = agent.proc.pid ?? 0;
    const cpu0 = treeCpuSeconds(pid);
    const wall0 = Date.now();
    await sleep(Number(process.env.BENCH_IDLE_MS ?? 63_000));
    const idleCpuShare = (treeCpuSeconds(pid) - cpu0) / ((Date.now() - wall0) / 1000);
    const checks = agent.events().filter((x) => x.event === 'integrity-check');
    await agent.stop();
    // The same node with the default settings (full member check every 300 s, so none in this
    // window): the agent restarts from state.bin, settles, and is measured for 30 s.
    const again = startAgent(sb, firewall);
    await waitApplied(again, (x) => x.source === 'consul' || x.source === 'saved', 120_000);
    await sleep(8000);
    const pid2 = again.proc.pid ?? 0;
    const cpu1 = treeCpuSeconds(pid2);
    const wall1 = Date.now();
    await sleep(Number(process.env.BENCH_IDLE_DEFAULT_MS ?? 30_000));
    const idleCpuShareDefault = (treeCpuSeconds(pid2) - cpu1) / ((Date.now() - wall1) / 1000);
    await again.stop();
    const rawRestoreMs = percentile(raw, 50);
    return {
      members,
      sets: plan.sets.length,
      agentSetsMs: ms.sets,
      agentTotalMs: ms.total,
      rawRestoreMs,
      ratioSets: ms.sets / rawRestoreMs,
      ratioTotal: ms.total / rawRestoreMs,
      rssMb: mem.rssMb,
      rss2sMb: memEarly.rssMb,
      idleCpuShare,
      idleCpuShareDefault,
      quickCheckMs: percentile(
        checks.filter((c) => c.members === false).map((c) => Number(c.ms)),
        50,
      ),
      fullCheckMs: percentile(
        checks.filter((c) => c.members === true).map((c) => Number(c.ms)),
        50,
      ),
      peakRssMb: mem.peakMb,
    };
  } finally {
    await sb.destroy();
  }
}
