import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Grant, isLive, parseExpiry, parseKv } from '../../src/core/kvLayout.js';
import type { KvPair, NodeIdentity } from '../../src/core/types.js';

const NODE: NodeIdentity = { name: 'web-1', dc: 'dc1' };

function one(key: string, value: string | null = '-1', node: NodeIdentity = NODE): Grant {
  const r = parseKv([{ key, value }], node);
  assert.deepEqual(
    r.diagnostics.filter((d) => d.severity === 'error'),
    [],
    `unexpected diagnostics for ${key}`,
  );
  assert.equal(r.grants.length, 1, `expected one grant for ${key}`);
  return r.grants[0]!;
}

function addrOf(g: Grant): string {
  return g.addr === 'net' ? g.cidr : g.alias;
}

function rejected(key: string, value: string | null = '-1', code?: string): void {
  const r = parseKv([{ key, value }], NODE);
  assert.equal(r.grants.length, 0, `expected no grant for ${JSON.stringify(key)}=${JSON.stringify(value)}`);
  assert.equal(r.foreign, 0);
  assert.equal(r.diagnostics.length, 1, `expected one diagnostic for ${JSON.stringify(key)}`);
  const d = r.diagnostics[0]!;
  assert.equal(d.severity, 'error');
  if (code !== undefined) assert.equal(d.code, code);
  assert.doesNotMatch(d.subject, /[\u0000-\u001f\u007f]/, 'subject must be printable');
  assert.doesNotMatch(d.message, /[\u0000-\u001f\u007f]/, 'message must be printable');
  assert.ok(d.subject.length <= 201);
}

describe('parseKv: scopes', () => {
  for (const kind of ['$service$', '$ipset$'] as const) {
    const name = kind === '$service$' ? 'web_tcp_8080' : 'rules_allow';
    test(`${kind} at world, dc and node scope`, () => {
      const w = one(`befw/${kind}/${name}/198.51.100.2`);
      assert.deepEqual(
        { kind: w.kind, scope: w.scope, target: w.target, addr: addrOf(w) },
        { kind, scope: 'world', target: name, addr: '198.51.100.2/32' },
      );
      const d = one(`befw/${kind}/dc1/${name}/198.51.100.3`);
      assert.deepEqual({ scope: d.scope, target: d.target, addr: addrOf(d) }, { scope: 'dc', target: name, addr: '198.51.100.3/32' });
      const n = one(`befw/${kind}/dc1/web-1/${name}/198.51.100.4`);
      assert.deepEqual({ scope: n.scope, target: n.target, addr: addrOf(n) }, { scope: 'node', target: name, addr: '198.51.100.4/32' });
    });
  }

  test('$alias$ at world, dc and node scope', () => {
    const w = one('befw/$alias$/$ops$/198.51.100.2');
    assert.deepEqual(
      { kind: w.kind, scope: w.scope, target: w.target, addr: addrOf(w) },
      { kind: '$alias$', scope: 'world', target: '$ops$', addr: '198.51.100.2/32' },
    );
    assert.equal(one('befw/$alias$/dc1/$ops$/198.51.100.3').scope, 'dc');
    assert.equal(one('befw/$alias$/dc1/web-1/$ops$/198.51.100.4').scope, 'node');
    const nested = one('befw/$alias$/$ops$/$oncall$');
    assert.equal(nested.addr, 'alias');
    assert.equal(addrOf(nested), '$oncall$');
  });

  test('alias references as client entries', () => {
    const g = one('befw/$service$/web_tcp_8080/$ops$', '1700000000');
    assert.equal(g.addr, 'alias');
    assert.equal(addrOf(g), '$ops$');
    assert.equal(g.expiry, 1700000000);
    assert.equal(g.key, 'befw/$service$/web_tcp_8080/$ops$');
  });

  test('another datacenter and another node are ignored and counted', () => {
    const pairs: KvPair[] = [
      { key: 'befw/$service$/dc2/web_tcp_8080/198.51.100.2', value: '-1' },
      { key: 'befw/$service$/dc2/web-1/web_tcp_8080/198.51.100.2', value: '-1' },
      { key: 'befw/$service$/dc1/web-2/web_tcp_8080/198.51.100.2', value: '-1' },
      { key: 'befw/$alias$/dc2/$ops$/198.51.100.2', value: '-1' },
      { key: 'befw/$ipset$/dc1/db-1/rules_allow/198.51.100.2', value: 'garbage' },
      { key: 'befw/$ipset$/DC1/rules_allow/198.51.100.2', value: '-1' }, // dc names are case-sensitive
    ];
    const r = parseKv(pairs, NODE);
    assert.deepEqual(r.grants, []);
    assert.deepEqual(r.diagnostics, []);
    assert.equal(r.foreign, pairs.length);
  });

  test('node names in keys match case-insensitively', () => {
    assert.equal(one('befw/$service$/dc1/WEB-1/web_tcp_8080/198.51.100.2').scope, 'node');
    assert.equal(one('befw/$service$/dc1/Web-1/web_tcp_8080/198.51.100.2').scope, 'node');
  });

  test('keys outside befw/ and folder keys are skipped silently', () => {
    const r = parseKv(
      [
        { key: 'befw/', value: null },
        { key: 'befw/$service$/', value: null },
        { key: 'befw/$service$/web_tcp_8080/', value: null },
        { key: 'befw/$service$/dc1/web-1/', value: '' },
        { key: 'other/$service$/web_tcp_8080/1.2.3.4', value: '-1' },
        { key: 'befwx/$service$/web_tcp_8080/1.2.3.4', value: '-1' },
      ],
      NODE,
    );
    assert.deepEqual(r, { grants: [], diagnostics: [], foreign: 0 });
  });
});

