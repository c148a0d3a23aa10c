/**
 * The parse cache is an optimisation only: a sequence of compiles through one cache must give
 * exactly the plans that compiles without it give, whatever changes between listings (values,
 * added and removed keys, unsorted listings, a node identity change).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { compile } from '../../src/core/compile.js';
import { KvParseCache } from '../../src/core/kvLayout.js';
import type { KvPair, Snapshot } from '../../src/core/types.js';

const SERVICES = [
  { id: 'web', name: 'web', port: 80, tags: ['befw', 'enforcing'] },
  { id: 'db', name: 'db', port: 5432, tags: ['befw'] },
];

const keyArb = fc.oneof(
  fc.constantFrom('web_tcp_80', 'db_tcp_5432', 'other_tcp_1').chain((set) =>
    fc.oneof(
      fc.integer({ min: 0, max: 40 }).map((i) => `befw/$service$/${set}/198.51.100.${i}`),
      fc.constantFrom(
        `befw/$service$/dc1/${set}/203.0.113.0/24`,
        `befw/$service$/dc1/node1/${set}/$ops$`,
        `befw/$service$/dc2/${set}/198.51.100.9`,
      ),
    ),
  ),
  fc.integer({ min: 0, max: 10 }).map((i) => `befw/$alias$/$ops$/2001:db8::${i}`),
  fc.constantFrom(
    'befw/$alias$/$ops$/$ops$',
    'befw/$ipset$/rules_deny/198.51.100.7',
    'befw/$ipset$/rules_allow/198.51.100.8/30',
    'befw/bogus/x',
  ),
);
const valueArb = fc.oneof(
  fc.constantFrom('-1', '0', '1700000000', '4102444800', 'nope', ''),
  fc.integer({ min: 1_699_999_990, max: 1_700_000_010 }).map(String),
);
const listingArb = fc.array(fc.tuple(keyArb, valueArb), { maxLength: 40 }).map((xs) => {
  const byKey = new Map(xs);
  return [...byKey.entries()].map(([key, value]): KvPair => ({ key, value }));
});

describe('KvParseCache', () => {
  it('gives the same plans as compiling without it, over any sequence of listings', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(listingArb, fc.boolean(), fc.boolean()), { minLength: 1, maxLength: 6 }), (steps) => {
        const cache = new KvParseCache();
        for (const [kv, sorted, otherNode] of steps) {
          const listing = sorted ? [...kv].sort((a, b) => (a.key < b.key ? -1 : 1)) : kv;
          const snapshot: Snapshot = {
            node: { name: otherNode ? 'node2' : 'node1', dc: 'dc1' },
            agentServices: SERVICES,
            fileServices: [],
            kv: listing,
            ipsetFiles: [],
            inputDiagnostics: [],
          };
          const now = 1_700_000_000_000;
          const plain = compile(snapshot, { customSets: [], managementNets: [] }, now);
          const cached = compile(snapshot, { customSets: [], managementNets: [] }, now, { cache });
          assert.deepEqual(cached, plain);
        }
      }),
      { numRuns: 300, seed: 42 },
    );
  });

  it('reuses unchanged entries and reparses changed ones', () => {
    const cache = new KvParseCache();
    const kv = Array.from({ length: 100 }, (_, i): KvPair => ({ key: `befw/$service$/web_tcp_80/198.51.100.${i}`, value: '-1' }));
    const snap = (pairs: KvPair[]): Snapshot => ({
      node: { name: 'node1', dc: 'dc1' },
      agentServices: SERVICES,
      fileServices: [],
      kv: pairs,
      ipsetFiles: [],
      inputDiagnostics: [],
    });
    compile(snap(kv), { customSets: [], managementNets: [] }, 0, { cache });
    assert.equal(cache.misses, 100);
    const next = kv.map((p, i) => (i === 50 ? { ...p, value: '5' } : p));
    compile(snap(next), { customSets: [], managementNets: [] }, 0, { cache });
    assert.equal(cache.hits, 99);
    assert.equal(cache.misses, 1);
  });
});
