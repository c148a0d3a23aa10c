/**
 * Scoped watching changes no plan: for any KV tree, the keys under the prefixes a node watches
 * (found the way the agent finds them: sets first, then the aliases their entries reference,
 * until nothing new is referenced) compile to exactly the plan the whole tree compiles to.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { BUILTIN_SETS, compile } from '../../src/core/compile.js';
import { collectServices } from '../../src/core/services.js';
import type { AgentService, KvPair, NodeIdentity, Snapshot } from '../../src/core/types.js';
import { type WatchedSet, kvPrefixes, referencedAliases } from '../../src/core/watchScope.js';

const NODE: NodeIdentity = { name: 'web-1', dc: 'dc1' };
const SERVICES: AgentService[] = [
  { id: 'web', name: 'web', port: 8080, tags: ['befw', 'enforcing'] },
  { id: 'dns', name: 'dns', port: 53, tags: ['befw', 'udp'] },
];
const CUSTOM = [{ name: 'blocklist', priority: 3, target: 'DROP' as const }];

function scopedKeys(all: readonly KvPair[], node: NodeIdentity, sets: readonly WatchedSet[]): KvPair[] {
  let seen: KvPair[] = [];
  for (let round = 0; round < 50; round++) {
    const prefixes = kvPrefixes(node, sets, [...referencedAliases(seen)].sort()).map((p) => p.prefix);
    const next = all.filter((p) => prefixes.some((x) => p.key.startsWith(x)));
    if (next.length === seen.length) return next;
    seen = next;
  }
  assert.fail('no fixpoint');
}

const set = fc.constantFrom('web_tcp_8080', 'dns_udp_53', 'db_tcp_5432', 'rules_allow', 'rules_deny', 'blocklist');
const alias = fc.constantFrom('$ops$', '$dev$', '$all$', '$x$');
const scope = fc.constantFrom('', 'dc1/', 'dc2/', 'dc1/web-1/', 'dc1/web-2/', 'dc2/web-1/', 'web/', 'web/web-1/', 'web/web-2/');
const addr = fc.oneof(
  fc.integer({ min: 1, max: 40 }).map((i) => `198.51.100.${i}`),
  fc.constantFrom('203.0.113.0/24', '2001:db8::7', '0.0.0.0/0'),
  alias,
);
const value = fc.constantFrom('-1', '-1', '4102444800', '1', 'junk');
const key = fc.oneof(
  fc
    .tuple(scope, set, addr)
    .map(([sc, st, a]) => `befw/${st.startsWith('rules') || st === 'blocklist' ? '$ipset$' : '$service$'}/${sc}${st}/${a}`),
  fc.tuple(scope, alias, addr).map(([sc, al, a]) => `befw/$alias$/${sc}${al}/${a}`),
);
const tree = fc
  .uniqueArray(fc.tuple(key, value), { maxLength: 60, selector: ([k]) => k })
  .map((xs) => xs.map(([k, v]) => ({ key: k, value: v })).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)));

describe('scoped KV watching', () => {
  test('the watched prefixes compile to the same plan as the whole tree', () => {
    const sets: WatchedSet[] = [
      ...collectServices(SERVICES, []).services.map((s) => ({ kind: '$service$' as const, name: s.set })),
      ...[...BUILTIN_SETS, ...CUSTOM].map((s) => ({ kind: '$ipset$' as const, name: s.name })),
    ];
    fc.assert(
      fc.property(tree, (kv) => {
        const snap = (pairs: KvPair[]): Snapshot => ({
          node: NODE,
          agentServices: SERVICES,
          fileServices: [],
          kv: pairs,
          ipsetFiles: [],
          inputDiagnostics: [],
        });
        const options = { customSets: CUSTOM, managementNets: [] };
        const whole = compile(snap(kv), options, 1_700_000_000_000, { views: false });
        const scoped = compile(snap(scopedKeys(kv, NODE, sets)), options, 1_700_000_000_000, { views: false });
        assert.equal(scoped.fingerprint, whole.fingerprint);
        assert.deepEqual(scoped.sets, whole.sets);
      }),
      { numRuns: 400 },
    );
  });

  test('prefixes: per set at world and datacenter scope (also the local dc), one node prefix per kind, per alias', () => {
    const p = kvPrefixes(NODE, [{ kind: '$service$', name: 'web_tcp_8080' }], ['$ops$']).map((x) => `${x.role} ${x.prefix}`);
    assert.deepEqual(p, [
      'alias-world befw/$alias$/$ops$/',
      'alias-dc befw/$alias$/dc1/$ops$/',
      'node befw/$alias$/dc1/web-1/',
      'alias-dc befw/$alias$/web/$ops$/',
      'node befw/$alias$/web/web-1/',
      'node befw/$ipset$/dc1/web-1/',
      'node befw/$ipset$/web/web-1/',
      'node befw/$service$/dc1/web-1/',
      'dc befw/$service$/dc1/web_tcp_8080/',
      'node befw/$service$/web/web-1/',
      'dc befw/$service$/web/web_tcp_8080/',
      'world befw/$service$/web_tcp_8080/',
    ]);
  });
});