describe('parseKv: addresses', () => {
  test('networks written as two segments', () => {
    const g = one('befw/$service$/web_tcp_8080/198.51.100.0/24');
    assert.equal(g.scope, 'world');
    assert.equal(g.target, 'web_tcp_8080');
    assert.equal(addrOf(g), '198.51.100.0/24');
    const dc = one('befw/$service$/dc1/web_tcp_8080/198.51.100.0/24');
    assert.equal(dc.scope, 'dc');
    assert.equal(addrOf(dc), '198.51.100.0/24');
    const node = one('befw/$service$/dc1/web-1/web_tcp_8080/10.0.0.0/8');
    assert.equal(node.scope, 'node');
    assert.equal(addrOf(node), '10.0.0.0/8');
  });

  test('a dc-scope host key is not mistaken for a world-scope network', () => {
    const g = one('befw/$service$/dc1/web_tcp_8080/198.51.100.7');
    assert.equal(g.scope, 'dc');
    assert.equal(g.target, 'web_tcp_8080');
    assert.equal(addrOf(g), '198.51.100.7/32');
  });

  test('IPv6 hosts and networks', () => {
    const h = one('befw/$service$/web_tcp_8080/2001:DB8::7');
    assert.equal(addrOf(h), '2001:db8::7/128');
    assert.equal(h.addr === 'net' && h.family, 6);
    const n = one('befw/$service$/web_tcp_8080/2001:db8::/32');
    assert.equal(addrOf(n), '2001:db8::/32');
    assert.equal(n.scope, 'world');
    const dn = one('befw/$service$/dc1/web-1/web_tcp_8080/2001:db8::/48');
    assert.equal(dn.scope, 'node');
    assert.equal(addrOf(dn), '2001:db8::/48');
  });

  test('mapped IPv4 in a key is enforced as IPv4', () => {
    assert.equal(addrOf(one('befw/$service$/web_tcp_8080/::ffff:1.2.3.4')), '1.2.3.4/32');
  });

  test('host bits set: enforced as the network, with a warning', () => {
    const r = parseKv([{ key: 'befw/$service$/web_tcp_8080/198.51.100.77/24', value: '-1' }], NODE);
    assert.equal(r.grants.length, 1);
    assert.equal(addrOf(r.grants[0]!), '198.51.100.0/24');
    assert.equal(r.diagnostics.length, 1);
    assert.equal(r.diagnostics[0]!.severity, 'warning');
    assert.equal(r.diagnostics[0]!.code, 'host-bits');
    assert.equal(r.diagnostics[0]!.subject, 'befw/$service$/web_tcp_8080/198.51.100.77/24');
  });
});

