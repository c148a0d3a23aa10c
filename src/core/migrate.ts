/**
 * `befw migrate check`, the pure part: what this node's inputs (config, service and `.ipset`
 * files, agent services, the befw/ KV tree) make Wargaming's BEFW enforce, next to what befw
 * enforces from the same inputs, and every entry where the two differ, with the fix.
 *
 * BEFW's side is a model of its source (HEAD of wgnet/befw; every verdict cites the file and
 * lines it comes from), not a run of it:
 *   - KV: which prefixes it lists for each set (befw/state.go:332-352), which keys it takes
 *     (its key pattern, befw/static.go:29 and util.go:221-243; the address from the last one or
 *     two segments, static.go:88-110), what a value means (Go's ParseInt; anything else is
 *     now+1h at every refresh, i.e. for as long as the key exists: state.go:302-305, 324-327;
 *     an empty value skips a direct service client, state.go:218, and nothing else);
 *   - aliases: world scope only, a member's value ignored except when empty (befw/alias.go:96-113),
 *     nesting resolved once per refresh (alias.go:36-68);
 *   - services: the release decides the set name and ports. `id-first-tag` (HEAD): the service ID
 *     and the first tag that reads as a port, ports from tags only (state.go:161-171, 183-197,
 *     411-440; service.go:192-233). `name-port` (up to 0.1.12): its source is not at hand; it is
 *     taken to read services as befw's set_naming=name-port does (services.ts). Service files
 *     are registered with the agent first (state.go:109-133) as BEFW reads them (legacy.go:89-212);
 *   - rules: the templates of `rules=` or /etc/befw.rules.json (fwiptables.go:453-463, falling
 *     back to const.go:23-50), where an enforcing service gets `rule_service_e`, which is
 *     `rule_service` unless the file says otherwise (fwiptables.go:203-217, 361-364);
 *   - `.ipset` files: a set of their own named after the file, tokens that parse as CIDR only
 *     (static.go:57-84); management networks only after a failed refresh (state.go:243-255, 510-525).
 *
 * befw's side is befw's own compiler (compile.ts) on the same snapshot. Differences are reported
 * per KV entry, alias member, service, port, file and config line; a final comparison of every
 * set both agents have catches what the per-entry reasons do not explain.
 */
import { type Net, parseNet, printable } from './address.js';
import { AliasResolver, minExpiry } from './aliases.js';
import { BUILTIN_SETS, RULES_ALLOW, compile } from './compile.js';
import { type Grant, isLive, localDcOf, parseKv } from './kvLayout.js';
import { expiryOf, logicalOf } from './planSets.js';
import { NetworkSet, refusedAddress } from './protect.js';
import { BEFW_TAG, ENFORCING_TAG, LOCAL_TAG, UDP_TAG, collectServices, parsePortSpec, portText, serviceSetName } from './services.js';
import type { CompileOptions, Diagnostic, KvPair, Mode, Plan, PortRange, Snapshot } from './types.js';

/** The BEFW release the fleet runs, by how it names service sets (see services.ts SetNaming). */
export type BefwRelease = 'name-port' | 'id-first-tag';

export interface TextFile {
  readonly file: string;
  readonly text: string;
}

/** A config line befw refuses; the check goes on without it. */
export interface RefusedConfigLine {
  readonly line: number | null;
  readonly key: string;
  readonly value: string;
  readonly reason: string;
}

/** One line of befw's own per-service template (`enforcing:`/`default:` lines apply to one mode). */
export interface ServiceRuleLine {
  readonly only: Mode | null;
  readonly text: string;
}

export interface ChainRulesByFamily {
  readonly 4: readonly string[];
  readonly 6: readonly string[];
}

export interface MigrateInput {
  /** What befw reads on this node, as its agent reads it. */
  readonly snapshot: Snapshot;
  /** befw's compile options from the node's config (without the refused lines). */
  readonly options: CompileOptions;
  /** The config file's text: BEFW reads it its own way (befw/config.go:76-145). */
  readonly configText: string;
  readonly refusedConfigLines: readonly RefusedConfigLine[];
  /** Service files as they are on disk (`*.json` of the services directory). */
  readonly serviceFiles: readonly TextFile[];
  /** BEFW's rule templates (`rules=`, else /etc/befw.rules.json); null when there is none to read. */
  readonly legacyRules: TextFile | null;
  /** befw's per-service template lines (its `rules=` or the built-in one). */
  readonly serviceRules: readonly ServiceRuleLine[];
  /** Rules befw writes into chain BEFW around the services (BEFW's header and footer, translated). */
  readonly chainRules?: { readonly head: ChainRulesByFamily; readonly tail: ChainRulesByFamily };
  /** The local Consul agent's datacenter: what befw reads KV from when the config has no dc=. */
  readonly agentDatacenter: string;
  readonly release: BefwRelease;
  /** befw's kernel set name (base, before `_v6`) of a logical set; absent: names are not compared. */
  readonly kernelName?: (logical: string) => string;
}

export type DifferenceKind =
  'config' | 'entry' | 'alias-member' | 'service' | 'service-port' | 'service-file' | 'ipset-file' | 'template' | 'kernel-name' | 'member';

export interface Difference {
  readonly kind: DifferenceKind;
  /** The entry: a KV key (with its value), a file (and line), a service, a config line. */
  readonly subject: string;
  /** What befw does with it. */
  readonly befw: string;
  /** What Wargaming's BEFW (the release checked) does with it. */
  readonly legacy: string;
  readonly fix: string;
  /** BEFW's source the legacy verdict comes from, `befw/state.go:324-327`. */
  readonly source: string;
  /** befw differs on purpose (README "Moving a node from BEFW to befw"). */
  readonly deliberate: boolean;
}

export interface MigrateReport {
  readonly release: BefwRelease;
  readonly node: { readonly name: string; readonly dc: string };
  readonly checked: { readonly kvEntries: number; readonly services: number; readonly serviceFiles: number; readonly ipsetFiles: number };
  readonly differences: readonly Difference[];
  /** How the two behave apart from what is enforced now (outages, logging): not differences. */
  readonly notes: readonly string[];
}

// ---------------------------------------------------------------------------------------------
// Go's readings, as BEFW's source relies on them

/** Go's strconv.ParseInt(s, 10, 64): an optional sign and decimal digits, within int64. */
export function goParseInt(s: string): bigint | null {
  if (!/^[+-]?[0-9]+$/.test(s)) return null;
  const n = BigInt(s);
  return n > 9223372036854775807n || n < -9223372036854775808n ? null : n;
}

/** Go's strconv.Atoi, for ports. */
function goAtoi(s: string): number | null {
  const n = goParseInt(s);
  return n === null ? null : Number(n);
}

const V4_OCTET = '(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])';
const V4 = `(?:${V4_OCTET}\\.){3}${V4_OCTET}`;
const H = '[0-9a-fA-F]{1,4}';
// BEFW's IPv6 pattern (befw/util.go:227-237), down to its last, empty, alternative.
const V6 =
  `(?:(?:${H}:){7}${H}|(?:${H}:){1,7}:|:(?::${H}){0,7}|::|(?:${H}:){1,6}:${H}|(?:${H}:){1,5}(?::${H}){1,2}|` +
  `(?:${H}:){1,4}(?::${H}){1,3}|(?:${H}:){1,3}(?::${H}){1,4}|(?:${H}:){1,2}(?::${H}){1,5}|${H}:(?::${H}){1,6}|)`;
const NET32 = '(?:/(?:3[0-2]|[12]?[0-9]))?';
const NET128 = '(?:/(?:12[0-8]|(?:1[0-1]|[1-9])?[0-9]))?';
/** The keys BEFW takes at all (befw/static.go:29). */
const LEGACY_KEY = new RegExp(`^befw/\\S+/(?:${V4}${NET32}|${V6}${NET128}|\\$\\S+\\$)$`);
const RX_V4 = new RegExp(`^${V4}$`);
const RX_V6 = new RegExp(`^${V6}$`);
const RX_NET32 = new RegExp(`^${NET32}$`);
const RX_NET128 = new RegExp(`^${NET128}$`);
const RX_ALIAS = /^\$\S*\$$/;

