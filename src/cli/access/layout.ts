/**
 * The SPEC §1 key layout from the writer's side: arguments to keys, and keys back to entries.
 *
 * Reading goes through the agent's own parser (core/kvLayout.ts), so `ls` and `purge-expired`
 * see exactly what a node enforces: same address rules, same expiry rules, same notion of which
 * keys are malformed. The parser answers for one node at a time; for an operator's view across
 * the fleet each key is parsed as seen by a node its own scope segments name (see keyIdentity),
 * so no well-formed key is "foreign" and each comes back with its scope.
 *
 * Writing builds the key and then parses it back with that same parser; a key that does not
 * read back as exactly the entry meant is never written.
 */
import { type Net, parseNet, printable } from '../../core/address.js';
import { ALIAS_NAME, type Grant, type Kind, KV_ROOT, SET_NAME, parseKv, shortNodeName } from '../../core/kvLayout.js';
import type { NodeIdentity, Scope } from '../../core/types.js';
import type { KvEntry } from '../../consul/kvWriter.js';
import { UsageError, quoted } from './errors.js';

export const SERVICE_KIND: Kind = '$service$';
export const ALIAS_KIND: Kind = '$alias$';
export const IPSET_KIND: Kind = '$ipset$';

/** Where an entry applies. `node` is the short, lower-case node name. */
export interface ScopeSel {
  readonly level: Scope;
  readonly dc: string | null;
  readonly node: string | null;
}

export const WORLD: ScopeSel = { level: 'world', dc: null, node: null };

const SCOPE_NAME = /^[A-Za-z0-9._-]{1,128}$/;

/** `--dc DC` is the datacenter level, `--dc DC --node NODE` the node level, neither the world. */
export function scopeFromOptions(opts: { dc?: string; node?: string }): ScopeSel {
  if (opts.node !== undefined && opts.dc === undefined) {
    throw new UsageError(
      quoted('--node', opts.node),
      'needs --dc DC too: node entries live under the datacenter (befw/<kind>/<dc>/<node>/…)',
    );
  }
  if (opts.dc === undefined) return WORLD;
  if (!SCOPE_NAME.test(opts.dc))
    throw new UsageError(quoted('--dc', opts.dc), 'expected a datacenter name of letters, digits, ".", "_" or "-"');
  if (opts.node === undefined) return { level: 'dc', dc: opts.dc, node: null };
  const node = shortNodeName(opts.node);
  if (!SCOPE_NAME.test(node) || !SCOPE_NAME.test(opts.node)) {
    throw new UsageError(quoted('--node', opts.node), 'expected a node name of letters, digits, ".", "_" or "-"');
  }
  return { level: 'node', dc: opts.dc, node };
}

export function scopeText(s: ScopeSel): string {
  if (s.level === 'world') return 'world';
  if (s.level === 'dc') return `dc ${s.dc}`;
  return `node ${s.dc}/${s.node}`;
}

export type AddrArg =
  | { readonly type: 'net'; readonly net: Net; /** Key segment(s): `198.51.100.7` or `198.51.100.0/24`. */ readonly segment: string }
  | { readonly type: 'alias'; readonly name: string };

function isHost(net: Net): boolean {
  return net.prefix === (net.family === 4 ? 32 : 128);
}

/** Hosts are written without a prefix, networks as two segments; both in canonical form. */
export function netSegment(net: Net): string {
  return isHost(net) ? net.cidr.slice(0, net.cidr.indexOf('/')) : net.cidr;
}

function aliasHint(text: string): string {
  // `befw alias add $ops$` in double quotes or unquoted: the shell ate `$ops`.
  return text === '$' || !text.endsWith('$') || text.length < 3 ? "; quote it in single quotes ('$ops$') so the shell leaves it alone" : '';
}

