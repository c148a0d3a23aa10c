/**
 * Reads BEFW's KV layout (SPEC §1) into grants. Pure: keys and values in, grants and
 * diagnostics out.
 *
 *   befw/<kind>/<name>/<addr>                 world
 *   befw/<kind>/<dc>/<name>/<addr>            datacenter (only the node's own)
 *   befw/<kind>/<dc>/<node>/<name>/<addr>     node (only this node)
 *
 * As in BEFW, `<dc>` may also be the node's "local datacenter": its name up to the first `-`
 * (`ed` for node `ed-web-01`; the whole name when it has no `-`), which tools like befw-sync
 * write. Keys whose first segment starts with `.` are other tools' (befw-sync's `befw/.lock`)
 * and are skipped silently.
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

interface GrantBase {
  readonly kind: Kind;
  readonly scope: Scope;
  /** Set name for `$service$`/`$ipset$`, alias name (with dollars) for `$alias$`. */
  readonly target: string;
  /** Unix seconds; null never expires. */
  readonly expiry: number | null;
  readonly key: string;
  /** The value is not an expiry (junk, empty, absent): why. Enforced only where failing closed is safe. */
  readonly badValue?: string;
}

/** A grant of an address or network; it is itself the Net (one object per grant, not three). */
export interface NetGrant extends GrantBase, Net {
  readonly addr: 'net';
}

export interface AliasGrant extends GrantBase {
  readonly addr: 'alias';
  readonly alias: string;
}

export type Grant = NetGrant | AliasGrant;

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

/** What one KV pair amounts to when it is not simply a grant. */
interface EntryOutcome {
  readonly grant: Grant | null;
  readonly diagnostics: readonly Diagnostic[];
  readonly foreign: boolean;
}

/** A plain grant is its own outcome: at 100,000 keys a wrapper object each is memory for nothing. */
type Outcome = Grant | EntryOutcome;

const NOTHING: EntryOutcome = { grant: null, diagnostics: [], foreign: false };
const FOREIGN: EntryOutcome = { grant: null, diagnostics: [], foreign: true };

function isGrant(o: Outcome): o is Grant {
  return 'addr' in o;
}

function rejected(key: string, code: string, message: string): EntryOutcome {
  return { grant: null, diagnostics: [{ severity: 'error', code, subject: printable(key, 200), message }], foreign: false };
}

/** One string per distinct set or alias name, instead of one copy per key. */
type Intern = (s: string) => string;

/**
 * BEFW's local datacenter of a node: its short name up to the first `-`; null for a name
 * without one (BEFW then takes the whole name, so `befw/<kind>/<node>/<node>/...` would be a
 * scope: befw does not read that, and does not watch its prefixes for nothing).
 */
export function localDcOf(nodeName: string): string | null {
  const dash = nodeName.indexOf('-');
  return dash <= 0 ? null : nodeName.slice(0, dash);
}

function parseEntry(key: string, value: string | null, node: NodeIdentity, intern: Intern): Outcome {
  if (!key.startsWith(KV_ROOT) || key.endsWith('/')) return NOTHING; // folders made by the UI
  const rest = key.slice(KV_ROOT.length).split('/');
  if (rest[0]?.startsWith('.') === true) return NOTHING; // other tools' keys (befw/.lock)
  const kind = KINDS.find((k) => k === rest[0]);
  if (kind === undefined)
    return rejected(key, 'unknown-kind', `unknown kind "${printable(rest[0] ?? '')}" (expected $service$, $alias$ or $ipset$)`);
  const split = splitAddr(rest.slice(1));
  if (typeof split === 'string') return rejected(key, 'bad-key', split);
  const { addrText, path } = split;
  if (path.length < 1 || path.length > 3)
    return rejected(key, 'bad-key', `expected 1 to 3 segments between the kind and the address, found ${path.length}`);
  if (path.some((p) => p === '')) return rejected(key, 'bad-key', 'empty path segment');
  const scope: Scope = path.length === 1 ? 'world' : path.length === 2 ? 'dc' : 'node';
  if (scope !== 'world') {
    const [dc, nodeName] = path;
    if (!SCOPE_SEGMENT.test(dc ?? '') || (scope === 'node' && !SCOPE_SEGMENT.test(nodeName ?? '')))
      return rejected(key, 'bad-key', 'bad datacenter or node segment');
    if ((dc !== node.dc && dc !== localDcOf(node.name)) || (scope === 'node' && nodeName?.toLowerCase() !== node.name)) return FOREIGN;
  }
  const targetText = path[path.length - 1] ?? '';
  if (kind === '$alias$' ? !ALIAS_NAME.test(targetText) : !SET_NAME.test(targetText)) {
    return rejected(
      key,
      'bad-name',
      kind === '$alias$' ? `bad alias name "${printable(targetText)}" (expected $name$)` : `bad set name "${printable(targetText)}"`,
    );
  }
  const target = intern(targetText);
  if (addrText.startsWith('$')) {
    if (!ALIAS_NAME.test(addrText)) return rejected(key, 'bad-address', `bad alias reference "${printable(addrText)}" (expected $name$)`);
    const exp = parseExpiry(value);
    const base = { kind, scope, target, key, addr: 'alias' as const, alias: intern(addrText) };
    // What a bad value means depends on the set (a deny fails closed): the compiler decides.
    if (!exp.ok) return { grant: { ...base, expiry: null, badValue: exp.error }, diagnostics: [], foreign: false };
    return { ...base, expiry: exp.expiry };
  }
  const net = parseNet(addrText);
  if (!net.ok) return rejected(key, 'bad-address', net.error);
  const exp = parseExpiry(value);
  const grant: NetGrant = {
    kind,
    scope,
    target,
    expiry: exp.ok ? exp.expiry : null,
    ...(exp.ok ? {} : { badValue: exp.error }),
    key,
    addr: 'net',
    family: net.value.family,
    cidr: net.value.cidr,
    prefix: net.value.prefix,
  };
  if (!exp.ok) return { grant, diagnostics: [], foreign: false };
  if (!net.value.hostBits) return grant;
  return {
    grant,
    diagnostics: [
      { severity: 'warning', code: 'host-bits', subject: printable(key, 200), message: `host bits set; enforced as ${net.value.cidr}` },
    ],
    foreign: false,
  };
}

