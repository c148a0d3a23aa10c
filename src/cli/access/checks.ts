/**
 * What the CLI refuses because it cannot be meant, and what it tells before it writes.
 *
 * Before Consul is contacted (pure):
 *   - addresses no grant or deny may name: loopback, link-local, unspecified, multicast (the
 *     core's one rule, `refusedAddress`, which the compiler and the reactor apply too);
 *   - `/0` at any scope, and at world scope a network wider than `cli_world_prefix` (IPv4) or
 *     `cli_world_prefix6` (IPv6), unless `--yes`.
 * Against the catalog (unless `--force`, which turns each refusal into a warning):
 *   - a datacenter or node the catalog does not know, and a service set no befw service has,
 *     with the closest known name as a suggestion. A catalog that cannot be read refuses too: a
 *     check that did not run must not look like one that passed.
 * Told, not refused:
 *   - how many nodes an allow or deny reaches (catalog nodes in scope);
 *   - when an allow or deny address is, or covers, an address nodes protect: loopback, this
 *     config's management networks and `protect=`, and the local agent's Consul members. Nodes
 *     clip protected addresses out of every deny; the operator should know before, not after.
 *
 * Catalog requests are few: the datacenter list, one services list per datacenter, and the
 * instances only of befw services whose name is within a typo of the one asked for.
 */
import type { Config } from '../../config/config.js';
import { ConsulError } from '../../consul/connection.js';
import type { CatalogInstance, CatalogNode, CatalogReader } from '../../consul/kvWriter.js';
import { type Net, parseNet } from '../../core/address.js';
import { RULES_ALLOW, RULES_DENY } from '../../core/compile.js';
import { LOOPBACK, rangeOf, refusedAddress } from '../../core/protect.js';
import { BEFW_TAG, type SetNaming, agentServiceSet, serviceSetName } from '../../core/services.js';
import { closest, editDistance, suggestionLimit } from '../../core/suggest.js';
import { type Kind, shortNodeName } from '../../core/kvLayout.js';
import { RefusedError, UsageError, quoted } from './errors.js';
import { type AddrArg, IPSET_KIND, SERVICE_KIND, type ScopeSel, addrText } from './layout.js';

export interface GuardOpts {
  /** Accept a /0, or a world-scope network wider than the configured prefix. */
  readonly yes?: boolean;
  /** Write even when the catalog does not know the set, datacenter or node (or cannot be read). */
  readonly force?: boolean;
}

/** Refused addresses (loopback, link-local, unspecified, multicast) and `/0` without --yes: no config or Consul needed. */
export function checkAddressArg(addr: AddrArg, yes: boolean): void {
  if (addr.type !== 'net') return;
  const why = refusedAddress(addr.net);
  if (why !== null)
    throw new UsageError(
      quoted('address', addr.segment),
      `is ${why}: no node would ever enforce it (befw refuses loopback, link-local, unspecified and multicast addresses); nothing written`,
    );
  if (addr.net.prefix === 0 && !yes)
    throw new UsageError(
      quoted('address', addr.segment),
      `is every ${addr.net.family === 4 ? 'IPv4' : 'IPv6'} address; add --yes if you mean it; nothing written`,
    );
}

/** At world scope, a network wider than the config's limit needs --yes. */
export function checkWorldWidth(
  addr: AddrArg,
  scope: ScopeSel,
  limits: Pick<Config, 'cliWorldPrefix' | 'cliWorldPrefix6'>,
  yes: boolean,
): void {
  if (addr.type !== 'net' || scope.level !== 'world' || yes) return;
  const v4 = addr.net.family === 4;
  const limit = v4 ? limits.cliWorldPrefix : limits.cliWorldPrefix6;
  if (addr.net.prefix >= limit) return;
  const key = v4 ? 'cli_world_prefix' : 'cli_world_prefix6';
  throw new UsageError(
    quoted('address', addr.segment),
    `is wider than /${limit} at world scope (${key}): it would apply on every node; add --yes if you mean it, or narrow the scope with --dc; nothing written`,
  );
}