describe('parseKv: expiry values', () => {
  test('-1 and other negatives never expire', () => {
    assert.equal(one('befw/$service$/web_tcp_8080/1.2.3.4', '-1').expiry, null);
    assert.equal(one('befw/$service$/web_tcp_8080/1.2.3.4', '-5').expiry, null);
    assert.equal(one('befw/$service$/web_tcp_8080/1.2.3.4', '-1700000000').expiry, null);
  });

  test('integers are Unix seconds; whitespace is tolerated', () => {
    assert.equal(one('befw/$service$/web_tcp_8080/1.2.3.4', '1700000000').expiry, 1700000000);
    assert.equal(one('befw/$service$/web_tcp_8080/1.2.3.4', ' 1700000000\n').expiry, 1700000000);
    assert.equal(one('befw/$service$/web_tcp_8080/1.2.3.4', '\t-1 ').expiry, null);
    assert.equal(one('befw/$service$/web_tcp_8080/1.2.3.4', '0').expiry, 0);
  });

  test('non-integers are marked as bad values for the compiler to judge (a deny fails closed)', () => {
    for (const value of [
      'abc',
      '1.5',
      '',
      '   ',
      null,
      '1e9',
      '0x10',
      '+5',
      '- 1',
      '1 2',
      '99999999999999999999',
      '9999999999999999',
      'Infinity',
      'NaN',
      '١٢٣',
    ]) {
      const key = 'befw/$service$/web_tcp_8080/1.2.3.4';
      const r = parseKv([{ key, value }], NODE);
      assert.equal(r.grants.length, 1, `value ${JSON.stringify(value)} is carried`);
      assert.equal(r.diagnostics.length, 0, `value ${JSON.stringify(value)} is reported by the compiler, not twice`);
      assert.ok(r.grants[0]!.badValue !== undefined, `value ${JSON.stringify(value)} is marked bad`);
      assert.equal(r.grants[0]!.expiry, null);
      assert.doesNotMatch(r.grants[0]!.badValue ?? '', /[\u0000-\u001f]/);
    }
  });

  test('parseExpiry directly', () => {
    assert.deepEqual(parseExpiry('-1'), { ok: true, expiry: null });
    assert.deepEqual(parseExpiry('42'), { ok: true, expiry: 42 });
    assert.equal(parseExpiry('abc').ok, false);
    assert.equal(parseExpiry(null).ok, false);
    assert.equal(parseExpiry('9007199254740993').ok, false);
  });

  test('an entry with expiry T is live until T*1000-1 ms and gone at T*1000', () => {
    const t = 1700000000;
    assert.equal(isLive(t, t * 1000 - 1), true);
    assert.equal(isLive(t, t * 1000), false);
    assert.equal(isLive(t, t * 1000 + 1), false);
    assert.equal(isLive(0, 0), false);
    assert.equal(isLive(null, Number.MAX_SAFE_INTEGER), true);
  });
});