/** Go's net.ParseCIDR, answered with befw's canonical form of the same network (null: Go refuses it). */
export function goParseCidr(text: string): Net | null {
  const slash = text.indexOf('/');
  if (slash < 0) return null;
  const ip = text.slice(0, slash);
  const bits = text.slice(slash + 1);
  if (!/^[0-9]{1,3}$/.test(bits)) return null;
  if (!ip.includes(':') && !RX_V4.test(ip)) return null;
  if (ip.includes('%')) return null;
  const n = parseNet(`${ip}/${Number(bits)}`);
  return n.ok ? { family: n.value.family, cidr: n.value.cidr, prefix: n.value.prefix } : null;
}

/** The client network of a KV key as BEFW reads it (befw/static.go:88-110), or null. */
export function legacyKeyNet(key: string): Net | null {
  if (!LEGACY_KEY.test(key)) return null;
  const parts = key.split('/');
  if (parts.length <= 2) return null;
  const two = goParseCidr(parts.slice(-2).join('/'));
  if (two !== null) return two;
  const last = parts[parts.length - 1] ?? '';
  return goParseCidr(`${last}/${last.split(':').length - 1 >= 2 ? 128 : 32}`);
}

/** An alias member's text as BEFW reads it (befw/static.go:170-190): a network, `$alias$`, or ''. */
function legacyMemberText(key: string): string {
  const parts = key.split('/');
  const n = parts.length;
  if (n <= 2) return '';
  const a = parts[n - 2] ?? '';
  const b = parts[n - 1] ?? '';
  if (RX_V4.test(a) && RX_NET32.test(`/${b}`)) return `${a}/${b}`;
  if (RX_V6.test(a) && RX_NET128.test(`/${b}`)) return `${a}/${b}`;
  if (RX_V4.test(b)) return `${b}/32`;
  if (RX_V6.test(b)) return `${b}/128`;
  if (RX_ALIAS.test(b)) return b;
  return '';
}

/** BEFW's expiry of a value: its integer, or now+1h at every refresh for anything else. */
interface LegacyExpiry {
  /** Unix seconds; null never (a negative value, or a value refreshed forever). */
  readonly until: number | null;
  /** The value is not an integer: BEFW adds an hour at every refresh (befw/state.go:302-305, 324-327). */
  readonly refreshed: boolean;
}

function legacyExpiry(value: string | null): LegacyExpiry {
  const n = value === null ? null : goParseInt(value);
  if (n === null) return { until: null, refreshed: true };
  return { until: n < 0n ? null : Number(n), refreshed: false };
}

/** Consul hands an empty value to Go as nil (`"Value": null`). */
function isNil(value: string | null): boolean {
  return value === null || value === '';
}

// ---------------------------------------------------------------------------------------------
// BEFW's config, service files, tags and templates

interface LegacyStaticSet {
  readonly name: string;
  readonly priority: number;
  readonly target: string;
}

interface LegacyConfig {
  readonly kv: ReadonlyMap<string, string>;
  readonly dc: string;
  readonly sets: readonly LegacyStaticSet[];
  readonly nids: boolean;
}

/** The config as BEFW reads it (befw/config.go:76-145): every `key=value` line, the last one of a key winning. */
export function readLegacyConfig(text: string): LegacyConfig {
  const kv = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const l = raw.replace(/\r$/, '');
    if (l.startsWith('#') || l.indexOf('=') <= 0) continue;
    const eq = l.indexOf('=');
    kv.set(l.slice(0, eq).replace(/^[\r\n\t ]+|[\r\n\t ]+$/g, ''), l.slice(eq + 1).replace(/^[\r\n\t ]+|[\r\n\t ]+$/g, ''));
  }
  const sets: LegacyStaticSet[] = [
    { name: 'rules_allow', priority: 1, target: 'ACCEPT' },
    { name: 'rules_deny', priority: 2, target: 'REJECT' },
  ];
  let n = 3;
  for (const [k, v] of kv) {
    if (!k.startsWith('set.') || k === `set.${RULES_ALLOW}`) continue;
    const parts = v.split(';');
    if (parts.length === 1) sets.push({ name: k.slice(4), priority: n, target: parts[0] ?? '' });
    else {
      const p = goAtoi(parts[0] ?? '');
      if (p === null) continue;
      sets.push({ name: k.slice(4), priority: p, target: parts[1] ?? '' });
    }
    n++;
  }
  const nids = ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(kv.get('nids') ?? '');
  return { kv, dc: kv.get('dc') ?? 'consul', sets, nids };
}

interface LegacyPort {
  readonly from: number;
  readonly to: number;
  readonly proto: 'tcp' | 'udp';
}

/** BEFW's port tag `FROM[:TO][/PROTO]` (befw/service.go:192-233); null when it is not one. */
function legacyPortTag(tag: string): LegacyPort | null {
  const s = tag.split('/');
  const d = (s[0] ?? '').split(':');
  if (s.length > 2 || d.length > 2) return null;
  let proto: 'tcp' | 'udp' = 'tcp';
  if (s.length === 2) {
    const p = (s[1] ?? '').toLowerCase();
    if (p !== 'tcp' && p !== 'udp') return null;
    proto = p;
  }
  const nums = d.map(goAtoi);
  if (nums.some((x) => x === null || x <= 0 || x > 65535)) return null;
  const from = nums[0] as number;
  return { from, to: nums[1] ?? from, proto };
}

function legacyRange(p: LegacyPort): PortRange {
  // BEFW writes a range that runs backwards as its first port (befw/service.go:251-257).
  return { proto: p.proto, from: p.from, to: p.to <= p.from ? p.from : p.to };
}

type LegacyFileService =
  | { readonly ok: true; readonly name: string; readonly ports: readonly PortRange[]; readonly mode: Mode }
  | { readonly ok: false; readonly error: string; readonly panics?: boolean };

/** Go's encoding/json matches a key to a field case-insensitively, the last match winning. */
export function goField(obj: Record<string, unknown>, name: string): { found: boolean; value: unknown } {
  let out: { found: boolean; value: unknown } = { found: false, value: undefined };
  for (const [k, v] of Object.entries(obj)) if (k.toLowerCase() === name) out = { found: true, value: v };
  return out;
}

/** A service file as BEFW reads it (befw/legacy.go:89-212 and service.go:192-233, 285-292). */
export function readLegacyServiceFile(text: string): LegacyFileService {
  const bad = { ok: false, error: 'Bad JSON with service. (legacy.go:124-129)' } as const;
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return bad;
  }
  if (json === null) json = {};
  if (typeof json !== 'object' || Array.isArray(json)) return bad;
  const obj = json as Record<string, unknown>;
  const str = (name: string): string | null => {
    const f = goField(obj, name);
    if (!f.found || f.value === null) return '';
    return typeof f.value === 'string' ? f.value : null;
  };
  const name = str('name');
  const mode = str('mode');
  const protocol = str('protocol');
  const portField = goField(obj, 'port');
  let port = 0;
  if (portField.found && portField.value !== null) {
    const v = portField.value;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 65535) return bad;
    port = v;
  }
  if (name === null || mode === null || protocol === null) return bad;
  const portsField = goField(obj, 'ports');
  if (portsField.found && portsField.value !== null && !Array.isArray(portsField.value)) return bad;
  const ports: { port: string; proto: string }[] = [];
  for (const raw of (portsField.value as unknown[] | null | undefined) ?? []) {
    if (typeof raw === 'string') {
      const p = legacyPortTag(raw);
      if (p === null) return { ok: false, error: `bad port "${printable(raw)}" (service.go:192-233)` };
      const r = legacyRange(p);
      ports.push({ port: portText(r), proto: p.proto });
    } else if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) {
      const m = raw as Record<string, unknown>;
      let p = '';
      if ('port' in m) {
        if (typeof m.port === 'number') p = String(Math.trunc(m.port) & 0xffff);
        else if (typeof m.port === 'string') p = m.port;
      }
      let proto = 'tcp';
      if ('protocol' in m) {
        // A type assertion without a check (legacy.go:158-160): anything but a string panics.
        if (typeof m.protocol !== 'string') return { ok: false, error: 'a "protocol" that is not a string', panics: true };
        proto = m.protocol;
      }
      // PortFromTag (legacy.go:56-86): PORT[:TO]/PROTO, the protocol in any case.
      const lower = proto.toLowerCase();
      const nums = p.split(':').map(goAtoi);
      if (
        (lower !== 'tcp' && lower !== 'udp') ||
        p.split('/').length !== 1 ||
        nums.length > 2 ||
        nums.some((x) => x === null || x <= 0 || x > 65535)
      )
        return { ok: false, error: `bad port ${printable(JSON.stringify(raw))} (legacy.go:56-86)` };
      ports.push({ port: p, proto: lower });
    }
    // Numbers, booleans, arrays in "ports" are skipped without a word (legacy.go:133-160).
  }
  const first = ports[0];
  const proto = protocol === '' ? (first?.proto ?? 'tcp') : protocol;
  if (port === 0) {
    if (first === undefined) return { ok: false, error: "Expected not empty 'port' or 'ports' fields. (legacy.go:186-189)" };
    const n = goAtoi(first.port.split(':')[0] ?? '');
    if (n === null) return { ok: false, error: 'Bad port in ports. (legacy.go:191-194)' };
    port = n;
  }
  const primary = legacyPortTag(`${port}/${proto}`);
  if (primary === null) return { ok: false, error: `bad port or protocol "${port}/${printable(proto)}" (legacy.go:101-104)` };
  const out: PortRange[] = [legacyRange(primary)];
  for (const p of ports) {
    const r = legacyPortTag(`${p.port}/${p.proto}`);
    if (r === null) return { ok: false, error: `bad port "${printable(p.port)}/${printable(p.proto)}" (legacy.go:107-113)` };
    out.push(legacyRange(r));
  }
  // Only "enforcing", exactly, is enforcing; any other mode is default (service.go:285-292).
  return { ok: true, name: name, ports: out, mode: mode === ENFORCING_TAG ? 'enforcing' : 'default' };
}