/**
 * Parse results of the previous listing, reused for pairs whose key and value did not change: a
 * watch answer re-lists the whole tree, and re-parsing 100,000 unchanged keys for one changed
 * key is most of a reconcile's work. Kept as arrays aligned with the previous (sorted) listing,
 * walked in step with the new one, so the cache costs a few pointers per key, not a map entry.
 * Results depend only on key, value and node identity: a cached parse equals an uncached one.
 */
export class KvParseCache {
  private keys: readonly string[] = [];
  private values: readonly (string | null)[] = [];
  private outcomes: readonly Outcome[] = [];
  private identity = '';
  hits = 0;
  misses = 0;

  /** @internal used by parseKv */
  parse(pairs: readonly KvPair[], node: NodeIdentity, intern: Intern): Outcome[] {
    const id = `${node.dc}\u0000${node.name}`;
    const same = id === this.identity;
    const keys = same ? this.keys : [];
    const values = this.values;
    const outcomes = this.outcomes;
    const out: Outcome[] = new Array<Outcome>(pairs.length);
    let j = 0;
    this.hits = 0;
    this.misses = 0;
    for (let i = 0; i < pairs.length; i++) {
      const { key, value } = pairs[i] as KvPair;
      // Both listings are sorted by key; an unsorted one only costs hits, never correctness.
      while (j < keys.length && (keys[j] as string) < key) j++;
      if (j < keys.length && keys[j] === key && values[j] === value) {
        out[i] = outcomes[j] as Outcome;
        this.hits++;
        j++;
        continue;
      }
      out[i] = parseEntry(key, value, node, intern);
      this.misses++;
    }
    this.identity = id;
    this.keys = pairs.map((p) => p.key);
    this.values = pairs.map((p) => p.value);
    this.outcomes = out;
    return out;
  }
}

export function parseKv(pairs: readonly KvPair[], node: NodeIdentity, cache?: KvParseCache): ParsedKv {
  const grants: Grant[] = [];
  const diagnostics: Diagnostic[] = [];
  let foreign = 0;
  const names = new Map<string, string>();
  const intern: Intern = (s) => {
    const known = names.get(s);
    if (known !== undefined) return known;
    names.set(s, s);
    return s;
  };
  const outcomes = cache === undefined ? pairs.map((p) => parseEntry(p.key, p.value, node, intern)) : cache.parse(pairs, node, intern);
  for (const o of outcomes) {
    if (isGrant(o)) {
      grants.push(o);
      continue;
    }
    if (o.foreign) foreign++;
    if (o.grant !== null) grants.push(o.grant);
    if (o.diagnostics.length > 0) diagnostics.push(...o.diagnostics);
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

/** The node's short, lower-case name: the KV layout's node scope (`web-01.example.org` -> `web-01`). */
export function shortNodeName(name: string): string {
  return (name.split('.')[0] ?? name).toLowerCase();
}
