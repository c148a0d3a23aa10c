/**
 * Reads BEFW's KV layout (SPEC §1) into grants. Pure: keys and values in, grants and
 * diagnostics out.
 *
 *   befw/<kind>/<name>/<addr>                 world
 *   befw/<kind>/<dc>/<name>/<addr>            datacenter (only the node's own)
 *   befw/<kind>/<dc>/<node>/<name>/<addr>     node (only this node)
 *
 * `<addr>` is an address, a network written as two segments (`198.51.100.0/24`), or `$alias$`.
 * A trailing segment of 1–3 digits after an address segment is a prefix length: this is the only
 * reading that keeps world-scope networks and dc-scope hosts apart.
 */
import { type Net, parseIp, parseNet, printable } from './address.js';
import type { Diagnostic, KvPair, NodeIdentity, Scope } from './types.js';

export const KV_ROOT = 'befw/';
export type Kind = '$service$' | '$alias$' | '$ipset$';
const KINDS: readonly Kind[] = ['$service$', '$alias$', '$ipset$'];

export type GrantAddr = { readonly kind: 'net'; readonly net: Net } | { readonly kind: 'alias'; readonly alias: string };

export interface Grant {
  readonly kind: Kind;
  readonly scope: Scope;
  /** Set name for `$service$`/`$ipset$`, alias name (with dollars) for `$alias$`. */
  readonly target: string;
  readonly addr: GrantAddr;
  /** Unix seconds; null never expires. */
  readonly expiry: number | null;
  readonly key: string;
}

export const ALIAS_NAME = /^\$[A-Za-z0-9._-]{1,64}\$$/;
/** Names of sets in keys: what service set names and static set names can be. */
export const SET_NAME = /^[a-z0-9._-]{1,200}$/;
const SCOPE_SEGMENT = /^[A-Za-z0-9._-]{1,128}$/;
const PREFIX_SEGMENT = /^[0-9]{1,3}$/;

export type ExpiryResult = { ok: true; expiry: number | null } | { ok: false; error: string };

/** Unix seconds as a decimal integer; negative never expires. Surrounding whitespace is tolerated. */
export function parseExpiry(value: string | null): ExpiryResult {
  if (value === null) return { ok: false, error: 'no value (expected Unix seconds, or -1 for never)' };
  const text = value.trim();
  if (!/^-?[0-9]{1,16}$/.test(text)) {
    return { ok: false, error: `value "${printable(value, 40)}" is not an integer (expected Unix seconds, or -1 for never)` };
  }
  const n = Number(text);
  if (!Number.isSafeInteger(n)) return { ok: false, error: `value ${text} is out of range` };
  return { ok: true, expiry: n < 0 ? null : n };
}

/** True while the entry is enforced at `nowMs`. An entry leaves at its second, not after. */
export function isLive(expiry: number | null, nowMs: number): boolean {
  return expiry === null || expiry * 1000 > nowMs;
}

export interface ParsedKv {
  readonly grants: readonly Grant[];
  readonly diagnostics: readonly Diagnostic[];
  /** Entries of other datacenters or nodes: ignored by design, counted for status. */
  readonly foreign: number;
}

export function parseKv(pairs: readonly KvPair[], node: NodeIdentity): ParsedKv {
  const grants: Grant[] = [];
  const diagnostics: Diagnostic[] = [];
  let foreign = 0;
  const report = (key: string, code: string, message: string): void => {
    diagnostics.push({ severity: 'error', code, subject: printable(key, 200), message });
  };

  for (const { key, value } of pairs) {
    if (!key.startsWith(KV_ROOT) || key.endsWith('/')) continue; // folders made by the UI
    const rest = key.slice(KV_ROOT.length).split('/');
    const kind = KINDS.find((k) => k === rest[0]);
    if (kind === undefined) {
      report(key, 'unknown-kind', `unknown kind "${printable(rest[0] ?? '')}" (expected $service$, $alias$ or $ipset$)`);
      continue;
    }
    const segs = rest.slice(1);
    const split = splitAddr(segs);
    if (typeof split === 'string') {
      report(key, 'bad-key', split);
      continue;
    }
    const { addrText, path } = split;
    if (path.length < 1 || path.length > 3) {
      report(key, 'bad-key', `expected 1 to 3 segments between the kind and the address, found ${path.length}`);
      continue;
    }
    if (path.some((p) => p === '')) {
      report(key, 'bad-key', 'empty path segment');
      continue;
    }
    const scope: Scope = path.length === 1 ? 'world' : path.length === 2 ? 'dc' : 'node';
    if (scope !== 'world') {
      const [dc, nodeName] = path;
      if (!SCOPE_SEGMENT.test(dc ?? '') || (scope === 'node' && !SCOPE_SEGMENT.test(nodeName ?? ''))) {
        report(key, 'bad-key', 'bad datacenter or node segment');
        continue;
      }
      if (dc !== node.dc || (scope === 'node' && nodeName?.toLowerCase() !== node.name)) {
        foreign++;
        continue;
      }
    }
    const target = path[path.length - 1] ?? '';
    if (kind === '$alias$' ? !ALIAS_NAME.test(target) : !SET_NAME.test(target)) {
      report(key, 'bad-name', kind === '$alias$' ? `bad alias name "${printable(target)}" (expected $name$)` : `bad set name "${printable(target)}"`);
      continue;
    }
    let addr: GrantAddr;
    if (addrText.startsWith('$')) {
      if (!ALIAS_NAME.test(addrText)) {
        report(key, 'bad-address', `bad alias reference "${printable(addrText)}" (expected $name$)`);
        continue;
      }
      addr = { kind: 'alias', alias: addrText };
    } else {
      const net = parseNet(addrText);
      if (!net.ok) {
        report(key, 'bad-address', net.error);
        continue;
      }
      if (net.value.hostBits) {
        diagnostics.push({
          severity: 'warning',
          code: 'host-bits',
          subject: printable(key, 200),
          message: `host bits set; enforced as ${net.value.cidr}`,
        });
      }
      addr = { kind: 'net', net: { family: net.value.family, cidr: net.value.cidr, prefix: net.value.prefix } };
    }
    const exp = parseExpiry(value);
    if (!exp.ok) {
      report(key, 'bad-expiry', `${exp.error}; entry not enforced`);
      continue;
    }
    grants.push({ kind, scope, target, addr, expiry: exp.expiry, key });
  }
  return { grants, diagnostics, foreign };
}

function splitAddr(segs: readonly string[]): { addrText: string; path: string[] } | string {
  const last = segs[segs.length - 1];
  if (last === undefined || last === '') return 'no address segment';
  const before = segs[segs.length - 2];
  if (PREFIX_SEGMENT.test(last) && before !== undefined && parseIp(before).ok) {
    return { addrText: `${before}/${last}`, path: segs.slice(0, -2) };
  }
  return { addrText: last, path: segs.slice(0, -1) };
}