/** BEFW's set-name base: lower case, then only [a-z0-9._-] (befw/state.go:411-427). */
function legacyBase(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9._-]/g, '');
}

interface LegacyService {
  /** `consul:<id>` or `file:<path>`, as befw's plan names origins. */
  readonly origin: string;
  readonly set: string;
  readonly ports: readonly PortRange[];
  readonly mode: Mode;
  /** Agent service: its tags, for the explanation. */
  readonly tags?: readonly string[];
  readonly port?: number;
}

/** Sets and ports of the node's services as the release reads them. */
function legacyServices(input: MigrateInput, files: ReadonlyMap<string, LegacyFileService>): LegacyService[] {
  const out: LegacyService[] = [];
  for (const s of input.snapshot.agentServices) {
    // BEFW reads every agent service tagged befw; a `local` one mirrors a file, which it
    // registers itself (befw/state.go:109-133): those come from the files below.
    if (!s.tags.includes(BEFW_TAG) || s.tags.includes(LOCAL_TAG)) continue;
    const mode: Mode = s.tags.includes(ENFORCING_TAG) ? 'enforcing' : 'default';
    if (input.release === 'id-first-tag') {
      const ports = s.tags.map(legacyPortTag).filter((p): p is LegacyPort => p !== null);
      const first = ports[0];
      out.push({
        origin: `consul:${s.id}`,
        set: first === undefined ? legacyBase(s.id) : `${legacyBase(s.id)}_${first.proto}_${first.from}`,
        ports: ports.map(legacyRange),
        mode,
        tags: s.tags,
        port: s.port,
      });
      continue;
    }
    if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535 || legacyBase(s.name) === '') continue;
    const proto = s.tags.includes(UDP_TAG) ? 'udp' : 'tcp';
    const ports: PortRange[] = [{ proto, from: s.port, to: s.port }];
    for (const t of s.tags) {
      const p = parsePortSpec(t);
      if (p?.ok === true) ports.push(p.range);
    }
    out.push({ origin: `consul:${s.id}`, set: serviceSetName(s.name, proto, s.port), ports, mode, tags: s.tags, port: s.port });
  }
  for (const [file, f] of files) {
    if (!f.ok || f.name === '') continue;
    const first = f.ports[0] as PortRange;
    out.push({ origin: `file:${file}`, set: `${legacyBase(f.name)}_${first.proto}_${first.from}`, ports: f.ports, mode: f.mode });
  }
  return out;
}

interface LegacyTemplates {
  readonly header: string;
  readonly footer: string;
  readonly header6: string;
  readonly footer6: string;
  readonly ruleService: string;
  readonly ruleServiceE: string;
  readonly staticSet: string;
  /** Where they came from, for the report. */
  readonly from: string;
}

// BEFW's built-in templates, as far as they decide verdicts (befw/const.go:23-50): no rule in
// the header or footer; per port, members accepted and the rest logged (NFLOG), in both modes.
const LEGACY_SERVICE_RULE = [
  '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {NAME} src -j ACCEPT',
  '-A BEFW -p {PROTO} --dport {PORT} -j NFLOG --nflog-group 402',
].join('\n');
const LEGACY_STATIC_RULE = '-I BEFW {PRIORITY} -m set --match-set {NAME} src -j {TARGET}';

/** The templates BEFW uses with this file (befw/fwiptables.go:453-463): JSON over the built-in ones. */
export function readLegacyTemplates(file: TextFile | null): LegacyTemplates {
  const t = {
    header: '*filter\n:BEFW - [0:0]\n-F BEFW',
    footer: 'COMMIT',
    header6: '*filter\n:BEFW - [0:0]\n-F BEFW',
    footer6: 'COMMIT',
    ruleService: LEGACY_SERVICE_RULE,
    ruleServiceE: LEGACY_SERVICE_RULE,
    staticSet: LEGACY_STATIC_RULE,
    from: 'built in (befw/const.go:23-50)',
  };
  if (file === null) return t;
  let json: unknown;
  try {
    json = JSON.parse(file.text);
  } catch {
    return { ...t, from: `built in: ${file.file} is not JSON (befw/fwiptables.go:458-460)` };
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json))
    return { ...t, from: `built in: ${file.file} is not a JSON object` };
  const obj = json as Record<string, unknown>;
  const field = (name: string, current: string): string => {
    const f = goField(obj, name);
    return f.found && typeof f.value === 'string' ? f.value : current;
  };
  return {
    header: field('header', t.header),
    footer: field('footer', t.footer),
    header6: field('header6', t.header6),
    footer6: field('footer6', t.footer6),
    ruleService: field('rule_service', t.ruleService),
    ruleServiceE: field('rule_service_e', t.ruleServiceE),
    staticSet: field('static_set', t.staticSet),
    from: file.file,
  };
}

export type PortVerdict = 'accepted' | 'dropped' | 'rejected' | 'passed on';

/**
 * What the rules of one service port do to a member of its set and to anyone else: the first rule
 * that applies with ACCEPT, DROP or REJECT decides; RETURN, or no such rule, passes the packet on
 * to the rest of INPUT. Logging (NFLOG, LOG) decides nothing. `own` are the placeholders that
 * name the service's own set ({NAME} in BEFW, {SET} or {NAME} in befw).
 */
export function portVerdicts(lines: readonly string[], own: readonly string[]): { member: PortVerdict; other: PortVerdict } {
  let member: PortVerdict | null = null;
  let other: PortVerdict | null = null;
  for (const raw of lines) {
    const l = raw.trim();
    if (!/^-[AI]\s/.test(l)) continue;
    const target = /(?:^|\s)-j\s+(\S+)/.exec(l)?.[1] ?? '';
    const verdict: PortVerdict | null =
      target === 'ACCEPT'
        ? 'accepted'
        : target === 'DROP'
          ? 'dropped'
          : target === 'REJECT'
            ? 'rejected'
            : target === 'RETURN'
              ? 'passed on'
              : null;
    if (verdict === null) continue;
    const m = /(!\s+)?--(?:match-)?set\s+(\S+)\s+src/.exec(l);
    const ownSet = m !== null && own.includes(m[2] ?? '');
    if (m !== null && !ownSet) continue; // another set: not decidable here
    const negated = m?.[1] !== undefined;
    const forMember = m === null || !negated;
    const forOther = m === null || negated;
    if (forMember && member === null) member = verdict;
    if (forOther && other === null) other = verdict;
  }
  return { member: member ?? 'passed on', other: other ?? 'passed on' };
}

