import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ScopedKv } from '../../src/agent/inputs/scopedKv.js';
import { DEFAULT_WATCH_OPTIONS } from '../../src/consul/blockingWatch.js';
import type { KvPair } from '../../src/core/types.js';

function rig(maxWatches: number) {
  const asked: string[] = [];
  const fallbacks: [number, boolean][] = [];
  const kv = new ScopedKv({
    mode: 'scoped',
    maxWatches,
    options: DEFAULT_WATCH_OPTIONS,
    fetch: async (prefix, q) => {
      asked.push(prefix);
      if (q.index > 0) await new Promise((_r, reject) => q.signal.addEventListener('abort', () => reject(new Error('stopped'))));
      return { index: 1, data: [] as KvPair[], lastContactMs: 0, knownLeader: true };
    },
    onChange: () => undefined,
    onError: () => undefined,
    onFallback: (n, tree) => fallbacks.push([n, tree]),
  });
  return { kv, asked, fallbacks };
}

describe('ScopedKv', () => {
  it("watches the node's prefixes, and the whole tree once they would be too many parked queries", async () => {
    const node = { name: 'web-1', dc: 'dc1' };
    const few = rig(64);
    few.kv.setScope(node, [{ kind: '$service$', name: 'web_tcp_8080' }]);
    assert.ok(!few.kv.prefixes.includes('befw/'));
    assert.ok(few.kv.prefixes.includes('befw/$service$/web_tcp_8080/'));
    await few.kv.stop();

    const many = rig(14);
    const sets = Array.from({ length: 20 }, (_, i) => ({ kind: '$service$' as const, name: `svc${i}_tcp_${1000 + i}` }));
    many.kv.setScope(node, sets);
    assert.deepEqual(many.kv.prefixes, ['befw/']);
    assert.equal(many.fallbacks.length, 1);
    assert.equal(many.fallbacks[0]?.[1], true);
    // Fewer sets: back to scoped watching.
    many.kv.setScope(node, sets.slice(0, 2));
    assert.ok(!many.kv.prefixes.includes('befw/'));
    assert.deepEqual(many.fallbacks[1], [many.kv.prefixes.length, false]);
    await many.kv.stop();
  });
});
