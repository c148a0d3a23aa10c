/**
 * The compiler's gate for every member on its way into a set (see protect.ts for the rule):
 *   - refused addresses (loopback, link-local, unspecified, multicast) never enter any set;
 *   - members of deny sets (target DROP or REJECT) lose every protected range, and what is left
 *     of a wide network is still enforced;
 *   - a deny member that an allow set ahead of it already accepts is reported as having no effect.
 * Each refusal or clip is a diagnostic naming the key (or file line) and what it would have cut.
 */
import { type Net, kernelMembers, parseNet } from './address.js';
import { LOOPBACK, NO_PEERS, NetworkSet, type ConsulPeers, refusedAddress } from './protect.js';
import type { CompileOptions, Diagnostic, EffectiveMember, PlanSet, SetView, Snapshot, StaticSetConfig } from './types.js';

/** Kernel sets of the protected paths; `~` cannot appear in a service or config set name. */
export const PROTECT_SET = 'befw~protect';
export const PEERS_SET = 'befw~consul';
/** iptables' multiport match takes at most 15 ports. */
const MAX_PEER_PORTS = 15;

export interface MemberSink {
  add(net: Net, expiry: number | null, via: string): void;
}

interface Labelled {
  readonly net: Net;
  readonly what: string;
}

function toNet(text: string): Net | null {
  const r = parseNet(text);
  return r.ok ? { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix } : null;
}

function cleanPorts(ports: readonly number[]): number[] {
  return [...new Set(ports.filter((p) => Number.isInteger(p) && p >= 1 && p <= 65535))].sort((a, b) => a - b).slice(0, MAX_PEER_PORTS);
}

/** Peers as the compiler trusts them: valid addresses only, valid ports only, sorted. */
export function cleanPeers(p: ConsulPeers | undefined): ConsulPeers {
  if (p === undefined) return NO_PEERS;
  const addrs = [...new Set(p.addrs.map((a) => toNet(a)?.cidr).filter((c): c is string => c !== undefined))].sort();
  return { addrs, tcpPorts: cleanPorts(p.tcpPorts), udpPorts: cleanPorts(p.udpPorts) };
}

function setPair(name: string, nets: readonly Net[]): PlanSet[] {
  const members = (family: 4 | 6): string[] => [...new Set(nets.filter((n) => n.family === family).flatMap(kernelMembers))].sort();
  const m4 = members(4);
  const m6 = members(6);
  return [
    { name, family: 'inet', members: m4, maxelem: Math.max(65536, m4.length * 2) },
    { name: `${name}_v6`, family: 'inet6', members: m6, maxelem: Math.max(65536, m6.length * 2) },
  ];
}

export class MemberGuard {
  readonly peers: ConsulPeers;
  private readonly labelled: Labelled[];
  private readonly protectedNets: NetworkSet;
  private readonly denySets: ReadonlyMap<string, StaticSetConfig>;
  private readonly allowSets: readonly StaticSetConfig[];
  private readonly allowCache = new Map<string, NetworkSet>();

  constructor(
    snapshot: Snapshot,
    private readonly options: CompileOptions,
    staticSets: ReadonlyMap<string, StaticSetConfig>,
    private readonly diagnostics: Diagnostic[],
    private readonly membersOf: (logical: string) => readonly Net[],
  ) {
    this.peers = cleanPeers(snapshot.consulPeers);
    this.labelled = [
      ...LOOPBACK.map((net) => ({ net, what: 'loopback' })),
      ...options.managementNets.map((net) => ({ net, what: 'management network' })),
      ...(options.protect ?? []).map((net) => ({ net, what: 'protect=' })),
      ...this.peers.addrs.flatMap((a) => {
        const net = toNet(a);
        return net === null ? [] : [{ net, what: 'Consul peer' }];
      }),
    ];
    this.protectedNets = new NetworkSet(this.labelled.map((l) => l.net));
    const sets = [...staticSets.values()];
    this.denySets = new Map(sets.filter((s) => s.target === 'DROP' || s.target === 'REJECT').map((s) => [s.name, s]));
    this.allowSets = sets.filter((s) => s.target === 'ACCEPT');
  }

  /** Adds `net` to `sink` (set `logical`) unless refused; clips deny members. */
  add(sink: MemberSink, logical: string, net: Net, expiry: number | null, via: string, subject: string): void {
    const refused = refusedAddress(net);
    if (refused !== null) {
      this.report('error', 'refused-address', subject, `${net.cidr} is ${refused}: never enforced`);
      return;
    }
    if (!this.denySets.has(logical)) {
      sink.add(net, expiry, via);
      return;
    }
    const clip = this.protectedNets.clip(net);
    if (clip.hit.length > 0) {
      const what = this.describe(clip.hit);
      const rest = clip.kept.length === 0 ? 'not enforced' : `enforced without them as ${clip.kept.length} network(s)`;
      this.report('warning', 'protected-clipped', subject, `${net.cidr} would cut ${what}; ${rest}`);
    }
    for (const k of clip.kept) sink.add(k, expiry, via);
  }

  /** For a deny member: the allow set ahead of it that already accepts all of it, or null. */
  shadowedBy(logical: string, net: Net): string | null {
    const deny = this.denySets.get(logical);
    if (deny === undefined) return null;
    for (const a of this.allowSets) {
      if (a.priority >= deny.priority) continue;
      let set = this.allowCache.get(a.name);
      if (set === undefined) {
        set = new NetworkSet(this.membersOf(a.name));
        this.allowCache.set(a.name, set);
      }
      if (set.covers(net)) return a.name;
    }
    return null;
  }

  /** Reports every deny member that has no effect (after all members are in). */
  reportShadowed(logical: string, members: readonly Net[]): void {
    for (const m of members) {
      const by = this.shadowedBy(logical, m);
      if (by !== null) this.report('warning', 'deny-shadowed', `${logical} ${m.cidr}`, `no effect: ${by} accepts it first`);
    }
  }

  /** The kernel sets of the protected paths, with views for show and status. */
  protectedSets(): { sets: PlanSet[]; view: SetView }[] {
    const own = [...this.options.managementNets, ...(this.options.protect ?? [])];
    const peers = this.peers.addrs.map(toNet).filter((n): n is Net => n !== null);
    const view = (name: string, nets: readonly Net[], via: string): SetView => ({
      logical: name,
      kernel: name,
      kind: 'protected',
      members: nets.map((n): EffectiveMember => ({ cidr: n.cidr, family: n.family, expiresAt: null, via: [via] })),
    });
    return [
      { sets: setPair(PROTECT_SET, own), view: view(PROTECT_SET, own, 'config') },
      { sets: setPair(PEERS_SET, peers), view: view(PEERS_SET, peers, 'consul members') },
    ];
  }

  private describe(hit: readonly Net[]): string {
    const names = hit.slice(0, 4).map((n) => `${n.cidr} (${this.labelled.find((l) => l.net.cidr === n.cidr)?.what ?? 'protected'})`);
    return hit.length > 4 ? `${names.join(', ')} and ${hit.length - 4} more` : names.join(', ');
  }

  private report(severity: Diagnostic['severity'], code: string, subject: string, message: string): void {
    this.diagnostics.push({ severity, code, subject, message });
  }
}
