/**
 * Protected paths: what no input may cut a node off from. One rule for the whole system (compiler,
 * CLI and reactor all call it):
 *
 *   - addresses that can never be meant as a client or a ban are refused outright: loopback,
 *     link-local, unspecified and multicast (`refusedAddress`);
 *   - protected networks are clipped out of every deny (`clipNet`): loopback, the management
 *     networks (`set.rules_allow=`), the `protect=` list and the Consul peers the local agent
 *     reports. A wide deny keeps what remains of it, so `0.0.0.0/0` still denies the rest of the
 *     world, but never the node's own control plane.
 *
 * Why clip and not just accept first: the chain does accept protected paths ahead of every deny,
 * but a deny that has no effect must not be shown as active (status, show), and a ban of a
 * Consul server's address must not cut its non-Consul ports either, which the accept rules for
 * Consul's own ports would not cover.
 */
import { type Family, type Net, parseNet } from './address.js';

/** Consul's own traffic between this node and its peers, as the local agent reports it. */
export interface ConsulPeers {
  /** Addresses of the LAN members and servers (canonical, no prefix). */
  readonly addrs: readonly string[];
  /** Ports Consul talks on: server RPC, serf LAN and WAN (TCP). */
  readonly tcpPorts: readonly number[];
  /** Serf LAN and WAN (UDP). */
  readonly udpPorts: readonly number[];
}

export const NO_PEERS: ConsulPeers = { addrs: [], tcpPorts: [], udpPorts: [] };

const net = (cidr: string): Net => {
  const r = parseNet(cidr);
  if (!r.ok) throw new Error(`bad built-in network ${cidr}`);
  return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
};

export const LOOPBACK: readonly Net[] = [net('127.0.0.0/8'), net('::1/128')];

/** Ranges no grant or deny may name: [net, why]. A wider network that merely contains one is fine. */
const REFUSED: readonly (readonly [Net, string])[] = [
  [net('127.0.0.0/8'), 'loopback'],
  [net('::1/128'), 'loopback'],
  [net('0.0.0.0/32'), 'the unspecified address'],
  [net('::/128'), 'the unspecified address'],
  [net('169.254.0.0/16'), 'link-local'],
  [net('fe80::/10'), 'link-local'],
  [net('224.0.0.0/4'), 'multicast'],
  [net('ff00::/8'), 'multicast'],
];

interface Range {
  readonly family: Family;
  readonly lo: bigint;
  readonly hi: bigint;
}

function bits(family: Family): number {
  return family === 4 ? 32 : 128;
}

function v4Value(text: string): bigint {
  return text.split('.').reduce((acc, o) => (acc << 8n) | BigInt(o), 0n);
}

function v6Value(text: string): bigint {
  const [head = '', tail] = text.split('::');
  const groups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  const left = groups(head);
  const right = tail === undefined ? [] : groups(tail);
  const all = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return all.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

/** The first and last address of a canonical network. */
export function rangeOf(n: Net): Range {
  const addr = n.cidr.slice(0, n.cidr.indexOf('/'));
  const lo = n.family === 4 ? v4Value(addr) : v6Value(addr);
  const host = BigInt(bits(n.family) - n.prefix);
  return { family: n.family, lo, hi: lo + (1n << host) - 1n };
}

function formatAddr(family: Family, v: bigint): string {
  if (family === 4) return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 255n)).join('.');
  const groups: string[] = [];
  for (let i = 7; i >= 0; i--) groups.push(((v >> BigInt(i * 16)) & 0xffffn).toString(16));
  return groups.join(':');
}

/** The smallest list of networks covering [lo, hi] exactly. */
function rangeToNets(family: Family, lo: bigint, hi: bigint): Net[] {
  const width = bits(family);
  const out: Net[] = [];
  let cur = lo;
  while (cur <= hi) {
    let size = 0;
    // Grow the block while it stays aligned on cur and inside the range.
    while (size < width && (cur & ((1n << BigInt(size + 1)) - 1n)) === 0n && cur + (1n << BigInt(size + 1)) - 1n <= hi) size++;
    const r = parseNet(`${formatAddr(family, cur)}/${width - size}`);
    if (r.ok) out.push({ family, cidr: r.value.cidr, prefix: r.value.prefix });
    cur += 1n << BigInt(size);
  }
  return out;
}