/** One spelling of a rule for comparison: single spaces, `--set` as `--match-set`. */
function sameRuleText(rule: string): string {
  return rule
    .trim()
    .replace(/\s+/g, ' ')
    .replace(/(-m set (?:! )?)--set /g, '$1--match-set ');
}

function templateRules(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^-[AI]\s/.test(l));
}

/** BEFW's kernel name of a set (befw/util.go:305-324 with the 31 characters of fwiptables.go:343). */
export function legacyKernelName(name: string): string {
  const sz = 31;
  if (name.length <= sz) return name;
  const parts = name.split('_');
  if (parts.length === 1) return name.slice(0, sz - 1);
  const last = parts[parts.length - 1] ?? '';
  const max = Math.max(0, Math.trunc((sz - last.length) / (parts.length - 1)) - 1);
  return parts.map((p, i) => (i < parts.length - 1 && p.length > max ? p.slice(0, max) : p)).join('_');
}

// ---------------------------------------------------------------------------------------------
// Verdicts per KV entry

interface Contribution {
  readonly set: string;
  readonly cidr: string;
  /** Unix seconds; null never. */
  readonly until: number | null;
}

/** Sorted keys with binary search, for BEFW's prefix listings. */
class KvIndex {
  readonly pairs: readonly KvPair[];
  constructor(pairs: readonly KvPair[]) {
    this.pairs = [...pairs].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
  list(prefix: string): KvPair[] {
    let lo = 0;
    let hi = this.pairs.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.pairs[mid] as KvPair).key < prefix) lo = mid + 1;
      else hi = mid;
    }
    const out: KvPair[] = [];
    for (let i = lo; i < this.pairs.length && (this.pairs[i] as KvPair).key.startsWith(prefix); i++) out.push(this.pairs[i] as KvPair);
    return out;
  }
}

interface LegacyMember {
  readonly net: Net;
  /** The member entry (`befw/$alias$/$x$/...`) it came from. */
  readonly memberKey: string;
}

/** BEFW's alias resolution (befw/alias.go:36-113): world scope, member values ignored, once per refresh. */
class LegacyAliases {
  private readonly cache = new Map<string, { text: string; key: string }[]>();
  constructor(private readonly kv: KvIndex) {}

  members(alias: string): LegacyMember[] {
    const out: LegacyMember[] = [];
    for (const m of this.resolve(alias)) {
      const net = goParseCidr(m.text);
      if (net !== null) out.push({ net, memberKey: m.key });
    }
    return out;
  }

  private resolve(alias: string): { text: string; key: string }[] {
    const known = this.cache.get(alias);
    if (known !== undefined) return known;
    const own: { text: string; key: string }[] = [];
    this.cache.set(alias, own);
    const uniq = new Map<string, string>();
    const nested: string[] = [];
    for (const p of this.kv.list(`befw/$alias$/${alias}/`)) {
      if (isNil(p.value)) continue;
      const text = legacyMemberText(p.key);
      if (text === '') continue;
      if (text.startsWith('$') && text.endsWith('$')) nested.push(text);
      else if (!uniq.has(text)) uniq.set(text, p.key);
    }
    for (const n of nested) for (const m of this.resolve(n)) if (!uniq.has(m.text)) uniq.set(m.text, m.key);
    for (const [text, key] of uniq) own.push({ text, key });
    return own;
  }
}

interface LegacyEntry {
  readonly key: string;
  readonly value: string | null;
  readonly kind: '$service$' | '$ipset$';
  readonly set: string;
  /** Empty: read, but nothing enforced (expired, skipped). */
  readonly members: readonly (Contribution & { memberKey?: string; refreshed: boolean })[];
  readonly why: string;
  readonly source: string;
}

function legacyPrefixes(kind: string, set: string, node: { name: string; dc: string }): string[] {
  // BEFW takes the whole name when it has no "-" (befw does not read that scope: the check reports it).
  const local = localDcOf(node.name) ?? node.name;
  // befw/state.go:332-352: node, datacenter and world scope, and the "local datacenter".
  const all = [
    `befw/${kind}/${node.dc}/${node.name}/${set}/`,
    `befw/${kind}/${node.dc}/${set}/`,
    `befw/${kind}/${set}/`,
    `befw/${kind}/${local}/${node.name}/${set}/`,
    `befw/${kind}/${local}/${set}/`,
  ];
  return [...new Set(all)];
}

/** What BEFW makes of every KV entry of the node's sets. */
function legacyEntries(
  kv: KvIndex,
  node: { name: string; dc: string },
  serviceSets: readonly string[],
  staticSets: readonly string[],
  nowMs: number,
): LegacyEntry[] {
  const aliases = new LegacyAliases(kv);
  const out: LegacyEntry[] = [];
  const take = (kind: '$service$' | '$ipset$', set: string): void => {
    for (const prefix of legacyPrefixes(kind, set, node)) {
      for (const p of kv.list(prefix)) {
        // Services take only keys of BEFW's pattern (befw/state.go:207); static sets do not check.
        if (kind === '$service$' && !LEGACY_KEY.test(p.key)) continue;
        const rest = p.key.slice(prefix.length);
        const exp = legacyExpiry(isNil(p.value) ? null : p.value);
        const live = (until: number | null): boolean => isLive(until, nowMs);
        if (rest.startsWith('$') && rest.endsWith('$')) {
          const members = aliases
            .members(rest)
            .filter(() => live(exp.until))
            .map((m) => ({ set, cidr: m.net.cidr, until: exp.until, memberKey: m.memberKey, refreshed: exp.refreshed }));
          out.push({
            key: p.key,
            value: p.value,
            kind,
            set,
            members,
            why: exp.refreshed ? 'an alias grant whose value is not an integer' : 'an alias grant',
            source: 'befw/state.go:210-215, 293-314; befw/alias.go:96-113',
          });
          continue;
        }
        if (kind === '$service$' && isNil(p.value)) {
          out.push({ key: p.key, value: p.value, kind, set, members: [], why: 'an empty value: skipped', source: 'befw/state.go:218-220' });
          continue;
        }
        const net = legacyKeyNet(p.key);
        if (net === null) {
          out.push({
            key: p.key,
            value: p.value,
            kind,
            set,
            members: [],
            why: 'not an address BEFW reads',
            source: 'befw/state.go:316-322',
          });
          continue;
        }
        out.push({
          key: p.key,
          value: p.value,
          kind,
          set,
          members: live(exp.until) ? [{ set, cidr: net.cidr, until: exp.until, refreshed: exp.refreshed }] : [],
          why: exp.refreshed ? 'a value that is not an integer: now+1h at every refresh' : 'an expiry',
          source: exp.refreshed ? 'befw/state.go:324-327' : 'befw/state.go:316-330; befw/service.go:276-282',
        });
      }
    }
  };
  for (const s of serviceSets) take('$service$', s);
  for (const s of staticSets) take('$ipset$', s);
  return out;
}

interface OursEntry {
  readonly members: readonly Contribution[];
  readonly why: string;
  /** A diagnostic of befw's plan about this key (clipped, refused), if any. */
  readonly note?: string;
  readonly badValue?: string;
}

// ---------------------------------------------------------------------------------------------

function untilText(until: number | null, refreshed = false): string {
  if (until === null) return refreshed ? 'forever (now+1h at every refresh)' : 'forever';
  return `until ${new Date(until * 1000).toISOString().replace('.000Z', 'Z')}`;
}

function sameUntil(a: number | null, b: number | null): boolean {
  return a === b;
}

function memberList(ms: readonly Contribution[]): string {
  const shown = ms.slice(0, 4).map((m) => `${m.cidr} ${untilText(m.until)}`);
  return ms.length > 4 ? `${shown.join(', ')} and ${ms.length - 4} more` : shown.join(', ');
}

const FIX_EXPIRY = 'write an expiry: Unix seconds, or -1 for never';

function portsText(ports: readonly PortRange[]): string {
  return ports.length === 0 ? 'no port' : [...new Set(ports.map((p) => `${portText(p)}/${p.proto}`))].join(', ');
}

function portKey(p: PortRange): string {
  return `${portText(p)}/${p.proto}`;
}

