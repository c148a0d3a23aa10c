/**
 * The fan-out benchmark's world, pure and deterministic: a fleet of 2,000 node names over two
 * datacenters (the first N of them are the simulated agents), 200 services, 50 aliases, and the
 * ~101,000 KV keys of BEFW's layout at the three scopes:
 *
 *   per service (200 x 500 = 100,000 keys)
 *     300 world    befw/$service$/<set>/<addr>           (every 4th service: one of them is $grpK$)
 *     100 dc       befw/$service$/<dc>/<set>/<addr>       (50 per datacenter)
 *     100 node     befw/$service$/<dc>/<node>/<set>/<addr> (2 nodes that run it, 50 each)
 *   aliases        50 x 20 members: 16 world befw/$alias$/$grpK$/<addr>, 2 per dc
 *                  befw/$alias$/<dc>/$grpK$/<addr>; every 10th nests the previous alias
 *   static sets    rules_allow 20 world; rules_deny 100 world + 10 per dc; rules_allow at
 *                  node scope for 5 nodes
 *
 * Node i is `<dc>-node<i>` in dc1 (i = 0, 1, 4, 5, ...) or dc2 (2, 3, 6, 7, ...) and runs 1 + i % 3 services, so each
 * service runs on about 1 % of the fleet (5 agents at N = 500, in both datacenters). Node-scope
 * keys name 2 nodes per service: most node prefixes are empty, as in a real fleet. Addresses come
 * from the benchmarking range 198.18.0.0/15; the measured writes use documentation addresses.
 */
import { RULES_ALLOW, RULES_DENY } from '../../src/core/compile.js';
import type { KvPair, NodeIdentity } from '../../src/core/types.js';
import type { WatchedSet } from '../../src/core/watchScope.js';

export const FLEET_NODES = 2000;
export const SERVICES = 200;
export const ALIASES = 50;
export const DCS = ['dc1', 'dc2'] as const;

const pad = (n: number, w: number): string => String(n).padStart(w, '0');

/**
 * Node names start with their datacenter (`dc1-node0005`), so BEFW's local datacenter (the name up
 * to its first `-`) is the Consul one and adds no prefixes. `BENCH_FLEET_NAMES=site` names them
 * after a site that is not the Consul datacenter (`site1-node0005` in dc1): every agent then also
 * watches `befw/<kind>/site1/<set>/` and `befw/<kind>/site1/<node>/`, which no key here uses.
 */
const SITE_NAMES = process.env.BENCH_FLEET_NAMES === 'site';

export function nodeOf(i: number): NodeIdentity {
  const d = (i >> 1) % 2;
  const dc = DCS[d] as string;
  return { name: `${SITE_NAMES ? `site${d + 1}` : dc}-node${pad(i, 4)}`, dc };
}

export function setOf(service: number): string {
  return `svc${pad(service, 3)}_tcp_${10000 + service}`;
}

export function aliasOf(k: number): string {
  return `$grp${pad(k, 2)}$`;
}

/** The services node i runs: 1 to 3, spread evenly (37 and 200 are coprime). */
export function servicesOf(i: number): number[] {
  const out: number[] = [];
  for (let t = 0; t <= i % 3; t++) out.push((i * 37 + t * 71) % SERVICES);
  return out;
}

/** What node i's agent watches for: its services' sets and the built-in static sets. */
export function watchedSetsOf(i: number): WatchedSet[] {
  return [
    ...servicesOf(i).map((s): WatchedSet => ({ kind: '$service$', name: setOf(s) })),
    { kind: '$ipset$', name: RULES_ALLOW },
    { kind: '$ipset$', name: RULES_DENY },
  ];
}

/** Nodes (of the first `n`) that run `service`. */
export function runnersOf(service: number, n: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) if (servicesOf(i).includes(service)) out.push(i);
  return out;
}

/** A distinct address from 198.18.0.0/15 for every n < 131,072; every 10th is IPv6. */
function addr(n: number): string {
  if (n % 10 === 9) return `2001:db8:${(n >> 16).toString(16)}:${(n & 0xffff).toString(16)}::1`;
  return `198.${18 + ((n >> 16) & 1)}.${(n >> 8) & 255}.${n & 255}`;
}