/** An address, a network (`198.51.100.0/24`) or an alias reference (`$name$`). */
export function parseAddrArg(text: string, subject = 'address'): AddrArg {
  if (text.startsWith('$')) {
    if (!ALIAS_NAME.test(text))
      throw new UsageError(
        quoted(subject, text),
        `not an alias reference: expected $name$ with 1-64 letters, digits, ".", "_" or "-"${aliasHint(text)}`,
      );
    return { type: 'alias', name: text };
  }
  const parsed = parseNet(text);
  if (!parsed.ok)
    throw new UsageError(
      quoted(subject, text),
      `${parsed.error} (expected an IPv4/IPv6 address, a network like 198.51.100.0/24, or $alias$)`,
    );
  const net: Net = { family: parsed.value.family, cidr: parsed.value.cidr, prefix: parsed.value.prefix };
  if (parsed.value.hostBits) throw new UsageError(quoted(subject, text), `host bits are set below the prefix; did you mean ${net.cidr}?`);
  return { type: 'net', net, segment: netSegment(net) };
}

export function addrText(a: AddrArg): string {
  return a.type === 'alias' ? a.name : a.segment;
}

/** An alias name given as `ops` or `$ops$`: the first argument of `befw alias` is always one. */
export function parseAliasName(text: string): string {
  const name = text.startsWith('$') ? text : `$${text}$`;
  if (!ALIAS_NAME.test(name)) {
    throw new UsageError(
      quoted('alias name', text),
      `expected 1-64 letters, digits, ".", "_" or "-", optionally written $name$${text.startsWith('$') ? aliasHint(text) : ''}`,
    );
  }
  return name;
}

const SERVICE_SET = /^([a-z0-9._-]+)_(tcp|udp)_([0-9]{1,5})$/;
const SERVICE_SPEC = /^([A-Za-z0-9._-]+):([0-9]{1,5})(?:\/(tcp|udp))?$/;

/**
 * The set a client entry is written for: its name as in the keys (`web_tcp_8080`), or the
 * service as `NAME:PORT[/PROTO]` (`web:8080`, `dns:53/udp`), which names the same set.
 */
export function parseServiceArg(text: string): string {
  const spec = SERVICE_SPEC.exec(text);
  if (spec !== null) {
    const port = Number(spec[2]);
    const base = (spec[1] as string).toLowerCase().replace(/[^a-z0-9._-]/g, '');
    if (port < 1 || port > 65535) throw new UsageError(quoted('service', text), `port ${port} is not 1-65535`);
    return checkServiceSet(`${base}_${spec[3] ?? 'tcp'}_${port}`, text);
  }
  return checkServiceSet(text, text);
}

function checkServiceSet(set: string, given: string): string {
  const m = SERVICE_SET.exec(set);
  const port = Number(m?.[3] ?? '0');
  if (m === null || !SET_NAME.test(set) || port < 1 || port > 65535) {
    throw new UsageError(
      quoted('service', given),
      'expected the service set name, e.g. web_tcp_8080 (lower-case name, protocol, primary port), or NAME:PORT[/PROTO], e.g. web:8080',
    );
  }
  return set;
}

/** `befw/<kind>/[<dc>/[<node>/]]<target>/` */
export function targetPrefix(kind: Kind, scope: ScopeSel, target: string): string {
  const parts: string[] = [kind];
  if (scope.dc !== null) parts.push(scope.dc);
  if (scope.node !== null) parts.push(scope.node);
  parts.push(target);
  return `${KV_ROOT}${parts.join('/')}/`;
}

export function entryKey(kind: Kind, scope: ScopeSel, target: string, addr: AddrArg): string {
  return `${targetPrefix(kind, scope, target)}${addrText(addr)}`;
}

/** One KV entry as a node of its own scope reads it. */
export interface Entry {
  readonly key: string;
  readonly value: string | null;
  readonly modifyIndex: number;
  readonly kind: Kind;
  readonly scope: ScopeSel;
  /** Set name, or alias name with dollars. */
  readonly target: string;
  readonly addr: AddrArg;
  /** Unix seconds; null never expires. */
  readonly expiry: number | null;
}

