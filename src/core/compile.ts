/**
 * The compiler: snapshot + options + now -> plan. Pure and deterministic: the same input gives a
 * byte-identical plan, so "nothing changed" is a fingerprint comparison and plans have golden tests.
 */
import { type Family, type Net, parseNet, printable } from './address.js';
import { AliasResolver, minExpiry } from './aliases.js';
import { hash53 } from './hash.js';
import { type Grant, type KvParseCache, SET_NAME, isLive, parseKv } from './kvLayout.js';
import { MemberGuard, PEERS_SET, PROTECT_SET } from './memberGuard.js';
import { type ServiceDef, collectServices, portText } from './services.js';
import { planSet } from './planSets.js';
import { trapRules } from './trap.js';
import type {
  ChainRule,
  CompileOptions,
  Diagnostic,
  EffectiveMember,
  KvPair,
  Plan,
  PlanSet,
  SetView,
  Snapshot,
  StaticSetConfig,
} from './types.js';

export const RULES_ALLOW = 'rules_allow';
export const RULES_DENY = 'rules_deny';
export const BUILTIN_SETS: readonly StaticSetConfig[] = [
  { name: RULES_ALLOW, priority: 1, target: 'ACCEPT' },
  { name: RULES_DENY, priority: 2, target: 'REJECT' },
];

/** Sets made from `.ipset` files come after every rule-bearing set (they have no rule anyway). */
const FILE_SET_PRIORITY = 1_000_000;

/** ipset's default; sets grow past it in powers of two with room for the next changes. */
export const MIN_MAXELEM = 65536;

export function maxelemFor(count: number): number {
  let m = MIN_MAXELEM;
  while (m < count * 2) m *= 2;
  return m;
}

interface MemberAcc {
  readonly family: Family;
  readonly prefix: number;
  expiry: number | null;
  /** Origins, only collected when views are wanted. */
  via: string[] | null;
}

class SetAcc {
  readonly members = new Map<string, MemberAcc>();
  constructor(private readonly views: boolean) {}
  add(net: Net, expiry: number | null, via: string): void {
    const cur = this.members.get(net.cidr);
    if (cur === undefined) {
      this.members.set(net.cidr, { family: net.family, prefix: net.prefix, expiry, via: this.views ? [via] : null });
      return;
    }
    // Several grants for one address: it stays while any of them does.
    cur.expiry = cur.expiry === null || expiry === null ? null : Math.max(cur.expiry, expiry);
    if (cur.via !== null && !cur.via.includes(via)) cur.via.push(via);
  }
}

/** One family's members of a set, and those that expire with their Unix second. */
interface MemberLists {
  readonly members: string[];
  readonly expiring: string[];
  readonly at: number[];
}

/** True when the pairs are already in code-unit order of their keys (Consul lists them so). */
function isSortedByKey(xs: readonly KvPair[]): boolean {
  for (let i = 1; i < xs.length; i++) if ((xs[i - 1] as KvPair).key > (xs[i] as KvPair).key) return false;
  return true;
}

function byString<T>(key: (t: T) => string): (a: T, b: T) => number {
  return (a, b) => {
    const x = key(a);
    const y = key(b);
    return x < y ? -1 : x > y ? 1 : 0;
  };
}

function badValueDiagnostic(g: Grant, failClosed: boolean): Diagnostic {
  return {
    severity: failClosed ? 'warning' : 'error',
    code: 'bad-expiry',
    subject: printable(g.key, 200),
    message: `${g.badValue ?? 'bad value'}; ${failClosed ? 'enforced without expiry: a deny fails closed' : 'entry not enforced'}`,
  };
}

export interface CompileExtras {
  /** Build `setViews` (members with expiry and origin, for show and status). Default true. */
  readonly views?: boolean;
  /** Parse results kept between compiles of the same node; output is identical with or without. */
  readonly cache?: KvParseCache;
}

/** The trap ports no service uses; a collision (a service appeared since the agent chose) is reported. */
function trapPortsClear(ports: readonly number[], services: readonly ServiceDef[], diagnostics: Diagnostic[]): number[] {
  const tcp = services.flatMap((s) => s.ports.filter((p) => p.proto === 'tcp'));
  return ports.filter((port) => {
    const hit = tcp.some((p) => p.from <= port && port <= p.to);
    if (hit)
      diagnostics.push({
        severity: 'warning',
        code: 'trap-port-used',
        subject: `trap port ${port}`,
        message: 'a service uses this port; no trap on it',
      });
    return !hit;
  });
}

