import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ThresholdTracker } from '../../src/reactor/syslog/thresholds.js';

const RULE = { maxRetry: 5, findTimeMs: 600_000 };

describe('ThresholdTracker (maxretry within findtime, then de-duplication)', () => {
  test('fires on the maxRetry-th occurrence within the window, once', () => {
    const t = new ThresholdTracker(60_000, 1000);
    const kinds = [0, 1, 2, 3, 4, 5, 6].map((i) => t.observe('a', RULE, 1, 1000 + i).kind);
    assert.deepEqual(kinds, ['counting', 'counting', 'counting', 'counting', 'fire', 'suppressed', 'suppressed']);
  });

  test('occurrences older than findTime do not count', () => {
    const t = new ThresholdTracker(0, 1000);
    const rule = { maxRetry: 3, findTimeMs: 1000 };
    assert.equal(t.observe('a', rule, 1, 0).kind, 'counting');
    assert.equal(t.observe('a', rule, 1, 500).kind, 'counting');
    assert.equal(t.observe('a', rule, 1, 1000).kind, 'counting'); // the first fell out
    const f = t.observe('a', rule, 1, 1400);
    assert.deepEqual(f, { kind: 'fire', count: 3, firstSeenMs: 500, spoofable: false, udpActions: [] });
  });

  test('a repeated message counts N: "message repeated 4 times" plus one more crosses 5', () => {
    const t = new ThresholdTracker(60_000, 1000);
    assert.deepEqual(t.observe('a', RULE, 4, 0), { kind: 'counting', count: 4 });
    assert.deepEqual(t.observe('a', RULE, 1, 10), { kind: 'fire', count: 5, firstSeenMs: 0, spoofable: false, udpActions: [] });
    const big = new ThresholdTracker(60_000, 1000);
    assert.equal(big.observe('b', RULE, 500, 0).kind, 'fire');
  });

  test('after the de-duplication time a subject can fire again', () => {
    const t = new ThresholdTracker(10_000, 1000);
    const rule = { maxRetry: 1, findTimeMs: 1000 };
    assert.equal(t.observe('a', rule, 1, 0).kind, 'fire');
    assert.equal(t.observe('a', rule, 1, 9_999).kind, 'suppressed');
    assert.equal(t.observe('a', rule, 1, 10_000).kind, 'fire');
  });

  test('subjects are independent; memory is bounded and sweeps forget what aged out', () => {
    const t = new ThresholdTracker(1000, 3);
    for (const k of ['a', 'b', 'c', 'd']) t.observe(k, RULE, 1, 0);
    assert.equal(t.size, 3);
    assert.equal(t.evicted, 1);
    const s = new ThresholdTracker(1000, 100);
    s.observe('x', { maxRetry: 9, findTimeMs: 100 }, 1, 0);
    s.observe('y', { maxRetry: 1, findTimeMs: 100 }, 1, 0); // fired: kept for its dedup
    assert.equal(s.sweep(500), 1);
    assert.equal(s.size, 1);
    assert.equal(s.sweep(1000), 1);
    assert.equal(s.size, 0);
  });

  test('a decoy flood evicts decoys, never a subject near its threshold or being de-duplicated', () => {
    const t = new ThresholdTracker(600_000, 1000);
    for (let i = 0; i < 4; i++) t.observe('attacker', RULE, 1, i); // 4 of 5
    t.observe('banned', { maxRetry: 1, findTimeMs: 600_000 }, 1, 5); // fired: de-duplicating
    for (let i = 0; i < 100_000; i++) t.observe(`decoy-${i}`, RULE, 1, 10 + i);
    assert.equal(t.size, 1000);
    assert.ok(t.evicted >= 99_000);
    assert.equal(t.observe('banned', { maxRetry: 1, findTimeMs: 600_000 }, 1, 200_000).kind, 'suppressed', 'de-duplication kept');
    assert.equal(t.observe('attacker', RULE, 1, 200_001).kind, 'fire', 'the attacker kept its count');
    const levels = t.perLevel;
    assert.equal(levels.length, 5);
    assert.equal(levels[4], 2);
  });

  test('UDP evidence: spoofable unless the trusted occurrences alone reach the threshold; UDP actions intersected', () => {
    const t = new ThresholdTracker(0, 100);
    const rule = { maxRetry: 3, findTimeMs: 60_000 };
    t.observe('a', rule, 1, 0, ['ban', 'vyos-address-group']);
    t.observe('a', rule, 1, 1, ['ban']);
    assert.deepEqual(t.observe('a', rule, 1, 2), { kind: 'fire', count: 3, firstSeenMs: 0, spoofable: true, udpActions: ['ban'] });
    t.observe('b', rule, 1, 0, ['ban']);
    assert.deepEqual(t.observe('b', rule, 3, 1), { kind: 'fire', count: 4, firstSeenMs: 0, spoofable: false, udpActions: [] });
  });

  test('a job that rested on UDP lines does not silence trusted evidence; UDP lines stay de-duplicated', () => {
    const t = new ThresholdTracker(600_000, 100);
    const once = { maxRetry: 1, findTimeMs: 60_000 };
    assert.equal(t.observe('iface', once, 1, 0, ['ban']).kind, 'fire'); // a forged datagram
    assert.equal(t.observe('iface', once, 1, 1, ['ban']).kind, 'suppressed');
    const real = t.observe('iface', once, 1, 2); // the router over TCP
    assert.equal(real.kind, 'fire');
    assert.equal(real.kind === 'fire' && real.spoofable, false);
    assert.equal(t.observe('iface', once, 1, 3).kind, 'suppressed', 'and then de-duplicated as usual');
  });

  test('forgetSubject (an unban) clears counting and de-duplication of that subject, every event and device', () => {
    const t = new ThresholdTracker(600_000, 100);
    const one = { maxRetry: 1, findTimeMs: 60_000 };
    t.observe('ssh\u0000198.51.100.5', one, 1, 0);
    t.observe('http\u0000198.51.100.2\u0000198.51.100.5', one, 1, 0);
    t.observe('ssh\u0000198.51.100.55', one, 1, 0);
    assert.equal(t.forgetSubject('198.51.100.5'), 2);
    assert.equal(t.observe('ssh\u0000198.51.100.5', one, 1, 1).kind, 'fire');
    assert.equal(t.observe('ssh\u0000198.51.100.55', one, 1, 1).kind, 'suppressed');
  });

  test('property: with dedup longer than the run, each subject fires at most once and only at maxRetry', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 1, max: 3 }), fc.nat(50)), { maxLength: 100 }),
        fc.integer({ min: 1, max: 10 }),
        (events, maxRetry) => {
          const t = new ThresholdTracker(1e9, 10);
          const rule = { maxRetry, findTimeMs: 1e9 };
          const sums = new Map<string, number>();
          const fired = new Set<string>();
          let now = 0;
          for (const [k, w, dt] of events) {
            now += dt;
            const o = t.observe(k, rule, w, now);
            if (fired.has(k)) {
              assert.equal(o.kind, 'suppressed');
              continue;
            }
            const sum = (sums.get(k) ?? 0) + w;
            sums.set(k, sum);
            assert.equal(o.kind, sum >= maxRetry ? 'fire' : 'counting');
            if (o.kind === 'fire') fired.add(k);
          }
        },
      ),
      { seed: 6401, numRuns: 500 },
    );
  });
});