/** The whole tree, ~101,000 keys. `nowSec` sets the expiry of the third of entries that expire. */
export function fleetKv(nowSec: number): KvPair[] {
  const kv: KvPair[] = [];
  const later = String(nowSec + 30 * 86400);
  let n = 0;
  const next = (): string => addr(n++);
  const value = (): string => (n % 3 === 0 ? later : '-1');
  const runnersAll: number[][] = Array.from({ length: SERVICES }, () => []);
  for (let i = 0; i < FLEET_NODES; i++) for (const s of servicesOf(i)) runnersAll[s]?.push(i);

  for (let s = 0; s < SERVICES; s++) {
    const set = setOf(s);
    for (let c = 0; c < 300; c++) {
      if (c === 0 && s % 4 === 0) kv.push({ key: `befw/$service$/${set}/${aliasOf(s / 4)}`, value: '-1' });
      else kv.push({ key: `befw/$service$/${set}/${next()}`, value: value() });
    }
    for (const dc of DCS) for (let c = 0; c < 50; c++) kv.push({ key: `befw/$service$/${dc}/${set}/${next()}`, value: value() });
    const runners = runnersAll[s] ?? [];
    // Two nodes that run the service, from the middle of the fleet's list of its runners.
    for (const i of [runners[1], runners[Math.floor(runners.length / 2)]]) {
      if (i === undefined) continue;
      const node = nodeOf(i);
      for (let c = 0; c < 50; c++) kv.push({ key: `befw/$service$/${node.dc}/${node.name}/${set}/${next()}`, value: value() });
    }
  }
  for (let k = 0; k < ALIASES; k++) {
    const a = aliasOf(k);
    for (let c = 0; c < 16; c++) {
      if (c === 0 && k % 10 === 9) kv.push({ key: `befw/$alias$/${a}/${aliasOf(k - 1)}`, value: '-1' });
      else kv.push({ key: `befw/$alias$/${a}/${next()}`, value: value() });
    }
    for (const dc of DCS) for (let c = 0; c < 2; c++) kv.push({ key: `befw/$alias$/${dc}/${a}/${next()}`, value: value() });
  }
  for (let c = 0; c < 20; c++) kv.push({ key: `befw/$ipset$/${RULES_ALLOW}/${next()}`, value: '-1' });
  for (let c = 0; c < 100; c++) kv.push({ key: `befw/$ipset$/${RULES_DENY}/${next()}`, value: value() });
  for (const dc of DCS) for (let c = 0; c < 10; c++) kv.push({ key: `befw/$ipset$/${dc}/${RULES_DENY}/${next()}`, value: value() });
  for (const i of [3, 300, 777, 1200, 1901]) {
    const node = nodeOf(i);
    kv.push({ key: `befw/$ipset$/${node.dc}/${node.name}/${RULES_ALLOW}/${next()}`, value: '-1' });
  }
  return kv;
}

export type WriteKind = 'world' | 'dc' | 'node' | 'alias' | 'rules_deny';
export const WRITE_KINDS: readonly WriteKind[] = ['world', 'dc', 'node', 'alias', 'rules_deny'];

export interface WriteTarget {
  readonly kind: WriteKind;
  /** What the table calls it. */
  readonly label: string;
  /** The prefix the written key lands in (what an agent that needs it lists). */
  readonly prefix: string;
  /** The key of repetition `rep` (the same keys in every phase; values differ, so each write is a change). */
  key(rep: number): string;
  /** Simulated agents (of the first n) whose data the write changes. */
  affected(n: number): number[];
}

/**
 * The best service to write to among `candidates`: of the first 50 nodes, at least one in each
 * datacenter runs it (so every N has agents it concerns in both), and as many as possible of the
 * first 500 do.
 */
function pick(candidates: readonly number[]): number {
  let best = candidates[0] ?? 0;
  let score = -1;
  for (const s of candidates) {
    const few = runnersOf(s, 50);
    if (!DCS.every((dc) => few.some((i) => nodeOf(i).dc === dc))) continue;
    const x = runnersOf(s, 500).length * 100 + few.length;
    if (x > score) [best, score] = [s, x];
  }
  return best;
}

/** The service whose clients are written. */
export function chosenService(): number {
  return pick(Array.from({ length: SERVICES }, (_, s) => s));
}

/** The alias written to: the one referenced by the best service that references one (a multiple of 4). */
export function chosenAlias(): number {
  return pick(Array.from({ length: SERVICES / 4 }, (_, k) => k * 4)) / 4;
}

export function writeTargets(): WriteTarget[] {
  const s = chosenService();
  const set = setOf(s);
  const nodeIdx = runnersOf(s, 50).find((i) => nodeOf(i).dc === 'dc1');
  if (nodeIdx === undefined) throw new Error('fleet layout: no node of dc1 among the first 50 runs the chosen service');
  const node = nodeOf(nodeIdx);
  const k = chosenAlias();
  const aliasService = k * 4;
  // Nested aliases: every 10th includes the previous one, so the referrers of alias k are those
  // of k and of k + 1 when k + 1 is a 10th.
  const aliasServices = [aliasService, ...((k + 1) % 10 === 9 ? [(k + 1) * 4] : [])];
  const doc = (rep: number): string => `203.0.113.${(rep % 250) + 1}`;
  return [
    {
      kind: 'world',
      label: `world: client of ${set}`,
      prefix: `befw/$service$/${set}/`,
      key: (rep) => `befw/$service$/${set}/${doc(rep)}`,
      affected: (n) => runnersOf(s, n),
    },
    {
      kind: 'dc',
      label: `dc1: client of ${set}`,
      prefix: `befw/$service$/dc1/${set}/`,
      key: (rep) => `befw/$service$/dc1/${set}/${doc(rep)}`,
      affected: (n) => runnersOf(s, n).filter((i) => nodeOf(i).dc === 'dc1'),
    },
    {
      kind: 'node',
      label: `node ${node.name}: client of ${set}`,
      prefix: `befw/$service$/${node.dc}/${node.name}/`,
      key: (rep) => `befw/$service$/${node.dc}/${node.name}/${set}/${doc(rep)}`,
      affected: (n) => (nodeIdx < n ? [nodeIdx] : []),
    },
    {
      kind: 'alias',
      label: `alias ${aliasOf(k)} member`,
      prefix: `befw/$alias$/${aliasOf(k)}/`,
      key: (rep) => `befw/$alias$/${aliasOf(k)}/${doc(rep)}`,
      affected: (n) => [...new Set(aliasServices.flatMap((x) => runnersOf(x, n)))].sort((a, b) => a - b),
    },
    {
      kind: 'rules_deny',
      label: 'world: rules_deny entry',
      prefix: `befw/$ipset$/${RULES_DENY}/`,
      key: (rep) => `befw/$ipset$/${RULES_DENY}/198.51.100.${(rep % 250) + 1}`,
      affected: (n) => Array.from({ length: n }, (_, i) => i),
    },
  ];
}
