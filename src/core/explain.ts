/**
 * `befw explain`: why an address is accepted or refused on a node, read from the same compiled
 * plan the agent enforces. Pure: plan + parsed grants + address in, an explanation out.
 *
 * The walk follows `plan.rules` in order, exactly the chain the backends render (loopback,
 * protected networks, Consul peers, rules_allow, rules_deny, custom sets, then each service port),
 * so there is no second copy of the rule order here: a rule the compiler adds or moves shows up
 * in explanations by itself. For each rule it asks what the kernel asks: is the source in the
 * set (any member network containing it; several may), does the port and protocol match, and
 * what does the target do (ACCEPT/DROP/REJECT stop, LOG/NFLOG go on, RETURN and the end of the
 * chain fall through to the rest of INPUT, a user chain decides for itself).
 *
 * Provenance comes from the plan's set views (scope and alias path of each member) and, when the
 * caller passes the node's parsed grants, the KV keys behind each member with their expiry, link
 * by link along an alias chain. The grants also explain what is not in a set: a deny entry that
 * protection clipped away, an entry that has expired.
 */
import { type Family, parseIp, parseNet } from './address.js';
import { type Grant, type Kind, isLive } from './kvLayout.js';
import { PROTECT_SET } from './memberGuard.js';
import { expiryOf, planSetName } from './planSets.js';
import { formatTime } from './timeText.js';
import { targetText } from './types.js';
import type { ChainRule, EffectiveMember, Plan, PlanSet, Proto, SetFamily, SetView, Target } from './types.js';

/** What the packet meets at the end: a verdict, the rest of INPUT, or a user chain. */
export type Verdict = 'ACCEPT' | 'REJECT' | 'DROP' | 'INPUT' | `chain:${string}`;

/** What one rule does to this packet. */
export type Effect = 'accept' | 'reject' | 'drop' | 'log' | 'return' | 'jump' | 'next';

/** One link of the way a member got into a set: a KV key (or file, config) and its expiry. */
export interface SourceLink {
  readonly key: string;
  /** Unix ms, null never. */
  readonly expiresAt: number | null;
}

export interface MemberMatch {
  /** The member network that contains the address (as in the plan). */
  readonly cidr: string;
  /** Unix ms when it leaves the kernel, null never. */
  readonly expiresAt: number | null;
  /** The plan's origins: `world`, `dc $ops$ > $oncall$`, `file x.ipset`, `config`... */
  readonly via: readonly string[];
  /** For each origin that is KV, the keys from the referencing entry down to the address. */
  readonly chains: readonly (readonly SourceLink[])[];
}

export interface RuleStep {
  /** Position in plan.rules (0-based): the chain's own order. */
  readonly index: number;
  readonly kind: ChainRule['kind'];
  /** The rule as an operator reads it: `rules_deny REJECT`, `web_tcp_8080 8080/tcp enforcing`. */
  readonly rule: string;
  readonly matched: boolean;
  readonly effect: Effect;
  readonly why: string;
  readonly members: readonly MemberMatch[];
}

export interface Probe {
  readonly proto: Proto | null;
  /** The port asked about, or null for "a port no service rule names". */
  readonly port: number | null;
  readonly label: string;
  readonly verdict: Verdict;
  /** Index of the rule that decided, null when the chain fell through. */
  readonly decidedBy: number | null;
  /** Unix ms until which the deciding match holds (its members' expiry), null: no end in sight. */
  readonly until: number | null;
  readonly steps: readonly RuleStep[];
}

export interface Explanation {
  readonly address: string;
  readonly family: Family;
  readonly node: { readonly name: string; readonly dc: string };
  /** Unix ms the plan was compiled for. */
  readonly at: number;
  readonly probes: readonly Probe[];
  /** Entries that name the address but are not enforced: expired, or clipped as protected. */
  readonly notes: readonly string[];
}

export interface ExplainQuery {
  readonly address: string;
  /** null: every port a service rule names, plus "any other port". */
  readonly port: number | null;
  readonly proto: Proto;
}

export interface ExplainInput {
  readonly plan: Plan;
  readonly node: { readonly name: string; readonly dc: string };
  readonly nowMs: number;
  /** The node's parsed grants (parseKv): optional, names the KV keys behind each member. */
  readonly grants?: readonly Grant[];
}

