/**
 * Membership tests of addresses in lists of networks (ignore lists, trusted proxies, allowed
 * devices, management networks). Addresses are compared as numbers, never as text, so
 * `::ffff:198.51.100.7`, `198.51.100.7` and a /24 around it agree. Parsing goes through the
 * pure core's strict parser; a list is built once and then asked many times.
 */
import { type Family, type Net, parseIp, parseNet } from './address.js';

interface V4Net {
  readonly base: number;
  readonly mask: number;
  readonly index: number;
}

interface V6Net {
  readonly base: bigint;
  readonly mask: bigint;
  readonly index: number;
}

const ALL_V6 = (1n << 128n) - 1n;

export class NetSet {
  // IPv4 as plain numbers: a membership test runs per event, and BigInt arithmetic is slow.
  private readonly v4: readonly V4Net[];
  private readonly v6: readonly V6Net[];

  constructor(readonly cidrs: readonly Net[]) {
    const v4: V4Net[] = [];
    const v6: V6Net[] = [];
    cidrs.forEach((n, index) => {
      const ip = parseIp(n.cidr.slice(0, n.cidr.indexOf('/')));
      if (!ip.ok) throw new Error(`NetSet: ${n.cidr} is not canonical`);
      if (n.family === 4) {
        const mask = n.prefix === 0 ? 0 : (0xffffffff << (32 - n.prefix)) >>> 0;
        v4.push({ base: ((ip.value.v4 ?? 0) & mask) >>> 0, mask, index });
      } else {
        const mask = n.prefix === 0 ? 0n : (ALL_V6 << BigInt(128 - n.prefix)) & ALL_V6;
        v6.push({ base: (ip.value.v6 ?? 0n) & mask, mask, index });
      }
    });
    this.v4 = v4;
    this.v6 = v6;
  }

  /** From text; throws on the first bad entry (callers validate config text before this). */
  static parse(texts: readonly string[]): NetSet {
    return new NetSet(
      texts.map((t) => {
        const r = parseNet(t);
        if (!r.ok) throw new Error(`"${t}": ${r.error}`);
        return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
      }),
    );
  }

  get size(): number {
    return this.cidrs.length;
  }

  /** The first network holding `address` (text), or null; a malformed address is in no network. */
  find(address: string): string | null {
    if (this.cidrs.length === 0) return null;
    const ip = parseIp(address);
    if (!ip.ok) return null;
    if (ip.value.family === 4) {
      const value = ip.value.v4 ?? 0;
      for (const n of this.v4) if ((value & n.mask) >>> 0 === n.base) return this.cidrs[n.index]?.cidr ?? null;
      return null;
    }
    const value = ip.value.v6 ?? 0n;
    for (const n of this.v6) if ((value & n.mask) === n.base) return this.cidrs[n.index]?.cidr ?? null;
    return null;
  }

  has(address: string): boolean {
    return this.find(address) !== null;
  }
}

/**
 * Canonical text of a single address (RFC 5952 for IPv6, IPv4-mapped IPv6 as IPv4), or null when
 * the text is not exactly one address. Everything that names an attacker goes through here.
 */
export function canonicalIp(text: string): string | null {
  if (text.length === 0 || text.length > 45) return null;
  const r = parseNet(text);
  if (!r.ok || text.includes('/')) return null;
  const slash = r.value.cidr.indexOf('/');
  return r.value.cidr.slice(0, slash);
}

/**
 * canonicalIp with a memory: attackers repeat, and parsing an address is a good part of the
 * per-line cost at 100,000 lines a second. Bounded: the memory is dropped when it fills.
 */
export class CanonicalIpCache {
  private readonly memo = new Map<string, string | null>();

  constructor(private readonly max = 65536) {}

  get(text: string): string | null {
    const hit = this.memo.get(text);
    if (hit !== undefined) return hit;
    const value = canonicalIp(text);
    if (this.memo.size >= this.max) this.memo.clear();
    this.memo.set(text, value);
    return value;
  }
}

export function familyOf(address: string): Family | null {
  const r = parseIp(address);
  return r.ok ? r.value.family : null;
}

/**
 * Addresses no reaction may target, whatever a log line says: "this host", loopback, link-local,
 * multicast and broadcast. Banning 127.0.0.1 fleet-wide would cut every node off from itself;
 * a forged or local log line must never get that far.
 */
export const NEVER_TARGETED = NetSet.parse([
  '0.0.0.0/8',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '224.0.0.0/4',
  '255.255.255.255/32',
  '::/128',
  '::1/128',
  'fe80::/10',
  'ff00::/8',
]);