/** Memoised catalog reads for one command, so each question is asked of Consul once. */
export class CatalogView {
  private dcs: Promise<string[]> | null = null;
  private readonly nodeLists = new Map<string, Promise<CatalogNode[]>>();
  private readonly serviceLists = new Map<string, Promise<Map<string, string[]>>>();
  private readonly instanceLists = new Map<string, Promise<CatalogInstance[]>>();

  constructor(private readonly consul: CatalogReader) {}

  datacenters(): Promise<string[]> {
    this.dcs ??= this.consul.datacenters().then((d) => [...d].sort());
    return this.dcs;
  }

  nodes(dc: string): Promise<CatalogNode[]> {
    return memo(this.nodeLists, dc, () => this.consul.catalogNodes(dc));
  }

  services(dc: string): Promise<Map<string, string[]>> {
    return memo(this.serviceLists, dc, () => this.consul.catalogServices(dc));
  }

  instances(name: string, dc: string): Promise<CatalogInstance[]> {
    return memo(this.instanceLists, `${dc}\u0000${name}`, () => this.consul.catalogService(name, dc));
  }
}

function memo<T>(map: Map<string, Promise<T>>, key: string, load: () => Promise<T>): Promise<T> {
  let p = map.get(key);
  if (p === undefined) {
    p = load();
    map.set(key, p);
  }
  return p;
}

const SERVICE_SET = /^([a-z0-9._-]+)_(tcp|udp)_([0-9]{1,5})$/;

function listText(names: readonly string[], max = 5): string {
  return names.length <= max ? names.join(', ') : `${names.slice(0, max).join(', ')} and ${names.length - max} more`;
}

function mean(suggestion: string | null): string {
  return suggestion === null ? '' : `; did you mean ${suggestion}?`;
}

interface SetSearch {
  /** Nodes (catalog names) that run a befw service with the set, by datacenter. */
  readonly nodes: Map<string, string[]>;
  /** Set names of befw services with a name near the one asked for. */
  readonly near: Set<string>;
  /** befw services visible in the datacenters searched (0: maybe a token without service read). */
  readonly befwServices: number;
}

/**
 * Where a service set runs in `dcs`, named as the fleet's release names it. With name-port only
 * services with a name near the set's are read; with id-first-tag the set comes from the instance's
 * ID, which the service list does not show, so every befw service's instances are read.
 */
async function findSet(view: CatalogView, set: string, dcs: readonly string[], naming: SetNaming): Promise<SetSearch> {
  const m = SERVICE_SET.exec(set);
  const base = m?.[1] ?? set;
  // Only services within a typo of the name asked for can be it or be suggested for it.
  const limit = suggestionLimit(base);
  const nodes = new Map<string, string[]>();
  const near = new Set<string>();
  let befwServices = 0;
  for (const dc of dcs) {
    for (const [name, tags] of await view.services(dc)) {
      if (!tags.includes(BEFW_TAG)) continue;
      befwServices++;
      const nameBase = serviceSetName(name, 'tcp', 1).slice(0, -'_tcp_1'.length);
      if (naming === 'name-port' && editDistance(nameBase, base) > limit) continue;
      for (const i of await view.instances(name, dc)) {
        if (!i.tags.includes(BEFW_TAG) || i.port < 1 || i.port > 65535) continue;
        const s = agentServiceSet({ id: i.id, name, port: i.port, tags: i.tags }, naming);
        if (s !== set && editDistance(SERVICE_SET.exec(s)?.[1] ?? s, base) > limit) continue;
        near.add(s);
        if (s === set) nodes.set(dc, [...(nodes.get(dc) ?? []), i.node]);
      }
    }
  }
  return { nodes, near, befwServices };
}

/** Findings of the catalog checks that did not refuse: notes, and with --force the refusals as warnings. */
export interface CatalogFindings {
  readonly warnings: string[];
}