export class ExplainError extends Error {}

/** An address as a number of its family, for containment tests without text comparison. */
interface Ip {
  readonly family: Family;
  readonly value: bigint;
  readonly canonical: string;
}

function toIp(text: string): Ip | null {
  const r = parseNet(text);
  if (!r.ok || text.includes('/')) return null;
  const ip = parseIp(r.value.cidr.slice(0, r.value.cidr.indexOf('/')));
  if (!ip.ok) return null;
  const value = ip.value.family === 4 ? BigInt(ip.value.v4 ?? 0) : (ip.value.v6 ?? 0n);
  return { family: ip.value.family, value, canonical: r.value.cidr.slice(0, r.value.cidr.indexOf('/')) };
}

/** True when the canonical network `cidr` holds the address. */
export function netContains(cidr: string, ip: Ip): boolean {
  const slash = cidr.indexOf('/');
  const base = parseIp(slash < 0 ? cidr : cidr.slice(0, slash));
  if (!base.ok || base.value.family !== ip.family) return false;
  const width = ip.family === 4 ? 32 : 128;
  const prefix = slash < 0 ? width : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > width) return false;
  const b = ip.family === 4 ? BigInt(base.value.v4 ?? 0) : (base.value.v6 ?? 0n);
  const host = BigInt(width - prefix);
  return b >> host === ip.value >> host;
}

function familyOf(ip: Ip): SetFamily {
  return ip.family === 4 ? 'inet' : 'inet6';
}

const LOOPBACK_NETS = ['127.0.0.0/8', '::1/128'];

/** Ports of a service rule (`8080`, `30000:30100`) as a range. */
function portRange(text: string): { from: number; to: number } {
  const [a = '0', b] = text.split(':');
  return { from: Number(a), to: Number(b ?? a) };
}

class Matcher {
  private readonly sets: Map<string, PlanSet>;
  private readonly views: Map<string, SetView>;
  private readonly memo = new Map<string, MemberMatch[]>();

  constructor(
    private readonly input: ExplainInput,
    private readonly ip: Ip,
  ) {
    this.sets = new Map(input.plan.sets.map((s) => [s.name, s]));
    this.views = new Map(input.plan.setViews.map((v) => [v.logical, v]));
  }

  /** Members of a logical set (this address's family) that contain the address; each set is scanned once. */
  members(logical: string): MemberMatch[] {
    const known = this.memo.get(logical);
    if (known !== undefined) return known;
    const found = this.scan(logical);
    this.memo.set(logical, found);
    return found;
  }

  private scan(logical: string): MemberMatch[] {
    const set = this.sets.get(planSetName(logical, familyOf(this.ip)));
    if (set === undefined) return [];
    const view = this.views.get(logical);
    const out: MemberMatch[] = [];
    for (const cidr of set.members) {
      if (!netContains(cidr, this.ip)) continue;
      const m = view?.members.find((x) => x.cidr === cidr);
      const secs = expiryOf(set, cidr);
      const expiresAt = m?.expiresAt ?? (secs === null ? null : secs * 1000);
      out.push({ cidr, expiresAt, via: m?.via ?? [], chains: this.chains(logical, view, m, cidr) });
    }
    return out;
  }

  /** The KV keys behind a member, origin by origin. */
  private chains(logical: string, view: SetView | undefined, m: EffectiveMember | undefined, cidr: string): SourceLink[][] {
    const grants = this.input.grants;
    if (grants === undefined || m === undefined || view === undefined || view.kind === 'protected') return [];
    const kind: Kind = view.kind === 'service' ? '$service$' : '$ipset$';
    const out: SourceLink[][] = [];
    for (const via of m.via) {
      const [scope, ...rest] = via.split(' ');
      if (scope !== 'world' && scope !== 'dc' && scope !== 'node') continue;
      const path = rest
        .join(' ')
        .split(' > ')
        .filter((p) => p !== '');
      const chain = this.chain(grants, kind, logical, scope, path, cidr);
      if (chain !== null) out.push(chain);
    }
    return out;
  }

