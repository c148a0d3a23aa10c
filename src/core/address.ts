/**
 * Strict parsing of IPv4/IPv6 addresses and networks into a canonical text form.
 *
 * Everything that ends up in an `ipset restore` script or a rule comes through here, so the
 * parser accepts only what it can prove is an address: no leading zeros in IPv4 octets (inet_aton
 * would read them as octal), no zone ids, no whitespace, no shorthand like `10.1`. The canonical
 * output (RFC 5952 for IPv6, network address with host bits cleared) makes de-duplication and
 * plan comparison a string comparison.
 */

export type Family = 4 | 6;

export interface Net {
  readonly family: Family;
  /** Canonical text: `198.51.100.0/24`, `198.51.100.7/32`, `2001:db8::/32`. */
  readonly cidr: string;
  readonly prefix: number;
}

export type ParseResult<T> = { ok: true; value: T } | { ok: false; error: string };

const V4_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

function parseV4(text: string): number | string {
  const parts = text.split('.');
  if (parts.length !== 4) return 'IPv4 address needs four dot-separated numbers';
  let value = 0;
  for (const part of parts) {
    if (!V4_OCTET.test(part)) return `bad IPv4 octet "${part}"`;
    const n = Number(part);
    if (n > 255) return `IPv4 octet ${n} is above 255`;
    value = value * 256 + n;
  }
  return value;
}

export function formatV4(value: number): string {
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;

function parseV6(text: string): bigint | string {
  if (text.length > 45) return 'IPv6 address too long';
  let head = text;
  let v4Tail: number | undefined;
  const lastColon = text.lastIndexOf(':');
  if (lastColon >= 0 && text.indexOf('.', lastColon) >= 0) {
    const tail = parseV4(text.slice(lastColon + 1));
    if (typeof tail === 'string') return `bad embedded IPv4: ${tail}`;
    v4Tail = tail;
    // Keep a "::" that ends right before the IPv4 tail ("::1.2.3.4"), drop a lone separator.
    head = text.slice(0, lastColon + 1);
    if (!head.endsWith('::')) head = head.slice(0, -1);
  }
  const want = v4Tail === undefined ? 8 : 6;
  const doubles = head.split('::');
  if (doubles.length > 2) return 'IPv6 address has more than one "::"';
  const splitGroups = (s: string): string[] => (s === '' ? [] : s.split(':'));
  let groups: string[];
  if (doubles.length === 2) {
    const left = splitGroups(doubles[0] ?? '');
    const right = splitGroups(doubles[1] ?? '');
    const missing = want - left.length - right.length;
    if (missing < 1) return 'IPv6 "::" stands for no group';
    groups = [...left, ...Array<string>(missing).fill('0'), ...right];
  } else {
    groups = splitGroups(head);
    if (groups.length !== want) return `IPv6 address needs ${want} groups`;
  }
  let value = 0n;
  for (const g of groups) {
    if (!V6_GROUP.test(g)) return `bad IPv6 group "${g}"`;
    value = (value << 16n) | BigInt(parseInt(g, 16));
  }
  if (v4Tail !== undefined) value = (value << 32n) | BigInt(v4Tail);
  return value;
}

export function formatV6(value: bigint): string {
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((value >> BigInt(i * 16)) & 0xffffn));
  // RFC 5952: compress the longest run (>= 2) of zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  const left = hex.slice(0, bestStart).join(':');
  const right = hex.slice(bestStart + bestLen).join(':');
  return `${left}::${right}`;
}

const V4_MAPPED_PREFIX = 0xffffn << 32n;

/** Parses one address (no prefix). IPv4-mapped IPv6 addresses become IPv4: the kernel sees them so. */
export function parseIp(text: string): ParseResult<{ family: Family; v4?: number; v6?: bigint }> {
  if (text.length === 0) return { ok: false, error: 'empty address' };
  if (/[^0-9a-fA-F.:]/.test(text)) return { ok: false, error: `"${printable(text)}" is not an IP address` };
  if (text.includes(':')) {
    const v6 = parseV6(text);
    if (typeof v6 === 'string') return { ok: false, error: v6 };
    if (v6 >> 32n === V4_MAPPED_PREFIX >> 32n) return { ok: true, value: { family: 4, v4: Number(v6 & 0xffffffffn) } };
    return { ok: true, value: { family: 6, v6 } };
  }
  const v4 = parseV4(text);
  if (typeof v4 === 'string') return { ok: false, error: v4 };
  return { ok: true, value: { family: 4, v4 } };
}

const PREFIX_TEXT = /^(?:0|[1-9][0-9]{0,2})$/;

/**
 * Parses `ADDR` or `ADDR/PREFIX`. Host bits set below the prefix are cleared; `hostBits` tells
 * the caller so it can report the typo while still enforcing the network the kernel would use.
 */
export function parseNet(text: string): ParseResult<Net & { hostBits: boolean }> {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const ip = parseIp(addrText);
  if (!ip.ok) return ip;
  const { family } = ip.value;
  const max = family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!PREFIX_TEXT.test(p)) return { ok: false, error: `bad prefix length "${printable(p)}"` };
    prefix = Number(p);
    // A mapped address keeps the prefix meaning of its IPv6 form.
    if (family === 4 && addrText.includes(':')) prefix -= 96;
    if (prefix < 0 || prefix > max) return { ok: false, error: `prefix length ${p} is out of range for IPv${family}` };
  }
  if (family === 4) {
    const v4 = ip.value.v4 ?? 0;
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const net = (v4 & mask) >>> 0;
    return { ok: true, value: { family, prefix, cidr: `${formatV4(net)}/${prefix}`, hostBits: net !== v4 } };
  }
  const v6 = ip.value.v6 ?? 0n;
  const all = (1n << 128n) - 1n;
  const mask = prefix === 0 ? 0n : (all << BigInt(128 - prefix)) & all;
  const net = v6 & mask;
  return { ok: true, value: { family, prefix, cidr: `${formatV6(net)}/${prefix}`, hostBits: net !== v6 } };
}

/**
 * hash:net sets cannot hold a /0 network, so the whole address space is written as its two
 * halves. Everything else is returned unchanged.
 */
export function kernelMembers(net: Net): string[] {
  if (net.prefix !== 0) return [net.cidr];
  return net.family === 4 ? ['0.0.0.0/1', '128.0.0.0/1'] : ['::/1', '8000::/1'];
}

/**
 * Characters that must not reach a terminal or a log as they are: controls (C0, C1), and the
 * invisible and reordering ones (zero-width, bidi overrides and isolates, line and paragraph
 * separators, BOM), with which `txt.exe` can be made to read as `exe.txt`.
 */
export const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/;
const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, 'g');

/** Makes untrusted text safe to quote in a diagnostic: unprintable characters become escapes, length is capped. */
export function printable(text: string, max = 80): string {
  // Clip before escaping (cheap on huge input) and again after, since each escape is up to six
  // characters long: the cap holds for the text that is printed, whatever the input.
  const escaped = text.slice(0, max + 1).replace(UNPRINTABLE_ALL, (c) => {
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
  return escaped.length > max ? `${escaped.slice(0, max)}…` : escaped;
}