export function compile(snapshot: Snapshot, options: CompileOptions, nowMs: number, extras: CompileExtras = {}): Plan {
  const views = extras.views ?? true;
  const diagnostics: Diagnostic[] = [...snapshot.inputDiagnostics];
  const svc = collectServices(snapshot.agentServices, snapshot.fileServices, options.setNaming);
  diagnostics.push(...svc.diagnostics);

  const serviceSets = new Map<string, ServiceDef>(svc.services.map((s) => [s.set, s]));
  const staticSets = new Map<string, StaticSetConfig>();
  for (const s of [...BUILTIN_SETS, ...options.customSets]) {
    if (serviceSets.has(s.name)) {
      diagnostics.push({
        severity: 'error',
        code: 'set-conflict',
        subject: `set ${s.name}`,
        message: 'custom set has the name of a service set; the custom set is ignored',
      });
      continue;
    }
    staticSets.set(s.name, s);
  }

  const acc = new Map<string, SetAcc>();
  for (const name of [...serviceSets.keys(), ...staticSets.keys()]) acc.set(name, new SetAcc(views));
  const membersOf = (logical: string): Net[] =>
    [...(acc.get(logical)?.members.entries() ?? [])].map(([cidr, m]) => ({ family: m.family, cidr, prefix: m.prefix }));
  const guard = new MemberGuard(snapshot, options, staticSets, diagnostics, membersOf);

  // KV is a map: sort it so that diagnostics, and which key an unknown alias is reported
  // against, do not depend on the order a caller listed the pairs in.
  const pairs = isSortedByKey(snapshot.kv) ? snapshot.kv : [...snapshot.kv].sort(byString((p) => p.key));
  const kv = parseKv(pairs, snapshot.node, extras.cache);
  diagnostics.push(...kv.diagnostics);
  const aliasGrants: Grant[] = [];
  const setGrants: Grant[] = [];
  for (const g of kv.grants) {
    if (g.kind !== '$alias$') setGrants.push(g);
    else if (g.badValue === undefined) aliasGrants.push(g);
    else diagnostics.push(badValueDiagnostic(g, false));
  }
  const aliases = new AliasResolver(aliasGrants, nowMs);

  for (const g of setGrants) {
    const target = acc.get(g.target);
    // Grants for sets this node does not have belong to other nodes' services: not an error.
    if (target === undefined) continue;
    if (g.kind === '$service$' && !serviceSets.has(g.target)) continue;
    if (g.kind === '$ipset$' && !staticSets.has(g.target)) continue;
    if (g.badValue !== undefined) {
      // A typo must never let in what a deny keeps out: a deny with a bad value fails closed
      // (enforced, never expiring); a grant with one is not enforced. Both are reported.
      const deny = staticSets.get(g.target)?.target;
      const failClosed = g.kind === '$ipset$' && (deny === 'DROP' || deny === 'REJECT');
      diagnostics.push(badValueDiagnostic(g, failClosed));
      if (!failClosed) continue;
    }
    if (!isLive(g.expiry, nowMs)) continue;
    const subject = printable(g.key, 200);
    if (g.addr === 'net') {
      guard.add(target, g.target, g, g.expiry, g.scope, subject);
      continue;
    }
    for (const e of aliases.expand(g.alias, subject)) {
      guard.add(target, g.target, e.net, minExpiry(g.expiry, e.expiry), `${g.scope} ${e.path.join(' > ')}`, subject);
    }
  }
  diagnostics.push(...aliases.diagnostics);

  for (const f of [...snapshot.ipsetFiles].sort(byString((x) => x.file))) {
    // BEFW's meaning (the default): a file is a set of its own, named after the file, for the
    // host's own rules; befw writes no rule for it. `ipset_files=members` adds its lines to the
    // set of the same name instead.
    const own = (options.ipsetFiles ?? 'befw') === 'befw';
    const name = own ? `${f.set}.ipset` : f.set;
    if (!SET_NAME.test(name)) {
      // The name reaches the kernel (and ipset's restore script): only set-name characters.
      diagnostics.push({
        severity: 'error',
        code: 'bad-name',
        subject: printable(f.file),
        message: 'a set name from a file name must be [a-z0-9._-]; file ignored',
      });
      continue;
    }
    if (own && !acc.has(name) && !serviceSets.has(name)) {
      acc.set(name, new SetAcc(views));
      staticSets.set(name, { name, priority: FILE_SET_PRIORITY, target: 'NOOP' });
    }
    const target = acc.get(name);
    if (target === undefined || (own && !staticSets.has(name))) {
      diagnostics.push({
        severity: 'warning',
        code: own ? 'set-conflict' : 'unknown-set',
        subject: printable(f.file),
        message: own
          ? `a set named ${printable(name)} exists already; file ignored`
          : `no set named ${printable(name)} on this node; file ignored`,
      });
      continue;
    }
    f.text.split('\n').forEach((raw, i) => {
      // BEFW takes any whitespace-separated tokens; befw also allows comments.
      for (const token of raw.replace(/#.*/, '').trim().split(/\s+/)) {
        if (token === '') continue;
        const net = parseNet(token);
        if (!net.ok) {
          diagnostics.push({
            severity: 'error',
            code: 'bad-address',
            subject: `${printable(f.file)}:${i + 1}`,
            message: `${net.error}; ignored`,
          });
          continue;
        }
        guard.add(target, name, net.value, null, `file ${f.file}`, `${printable(f.file)}:${i + 1}`);
      }
    });
  }

  const allow = acc.get(RULES_ALLOW);
  for (const net of options.managementNets) allow?.add(net, null, 'config');
  for (const name of [...staticSets.keys()].sort()) guard.reportShadowed(name, membersOf(name));

  // Logical names all the way: each backend names its kernel objects itself (ipset's 31
  // characters, nftables' identifiers), and splits what its sets cannot hold (ipset and /0).
  const sets: PlanSet[] = [];
  const setViews: SetView[] = [];
  let nextExpiry: number | null = null;
  for (const [logical, a] of [...acc.entries()].sort(byString(([n]) => n))) {
    const members: EffectiveMember[] = [];
    const v4: MemberLists = { members: [], expiring: [], at: [] };
    const v6: MemberLists = { members: [], expiring: [], at: [] };
    for (const cidr of [...a.members.keys()].sort()) {
      const m = a.members.get(cidr) as MemberAcc;
      const expiresAt = m.expiry === null ? null : m.expiry * 1000;
      if (expiresAt !== null && (nextExpiry === null || expiresAt < nextExpiry)) nextExpiry = expiresAt;
      const shadow = guard.shadowedBy(logical, { family: m.family, cidr, prefix: m.prefix });
      if (m.via !== null)
        members.push({ cidr, family: m.family, expiresAt, via: m.via.sort(), ...(shadow === null ? {} : { shadowedBy: shadow }) });
      const out = m.family === 4 ? v4 : v6;
      out.members.push(cidr);
      if (m.expiry !== null) {
        out.expiring.push(cidr);
        out.at.push(m.expiry);
      }
    }
    sets.push(planSet(logical, 'inet', v4.members, maxelemFor(v4.members.length), v4));
    sets.push(planSet(logical, 'inet6', v6.members, maxelemFor(v6.members.length), v6));
    if (views) setViews.push({ logical, kind: serviceSets.has(logical) ? 'service' : 'static', members });
  }
  for (const p of guard.protectedSets()) {
    sets.push(...p.sets);
    if (views) setViews.push(p.view);
  }
  sets.sort(byString((s) => s.name));

  // Protected paths first, ahead of every deny: loopback, management and protect=, Consul's peers.
  const rules: ChainRule[] = [{ kind: 'loopback' }, { kind: 'static', set: PROTECT_SET, target: 'ACCEPT' }];
  const peers = guard.peers;
  if (peers.tcpPorts.length > 0) rules.push({ kind: 'peers', set: PEERS_SET, proto: 'tcp', ports: peers.tcpPorts });
  if (peers.udpPorts.length > 0) rules.push({ kind: 'peers', set: PEERS_SET, proto: 'udp', ports: peers.udpPorts });
  // rules_allow and rules_deny first whatever a custom set's priority (BEFW inserted `-I BEFW P`,
  // so its priority 1 or 2 went ahead of them: befw/fwiptables.go:210-224, const.go:23); then the
  // custom sets by priority, then name. No custom target (LOG, RETURN, a chain) precedes a deny.
  const builtin = (s: StaticSetConfig): number => BUILTIN_SETS.findIndex((b) => b.name === s.name);
  const rank = (s: StaticSetConfig): number => (builtin(s) === -1 ? 1 : 0);
  const ordered = [...staticSets.values()].sort(
    (a, b) => rank(a) - rank(b) || a.priority - b.priority || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0),
  );
  for (const s of ordered) {
    if (s.target === 'NOOP') continue;
    rules.push({ kind: 'static', set: s.name, target: s.target });
  }
  // Trap ports after every allow and deny (a trap never logs what the protected paths or
  // rules_allow accept), before the services; never on a port a service of this plan uses.
  if (options.nids === true) rules.push(...trapRules(trapPortsClear(snapshot.trapPorts ?? [], svc.services, diagnostics)));
  for (const s of svc.services) {
    const [primary, ...extra] = s.ports;
    const ports =
      primary === undefined
        ? []
        : [primary, ...[...extra].sort((a, b) => (a.proto < b.proto ? -1 : a.proto > b.proto ? 1 : a.from - b.from || a.to - b.to))];
    for (const p of ports) {
      const mode = s.mode === 'default' && options.observeDefault === true ? 'observe' : s.mode;
      rules.push({ kind: 'service', service: s.set, set: s.set, proto: p.proto, port: portText(p), mode });
    }
  }

  const fingerprint = hash53(JSON.stringify({ sets, rules }));
  return {
    sets,
    rules,
    fingerprint,
    nextExpiry,
    services: svc.services.map((s) => ({ name: s.name, set: s.set, mode: s.mode, ports: s.ports, origins: s.origin.split(',') })),
    setViews,
    diagnostics,
  };
}