  private chain(
    grants: readonly Grant[],
    kind: Kind,
    target: string,
    scope: string,
    path: readonly string[],
    cidr: string,
  ): SourceLink[] | null {
    const live = (g: Grant): boolean => g.badValue === undefined && isLive(g.expiry, this.input.nowMs);
    const link = (g: Grant): SourceLink => ({ key: g.key, expiresAt: g.expiry === null ? null : g.expiry * 1000 });
    const holds = (g: Grant): boolean =>
      g.addr === 'net' && g.family === this.ip.family && netContains(g.cidr, this.ip) && coversCidr(g.cidr, cidr);
    // A deny that fails closed on a bad value is enforced too: accept it for the first link.
    const first = grants.filter(
      (g) =>
        g.kind === kind &&
        g.target === target &&
        g.scope === scope &&
        (g.badValue !== undefined || isLive(g.expiry, this.input.nowMs)) &&
        (path.length === 0 ? holds(g) : g.addr === 'alias' && g.alias === path[0]),
    );
    const head = best(first);
    if (head === undefined) return null;
    const out = [link(head)];
    for (let i = 0; i < path.length; i++) {
      const alias = path[i] as string;
      const next = path[i + 1];
      const members = grants.filter(
        (g) =>
          g.kind === '$alias$' && g.target === alias && live(g) && (next === undefined ? holds(g) : g.addr === 'alias' && g.alias === next),
      );
      const g = best(members);
      if (g === undefined) return out;
      out.push(link(g));
    }
    return out;
  }
}

/** True when network `outer` holds all of network `inner` (clipped deny members lie inside their key's network). */
function coversCidr(outer: string, inner: string): boolean {
  const slash = inner.indexOf('/');
  const ip = toIp(inner.slice(0, slash));
  if (ip === null) return false;
  const op = Number(outer.slice(outer.indexOf('/') + 1));
  return netContains(outer, ip) && op <= Number(inner.slice(slash + 1));
}

/** Of several keys for one link, the one that lasts longest (what keeps the member in). */
function best(gs: readonly Grant[]): Grant | undefined {
  let b: Grant | undefined;
  for (const g of gs) if (b === undefined || (b.expiry !== null && (g.expiry === null || g.expiry > b.expiry))) b = g;
  return b;
}

/** Latest expiry of the matched members: a match holds while any of them does. */
function untilOf(members: readonly MemberMatch[]): number | null {
  let u: number | null = 0;
  for (const m of members) {
    if (m.expiresAt === null) return null;
    u = Math.max(u, m.expiresAt);
  }
  return members.length === 0 ? null : u;
}

function ruleText(r: ChainRule): string {
  switch (r.kind) {
    case 'loopback':
      return 'loopback interface ACCEPT';
    case 'peers':
      return `Consul peers ${r.ports.join(',')}/${r.proto} ACCEPT`;
    case 'static':
      return r.set === PROTECT_SET ? 'protected networks (management, protect=) ACCEPT' : `${r.set} ${targetText(r.target)}`;
    case 'trap':
      return `trap ports ${r.ports.join(',')}/tcp LOG`;
    case 'service':
      return `${r.service} ${r.port}/${r.proto} ${r.mode}`;
  }
}

interface Outcome {
  readonly effect: Effect;
  readonly verdict: Verdict | null;
  readonly why: string;
}

function staticOutcome(target: Exclude<Target, 'NOOP'>, set: string): Outcome {
  switch (target) {
    case 'ACCEPT':
      return { effect: 'accept', verdict: 'ACCEPT', why: `member of ${set}: accepted` };
    case 'REJECT':
      return { effect: 'reject', verdict: 'REJECT', why: `member of ${set}: rejected` };
    case 'DROP':
      return { effect: 'drop', verdict: 'DROP', why: `member of ${set}: dropped` };
    case 'LOG':
    case 'NFLOG':
      return { effect: 'log', verdict: null, why: `member of ${set}: logged (${target}), evaluation goes on` };
    case 'RETURN':
      return { effect: 'return', verdict: 'INPUT', why: `member of ${set}: RETURN leaves the BEFW chain; the rest of INPUT decides` };
    default: {
      const chain = target.slice('chain:'.length);
      return {
        effect: 'jump',
        verdict: `chain:${chain}`,
        why: `member of ${set}: jumps to chain ${chain}, which decides (if it returns, BEFW goes on)`,
      };
    }
  }
}

