/**
 * Whether an action may target an address (or, for a wider ban, a network): never a
 * special-purpose address (the core's refusedAddress: loopback, link-local, unspecified,
 * multicast; and broadcast, "this network"), never anything on the protected list
 * (protectedList.ts: what the nodes publish, the Consul agents, the reactor's config), never a
 * live `rules_allow` entry in Consul (world scope, the datacenter's scope, and the node's when a
 * ban is node-scoped), with `$alias$` references expanded through the pure core. A failed read of
 * Consul is an error, never "not protected": when in doubt, nobody is blocked.
 */
import { NEVER_TARGETED, NetSet as Nets } from '../../core/netMatch.js';
import { AliasResolver, minExpiry } from '../../core/aliases.js';
import { type Grant, isLive, parseKv } from '../../core/kvLayout.js';
import { type Net, parseNet } from '../../core/address.js';
import { NetworkSet, refusedAddress } from '../../core/protect.js';
import type { KvPair, NodeIdentity } from '../../core/types.js';
import type { ReactorKv } from './consulKv.js';
import type { ProtectedList } from './protectedList.js';

export interface ProtectionScope {
  readonly dc: string;
  /** Set for node-scoped bans: that node's own rules_allow counts too. */
  readonly node: string | null;
}

/** An address or a network as a Net; null when it is neither. */
export function asNet(text: string): Net | null {
  const r = parseNet(text);
  return r.ok ? { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix } : null;
}

export class Protection {
  constructor(
    private readonly kv: ReactorKv,
    private readonly list: ProtectedList,
  ) {}

  /** Why `target` (an address or network) must not be acted on, or null when nothing protects it. */
  async reason(target: string, scope: ProtectionScope, nowMs: number): Promise<string | null> {
    const net = asNet(target);
    if (net === null) return `"${target.slice(0, 64)}" is not an address`;
    const refused = refusedAddress(net);
    if (refused !== null) return `a special-purpose address (${refused})`;
    const special = net.prefix === (net.family === 4 ? 32 : 128) ? NEVER_TARGETED.find(target) : null;
    if (special !== null) return `a special-purpose address (${special}: loopback, link-local, multicast, broadcast or unspecified)`;
    const listed = await this.list.reason(net);
    if (listed !== null) return `protected: ${listed}`;
    const allowed = await this.rulesAllow(scope, nowMs);
    const hit = new NetworkSet(allowed.cidrs).clip(net).hit[0];
    return hit === undefined ? null : `in rules_allow (${hit.cidr})`;
  }

  private async rulesAllow(scope: ProtectionScope, nowMs: number): Promise<Nets> {
    const prefixes = ['befw/$ipset$/rules_allow/', `befw/$ipset$/${scope.dc}/rules_allow/`];
    if (scope.node !== null) prefixes.push(`befw/$ipset$/${scope.dc}/${scope.node}/rules_allow/`);
    const lists = await Promise.all(prefixes.map((p) => this.kv.list(p)));
    const pairs: KvPair[] = lists.flat().map((e) => ({ key: e.key, value: e.value }));
    const node: NodeIdentity = { dc: scope.dc, name: scope.node ?? '' };
    const grants = parseKv(pairs, node).grants.filter((g) => g.kind === '$ipset$' && g.target === 'rules_allow' && isLive(g.expiry, nowMs));
    const nets: Net[] = [];
    const aliasRefs: Grant[] = [];
    for (const g of grants) {
      if (g.addr === 'net') nets.push(g);
      else aliasRefs.push(g);
    }
    if (aliasRefs.length > 0) {
      const aliasPairs = (await this.kv.list('befw/$alias$/')).map((e) => ({ key: e.key, value: e.value }));
      const resolver = new AliasResolver(
        parseKv(aliasPairs, node).grants.filter((g) => g.kind === '$alias$'),
        nowMs,
      );
      for (const ref of aliasRefs) {
        if (ref.addr !== 'alias') continue;
        for (const m of resolver.expand(ref.alias, ref.key)) {
          if (isLive(minExpiry(ref.expiry, m.expiry), nowMs)) nets.push(m.net);
        }
      }
    }
    return new Nets(nets);
  }
}
