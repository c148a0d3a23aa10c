/**
 * Addresses no action may touch: special-purpose ones (loopback and friends), the reactor's ignore
 * list, the management networks, and every
 * live `rules_allow` entry in Consul (world scope, the datacenter's scope, and the node's when a
 * ban is node-scoped), with `$alias$` references expanded through the pure core. A failed read of
 * Consul is an error, never "not protected": when in doubt, nobody is blocked.
 */
import type { NetSet } from '../../core/netMatch.js';
import { NEVER_TARGETED, NetSet as Nets } from '../../core/netMatch.js';
import { AliasResolver, minExpiry } from '../../core/aliases.js';
import { type Grant, isLive, parseKv } from '../../core/kvLayout.js';
import type { Net } from '../../core/address.js';
import type { KvPair, NodeIdentity } from '../../core/types.js';
import type { ReactorKv } from './consulKv.js';

export interface ProtectionScope {
  readonly dc: string;
  /** Set for node-scoped bans: that node's own rules_allow counts too. */
  readonly node: string | null;
}

export class Protection {
  constructor(
    private readonly kv: ReactorKv,
    private readonly ignore: NetSet,
    private readonly management: NetSet,
  ) {}

  /** Why `address` must not be acted on, or null when nothing protects it. */
  async reason(address: string, scope: ProtectionScope, nowMs: number): Promise<string | null> {
    const special = NEVER_TARGETED.find(address);
    if (special !== null) return `a special-purpose address (${special}: loopback, link-local, multicast or unspecified)`;
    const ignored = this.ignore.find(address);
    if (ignored !== null) return `in the ignore list (${ignored})`;
    const mgmt = this.management.find(address);
    if (mgmt !== null) return `in the management networks (${mgmt})`;
    const allowed = await this.rulesAllow(scope, nowMs);
    const hit = allowed.find(address);
    return hit === null ? null : `in rules_allow (${hit})`;
  }

  private async rulesAllow(scope: ProtectionScope, nowMs: number): Promise<NetSet> {
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
