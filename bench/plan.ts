/**
 * Compile cost: 100 services with 100,000 clients in total (1,000 each, a tenth of them through
 * aliases, some IPv6, some expiring; addresses from the benchmarking range 198.18.0.0/15), compiled in-process, and `befw plan --json` run against a
 * real Consul dev agent holding the same keys.
 */
import { performance } from 'node:perf_hooks';
import { compile } from '../src/core/compile.js';
import type { AgentService, KvPair, Snapshot } from '../src/core/types.js';
import { Sandbox } from '../test/helpers/sandbox.js';

export const SERVICES = 100;
export const CLIENTS_PER_SERVICE = 1000;

export function syntheticInputs(now: number): { services: AgentService[]; kv: KvPair[] } {
  const services: AgentService[] = [];
  const kv: KvPair[] = [];
  const future = String(Math.floor(now / 1000) + 86400);
  for (let s = 0; s < SERVICES; s++) {
    services.push({
      id: `svc${s}`,
      name: `svc${s}`,
      port: 10000 + s,
      tags: ['befw', s % 2 === 0 ? 'enforcing' : 'default', `${20000 + s}/tcp`],
    });
    const set = `svc${s}_tcp_${10000 + s}`;
    for (let c = 0; c < CLIENTS_PER_SERVICE; c++) {
      const n = s * CLIENTS_PER_SERVICE + c;
      const addr =
        c % 10 === 9
          ? `2001:db8:${(n >> 16).toString(16)}:${(n & 0xffff).toString(16)}::1`
          : `198.${18 + ((n >> 16) & 1)}.${(n >> 8) & 255}.${n & 255}`;
      const value = c % 3 === 0 ? future : '-1';
      if (c % 10 === 5) {
        kv.push({ key: `befw/$alias$/$grp${s}$/${addr}`, value });
      } else {
        kv.push({ key: `befw/$service$/${set}/${addr}`, value });
      }
    }
    kv.push({ key: `befw/$service$/${set}/$grp${s}$`, value: '-1' });
  }
  return { services, kv };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? NaN;
}

export interface PlanBench {
  clients: number;
  compileMsMedian: number;
  compileMsRuns: number[];
  cliMsMedian: number | null;
  cliMsRuns: number[];
}

export async function benchPlan(withConsul: boolean): Promise<PlanBench> {
  const now = Date.now();
  const { services, kv } = syntheticInputs(now);
  const snapshot: Snapshot = {
    node: { name: 'node1', dc: 'dc1' },
    agentServices: services,
    fileServices: [],
    kv,
    ipsetFiles: [],
    inputDiagnostics: [],
  };
  const runs: number[] = [];
  let members = 0;
  for (let i = 0; i < 7; i++) {
    const t0 = performance.now();
    const plan = compile(snapshot, { customSets: [], managementNets: [] }, now);
    runs.push(performance.now() - t0);
    members = plan.sets.reduce((n, s) => n + s.members.length, 0);
  }
  if (members !== SERVICES * CLIENTS_PER_SERVICE)
    throw new Error(`compiled ${members} members, expected ${SERVICES * CLIENTS_PER_SERVICE}`);

  const cliRuns: number[] = [];
  if (withConsul) {
    const sb = await Sandbox.create();
    try {
      for (const s of services) await sb.registerService({ name: s.name, port: s.port, tags: [...s.tags] });
      // Consul's transaction endpoint takes at most 64 operations at a time.
      for (let i = 0; i < kv.length; i += 64) {
        const ops = kv
          .slice(i, i + 64)
          .map((p) => ({ KV: { Verb: 'set', Key: p.key, Value: Buffer.from(p.value ?? '').toString('base64') } }));
        const r = await sb.consul('PUT', '/v1/txn', JSON.stringify(ops));
        if (r.status !== 200) throw new Error(`txn: ${r.status} ${r.body.slice(0, 200)}`);
      }
      const config = sb.writeFile(
        'befw.conf',
        [`services=${sb.dir}/none`, `ipsets=${sb.dir}/none`, `state=${sb.dir}/state.bin`].join('\n'),
      );
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        const r = sb.befw(['plan', '-c', config, '--json']);
        cliRuns.push(performance.now() - t0);
        if (r.code !== 0) throw new Error(`befw plan failed: ${r.stderr}`);
        const plan = JSON.parse(r.stdout) as { sets: { members: string[] }[] };
        const n = plan.sets.reduce((acc, s) => acc + s.members.length, 0);
        if (n !== SERVICES * CLIENTS_PER_SERVICE) throw new Error(`befw plan printed ${n} members`);
      }
    } finally {
      await sb.destroy();
    }
  }
  return {
    clients: members,
    compileMsMedian: median(runs),
    compileMsRuns: runs,
    cliMsMedian: cliRuns.length ? median(cliRuns) : null,
    cliMsRuns: cliRuns,
  };
}