export function migrateCheck(input: MigrateInput, nowMs: number): MigrateReport {
  const diffs: Difference[] = [];
  const notes: string[] = [];
  const add = (d: Difference): void => void diffs.push(d);
  const { snapshot, options } = input;
  const node = snapshot.node;
  const legacyNode = { name: node.name, dc: node.dc.toLowerCase() };
  const cfg = readLegacyConfig(input.configText);
  const plan: Plan = compile(snapshot, options, nowMs);
  const kv = new KvIndex(snapshot.kv);

  // --- config ---------------------------------------------------------------------------------
  for (const r of input.refusedConfigLines) add(configLineDifference(r));
  if (!cfg.kv.has('dc') && input.agentDatacenter !== 'consul')
    add({
      kind: 'config',
      subject: 'dc= (not set)',
      befw: `reads befw/ from the local agent's datacenter, ${input.agentDatacenter}`,
      legacy: 'reads befw/ from a datacenter named "consul"',
      fix: `write dc=${input.agentDatacenter} (the check compares the tree of ${input.agentDatacenter}); dc=consul if the fleet's KV lives there`,
      source: 'befw/config.go:57-60, 92; befw/const.go:22',
      deliberate: true,
    });
  if (node.dc !== legacyNode.dc)
    add({
      kind: 'config',
      subject: `datacenter ${node.dc}`,
      befw: `reads datacenter-scope keys under befw/<kind>/${node.dc}/`,
      legacy: `reads them under befw/<kind>/${legacyNode.dc}/ (lower case)`,
      fix: `write nodedc=${legacyNode.dc}`,
      source: 'befw/state.go:92',
      deliberate: false,
    });
  for (const net of options.managementNets)
    add({
      kind: 'config',
      subject: `set.rules_allow ${net.cidr}`,
      befw: 'accepted on every port, ahead of every deny, always (a management network)',
      legacy: 'not enforced while Consul answers: only a refresh that fails puts it into rules_allow',
      fix: 'none if it is a management network (that is what befw keeps reachable); otherwise remove it from set.rules_allow and grant it in Consul',
      source: 'befw/config.go:121-125; befw/state.go:243-255, 510-525',
      deliberate: true,
    });
  checkStaticPriorities(cfg, input, add);
  notes.push(
    'When Consul cannot be reached, BEFW re-applies its last state.bin and adds 10.0.0.0/8, 172.16.0.0/12 and 192.168.0.0/16 and set.rules_allow to rules_allow (befw/state.go:243-255, 510-525; befw/const.go:60); befw keeps enforcing its last good state and opens nothing.',
  );
  if (cfg.nids)
    notes.push(
      'nids=true: BEFW adds an NFLOG rule for random trap ports and logs port scans (befw/nids.go, fwiptables.go:326-331); it blocks nothing. befw accepts the key and has no trap ports yet.',
    );

  // --- templates ------------------------------------------------------------------------------
  const legacyT = readLegacyTemplates(input.legacyRules);
  for (const [which, text, family] of [
    ['header', legacyT.header, 'iptables'],
    ['footer', legacyT.footer, 'iptables'],
    ['header6', legacyT.header6, 'ip6tables'],
    ['footer6', legacyT.footer6, 'ip6tables'],
  ] as const) {
    const ours = input.chainRules?.[which.startsWith('header') ? 'head' : 'tail'][which.endsWith('6') ? 6 : 4] ?? [];
    const same = new Set(ours.map(sameRuleText));
    for (const rule of templateRules(text.replaceAll('{DATE}', ''))) {
      if (same.has(sameRuleText(rule))) continue;
      add({
        kind: 'template',
        subject: `${legacyT.from}: ${which}: ${rule}`,
        befw: 'writes no such rule: its rules= does not name this file',
        legacy: `writes it into chain BEFW (${family}) at every apply`,
        fix: `set rules=${legacyT.from} in befw's config (befw translates BEFW's templates), or grant the rule's sources in Consul`,
        source: 'befw/fwiptables.go:190-272, 329-338',
        deliberate: false,
      });
    }
  }
  if (legacyT.staticSet.trim() !== LEGACY_STATIC_RULE)
    notes.push(
      `${legacyT.from}: static_set is not BEFW's built-in one; befw writes its static sets as -A BEFW -m set --match-set NAME src -j TARGET in priority order.`,
    );

  // --- service files ----------------------------------------------------------------------------
  const legacyFiles = new Map<string, LegacyFileService>();
  for (const f of [...input.serviceFiles].sort((a, b) => (a.file < b.file ? -1 : 1)))
    legacyFiles.set(f.file, readLegacyServiceFile(f.text));
  const oursFiles = new Map(snapshot.fileServices.map((f) => [f.file, f]));
  const fileProblems = new Map<string, string>();
  for (const d of snapshot.inputDiagnostics) if (d.code === 'bad-service-file') fileProblems.set(d.subject, d.message);
  for (const [file, l] of legacyFiles) {
    const ours = oursFiles.get(file);
    if (l.ok && ours === undefined) {
      const why = fileProblems.get(printable(file)) ?? 'refused';
      const mode = /mode/.test(why);
      add({
        kind: 'service-file',
        subject: file,
        befw: `refuses the file (${why}): no service, its port falls to the rest of INPUT`,
        legacy: `registers "${l.name}" on ${portsText(l.ports)} in mode ${l.mode}${mode ? ' (any mode but "enforcing" is default)' : ''}`,
        fix: mode ? 'write "mode": "default" or "enforcing"' : 'fix the file as befw says',
        source: mode ? 'befw/legacy.go:115-119; befw/service.go:285-292' : 'befw/legacy.go:89-212',
        deliberate: mode,
      });
    } else if (!l.ok && l.panics === true && ours === undefined) {
      add({
        kind: 'service-file',
        subject: file,
        befw: `refuses the file (${fileProblems.get(printable(file)) ?? 'refused'}); every other input goes on`,
        legacy: `panics reading it (${l.error}): every refresh fails, and BEFW runs on its last state with the private ranges open`,
        fix: 'write "protocol" as a string ("tcp" or "udp")',
        source: 'befw/legacy.go:158-160; befw/state.go:243-255',
        deliberate: false,
      });
    } else if (!l.ok && ours !== undefined) {
      add({
        kind: 'service-file',
        subject: file,
        befw: `enforces "${ours.name}" on ${portsText([{ proto: ours.protocol, from: ours.port, to: ours.port }, ...ours.ports])}`,
        legacy:
          l.panics === true
            ? `panics reading it (${l.error}), so every refresh fails and BEFW runs on its last state with the private ranges open`
            : `skips the file (${l.error}) and deregisters its service`,
        fix: "make the file one both read (see BEFW's reason)",
        source: l.panics === true ? 'befw/legacy.go:158-160; befw/state.go:243-255' : 'befw/util.go:126-133; befw/state.go:134-157',
        deliberate: false,
      });
    } else if (l.ok && ours !== undefined && l.mode !== ours.mode) {
      add({
        kind: 'service-file',
        subject: `${file} (mode)`,
        befw: `mode ${ours.mode}`,
        legacy: `mode ${l.mode}: only "enforcing", written exactly so, is enforcing`,
        fix: `write "mode": "${ours.mode}" in lower case`,
        source: 'befw/legacy.go:115-119; befw/service.go:285-292',
        deliberate: false,
      });
    }
  }

  // --- services and their ports ---------------------------------------------------------------
  const legacySvcs = legacyServices(input, legacyFiles);
  const oursByOrigin = new Map<string, Plan['services'][number]>();
  for (const s of plan.services) for (const o of s.origins) oursByOrigin.set(o, s);
  const legacyBySet = new Map<string, LegacyService[]>();
  for (const s of legacySvcs) legacyBySet.set(s.set, [...(legacyBySet.get(s.set) ?? []), s]);
  const oursSets = new Set(plan.services.map((s) => s.set));
  const grantsFor = (set: string): number => legacyPrefixes('$service$', set, legacyNode).reduce((n, p) => n + kv.list(p).length, 0);
  const oursLines = (mode: Mode): string[] => input.serviceRules.filter((l) => l.only === null || l.only === mode).map((l) => l.text);
  for (const l of legacySvcs) {
    const ours = oursByOrigin.get(l.origin);
    const subject = l.origin.startsWith('consul:') ? `service ${l.origin.slice(7)}` : `service file ${l.origin.slice(5)}`;
    if (ours === undefined) {
      if (l.origin.startsWith('file:')) continue; // reported with the file
      const problem = plan.diagnostics.find((d) => d.subject === `service ${printable(l.origin.slice(7))}`);
      add({
        kind: 'service',
        subject,
        befw: `no service${problem === undefined ? '' : ` (${problem.message})`}`,
        legacy: `set ${l.set}, ${portsText(l.ports)}, mode ${l.mode}`,
        fix: 'register the service with a Port from 1 to 65535 and its port tags',
        source: 'befw/state.go:183-197',
        deliberate: false,
      });
      continue;
    }
    if (ours.set !== l.set) {
      // What befw would name it with set_naming= the release: the same name, or not even then.
      const agentSvc = input.snapshot.agentServices.find((a) => `consul:${a.id}` === l.origin);
      const underRelease = agentSvc === undefined ? undefined : collectServices([agentSvc], [], input.release).services[0]?.set;
      const naming = options.setNaming !== input.release ? `set_naming=${input.release} in the config (the fleet's release)` : null;
      const specific =
        l.ports.length === 0
          ? `register it with a port tag ${ours.ports[0] === undefined ? 'PORT/PROTO' : portKey(ours.ports[0])} (BEFW reads ports from tags only)`
          : 'write its port tags as PORT/PROTO in lower case (8443/tcp), the port first';
      const fix = naming !== null && underRelease === l.set ? naming : naming === null ? specific : `${naming}, and ${specific}`;
      add({
        kind: 'service',
        subject,
        befw: `set ${ours.set}: reads befw/$service$/.../${ours.set}/ (${grantsFor(ours.set)} entries)`,
        legacy: `set ${l.set}${l.ports.length === 0 ? ' and no rule: no port tag' : ''}: reads befw/$service$/.../${l.set}/ (${grantsFor(l.set)} entries)`,
        fix,
        source: input.release === 'id-first-tag' ? 'befw/state.go:161-171, 183-197, 411-440' : 'src/core/services.ts (BEFW <= 0.1.12)',
        deliberate: false,
      });
    }
    const lp = new Map(l.ports.map((p) => [portKey(p), p]));
    const op = new Map(ours.ports.map((p) => [portKey(p), p]));
    const lv = portVerdicts((l.mode === 'enforcing' ? legacyT.ruleServiceE : legacyT.ruleService).split('\n'), ['{NAME}']);
    const ov = portVerdicts(oursLines(ours.mode), ['{SET}', '{NAME}']);
    for (const k of new Set([...lp.keys(), ...op.keys()])) {
      if (!lp.has(k) || !op.has(k)) {
        add({
          kind: 'service-port',
          subject: `${subject} port ${k}`,
          befw: op.has(k) ? `members of ${ours.set} ${ov.member}, others ${ov.other}` : 'no rule: the port falls to the rest of INPUT',
          legacy: lp.has(k) ? `members of ${l.set} ${lv.member}, others ${lv.other}` : 'no rule: the port falls to the rest of INPUT',
          fix:
            input.release === 'id-first-tag' && !lp.has(k)
              ? `tag the service with ${k}: BEFW reads ports from tags only`
              : 'tag the port as PORT/PROTO in lower case',
          source:
            input.release === 'id-first-tag'
              ? 'befw/state.go:161-171, 191; befw/service.go:192-233'
              : 'src/core/services.ts (BEFW <= 0.1.12)',
          deliberate: false,
        });
        continue;
      }
      if (lv.member !== ov.member || lv.other !== ov.other) {
        const enforcingOnly = ours.mode === 'enforcing' && lv.other === 'passed on';
        add({
          kind: 'service-port',
          subject: `${subject} port ${k} (mode ${ours.mode})`,
          befw: `members ${ov.member}, others ${ov.other} in chain BEFW`,
          legacy: `members ${lv.member}, others ${lv.other} (${l.mode === 'enforcing' ? 'rule_service_e' : 'rule_service'} of ${legacyT.from})`,
          fix: enforcingOnly
            ? "none if INPUT drops what BEFW passes on (the usual base ruleset); mode default keeps BEFW's verdict"
            : ov.other === 'passed on'
              ? `mode enforcing, or a befw template (rules=) that ${lv.other === 'rejected' ? 'rejects' : 'drops'} others as BEFW's did`
              : "a befw template (rules=) with BEFW's verdicts",
          source: 'befw/fwiptables.go:203-217, 349-387; befw/const.go:31-36',
          deliberate: false,
        });
      }
    }
  }

  // --- KV entries ---------------------------------------------------------------------------------
  const legacyStatic = cfg.sets.map((s) => s.name);
  const oursStatic = new Map([...BUILTIN_SETS, ...options.customSets].map((s) => [s.name, s]));
  const common = new Set<string>([...legacyBySet.keys()].filter((s) => oursSets.has(s)));
  for (const s of legacyStatic) if (oursStatic.has(s)) common.add(s);
  const legacy = legacyEntries(
    kv,
    legacyNode,
    [...legacyBySet.keys()].filter((s) => common.has(s)),
    legacyStatic.filter((s) => common.has(s)),
    nowMs,
  );
  const parsed = parseKv(kv.pairs, node);
  const grantsByKey = new Map<string, Grant>(parsed.grants.map((g) => [g.key, g]));
  const aliasGrants = parsed.grants.filter((g) => g.kind === '$alias$');
  const resolver = new AliasResolver(
    aliasGrants.filter((g) => g.badValue === undefined),
    nowMs,
  );
  const diagBySubject = new Map<string, Diagnostic[]>();
  for (const d of [...parsed.diagnostics, ...plan.diagnostics]) diagBySubject.set(d.subject, [...(diagBySubject.get(d.subject) ?? []), d]);
  const ours = (key: string): OursEntry => {
    const g = grantsByKey.get(key);
    const diags = diagBySubject.get(printable(key, 200)) ?? [];
    const protectedNote = diags.find((d) => d.code === 'protected-clipped' || d.code === 'refused-address');
    if (g === undefined) {
      const why = diags.find((d) => d.severity === 'error')?.message;
      return { members: [], why: why === undefined ? 'not read (another scope, datacenter or node)' : `not read (${why})` };
    }
    if (g.kind === '$alias$' || !common.has(g.target)) return { members: [], why: 'not a grant of this node' };
    const target = g.kind === '$ipset$' ? oursStatic.get(g.target)?.target : undefined;
    const failClosed = target === 'DROP' || target === 'REJECT';
    if (g.badValue !== undefined && !failClosed) return { members: [], why: `not enforced: ${g.badValue}`, badValue: g.badValue };
    const expiry = g.badValue !== undefined ? null : g.expiry;
    if (!isLive(expiry, nowMs)) return { members: [], why: 'expired' };
    const why = g.badValue !== undefined ? 'enforced forever: a deny with a bad value fails closed' : 'enforced';
    const nets: Contribution[] =
      g.addr === 'net'
        ? [{ set: g.target, cidr: g.cidr, until: expiry }]
        : resolver
            .expand(g.alias, printable(key, 200))
            .map((e) => ({ set: g.target, cidr: e.net.cidr, until: minExpiry(expiry, e.expiry) }));
    const kept = nets.filter((c) => {
      const n = parseNet(c.cidr);
      return !(n.ok && refusedAddress(n.value) !== null);
    });
    return {
      members: protectedNote?.code === 'protected-clipped' ? [] : kept,
      why,
      ...(protectedNote === undefined ? {} : { note: protectedNote.message }),
      ...(g.badValue === undefined ? {} : { badValue: g.badValue }),
    };
  };

  const explained = new Set<string>();
  const clipped = new Map<string, Net[]>();
  const memberDiffs = new Map<string, MemberDiff>();
  for (const e of legacy) {
    const o = ours(e.key);
    const subject = `${e.key} = ${JSON.stringify(e.value ?? '')}`;
    const lm = new Map(e.members.map((m) => [m.cidr, m]));
    const om = new Map(o.members.map((m) => [m.cidr, m]));
    const differs = [...new Set([...lm.keys(), ...om.keys()])].filter((c) => {
      const a = lm.get(c);
      const b = om.get(c);
      return a === undefined || b === undefined || !sameUntil(a.until, b.until);
    });
    if (differs.length === 0) continue;
    for (const c of differs) explained.add(`${e.set}|${c}`);
    const isAliasRef = e.key.endsWith('$') && e.key.slice(e.key.lastIndexOf('/') + 1).startsWith('$');
    const refreshed =
      e.members.some((m) => m.refreshed) ||
      (e.members.length === 0 && legacyExpiry(e.value).refreshed && e.why !== 'an empty value: skipped');
    if (o.note !== undefined) {
      for (const m of e.members) {
        const n = parseNet(m.cidr);
        if (n.ok) clipped.set(e.set, [...(clipped.get(e.set) ?? []), n.value]);
      }
      add({
        kind: 'entry',
        subject,
        befw: o.note,
        legacy: e.members.length === 0 ? `not enforced (${e.why})` : `enforced in ${e.set}: ${memberList(e.members)}`,
        fix: 'none: befw never denies loopback, its management networks, protect= or Consul peers; remove the entry if it is not meant',
        source: e.source,
        deliberate: true,
      });
      continue;
    }
    if (refreshed && o.badValue !== undefined) {
      add({
        kind: 'entry',
        subject,
        befw: `not enforced: the value is not an expiry`,
        legacy: `enforced ${untilText(null, true)}${isAliasRef ? ` for every member of ${e.key.slice(e.key.lastIndexOf('/') + 1)}` : ''}`,
        fix: FIX_EXPIRY,
        source: isAliasRef ? 'befw/state.go:302-305' : 'befw/state.go:324-327',
        deliberate: true,
      });
      continue;
    }
    if (refreshed && o.badValue === undefined && grantsByKey.has(e.key)) {
      add({
        kind: 'entry',
        subject,
        befw: o.members.length === 0 ? `not enforced (${o.why})` : `${o.why} ${untilText(o.members[0]?.until ?? null)}`,
        legacy: `enforced ${untilText(null, true)}: Go's ParseInt refuses the value as written`,
        fix: 'write the value as plain digits, without spaces or a newline',
        source: 'befw/state.go:324-327',
        deliberate: false,
      });
      continue;
    }
    if (!isAliasRef || !grantsByKey.has(e.key) || (o.members.length === 0 && e.members.length === 0)) {
      add({
        kind: 'entry',
        subject,
        befw: o.members.length === 0 ? o.why : `enforced in ${e.set}: ${memberList(o.members)}`,
        legacy: e.members.length === 0 ? `not enforced (${e.why})` : `enforced in ${e.set}: ${memberList(e.members)}`,
        fix: grantsByKey.has(e.key)
          ? FIX_EXPIRY
          : 'write the entry where both read it: befw/<kind>/[<dc>/[<node>/]]<set>/<address>, a network as two segments',
        source: e.source,
        deliberate: false,
      });
      continue;
    }
    // An alias grant: the difference is in its members; report each at the member entry.
    for (const c of differs) {
      const a = lm.get(c);
      const b = om.get(c);
      const memberKey = a?.memberKey ?? findMemberKey(aliasGrants, c) ?? e.key;
      const id = `${memberKey}|${e.set}`;
      const prev = memberDiffs.get(id);
      if (prev !== undefined) {
        prev.refs.add(e.key);
        continue;
      }
      memberDiffs.set(id, {
        key: memberKey,
        value: kv.list(memberKey).find((p) => p.key === memberKey)?.value ?? null,
        legacy: a?.until,
        ours: b?.until,
        refs: new Set([e.key]),
        set: e.set,
        cidr: c,
      });
    }
  }
  for (const m of memberDiffs.values()) add(aliasMemberDifference(m, grantsByKey.get(m.key), nowMs));
  // Entries befw reads that none of BEFW's listings holds (a scope it does not list, a key its
  // pattern refuses).
  const legacyKeys = new Set(legacy.map((e) => e.key));
  for (const g of parsed.grants) {
    if (g.kind === '$alias$' || !common.has(g.target) || legacyKeys.has(g.key)) continue;
    const o = ours(g.key);
    if (o.members.length === 0) continue;
    for (const m of o.members) explained.add(`${m.set}|${m.cidr}`);
    add({
      kind: 'entry',
      subject: `${g.key} = ${JSON.stringify(kv.list(g.key).find((p) => p.key === g.key)?.value ?? '')}`,
      befw: `enforced in ${g.target}: ${memberList(o.members)}`,
      legacy: 'not read: none of the prefixes BEFW lists for the set holds it, or its key pattern refuses it',
      fix: 'write the entry where both read it: befw/<kind>/[<dc>/[<node>/]]<set>/<address>, the datacenter in lower case',
      source: 'befw/state.go:207, 332-352; befw/static.go:29',
      deliberate: false,
    });
  }

  // --- .ipset files -------------------------------------------------------------------------
  for (const f of [...snapshot.ipsetFiles].sort((a, b) => (a.file < b.file ? -1 : 1))) ipsetFileDifferences(f, input, add, explained);

  // --- what the per-entry reasons leave: every set both have, member by member --------------------
  const legacySets = new Map<string, Map<string, number | null>>();
  for (const e of legacy)
    for (const m of e.members) {
      const s = legacySets.get(e.set) ?? new Map<string, number | null>();
      const cur = s.get(m.cidr);
      s.set(m.cidr, cur === undefined ? m.until : cur === null || m.until === null ? null : Math.max(cur, m.until));
      legacySets.set(e.set, s);
    }
  const mgmt = new Set(options.managementNets.map((n) => n.cidr));
  for (const ps of plan.sets) {
    const set = logicalOf(ps);
    if (!common.has(set)) continue;
    const l = legacySets.get(set) ?? new Map<string, number | null>();
    const cut = new NetworkSet(clipped.get(set) ?? []);
    for (const c of ps.members) {
      const until = expiryOf(ps, c);
      if (explained.has(`${set}|${c}`) || (set === RULES_ALLOW && mgmt.has(c))) continue;
      const n = parseNet(c);
      if (n.ok && cut.covers(n.value)) continue;
      const lu = l.get(c);
      if (lu !== undefined && sameUntil(lu, until)) continue;
      explained.add(`${set}|${c}`);
      add(memberDifference(set, c, untilText(until), lu === undefined ? 'not enforced' : untilText(lu)));
    }
  }
  for (const [set, l] of legacySets) {
    const members = new Set(plan.sets.filter((p) => logicalOf(p) === set).flatMap((p) => p.members));
    for (const [c, u] of l) {
      if (members.has(c) || explained.has(`${set}|${c}`)) continue;
      add(memberDifference(set, c, 'not enforced', untilText(u)));
    }
  }

  // --- kernel names ----------------------------------------------------------------------------
  if (input.kernelName !== undefined) {
    const names = new Set<string>([...common, ...plan.setViews.filter((v) => v.kind !== 'protected').map((v) => v.logical)]);
    for (const s of [...names].sort()) {
      if (!common.has(s) && !s.endsWith('.ipset')) continue;
      const ours4 = input.kernelName(s);
      const ours6 = `${ours4}_v6`;
      const l4 = legacyKernelName(s);
      const l6 = legacyKernelName(`${s}_v6`);
      if (ours4 === l4 && ours6 === l6) continue;
      add({
        kind: 'kernel-name',
        subject: `set ${s}`,
        befw: `ipsets ${ours4} and ${ours6}`,
        legacy: `ipsets ${l4} and ${l6}`,
        fix: "rules outside chain BEFW that name the set must use befw's names",
        source: 'befw/util.go:305-324; befw/fwiptables.go:399-402',
        deliberate: false,
      });
    }
  }

  return {
    release: input.release,
    node: { name: node.name, dc: node.dc },
    checked: {
      kvEntries: snapshot.kv.length,
      services: plan.services.length,
      serviceFiles: input.serviceFiles.length,
      ipsetFiles: snapshot.ipsetFiles.length,
    },
    differences: diffs,
    notes,
  };
}