/**
 * Checks the scope (datacenter, node) and the set of an entry about to be written against the
 * catalog. Throws a RefusedError naming the unknown thing and the closest known one; with
 * `force`, returns that as a warning instead.
 */
export async function checkAgainstCatalog(
  view: CatalogView,
  kind: Kind,
  target: string,
  scope: ScopeSel,
  config: Pick<Config, 'customSets' | 'setNaming'>,
  force: boolean,
): Promise<CatalogFindings> {
  const warnings: string[] = [];
  const refuse = (message: string): void => {
    // After "did you mean x?" a new clause, not a semicolon.
    const sep = message.endsWith('?') ? ' ' : '; ';
    if (!force) throw new RefusedError(`${message}${sep}nothing written (--force writes it anyway)`);
    warnings.push(`warning: ${message}${sep}written anyway (--force)`);
  };
  try {
    if (kind === IPSET_KIND) {
      const known = [RULES_ALLOW, RULES_DENY, ...config.customSets.map((s) => s.name)];
      if (!known.includes(target)) refuse(`no static set ${target} (known: ${known.join(', ')})${mean(closest(target, known))}`);
    }
    if (scope.dc !== null) {
      const all = await view.datacenters();
      if (!all.includes(scope.dc)) {
        refuse(`no datacenter ${scope.dc} in the catalog (known: ${listText(all)})${mean(closest(scope.dc, all))}`);
        return { warnings };
      }
    }
    let nodeName: string | null = null;
    if (scope.dc !== null && scope.node !== null) {
      const nodes = await view.nodes(scope.dc);
      const short = nodes.map((n) => shortNodeName(n.name));
      const at = short.indexOf(scope.node);
      if (at < 0) {
        const hint = nodes.length === 0 ? '; the catalog shows no node at all there: does the token have node read?' : '';
        refuse(`no node ${scope.node} in the catalog of ${scope.dc}${hint}${mean(closest(scope.node, [...new Set(short)].sort()))}`);
        return { warnings };
      }
      nodeName = nodes[at]?.name ?? null;
    }
    if (kind !== SERVICE_KIND) return { warnings };

    const dcs = scope.dc === null ? await view.datacenters() : [scope.dc];
    const found = await findSet(view, target, dcs, config.setNaming);
    if (found.nodes.size === 0) {
      const hint = found.befwServices === 0 ? '; the catalog shows no befw service at all: does the token have service read?' : '';
      refuse(`no service has set ${target} (catalog of ${listText(dcs)})${hint}${mean(closest(target, [...found.near].sort()))}`);
      return { warnings };
    }
    if (nodeName !== null && scope.node !== null) {
      const runsOn = [...new Set(found.nodes.get(scope.dc ?? '') ?? [])].sort();
      if (!runsOn.includes(nodeName))
        warnings.push(
          `note: node ${scope.dc}/${scope.node} has no service with set ${target} now (it runs on ${listText(runsOn)}); the entry takes effect there when it has one`,
        );
    }
    return { warnings };
  } catch (err) {
    if (!(err instanceof ConsulError)) throw err;
    const message = `cannot check ${target} and its scope against the catalog: ${err.message}`;
    if (!force) throw new RefusedError(`${message}; nothing written (--force writes it without the check)`);
    return { warnings: [...warnings, `warning: ${message}; written without the check (--force)`] };
  }
}

export interface Reach {
  readonly datacenters: number;
  readonly nodes: number;
  readonly text: string;
}

