/**
 * Which KV prefixes concern a node: the only ones it watches, so that a write costs Consul only
 * the nodes it concerns instead of every node re-reading the whole `befw/` tree.
 *
 *   befw/<kind>/<set>/             world-scope entries of each of the node's sets (clients of
 *                                  its services; rules_allow, rules_deny, custom sets)
 *   befw/<kind>/<dc>/<set>/        datacenter-scope entries of each set, in the node's dc
 *   befw/<kind>/<dc>/<node>/       node-scope entries, one prefix per kind for all of them (a
 *                                  per-set prefix would triple the watches for keys that are
 *                                  almost always absent)
 *   the same dc and node prefixes under BEFW's "local datacenter" (the node name up to its
 *                                  first `-`), which BEFW reads and befw-sync writes
 *   befw/$alias$/$name$/ and befw/$alias$/<dc>/$name$/
 *                                  every alias the node's entries reference, transitively; an
 *                                  alias written at node scope is under the node prefix above
 *
 * Other datacenters and nodes never matter to this node, and neither do other sets: the compiler
 * ignores them, so leaving them unread changes no plan (a property test holds it to that).
 * Prefix matching is case-sensitive where the compiler's node match is not: node-scope keys are
 * watched under the node's short lower-case name (as the CLI writes them) and under its short
 * name as Consul reports it (`spellings`); other spellings are not seen.
 */
import { ALIAS_NAME, KV_ROOT, type Kind, localDcOf } from './kvLayout.js';
import type { KvPair, NodeIdentity } from './types.js';

export interface WatchedSet {
  readonly kind: Exclude<Kind, '$alias$'>;
  readonly name: string;
}

export type PrefixRole = 'world' | 'dc' | 'node' | 'alias-world' | 'alias-dc';

export interface KvPrefix {
  readonly prefix: string;
  readonly role: PrefixRole;
}

const NODE_KINDS: readonly Kind[] = ['$service$', '$ipset$', '$alias$'];

/** The prefixes for these sets and aliases, sorted and unique. */
export function kvPrefixes(
  node: NodeIdentity,
  sets: readonly WatchedSet[],
  aliases: readonly string[],
  spellings: readonly string[] = [],
): KvPrefix[] {
  const out = new Map<string, PrefixRole>();
  const local = localDcOf(node.name);
  const dcs = [...new Set(local === null ? [node.dc] : [node.dc, local])];
  for (const s of sets) {
    out.set(`${KV_ROOT}${s.kind}/${s.name}/`, 'world');
    for (const dc of dcs) out.set(`${KV_ROOT}${s.kind}/${dc}/${s.name}/`, 'dc');
  }
  for (const dc of dcs) {
    for (const name of new Set([node.name, ...spellings])) {
      for (const kind of NODE_KINDS) out.set(`${KV_ROOT}${kind}/${dc}/${name}/`, 'node');
    }
  }
  for (const a of aliases) {
    out.set(`${KV_ROOT}$alias$/${a}/`, 'alias-world');
    for (const dc of dcs) out.set(`${KV_ROOT}$alias$/${dc}/${a}/`, 'alias-dc');
  }
  return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([prefix, role]) => ({ prefix, role }));
}

/** Alias names that keys refer to as their address (`.../$name$`), whatever their kind. */
export function referencedAliases(pairs: Iterable<KvPair>): Set<string> {
  const out = new Set<string>();
  for (const p of pairs) {
    const last = p.key.slice(p.key.lastIndexOf('/') + 1);
    if (last.length > 2 && last.startsWith('$') && ALIAS_NAME.test(last)) out.add(last);
  }
  return out;
}