function findMemberKey(aliasGrants: readonly Grant[], cidr: string): string | undefined {
  return aliasGrants.find((g) => g.addr === 'net' && g.cidr === cidr)?.key;
}

function memberDifference(set: string, cidr: string, befw: string, legacy: string): Difference {
  return {
    kind: 'member',
    subject: `${cidr} in ${set}`,
    befw,
    legacy,
    fix: 'see the entries for this address: befw show and befw plan name where befw takes it from',
    source: 'befw/state.go:173-237, 369-400',
    deliberate: false,
  };
}

/** A member of an alias that the two agents grant differently, through the alias grants in `refs`. */
interface MemberDiff {
  readonly key: string;
  readonly value: string | null;
  /** Unix seconds, null forever, undefined not granted. */
  readonly legacy: number | null | undefined;
  readonly ours: number | null | undefined;
  readonly refs: Set<string>;
  readonly set: string;
  readonly cidr: string;
}

function aliasMemberDifference(m: MemberDiff, grant: Grant | undefined, nowMs: number): Difference {
  const refs = [...m.refs].sort();
  const via = `${refs[0] ?? ''}${refs.length > 1 ? ` and ${refs.length - 1} more` : ''}`;
  const subject = `${m.key} = ${JSON.stringify(m.value ?? '')} (member ${m.cidr}, granted in ${m.set} by ${via})`;
  const legacyText = m.legacy === undefined ? 'not granted' : `granted ${untilText(m.legacy)}`;
  const oursText = m.ours === undefined ? 'not granted' : `granted ${untilText(m.ours)}`;
  if (grant !== undefined && grant.scope !== 'world')
    return {
      kind: 'alias-member',
      subject,
      befw: oursText,
      legacy: `${legacyText}: BEFW reads members at world scope only`,
      fix: `write the member at world scope, befw/$alias$/${grant.target}/<address>, if BEFW nodes must grant it too`,
      source: 'befw/alias.go:96-113',
      deliberate: false,
    };
  if (grant?.badValue !== undefined)
    return {
      kind: 'alias-member',
      subject,
      befw: `${oursText}: the member's value is not an expiry`,
      legacy: `${legacyText}: BEFW ignores a member's value`,
      fix: FIX_EXPIRY,
      source: 'befw/alias.go:96-113',
      deliberate: true,
    };
  if (grant !== undefined && !isLive(grant.expiry, nowMs))
    return {
      kind: 'alias-member',
      subject,
      befw: `${oursText}: the member expired ${untilText(grant.expiry).replace('until ', 'at ')}`,
      legacy: `${legacyText}: BEFW ignores a member's expiry`,
      fix: 'renew the member if it should stay (befw alias add NAME ADDR --ttl ...); delete it otherwise',
      source: 'befw/alias.go:96-113; befw/state.go:293-314',
      deliberate: true,
    };
  if (grant !== undefined && grant.expiry !== null && m.ours !== undefined)
    return {
      kind: 'alias-member',
      subject,
      befw: `${oursText}: a grant through an alias ends with its member`,
      legacy: `${legacyText}: BEFW ignores a member's expiry`,
      fix: 'none if the member is meant to end then; renew it otherwise',
      source: 'befw/alias.go:96-113; befw/state.go:293-314',
      deliberate: true,
    };
  return {
    kind: 'alias-member',
    subject,
    befw: oursText,
    legacy: legacyText,
    fix: 'write the member as befw/$alias$/$NAME$/<address>, a network as two segments',
    source: 'befw/alias.go:96-113; befw/static.go:170-190',
    deliberate: false,
  };
}