describe('parseKv: hostile keys', () => {
  const longName = 'a'.repeat(300);
  const cases: [string, string][] = [
    ['befw/$service$/web_tcp_8080/1.2.3.4 -j ACCEPT', 'bad-address'],
    ['befw/$service$/web_tcp_8080/999.1.1.1', 'bad-address'],
    ['befw/$service$/web_tcp_8080/010.1.1.1', 'bad-address'],
    ['befw/$service$/web_tcp_8080/1.2.3.4\n-A INPUT -j ACCEPT', 'bad-address'],
    ['befw/$service$/web_tcp_8080/1.2.3.4/33', 'bad-address'],
    ['befw/$service$/web_tcp_8080/1.2.3.4/024', 'bad-address'],
    ['befw/$service$/web_tcp_8080/fe80::1%eth0', 'bad-address'],
    ['befw/$service$/web_tcp_8080/$bad alias$', 'bad-address'],
    ['befw/$service$/web_tcp_8080/$unterminated', 'bad-address'],
    ['befw/$service$/web_tcp_8080/$$', 'bad-address'],
    [`befw/$service$/web_tcp_8080/$${longName}$`, 'bad-address'],
    ['befw/$service$/web_tcp_8080\n/1.2.3.4', 'bad-name'],
    ['befw/$service$/Web_tcp_8080/1.2.3.4', 'bad-name'],
    ['befw/$service$/web tcp/1.2.3.4', 'bad-name'],
    [`befw/$service$/${longName}/1.2.3.4`, 'bad-name'],
    ['befw/$alias$/ops/1.2.3.4', 'bad-name'],
    [`befw/$alias$/$${longName}$/1.2.3.4`, 'bad-name'],
    [`befw/$service$/dc1/${longName}/1.2.3.4`, 'bad-name'],
    ['befw/$unknown$/web_tcp_8080/1.2.3.4', 'unknown-kind'],
    ['befw/service/web_tcp_8080/1.2.3.4', 'unknown-kind'],
    ['befw/$SERVICE$/web_tcp_8080/1.2.3.4', 'unknown-kind'],
    ['befw/$service$/dc1/web-1/web_tcp_8080/extra/1.2.3.4', 'bad-key'],
    ['befw/$service$/a/b/c/d/e/f/1.2.3.4', 'bad-key'],
    ['befw/$service$/1.2.3.4', 'bad-key'],
    ['befw/$service$//1.2.3.4', 'bad-key'],
    ['befw/$service$/dc1//web_tcp_8080/1.2.3.4', 'bad-key'],
    ['befw/$service$/d c/web_tcp_8080/1.2.3.4', 'bad-key'],
    [`befw/$service$/${'d'.repeat(300)}/web_tcp_8080/1.2.3.4`, 'bad-key'],
    ['befw/$service$/dc1/we\nb-1/web_tcp_8080/1.2.3.4', 'bad-key'],
  ];
  for (const [key, code] of cases) {
    test(`${JSON.stringify(key).slice(0, 90)} -> ${code}`, () => rejected(key, '-1', code));
  }

  test('diagnostic subjects are printable and capped', () => {
    const key = `befw/$service$/web_tcp_8080/${'1\n'.repeat(400)}`;
    const r = parseKv([{ key, value: '-1' }], NODE);
    assert.equal(r.grants.length, 0);
    assert.equal(r.diagnostics.length, 1);
    assert.doesNotMatch(r.diagnostics[0]!.subject, /\n/);
    assert.ok(r.diagnostics[0]!.subject.length <= 201);
  });

  test('bad entries do not hide good ones', () => {
    const r = parseKv(
      [
        { key: 'befw/$service$/web_tcp_8080/999.1.1.1', value: '-1' },
        { key: 'befw/$service$/web_tcp_8080/1.2.3.4', value: '-1' },
        { key: 'befw/$service$/web_tcp_8080/1.2.3.5', value: 'x' },
      ],
      NODE,
    );
    assert.deepEqual(r.grants.filter((g) => g.badValue === undefined).map(addrOf), ['1.2.3.4/32']);
    assert.deepEqual(r.grants.filter((g) => g.badValue !== undefined).map(addrOf), ['1.2.3.5/32']);
    assert.deepEqual(
      r.diagnostics.map((d) => d.code),
      ['bad-address'],
    );
  });
});
