/**
 * A plan set's members as nftables elements: hosts for the hash set, networks for the interval
 * set (see naming.ts), each with the second it leaves, written as an element timeout so the
 * kernel drops it then even if the agent is down.
 *
 * An interval set refuses overlapping elements, and the plan's networks may overlap (a /16 grant
 * and a /24 grant inside it, each with its own expiry). Overlapping networks are cut into
 * disjoint pieces; a piece stays while the last network covering it does, so the kernel holds,
 * at every moment until the next change, exactly the union of the live networks. Networks that
 * do not overlap (the usual case) are their own elements.
 */
import { formatV4, formatV6, parseNet } from '../../core/address.js';
import { rangeOf } from '../../core/protect.js';
import type { PlanSet, SetFamily } from '../../core/types.js';

/** Element text -> the Unix second it leaves, or null for never. */
export type Elements = ReadonlyMap<string, number | null>;

export function isHost(cidr: string, family: SetFamily): boolean {
  return cidr.endsWith(family === 'inet' ? '/32' : '/128');
}

/** A host member as nft prints it: the address without its /32 or /128. */
export function hostText(cidr: string): string {
  return cidr.slice(0, cidr.lastIndexOf('/'));
}

/**
 * Walks the members with the second each leaves (the plan keeps `expiring` in member order).
 * `pick` chooses hosts or networks.
 */
export function forEachMember(set: PlanSet, pick: 'hosts' | 'nets', fn: (cidr: string, at: number | null) => void): void {
  const e = set.expiring;
  const em = e?.members ?? [];
  const at = e?.at ?? [];
  let j = 0;
  for (const m of set.members) {
    if (isHost(m, set.family) !== (pick === 'hosts')) continue;
    while (j < em.length && (em[j] as string) < m) j++;
    fn(m, j < em.length && em[j] === m ? (at[j] ?? null) : null);
  }
}

interface Block {
  readonly lo: bigint;
  readonly hi: bigint;
  readonly text: string;
  readonly at: number | null;
}

const later = (a: number | null, b: number | null): number | null => (a === null || b === null ? null : Math.max(a, b));

function addrText(v: bigint, family: SetFamily): string {
  return family === 'inet' ? formatV4(Number(v)) : formatV6(v);
}

/** A disjoint piece as nft prints it: an address, a prefix when aligned, else a range. */
export function pieceText(lo: bigint, hi: bigint, family: SetFamily): string {
  if (lo === hi) return addrText(lo, family);
  const size = hi - lo + 1n;
  if ((size & (size - 1n)) === 0n && lo % size === 0n) {
    const bits = family === 'inet' ? 32 : 128;
    return `${addrText(lo, family)}/${bits - (size.toString(2).length - 1)}`;
  }
  return `${addrText(lo, family)}-${addrText(hi, family)}`;
}

/** The interval set's elements for a plan set's networks. */
export function netElements(set: PlanSet): Map<string, number | null> {
  const blocks: Block[] = [];
  forEachMember(set, 'nets', (cidr, at) => {
    const n = parseNet(cidr);
    if (!n.ok) return; // the plan only holds canonical networks
    const r = rangeOf({ family: n.value.family, cidr: n.value.cidr, prefix: n.value.prefix });
    blocks.push({ lo: r.lo, hi: r.hi, text: cidr, at });
  });
  blocks.sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : a.hi > b.hi ? -1 : a.hi < b.hi ? 1 : 0));
  let overlap = false;
  let reach = -1n;
  for (const b of blocks) {
    if (b.lo <= reach) overlap = true;
    if (b.hi > reach) reach = b.hi;
  }
  if (!overlap) return new Map(blocks.map((b) => [b.text, b.at]));
  return new Map(disjoint(blocks).map((p) => [pieceText(p.lo, p.hi, set.family), p.at]));
}

/**
 * Cuts blocks (sorted by start, widest first) into disjoint pieces at every block boundary;
 * each piece leaves with the last block covering it. Neighbouring pieces that leave together
 * are joined again, so a network inside a wider one with the same expiry disappears into it.
 */
