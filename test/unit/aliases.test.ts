import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { AliasResolver, type Expanded, minExpiry } from '../../src/core/aliases.js';
import { parseKv } from '../../src/core/kvLayout.js';
import type { KvPair } from '../../src/core/types.js';

const NODE = { name: 'web-1', dc: 'dc1' };
const NOW = 1_700_000_000_000;

function resolver(pairs: Record<string, string>, nowMs = NOW): AliasResolver {
  const kv: KvPair[] = Object.entries(pairs).map(([key, value]) => ({ key, value }));
  const parsed = parseKv(kv, NODE);
  assert.deepEqual(parsed.diagnostics, []);
  return new AliasResolver(parsed.grants, nowMs);
}

function flat(list: readonly Expanded[]): Record<string, number | null> {
  const out: Record<string, number | null> = {};
  for (const e of list) {
    assert.ok(!(e.net.cidr in out), `duplicate member ${e.net.cidr}`);
    out[e.net.cidr] = e.expiry;
  }
  return out;
}

describe('minExpiry', () => {
  test('null is never, so the other side wins', () => {
    assert.equal(minExpiry(null, null), null);
    assert.equal(minExpiry(null, 5), 5);
    assert.equal(minExpiry(5, null), 5);
    assert.equal(minExpiry(7, 5), 5);
  });
});