/** A key under befw/ that no node enforces, with the parser's reason. */
export interface Invalid {
  readonly key: string;
  readonly value: string | null;
  readonly reason: string;
}

/**
 * The node identity under which a key is not foreign: the datacenter and node its own segments
 * name (`befw/<kind>/<dc>/<node>/…`). World keys ignore identity, dc keys only compare the
 * datacenter, node keys both, so one identity per key answers for all three shapes.
 */
function keyIdentity(key: string): NodeIdentity {
  const segs = key.split('/');
  return { dc: segs[2] ?? '', name: (segs[3] ?? '').toLowerCase() };
}

function scopeOf(g: Grant): ScopeSel {
  if (g.scope === 'world') return WORLD;
  const segs = g.key.split('/');
  if (g.scope === 'dc') return { level: 'dc', dc: segs[2] ?? '', node: null };
  return { level: 'node', dc: segs[2] ?? '', node: (segs[3] ?? '').toLowerCase() };
}

export interface Classified {
  readonly entries: readonly Entry[];
  readonly invalid: readonly Invalid[];
}

export function classify(items: readonly KvEntry[]): Classified {
  const entries: Entry[] = [];
  const invalid: Invalid[] = [];
  for (const item of items) {
    const parsed = parseKv([{ key: item.key, value: item.value }], keyIdentity(item.key));
    const g = parsed.grants[0];
    const errors = parsed.diagnostics.filter((d) => d.severity === 'error');
    if (g === undefined) {
      // Folders made by the UI come back as neither grant nor diagnostic: nothing to show.
      if (errors.length > 0) invalid.push({ key: item.key, value: item.value, reason: errors.map((d) => d.message).join('; ') });
      continue;
    }
    if (g.badValue !== undefined) {
      // What the agent does with it depends on the set (a deny fails closed); for the CLI it is
      // an entry to fix either way.
      invalid.push({ key: item.key, value: item.value, reason: g.badValue });
      continue;
    }
    const addr: AddrArg =
      g.addr === 'alias'
        ? { type: 'alias', name: g.alias }
        : { type: 'net', net: { family: g.family, cidr: g.cidr, prefix: g.prefix }, segment: netSegment(g) };
    entries.push({
      key: item.key,
      value: item.value,
      modifyIndex: item.modifyIndex,
      kind: g.kind,
      scope: scopeOf(g),
      target: g.target,
      addr,
      expiry: g.expiry,
    });
  }
  return { entries, invalid };
}

export function sameScope(a: ScopeSel, b: ScopeSel): boolean {
  return a.level === b.level && a.dc === b.dc && a.node === b.node;
}

export function sameAddr(a: AddrArg, b: AddrArg): boolean {
  if (a.type === 'alias' || b.type === 'alias') return a.type === b.type && addrText(a) === addrText(b);
  return a.net.cidr === b.net.cidr;
}

/**
 * The key for an entry, after checking that the agent's parser reads it back as exactly that
 * entry. Guards against any disagreement between writer and reader (a dc name shaped like an
 * address, say), which would otherwise write a key that grants something else or nothing.
 */
export function checkedKey(kind: Kind, scope: ScopeSel, target: string, addr: AddrArg, value: string): string {
  const key = entryKey(kind, scope, target, addr);
  const back = classify([{ key, value, modifyIndex: 0 }]);
  const e = back.entries[0];
  if (e === undefined || e.kind !== kind || !sameScope(e.scope, scope) || e.target !== target || !sameAddr(e.addr, addr)) {
    const why = back.invalid[0]?.reason ?? 'reads back as a different entry';
    throw new UsageError(quoted('key', printable(key, 200)), `would not be enforced as meant (${why}); nothing written`);
  }
  return key;
}
