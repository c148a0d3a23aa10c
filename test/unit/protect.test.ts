import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { type Net, parseNet } from '../../src/core/address.js';
import { compile } from '../../src/core/compile.js';
import { NetworkSet, refusedAddress } from '../../src/core/protect.js';
import type { Snapshot } from '../../src/core/types.js';

function net(text: string): Net {
  const r = parseNet(text);
  assert.ok(r.ok, text);
  return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
}

const cidrs = (xs: readonly Net[]): string[] => xs.map((x) => x.cidr);

describe('protect: refused addresses', () => {
  for (const [text, why] of [
    ['127.0.0.1', 'loopback'],
    ['127.0.0.0/8', 'loopback'],
    ['::1', 'loopback'],
    ['0.0.0.0', 'the unspecified address'],
    ['::', 'the unspecified address'],
    ['169.254.10.1', 'link-local'],
    ['fe80::1', 'link-local'],
    ['224.0.0.1', 'multicast'],
    ['239.0.0.0/8', 'multicast'],
    ['ff02::1', 'multicast'],
    ['::ffff:127.0.0.1', 'loopback'],
  ] as const) {
    test(`${text} is refused as ${why}`, () => assert.equal(refusedAddress(net(text)), why));
  }
  for (const text of ['198.51.100.7', '0.0.0.0/0', '::/0', '126.0.0.0/7', '2001:db8::1', '128.0.0.0/1']) {
    test(`${text} is not refused (a wider network may contain a refused range)`, () => assert.equal(refusedAddress(net(text)), null));
  }
});

describe('protect: clipping', () => {
  const prot = new NetworkSet([net('127.0.0.0/8'), net('10.0.0.0/8'), net('10.1.2.3/32'), net('198.51.100.10'), net('::1/128')]);

  test('an untouched network comes back as it is', () => {
    assert.deepEqual(prot.clip(net('203.0.113.0/24')), { kept: [net('203.0.113.0/24')], hit: [] });
  });

  test('a network inside a protected one is kept out entirely', () => {
    const c = prot.clip(net('10.20.0.0/16'));
    assert.deepEqual(c.kept, []);
    assert.deepEqual(cidrs(c.hit), ['10.0.0.0/8']);
  });

  test('a /24 around a protected host keeps the other 255 addresses in 8 networks', () => {
    const c = prot.clip(net('198.51.100.0/24'));
    assert.deepEqual(cidrs(c.kept), [
      '198.51.100.0/29',
      '198.51.100.8/31',
      '198.51.100.11/32',
      '198.51.100.12/30',
      '198.51.100.16/28',
      '198.51.100.32/27',
      '198.51.100.64/26',
      '198.51.100.128/25',
    ]);
    const size = c.kept.reduce((n, k) => n + 2 ** (32 - k.prefix), 0);
    assert.equal(size, 255);
  });

  test('0.0.0.0/0 keeps everything but the protected ranges, exactly', () => {
    const c = prot.clip(net('0.0.0.0/0'));
    const size = c.kept.reduce((n, k) => n + 2 ** (32 - k.prefix), 0);
    assert.equal(size, 2 ** 32 - 2 ** 24 - 2 ** 24 - 1);
    const kept = new NetworkSet(c.kept);
    for (const p of ['127.0.0.1', '10.9.9.9', '198.51.100.10']) assert.ok(!kept.covers(net(p)), p);
    for (const p of ['198.51.100.9', '11.0.0.0', '9.255.255.255', '128.0.0.1']) assert.ok(kept.covers(net(p)), p);
    assert.deepEqual(cidrs(c.hit), ['127.0.0.0/8', '10.0.0.0/8', '10.1.2.3/32', '198.51.100.10/32']);
  });

  test('IPv6: ::/0 loses only ::1', () => {
    const c = prot.clip(net('::/0'));
    assert.equal(c.kept.length, 128);
    assert.ok(!new NetworkSet(c.kept).covers(net('::1')));
    assert.ok(new NetworkSet(c.kept).covers(net('2001:db8::1')));
  });

  test('covers: only whole containment counts', () => {
    assert.ok(prot.covers(net('10.5.0.0/16')));
    assert.ok(!prot.covers(net('10.0.0.0/7')));
    assert.ok(!prot.covers(net('2001:db8::/32')));
  });
});