/** Does the rule apply to this probe's port and protocol? (null for rules without a port condition.) */
function portMatches(r: ChainRule, proto: Proto | null, port: number | null): boolean | null {
  if (r.kind === 'peers') return proto === r.proto && port !== null && r.ports.includes(port);
  if (r.kind === 'trap') return proto === 'tcp' && port !== null && r.ports.includes(port);
  if (r.kind !== 'service') return null;
  const range = portRange(r.port);
  return proto === r.proto && port !== null && port >= range.from && port <= range.to;
}

function walk(m: Matcher, rules: readonly ChainRule[], ip: Ip, proto: Proto | null, port: number | null, label: string): Probe {
  const steps: RuleStep[] = [];
  for (let index = 0; index < rules.length; index++) {
    const r = rules[index] as ChainRule;
    const rule = ruleText(r);
    const ports = portMatches(r, proto, port);
    // Service and trap rules for other ports are not on this packet's path at all: leave them out.
    if ((r.kind === 'service' || r.kind === 'trap') && ports !== true) continue;
    if (r.kind === 'trap') {
      steps.push({
        index,
        kind: r.kind,
        rule,
        matched: true,
        effect: 'log',
        why: 'a trap port: logged (rate-limited), goes on',
        members: [],
      });
      continue;
    }
    if (r.kind === 'loopback') {
      const on = LOOPBACK_NETS.some((n) => netContains(n, ip));
      const why = on ? 'a loopback address arrives on lo: accepted' : 'not a loopback address (-i lo)';
      steps.push({ index, kind: r.kind, rule, matched: on, effect: on ? 'accept' : 'next', why, members: [] });
      if (on) return done(steps, index, 'ACCEPT', null, proto, port, label);
      continue;
    }
    const members = m.members(r.set);
    if (r.kind === 'peers') {
      const on = members.length > 0 && ports === true;
      const why =
        members.length === 0
          ? 'not a Consul peer'
          : on
            ? 'Consul peer on a Consul port: accepted'
            : 'Consul peer, but not on a Consul port';
      steps.push({ index, kind: r.kind, rule, matched: on, effect: on ? 'accept' : 'next', why, members });
      if (on) return done(steps, index, 'ACCEPT', untilOf(members), proto, port, label);
      continue;
    }
    if (r.kind === 'static') {
      if (members.length === 0) {
        steps.push({
          index,
          kind: r.kind,
          rule,
          matched: false,
          effect: 'next',
          why: `not in ${r.set === PROTECT_SET ? 'the protected networks' : r.set}`,
          members,
        });
        continue;
      }
      const o =
        r.set === PROTECT_SET
          ? {
              effect: 'accept' as const,
              verdict: 'ACCEPT' as const,
              why: 'protected network (management, protect=): accepted ahead of every deny',
            }
          : staticOutcome(r.target, r.set);
      steps.push({ index, kind: r.kind, rule, matched: true, effect: o.effect, why: o.why, members });
      if (o.verdict !== null) return done(steps, index, o.verdict, untilOf(members), proto, port, label);
      continue;
    }
    if (members.length > 0) {
      steps.push({ index, kind: r.kind, rule, matched: true, effect: 'accept', why: `client of ${r.set}: accepted`, members });
      return done(steps, index, 'ACCEPT', untilOf(members), proto, port, label);
    }
    if (r.mode === 'enforcing') {
      steps.push({
        index,
        kind: r.kind,
        rule,
        matched: true,
        effect: 'drop',
        why: `not a client of ${r.set}, and the service is enforcing: dropped`,
        members,
      });
      return done(steps, index, 'DROP', null, proto, port, label);
    }
    steps.push({
      index,
      kind: r.kind,
      rule,
      matched: false,
      effect: 'next',
      why: `not a client of ${r.set}; mode ${r.mode}: not filtered here${r.mode === 'observe' ? ' (logged for befw observed)' : ''}, goes on`,
      members,
    });
  }
  return done(steps, null, 'INPUT', null, proto, port, label);
}