/** How many catalog nodes an entry at `scope` reaches; null (with the reason) when the catalog cannot say. */
export async function reachOf(view: CatalogView, scope: ScopeSel): Promise<{ reach: Reach | null; warning: string | null }> {
  try {
    if (scope.dc !== null && scope.node !== null)
      return { reach: { datacenters: 1, nodes: 1, text: `reaches 1 node (${scope.dc}/${scope.node})` }, warning: null };
    const dcs = scope.dc === null ? await view.datacenters() : [scope.dc];
    let nodes = 0;
    for (const dc of dcs) nodes += (await view.nodes(dc)).length;
    const n = `${nodes} node${nodes === 1 ? '' : 's'}`;
    const text =
      dcs.length === 1 ? `reaches every node in ${dcs[0]} (${n} in the catalog)` : `reaches every node in ${dcs.length} datacenters (${n})`;
    return { reach: { datacenters: dcs.length, nodes, text }, warning: null };
  } catch (err) {
    if (!(err instanceof ConsulError)) throw err;
    return { reach: null, warning: `note: cannot count the nodes it reaches: ${err.message}` };
  }
}

/** A protected network with what it is, for messages. */
export interface Protected {
  readonly net: Net;
  readonly what: string;
}

/** What nodes with this config protect, as far as the CLI can know: loopback, management networks, protect=, and Consul members. */
export async function protectedNets(
  config: Pick<Config, 'managementNets' | 'protect'>,
  consul: Pick<CatalogReader, 'members'>,
): Promise<{ nets: Protected[]; warning: string | null }> {
  const nets: Protected[] = [
    ...LOOPBACK.map((net) => ({ net, what: 'loopback' })),
    ...config.managementNets.map((net) => ({ net, what: `management network, set.${RULES_ALLOW} of this config` })),
    ...config.protect.map((net) => ({ net, what: 'protect= of this config' })),
  ];
  try {
    for (const m of await consul.members()) {
      const net = hostNet(m.addr);
      if (net !== null) nets.push({ net, what: `Consul peer ${m.name}` });
    }
    return { nets, warning: null };
  } catch (err) {
    if (!(err instanceof ConsulError)) throw err;
    return { nets, warning: `note: Consul peers not checked (cannot read the local agent's members: ${err.message})` };
  }
}

/** A member's address as a host network; null when Consul reports something that is not an address. */
function hostNet(addr: string): Net | null {
  const r = parseNet(addr);
  return r.ok ? { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix } : null;
}

function inside(inner: Net, outer: Net): boolean {
  const a = rangeOf(inner);
  const b = rangeOf(outer);
  return a.family === b.family && a.lo >= b.lo && a.hi <= b.hi;
}

function overlap(x: Net, y: Net): boolean {
  const a = rangeOf(x);
  const b = rangeOf(y);
  return a.family === b.family && a.lo <= b.hi && b.lo <= a.hi;
}

/** The first few, each once: a network inside one listed before it (a member on loopback) is not repeated. */
function describe(all: readonly Protected[]): string {
  const list = all.filter((p, i) => !all.slice(0, i).some((q) => inside(p.net, q.net)));
  const shown = list.slice(0, 4).map((p) => `${p.net.cidr} (${p.what})`);
  return list.length > 4 ? `${shown.join(', ')} and ${list.length - 4} more` : shown.join(', ');
}

/**
 * Warnings for an allow or deny of `addr`: a deny that is or covers a protected address (nodes
 * clip those out), an allow of an address nodes with this config already accept.
 */
export function protectedWarnings(set: string, addr: AddrArg, nets: readonly Protected[]): string[] {
  if (addr.type !== 'net') return [];
  const a = addr.net;
  const text = addrText(addr);
  if (set === RULES_DENY) {
    const within = nets.filter((p) => inside(a, p.net));
    if (within.length > 0)
      return [`warning: ${text} is protected: ${describe(within)}; nodes never deny it, so this entry has no effect there`];
    const hit = nets.filter((p) => overlap(a, p.net));
    if (hit.length > 0)
      return [`warning: ${text} covers protected addresses: ${describe(hit)}; nodes clip them out and deny only the rest`];
    return [];
  }
  if (set === RULES_ALLOW) {
    const within = nets.filter((p) => p.what !== 'loopback' && !p.what.startsWith('Consul peer') && inside(a, p.net));
    if (within.length > 0) return [`note: ${text} is protected already: ${describe(within)}; nodes with this config accept it anyway`];
  }
  return [];
}