describe('protect: the compiler', () => {
  const NOW = 1_700_000_000_000;
  const snap = (kv: Record<string, string>, extra: Partial<Snapshot> = {}): Snapshot => ({
    node: { name: 'web-1', dc: 'dc1' },
    agentServices: [{ id: 'web', name: 'web', port: 8080, tags: ['befw', 'enforcing'] }],
    fileServices: [],
    kv: Object.entries(kv)
      .map(([key, value]) => ({ key, value }))
      .sort((a, b) => (a.key < b.key ? -1 : 1)),
    ipsetFiles: [],
    inputDiagnostics: [],
    ...extra,
  });
  const members = (plan: ReturnType<typeof compile>, name: string): readonly string[] =>
    plan.sets.find((s) => s.name === name)?.members ?? assert.fail(`no set ${name}`);
  const peers = { addrs: ['203.0.113.250', '2001:db8::250'], tcpPorts: [8302, 8300, 8301], udpPorts: [8301, 8302] };

  test('a deny of loopback, a Consul server or a management network is never enforced, and is reported', () => {
    const plan = compile(
      snap(
        {
          'befw/$ipset$/rules_deny/127.0.0.1': '-1',
          'befw/$ipset$/rules_deny/203.0.113.250': '-1',
          'befw/$ipset$/rules_deny/192.0.2.0/24': '-1',
          'befw/$ipset$/rules_deny/198.51.100.66': '-1',
        },
        { consulPeers: peers },
      ),
      { customSets: [], managementNets: [net('192.0.2.0/25')], protect: [net('198.51.100.64/30')] },
      NOW,
    );
    assert.deepEqual(members(plan, 'rules_deny'), ['192.0.2.128/25']);
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.code, d.subject, d.message]),
      [
        ['refused-address', 'befw/$ipset$/rules_deny/127.0.0.1', '127.0.0.1/32 is loopback: never enforced'],
        [
          'protected-clipped',
          'befw/$ipset$/rules_deny/192.0.2.0/24',
          '192.0.2.0/24 would cut 192.0.2.0/25 (management network); enforced without them as 1 network(s)',
        ],
        [
          'protected-clipped',
          'befw/$ipset$/rules_deny/198.51.100.66',
          '198.51.100.66/32 would cut 198.51.100.64/30 (protect=); not enforced',
        ],
        [
          'protected-clipped',
          'befw/$ipset$/rules_deny/203.0.113.250',
          '203.0.113.250/32 would cut 203.0.113.250/32 (Consul peer); not enforced',
        ],
      ],
    );
    // The protected paths lead the chain, Consul's on its own ports only.
    assert.deepEqual(plan.rules.slice(0, 4), [
      { kind: 'loopback' },
      { kind: 'static', set: 'befw~protect', target: 'ACCEPT' },
      { kind: 'peers', set: 'befw~consul', proto: 'tcp', ports: [8300, 8301, 8302] },
      { kind: 'peers', set: 'befw~consul', proto: 'udp', ports: [8301, 8302] },
    ]);
    assert.deepEqual(members(plan, 'befw~consul'), ['203.0.113.250/32']);
    assert.deepEqual(members(plan, 'befw~consul_v6'), ['2001:db8::250/128']);
    assert.deepEqual(members(plan, 'befw~protect'), ['192.0.2.0/25', '198.51.100.64/30']);
  });

  test('a grant of a refused address is not enforced either; grants are not clipped', () => {
    const plan = compile(
      snap({ 'befw/$service$/web_tcp_8080/224.0.0.5': '-1', 'befw/$service$/web_tcp_8080/192.0.2.0/24': '-1' }),
      { customSets: [], managementNets: [net('192.0.2.0/25')] },
      NOW,
    );
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['192.0.2.0/24']);
    assert.deepEqual(
      plan.diagnostics.map((d) => d.code),
      ['refused-address'],
    );
  });

  test('a deny inside rules_allow has no effect and says so', () => {
    const plan = compile(
      snap({
        'befw/$ipset$/rules_allow/198.51.100.0/24': '-1',
        'befw/$ipset$/rules_deny/198.51.100.7': '-1',
        'befw/$ipset$/rules_deny/203.0.113.7': '-1',
      }),
      { customSets: [], managementNets: [] },
      NOW,
    );
    const deny = plan.setViews.find((v) => v.logical === 'rules_deny');
    assert.deepEqual(
      deny?.members.map((m) => [m.cidr, m.shadowedBy ?? null]),
      [
        ['198.51.100.7/32', 'rules_allow'],
        ['203.0.113.7/32', null],
      ],
    );
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.code, d.subject]),
      [['deny-shadowed', 'rules_deny 198.51.100.7/32']],
    );
  });

  test('peers with hostile values: bad addresses and ports are dropped, ports capped at 15', () => {
    const plan = compile(
      snap(
        {},
        {
          consulPeers: {
            addrs: ['not-an-ip', '203.0.113.1', '203.0.113.1'],
            tcpPorts: [0, 70000, 1.5, ...Array.from({ length: 20 }, (_, i) => 9000 + i)],
            udpPorts: [],
          },
        },
      ),
      { customSets: [], managementNets: [] },
      NOW,
    );
    assert.deepEqual(members(plan, 'befw~consul'), ['203.0.113.1/32']);
    const tcp = plan.rules.find((r) => r.kind === 'peers');
    assert.ok(tcp?.kind === 'peers');
    assert.equal(tcp.ports.length, 15);
    assert.ok(!plan.rules.some((r) => r.kind === 'peers' && r.proto === 'udp'));
  });
});