function done(
  steps: RuleStep[],
  decidedBy: number | null,
  verdict: Verdict,
  until: number | null,
  proto: Proto | null,
  port: number | null,
  label: string,
): Probe {
  return { proto, port, label, verdict, decidedBy, until, steps };
}

/** The probes to run: the asked port, or every port a rule names plus "any other port". */
function probesFor(rules: readonly ChainRule[], q: ExplainQuery): { proto: Proto | null; port: number | null; label: string }[] {
  if (q.port !== null) return [{ proto: q.proto, port: q.port, label: `${q.port}/${q.proto}` }];
  const out: { proto: Proto | null; port: number | null; label: string }[] = [];
  const seen = new Set<string>();
  for (const r of rules) {
    if (r.kind !== 'service') continue;
    const label = `${r.port}/${r.proto}`;
    if (seen.has(label)) continue;
    seen.add(label);
    out.push({ proto: r.proto, port: portRange(r.port).from, label: `${label} (${r.service})` });
  }
  out.push({ proto: null, port: null, label: 'any other port' });
  return out;
}

/** Entries that name the address but are not in the plan: expired, or clipped as protected. */
function notesFor(input: ExplainInput, m: Matcher, ip: Ip): string[] {
  const grants = input.grants ?? [];
  const notes: string[] = [];
  const denySets = new Set(
    input.plan.rules.flatMap((r) => (r.kind === 'static' && (r.target === 'DROP' || r.target === 'REJECT') ? [r.set] : [])),
  );
  for (const g of grants) {
    if (g.addr !== 'net' || g.family !== ip.family || g.kind === '$alias$' || !netContains(g.cidr, ip)) continue;
    if (g.badValue !== undefined && !denySets.has(g.target)) {
      notes.push(`${g.key} names it but is not enforced: ${g.badValue}`);
      continue;
    }
    if (!isLive(g.expiry, input.nowMs)) {
      notes.push(`${g.key} named it until ${formatTime((g.expiry ?? 0) * 1000)} (expired)`);
      continue;
    }
    if (g.kind === '$ipset$' && denySets.has(g.target) && m.members(g.target).length === 0) {
      notes.push(
        `${g.key} would deny it, but the address is protected (loopback, management network, protect= or a Consul peer): clipped out of ${g.target}`,
      );
    }
  }
  return notes;
}

export function explain(input: ExplainInput, q: ExplainQuery): Explanation {
  const ip = toIp(q.address);
  if (ip === null)
    throw new ExplainError(`"${q.address.slice(0, 60)}" is not one IPv4 or IPv6 address (explain takes an address, not a network)`);
  if (q.port !== null && (!Number.isInteger(q.port) || q.port < 1 || q.port > 65535))
    throw new ExplainError(`port ${q.port} is not 1-65535`);
  const m = new Matcher(input, ip);
  const rules = input.plan.rules;
  if (q.port === null) {
    // Decided before any rule with a port condition: the same on every port, said once.
    const any = walk(m, rules, ip, null, null, 'every port');
    const by = any.decidedBy === null ? undefined : rules[any.decidedBy];
    // A peers rule ahead matters only for a peer; trap rules only log.
    const portless = (r: ChainRule): boolean =>
      r.kind === 'loopback' || r.kind === 'static' || r.kind === 'trap' || (r.kind === 'peers' && m.members(r.set).length === 0);
    if (by !== undefined && (by.kind === 'loopback' || by.kind === 'static') && rules.slice(0, any.decidedBy ?? 0).every(portless))
      return { address: ip.canonical, family: ip.family, node: input.node, at: input.nowMs, probes: [any], notes: notesFor(input, m, ip) };
  }
  const probes = probesFor(rules, q).map((p) => walk(m, rules, ip, p.proto, p.port, p.label));
  return { address: ip.canonical, family: ip.family, node: input.node, at: input.nowMs, probes, notes: notesFor(input, m, ip) };
}

/** Client entries of the CLI's `ls --address`: a network or host that contains the address. */
export function addressIn(cidr: string, address: string): boolean {
  const ip = toIp(address);
  return ip !== null && netContains(cidr, ip);
}