function overlaps(a: Range, b: Range): boolean {
  return a.family === b.family && a.lo <= b.hi && b.lo <= a.hi;
}

/** Why an address or network can never be meant (loopback, link-local, ...), or null. */
export function refusedAddress(n: Net): string | null {
  const r = rangeOf(n);
  for (const [bad, why] of REFUSED) {
    const b = rangeOf(bad);
    if (b.family === r.family && r.lo >= b.lo && r.hi <= b.hi) return why;
  }
  return null;
}

export interface Clip {
  /** What remains of the network once protected ranges are taken out (empty: all of it was protected). */
  readonly kept: readonly Net[];
  /** The protected networks it touched, as given. */
  readonly hit: readonly Net[];
}

/**
 * A set of networks, merged into disjoint sorted ranges per family, so that clipping one member
 * costs a binary search however many peers a large datacenter has.
 */
export class NetworkSet {
  private readonly ranges: Record<Family, Range[]> = { 4: [], 6: [] };

  constructor(readonly nets: readonly Net[]) {
    for (const family of [4, 6] as const) {
      const sorted = nets
        .filter((n) => n.family === family)
        .map(rangeOf)
        .sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
      const merged: Range[] = [];
      for (const r of sorted) {
        const last = merged[merged.length - 1];
        if (last !== undefined && r.lo <= last.hi + 1n) merged[merged.length - 1] = { ...last, hi: r.hi > last.hi ? r.hi : last.hi };
        else merged.push(r);
      }
      this.ranges[family] = merged;
    }
  }

  /** Ranges that overlap r, in order. */
  private overlapping(r: Range): Range[] {
    const xs = this.ranges[r.family];
    let lo = 0;
    let hi = xs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((xs[mid] as Range).hi < r.lo) lo = mid + 1;
      else hi = mid;
    }
    const out: Range[] = [];
    for (let i = lo; i < xs.length && (xs[i] as Range).lo <= r.hi; i++) out.push(xs[i] as Range);
    return out;
  }

  /** Takes every range of this set out of `n`. Untouched networks come back as `{kept: [n], hit: []}`. */
  clip(n: Net): Clip {
    const r = rangeOf(n);
    const holes = this.overlapping(r);
    if (holes.length === 0) return { kept: [n], hit: [] };
    const kept: Net[] = [];
    let cur = r.lo;
    for (const h of holes) {
      if (h.lo > cur) kept.push(...rangeToNets(r.family, cur, h.lo - 1n));
      cur = h.hi + 1n;
      if (cur > r.hi) break;
    }
    if (cur <= r.hi) kept.push(...rangeToNets(r.family, cur, r.hi));
    const hit = this.nets.filter((p) => overlaps(r, rangeOf(p)));
    return { kept, hit };
  }

  /** True when one range of this set holds all of `n` (a deny shadowed by an allow). */
  covers(n: Net): boolean {
    const r = rangeOf(n);
    return this.overlapping(r).some((h) => h.lo <= r.lo && h.hi >= r.hi);
  }
}

/** Every network a deny may not touch on this node. */
export function protectedNetworks(managementNets: readonly Net[], protect: readonly Net[], peers: ConsulPeers): Net[] {
  const out: Net[] = [...LOOPBACK, ...managementNets, ...protect];
  for (const a of peers.addrs) {
    const r = parseNet(a);
    if (r.ok) out.push({ family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix });
  }
  return out;
}

/**
 * Where each node publishes its own protected networks (management networks and `protect=`) so
 * that the reactor refuses to ban them too: `befw-protect/<dc>/<node>` = `{"v":1,"nets":[...]}`.
 * BEFW agents read only `befw/`, so the key is invisible to them.
 */
export const PROTECT_KV_ROOT = 'befw-protect/';

export function protectKvKey(dc: string, node: string): string {
  return `${PROTECT_KV_ROOT}${dc}/${node}`;
}

export function encodeProtected(nets: readonly Net[]): string {
  return JSON.stringify({ v: 1, nets: [...new Set(nets.map((n) => n.cidr))].sort() });
}