describe('AliasResolver', () => {
  test('direct members, IPv4 and IPv6', () => {
    const r = resolver({
      'befw/$alias$/$ops$/198.51.100.1': '-1',
      'befw/$alias$/$ops$/2001:db8::/48': '-1',
      'befw/$alias$/dc1/$ops$/198.51.100.2': '-1',
      'befw/$alias$/dc1/web-1/$ops$/198.51.100.3': '-1',
    });
    assert.deepEqual(flat(r.expand('$ops$', 'k')), {
      '198.51.100.1/32': null,
      '2001:db8::/48': null,
      '198.51.100.2/32': null,
      '198.51.100.3/32': null,
    });
    assert.deepEqual(r.diagnostics, []);
  });

  test('nesting: members of nested aliases with the path walked', () => {
    const r = resolver({
      'befw/$alias$/$all$/$ops$': '-1',
      'befw/$alias$/$all$/10.0.0.1': '-1',
      'befw/$alias$/$ops$/$oncall$': '-1',
      'befw/$alias$/$oncall$/10.0.0.3': '-1',
      'befw/$alias$/$ops$/10.0.0.2': '-1',
    });
    const out = r.expand('$all$', 'k');
    assert.deepEqual(flat(out), { '10.0.0.1/32': null, '10.0.0.2/32': null, '10.0.0.3/32': null });
    const deep = out.find((e) => e.net.cidr === '10.0.0.3/32');
    assert.deepEqual(deep?.path, ['$all$', '$ops$', '$oncall$']);
    assert.deepEqual(out.find((e) => e.net.cidr === '10.0.0.1/32')?.path, ['$all$']);
    assert.deepEqual(r.diagnostics, []);
  });

  test('effective expiry is the minimum along the path', () => {
    const t = 1_700_000_100;
    const r = resolver({
      'befw/$alias$/$a$/$b$': String(t + 50),
      'befw/$alias$/$b$/10.0.0.1': String(t + 10), // member expires first
      'befw/$alias$/$b$/10.0.0.2': String(t + 90), // link expires first
      'befw/$alias$/$b$/10.0.0.3': '-1', // never, so the link decides
    });
    assert.deepEqual(flat(r.expand('$a$', 'k')), { '10.0.0.1/32': t + 10, '10.0.0.2/32': t + 50, '10.0.0.3/32': t + 50 });
  });

  test('expired members and expired links grant nothing', () => {
    const past = String(NOW / 1000 - 1);
    const r = resolver({
      'befw/$alias$/$a$/10.0.0.1': past,
      'befw/$alias$/$a$/10.0.0.2': '-1',
      'befw/$alias$/$a$/$b$': past,
      'befw/$alias$/$b$/10.0.0.3': '-1',
      'befw/$alias$/$c$/10.0.0.4': String(NOW / 1000), // leaves exactly now
    });
    assert.deepEqual(flat(r.expand('$a$', 'k')), { '10.0.0.2/32': null });
    assert.deepEqual(flat(r.expand('$b$', 'k')), { '10.0.0.3/32': null });
    assert.deepEqual(r.expand('$c$', 'k'), []);
    assert.equal(r.diagnostics.length, 1);
    assert.equal(r.diagnostics[0]!.code, 'unknown-alias');
  });

  test('the same address through several paths is listed once, with the longest effective expiry', () => {
    const r = resolver({
      'befw/$alias$/$top$/$x$': '1700000500',
      'befw/$alias$/$top$/$y$': '1700000900',
      'befw/$alias$/$x$/10.0.0.1': '-1',
      'befw/$alias$/$y$/10.0.0.1': '1700000700',
      'befw/$alias$/$top$/10.0.0.2': '1700000100',
      'befw/$alias$/dc1/$top$/10.0.0.2': '1700000200',
    });
    assert.deepEqual(flat(r.expand('$top$', 'k')), { '10.0.0.1/32': 1700000700, '10.0.0.2/32': 1700000200 });
  });

  test('self-loop is reported as alias-cycle and skipped', () => {
    const r = resolver({ 'befw/$alias$/$a$/$a$': '-1', 'befw/$alias$/$a$/10.0.0.1': '-1' });
    assert.deepEqual(flat(r.expand('$a$', 'k')), { '10.0.0.1/32': null });
    const cycles = r.diagnostics.filter((d) => d.code === 'alias-cycle');
    assert.equal(cycles.length, 1);
    assert.equal(cycles[0]!.severity, 'error');
    assert.equal(cycles[0]!.subject, 'befw/$alias$/$a$/$a$');
  });

  test('longer cycles are reported for every edge inside them, without hanging', () => {
    const r = resolver({
      'befw/$alias$/$a$/$b$': '-1',
      'befw/$alias$/$b$/$c$': '-1',
      'befw/$alias$/$c$/$a$': '-1',
      'befw/$alias$/$a$/10.0.0.1': '-1',
      'befw/$alias$/$b$/10.0.0.2': '-1',
      'befw/$alias$/$c$/10.0.0.3': '-1',
      'befw/$alias$/$c$/$leaf$': '-1', // leaves the cycle: kept
      'befw/$alias$/$leaf$/10.0.0.9': '-1',
      'befw/$alias$/$outside$/$a$': '-1', // points into the cycle: kept
    });
    const cycles = r.diagnostics
      .filter((d) => d.code === 'alias-cycle')
      .map((d) => d.subject)
      .sort();
    assert.deepEqual(cycles, ['befw/$alias$/$a$/$b$', 'befw/$alias$/$b$/$c$', 'befw/$alias$/$c$/$a$']);
    assert.deepEqual(Object.keys(flat(r.expand('$a$', 'k'))).sort(), ['10.0.0.1/32']);
    assert.deepEqual(Object.keys(flat(r.expand('$c$', 'k'))).sort(), ['10.0.0.3/32', '10.0.0.9/32']);
    assert.deepEqual(Object.keys(flat(r.expand('$outside$', 'k'))).sort(), ['10.0.0.1/32']);
  });

  test('two separate cycles sharing no node are both found', () => {
    const r = resolver({
      'befw/$alias$/$a$/$b$': '-1',
      'befw/$alias$/$b$/$a$': '-1',
      'befw/$alias$/$c$/$d$': '-1',
      'befw/$alias$/$d$/$c$': '-1',
      'befw/$alias$/$b$/$c$': '-1', // bridge between the cycles, not in one
    });
    const cycles = r.diagnostics
      .filter((d) => d.code === 'alias-cycle')
      .map((d) => d.subject)
      .sort();
    assert.deepEqual(cycles, ['befw/$alias$/$a$/$b$', 'befw/$alias$/$b$/$a$', 'befw/$alias$/$c$/$d$', 'befw/$alias$/$d$/$c$']);
  });

  test('a cycle through an expired edge is no cycle', () => {
    const r = resolver({
      'befw/$alias$/$a$/$b$': '-1',
      'befw/$alias$/$b$/$a$': '1',
      'befw/$alias$/$b$/10.0.0.2': '-1',
    });
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(flat(r.expand('$a$', 'k')), { '10.0.0.2/32': null });
  });

  test('unknown alias is reported once with the referencing subject', () => {
    const r = resolver({ 'befw/$alias$/$a$/$ghost$': '-1', 'befw/$alias$/$a$/10.0.0.1': '-1' });
    assert.deepEqual(flat(r.expand('$a$', 'ref-key')), { '10.0.0.1/32': null });
    assert.deepEqual(r.expand('$nobody$', 'some-key'), []);
    assert.deepEqual(r.expand('$nobody$', 'other-key'), []);
    const unknown = r.diagnostics.filter((d) => d.code === 'unknown-alias');
    assert.deepEqual(
      unknown.map((d) => [d.subject, d.message.includes('$ghost$') || d.message.includes('$nobody$')]),
      [
        ['befw/$alias$/$a$/$ghost$', true],
        ['some-key', true],
      ],
    );
  });

  test('a long chain does not overflow the stack', () => {
    const pairs: Record<string, string> = {};
    const n = 5000;
    for (let i = 0; i < n; i++) pairs[`befw/$alias$/$c${i}$/$c${i + 1}$`] = '-1';
    pairs[`befw/$alias$/$c${n}$/10.1.2.3`] = '-1';
    pairs[`befw/$alias$/$c${n}$/$c0$`] = '-1'; // and one giant cycle back
    const r = resolver(pairs);
    assert.equal(r.diagnostics.filter((d) => d.code === 'alias-cycle').length, n + 1);
    assert.deepEqual(
      r.expand(`$c${n}$`, 'k').map((e) => e.net.cidr),
      ['10.1.2.3/32'],
    );
  });

  test('a 40-level diamond (each alias references the next twice) completes fast', () => {
    const pairs: Record<string, string> = {};
    const levels = 40;
    for (let i = 0; i < levels; i++) {
      pairs[`befw/$alias$/$d${i}$/$d${i + 1}$`] = '-1';
      pairs[`befw/$alias$/dc1/$d${i}$/$d${i + 1}$`] = String(1_800_000_000 + i); // second edge, another scope
    }
    pairs[`befw/$alias$/$d${levels}$/192.0.2.1`] = '-1';
    pairs[`befw/$alias$/$d${levels}$/2001:db8::1`] = '1900000000';
    const started = performance.now();
    const r = resolver(pairs);
    const out = r.expand('$d0$', 'k');
    const ms = performance.now() - started;
    assert.ok(ms < 1000, `took ${ms} ms`);
    assert.deepEqual(flat(out), { '192.0.2.1/32': null, '2001:db8::1/128': 1900000000 });
    assert.deepEqual(r.diagnostics, []);
  });

  test('a wide diamond with distinct intermediate aliases stays linear', () => {
    // d_i -> l_i, r_i -> d_{i+1}: 2^30 distinct paths, one address.
    const pairs: Record<string, string> = {};
    const levels = 30;
    for (let i = 0; i < levels; i++) {
      pairs[`befw/$alias$/$d${i}$/$l${i}$`] = '-1';
      pairs[`befw/$alias$/$d${i}$/$r${i}$`] = '-1';
      pairs[`befw/$alias$/$l${i}$/$d${i + 1}$`] = '-1';
      pairs[`befw/$alias$/$r${i}$/$d${i + 1}$`] = '-1';
    }
    pairs[`befw/$alias$/$d${levels}$/192.0.2.1`] = '-1';
    const started = performance.now();
    const out = resolver(pairs).expand('$d0$', 'k');
    assert.ok(performance.now() - started < 1000);
    assert.deepEqual(flat(out), { '192.0.2.1/32': null });
    assert.equal(out[0]!.path.length, 2 * levels + 1);
  });

  test('the answer does not depend on the order of the grants', () => {
    const pairs: KvPair[] = [
      { key: 'befw/$alias$/$top$/$x$', value: '1700000500' },
      { key: 'befw/$alias$/$top$/$y$', value: '1700000500' },
      { key: 'befw/$alias$/$x$/10.0.0.1', value: '-1' },
      { key: 'befw/$alias$/$y$/10.0.0.1', value: '-1' },
      { key: 'befw/$alias$/$y$/10.0.0.2', value: '-1' },
    ];
    const a = new AliasResolver(parseKv(pairs, NODE).grants, NOW).expand('$top$', 'k');
    const b = new AliasResolver(parseKv([...pairs].reverse(), NODE).grants, NOW).expand('$top$', 'k');
    const norm = (l: readonly Expanded[]): string => JSON.stringify([...l].sort((p, q) => (p.net.cidr < q.net.cidr ? -1 : 1)));
    assert.equal(norm(a), norm(b));
  });
});