const LEGACY_KEY_MEANING: Record<string, string> = {
  firewall: 'selects the firewall: nft or nftc7 for nftables, anything else iptables (befw/config.go:103-114)',
  rules: 'names a JSON file of rule templates (befw/fwiptables.go:453-463)',
  consulwatch_timeout_sec: 'the longest wait for a change before a full refresh (befw/watcher.go:164)',
  nids: 'turns on NFLOG trap ports that log port scans (befw/config.go:101)',
  fail: 'stops every refresh (LogError panics), so BEFW runs on its last state with the private ranges open (befw/config.go:116-118)',
  token: 'the Consul token (befw/config.go:93)',
};

function configLineDifference(r: RefusedConfigLine): Difference {
  const meaning = r.key.startsWith('set.')
    ? 'a static set with any iptables target and priority (befw/config.go:119-144)'
    : (LEGACY_KEY_MEANING[r.key] ?? 'ignored: BEFW reads only the keys it knows (befw/config.go:91-101)');
  return {
    kind: 'config',
    subject: `config${r.line === null ? '' : ` line ${r.line}`}: ${r.key}=${printable(r.value, 60)}`,
    befw: `refuses the line: ${r.reason}`,
    legacy: meaning,
    fix:
      r.key === 'rules'
        ? "fix the template as befw says (it translates BEFW's JSON templates; what it cannot translate is named), or remove rules= for befw's own template"
        : 'change or remove the line as befw says',
    source: 'befw/config.go:76-145',
    deliberate: false,
  };
}