function disjoint(blocks: readonly Block[]): { lo: bigint; hi: bigint; at: number | null }[] {
  const points = [...new Set(blocks.flatMap((b) => [b.lo, b.hi + 1n]))].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  const pieces: { lo: bigint; hi: bigint; at: number | null }[] = [];
  let active: Block[] = [];
  let next = 0;
  for (let i = 0; i + 1 < points.length; i++) {
    const lo = points[i] as bigint;
    const hi = (points[i + 1] as bigint) - 1n;
    while (next < blocks.length && (blocks[next] as Block).lo <= lo) active.push(blocks[next++] as Block);
    active = active.filter((b) => b.hi >= lo);
    if (active.length === 0) continue;
    let at: number | null = (active[0] as Block).at;
    for (const b of active) at = later(at, b.at);
    const last = pieces[pieces.length - 1];
    if (last !== undefined && last.hi + 1n === lo && last.at === at) last.hi = hi;
    else pieces.push({ lo, hi, at });
  }
  // Joined pieces that are not one aligned prefix are written as ranges: nft takes both.
  return pieces;
}

/**
 * A timeout as nft lists one (`2d3h4m5s6ms`): nft 1.0.6 refuses a bare millisecond count of
 * 10^8 or more ("value too large"), so a grant of more than about 27 h written as `Nms` would
 * fail the whole transaction.
 */
export function nftDuration(ms: number): string {
  const units: readonly [string, number][] = [
    ['d', 86_400_000],
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
    ['ms', 1],
  ];
  let rest = Math.max(0, Math.floor(ms));
  let out = '';
  for (const [unit, size] of units) {
    const n = Math.floor(rest / size);
    rest -= n * size;
    if (n > 0) out += `${n}${unit}`;
  }
  return out === '' ? '0ms' : out;
}

/** An element with its timeout (`198.51.100.7 timeout 1h2s`), or null when it is already due. */
export function elementWithTimeout(text: string, at: number | null, nowMs: number): string | null {
  if (at === null) return text;
  const ms = at * 1000 - nowMs;
  return ms <= 0 ? null : `${text} timeout ${nftDuration(ms)}`;
}

/**
 * An element as `nft -j list` gives it, as text nft would print and whether it carries a
 * timeout: "198.51.100.7", {"prefix": {...}}, {"range": [...]}, {"elem": {"val": ..., "timeout": n}}.
 */
export function jsonElement(e: unknown): { text: string; timeout: boolean } | null {
  if (typeof e === 'string') return { text: e, timeout: false };
  if (typeof e !== 'object' || e === null) return null;
  const o = e as Record<string, unknown>;
  if ('elem' in o && typeof o.elem === 'object' && o.elem !== null) {
    const inner = o.elem as Record<string, unknown>;
    const v = jsonElement(inner.val);
    return v === null ? null : { text: v.text, timeout: typeof inner.timeout === 'number' };
  }
  if ('prefix' in o && typeof o.prefix === 'object' && o.prefix !== null) {
    const p = o.prefix as { addr?: unknown; len?: unknown };
    return typeof p.addr === 'string' && typeof p.len === 'number' ? { text: `${p.addr}/${p.len}`, timeout: false } : null;
  }
  if ('range' in o && Array.isArray(o.range)) {
    const [a, b] = o.range as unknown[];
    return typeof a === 'string' && typeof b === 'string' ? { text: `${a}-${b}`, timeout: false } : null;
  }
  return null;
}

/**
 * The same element in our canonical spelling, for when the kernel's and ours differ only in how
 * an address is written (glibc prints `::1.2.3.4` where befw writes `::102:304`).
 */
export function canonicalElement(text: string, family: SetFamily): string {
  const dash = text.indexOf('-');
  if (dash > 0) {
    const a = parseNet(text.slice(0, dash));
    const b = parseNet(text.slice(dash + 1));
    if (!a.ok || !b.ok) return text;
    return pieceText(rangeOf(a.value).lo, rangeOf(b.value).lo, family);
  }
  const n = parseNet(text);
  if (!n.ok) return text;
  const full = family === 'inet' ? 32 : 128;
  return n.value.prefix === full ? hostText(n.value.cidr) : n.value.cidr;
}