/** A custom set whose priority is past the end of the chain when BEFW inserts it (`-I BEFW P`). */
function checkStaticPriorities(cfg: LegacyConfig, input: MigrateInput, add: (d: Difference) => void): void {
  const legacyT = readLegacyTemplates(input.legacyRules);
  const headerRules = templateRules(legacyT.header).length;
  const ruled = cfg.sets.filter((s) => s.target !== 'NOOP');
  for (const s of ruled) {
    if (s.priority <= ruled.length + headerRules) continue;
    add({
      kind: 'config',
      subject: `set.${s.name}=${s.priority};${s.target}`,
      befw: `orders its rule by priority ${s.priority}`,
      legacy: `inserts it at position ${s.priority} of a chain of at most ${ruled.length - 1 + headerRules} rules: iptables-restore refuses the whole table, so BEFW applies nothing`,
      fix: `a priority of at most ${ruled.length + headerRules}`,
      source: 'befw/fwiptables.go:332-348; befw/const.go:23',
      deliberate: false,
    });
  }
}

function ipsetFileDifferences(
  f: { file: string; set: string; text: string },
  input: MigrateInput,
  add: (d: Difference) => void,
  explained: Set<string>,
): void {
  const mode = input.options.ipsetFiles ?? 'befw';
  const own = `${f.set}.ipset`;
  // BEFW: whitespace-separated tokens that parse as CIDR (befw/static.go:53-55, 73-78).
  const legacy = new Map<string, string>();
  for (const token of f.text.split(/\s+/)) {
    if (token === '') continue;
    const n = goParseCidr(token);
    if (n !== null) legacy.set(n.cidr, token);
  }
  const ours = new Map<string, { line: number; token: string; refused: string | null }>();
  f.text.split('\n').forEach((raw, i) => {
    for (const token of raw.replace(/#.*/, '').trim().split(/\s+/)) {
      if (token === '') continue;
      const n = parseNet(token);
      if (!n.ok) continue;
      ours.set(n.value.cidr, { line: i + 1, token, refused: refusedAddress(n.value) });
    }
  });
  if (mode === 'members') {
    const all = [...new Set([...legacy.keys(), ...ours.keys()])];
    if (all.length === 0) return;
    for (const c of ours.keys()) explained.add(`${f.set}|${c}`);
    add({
      kind: 'ipset-file',
      subject: f.file,
      befw: `adds ${ours.size} member(s) to set ${f.set}${[RULES_ALLOW, 'rules_deny'].includes(f.set) ? ` (enforced on every port)` : ''} (ipset_files=members)`,
      legacy: `puts ${legacy.size} member(s) into a set of its own, ${own}, with no rule`,
      fix: 'ipset_files=befw (the default)',
      source: 'befw/static.go:57-84',
      deliberate: false,
    });
    return;
  }
  for (const [cidr, o] of ours) {
    if (legacy.has(cidr) && o.refused === null) continue;
    add({
      kind: 'ipset-file',
      subject: `${f.file}:${o.line} ${o.token}`,
      befw: o.refused === null ? `member of ${own}` : `refused (${o.refused})`,
      legacy: legacy.has(cidr) ? `member of ${own}` : `skipped: net.ParseCIDR needs a prefix length`,
      fix:
        o.refused === null ? `write it as ${cidr} (BEFW then reads it too)` : 'remove the line: such an address is never a member in befw',
      source: 'befw/static.go:73-78',
      deliberate: o.refused !== null,
    });
  }
  for (const [cidr, token] of legacy) {
    if (ours.has(cidr)) continue;
    add({
      kind: 'ipset-file',
      subject: `${f.file} ${token}`,
      befw: 'not a member (befw skips what follows # on a line)',
      legacy: `member of ${own}: BEFW reads every token, comments too`,
      fix: 'delete the line if the address is meant to be out',
      source: 'befw/static.go:53-55, 73-78',
      deliberate: false,
    });
  }
}
