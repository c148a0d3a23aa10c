import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNet } from '../../src/core/address.js';
import { MIN_MAXELEM, compile, maxelemFor } from '../../src/core/compile.js';
import type { AgentService, CompileOptions, KvPair, Plan, Snapshot } from '../../src/core/types.js';
import { shuffled } from '../helpers/shuffle.js';

const NOW = 1_700_000_000_000;
const T = NOW / 1000;
const NODE = { name: 'web-1', dc: 'dc1' };

const WEB: AgentService = { id: 'web', name: 'Web', port: 8080, tags: ['befw', 'enforcing', '30000:30100/udp', '8443/tcp'] };
const DNS: AgentService = { id: 'dns', name: 'dns', port: 53, tags: ['befw', 'udp', '53/tcp'] };

const NO_OPTIONS: CompileOptions = { customSets: [], managementNets: [] };

function snap(kv: Record<string, string | null> | KvPair[], extra: Partial<Snapshot> = {}): Snapshot {
  const pairs = Array.isArray(kv) ? kv : Object.entries(kv).map(([key, value]) => ({ key, value }));
  return { node: NODE, agentServices: [WEB, DNS], fileServices: [], kv: pairs, ipsetFiles: [], inputDiagnostics: [], ...extra };
}

function net(text: string) {
  const r = parseNet(text);
  assert.ok(r.ok);
  return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
}

function members(plan: Plan, name: string): readonly string[] {
  const s = plan.sets.find((x) => x.name === name);
  assert.ok(s, `no set ${name} in plan (have ${plan.sets.map((x) => x.name).join(', ')})`);
  return s.members;
}

/** The protected paths every chain starts with (no Consul peers in these snapshots). */
const PROTECTED_RULES = [{ kind: 'loopback' }, { kind: 'static', set: 'befw~protect', target: 'ACCEPT' }] as const;

function view(plan: Plan, logical: string) {
  const v = plan.setViews.find((x) => x.logical === logical);
  assert.ok(v, `no set view ${logical}`);
  return v;
}

describe('compile: rules', () => {
  test("BEFW's priorities and targets: a custom set never goes ahead of the protected paths, rules_allow or rules_deny", () => {
    const plan = compile(
      snap({}),
      {
        customSets: [
          { name: 'early', priority: 1, target: 'RETURN' },
          { name: 'neg', priority: -7, target: 'chain:OFFICE' },
          { name: 'audit', priority: 2, target: 'LOG' },
          { name: 'trace', priority: 50, target: 'NFLOG' },
        ],
        managementNets: [],
      },
      NOW,
    );
    assert.deepEqual(
      plan.rules.filter((r) => r.kind !== 'service'),
      [
        ...PROTECTED_RULES,
        { kind: 'static', set: 'rules_allow', target: 'ACCEPT' },
        { kind: 'static', set: 'rules_deny', target: 'REJECT' },
        { kind: 'static', set: 'neg', target: 'chain:OFFICE' },
        { kind: 'static', set: 'early', target: 'RETURN' },
        { kind: 'static', set: 'audit', target: 'LOG' },
        { kind: 'static', set: 'trace', target: 'NFLOG' },
      ],
    );
  });

  test('order: rules_allow, rules_deny, custom sets by priority (NOOP without a rule), then services and ports', () => {
    const plan = compile(
      snap({}),
      {
        customSets: [
          { name: 'partners', priority: 4, target: 'ACCEPT' },
          { name: 'monitor', priority: 3, target: 'NOOP' },
          { name: 'blocklist', priority: 3, target: 'DROP' },
          { name: 'late', priority: 100, target: 'REJECT' },
        ],
        managementNets: [],
      },
      NOW,
    );
    assert.deepEqual(plan.rules, [
      ...PROTECTED_RULES,
      { kind: 'static', set: 'rules_allow', target: 'ACCEPT' },
      { kind: 'static', set: 'rules_deny', target: 'REJECT' },
      { kind: 'static', set: 'blocklist', target: 'DROP' },
      { kind: 'static', set: 'partners', target: 'ACCEPT' },
      { kind: 'static', set: 'late', target: 'REJECT' },
      { kind: 'service', service: 'dns_udp_53', set: 'dns_udp_53', proto: 'udp', port: '53', mode: 'default' },
      { kind: 'service', service: 'dns_udp_53', set: 'dns_udp_53', proto: 'tcp', port: '53', mode: 'default' },
      { kind: 'service', service: 'web_tcp_8080', set: 'web_tcp_8080', proto: 'tcp', port: '8080', mode: 'enforcing' },
      { kind: 'service', service: 'web_tcp_8080', set: 'web_tcp_8080', proto: 'tcp', port: '8443', mode: 'enforcing' },
      { kind: 'service', service: 'web_tcp_8080', set: 'web_tcp_8080', proto: 'udp', port: '30000:30100', mode: 'enforcing' },
    ]);
    // The NOOP set is in the kernel, for other tools, in both families.
    assert.deepEqual(
      plan.sets.map((s) => [s.name, s.family]),
      [
        ['befw~consul', 'inet'],
        ['befw~consul_v6', 'inet6'],
        ['befw~protect', 'inet'],
        ['befw~protect_v6', 'inet6'],
        ['blocklist', 'inet'],
        ['blocklist_v6', 'inet6'],
        ['dns_udp_53', 'inet'],
        ['dns_udp_53_v6', 'inet6'],
        ['late', 'inet'],
        ['late_v6', 'inet6'],
        ['monitor', 'inet'],
        ['monitor_v6', 'inet6'],
        ['partners', 'inet'],
        ['partners_v6', 'inet6'],
        ['rules_allow', 'inet'],
        ['rules_allow_v6', 'inet6'],
        ['rules_deny', 'inet'],
        ['rules_deny_v6', 'inet6'],
        ['web_tcp_8080', 'inet'],
        ['web_tcp_8080_v6', 'inet6'],
      ],
    );
    assert.deepEqual(plan.diagnostics, []);
    assert.deepEqual(
      plan.services.map((s) => [s.name, s.set, s.mode, s.origins]),
      [
        ['dns', 'dns_udp_53', 'default', ['consul:dns']],
        ['Web', 'web_tcp_8080', 'enforcing', ['consul:web']],
      ],
    );
  });

  test('no services: only the built-in static rules', () => {
    const plan = compile(snap({}, { agentServices: [] }), NO_OPTIONS, NOW);
    assert.deepEqual(plan.rules, [
      ...PROTECTED_RULES,
      { kind: 'static', set: 'rules_allow', target: 'ACCEPT' },
      { kind: 'static', set: 'rules_deny', target: 'REJECT' },
    ]);
    assert.deepEqual(
      plan.sets.map((s) => s.name),
      ['befw~consul', 'befw~consul_v6', 'befw~protect', 'befw~protect_v6', 'rules_allow', 'rules_allow_v6', 'rules_deny', 'rules_deny_v6'],
    );
    assert.equal(plan.nextExpiry, null);
  });

  test('a custom set named like a service set is ignored with a diagnostic', () => {
    const plan = compile(snap({}), { customSets: [{ name: 'web_tcp_8080', priority: 5, target: 'DROP' }], managementNets: [] }, NOW);
    assert.ok(!plan.rules.some((r) => r.kind === 'static' && r.set === 'web_tcp_8080'));
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.code, d.severity]),
      [['set-conflict', 'error']],
    );
  });

  test("long names stay logical in the plan: sets and rules name the logical set, kernel naming is the backend's", () => {
    const long: AgentService = { id: 'l', name: 'an-extremely-long-service-name-indeed', port: 8080, tags: ['befw', 'enforcing'] };
    const plan = compile(
      snap({ 'befw/$service$/an-extremely-long-service-name-indeed_tcp_8080/192.0.2.1': '-1' }, { agentServices: [long] }),
      NO_OPTIONS,
      NOW,
    );
    const logical = 'an-extremely-long-service-name-indeed_tcp_8080';
    const v = view(plan, logical);
    assert.equal(v.kernel, undefined);
    assert.deepEqual(members(plan, logical), ['192.0.2.1/32']);
    assert.deepEqual(members(plan, `${logical}_v6`), []);
    const svcRules = plan.rules.filter((r) => r.kind === 'service');
    assert.deepEqual(svcRules, [{ kind: 'service', service: logical, set: logical, proto: 'tcp', port: '8080', mode: 'enforcing' }]);
  });
});

describe('compile: members', () => {
  test('service clients from every scope, IPv4 and IPv6, each in its family', () => {
    const plan = compile(
      snap({
        'befw/$service$/web_tcp_8080/198.51.100.2': '-1',
        'befw/$service$/dc1/web_tcp_8080/198.51.100.3': '-1',
        'befw/$service$/dc1/web-1/web_tcp_8080/198.51.100.0/28': '-1',
        'befw/$service$/web_tcp_8080/2001:db8::/32': '-1',
        'befw/$service$/dc2/web_tcp_8080/203.0.113.9': '-1', // another datacenter
        'befw/$service$/dc1/web-2/web_tcp_8080/203.0.113.10': '-1', // another node
      }),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['198.51.100.0/28', '198.51.100.2/32', '198.51.100.3/32']);
    assert.deepEqual(members(plan, 'web_tcp_8080_v6'), ['2001:db8::/32']);
    assert.deepEqual(members(plan, 'dns_udp_53'), []);
    assert.deepEqual(plan.diagnostics, []);
    const v = view(plan, 'web_tcp_8080');
    assert.equal(v.kind, 'service');
    assert.deepEqual(
      v.members.map((m) => [m.cidr, m.family, m.via]),
      [
        ['198.51.100.0/28', 4, ['node']],
        ['198.51.100.2/32', 4, ['world']],
        ['198.51.100.3/32', 4, ['dc']],
        ['2001:db8::/32', 6, ['world']],
      ],
    );
  });

  test('management networks are always in rules_allow, whatever Consul says', () => {
    const options: CompileOptions = { customSets: [], managementNets: [net('10.0.0.0/8'), net('2001:db8:ffff::/48')] };
    const plan = compile(
      snap({
        'befw/$ipset$/rules_deny/10.0.0.0/8': '-1',
        'befw/$ipset$/rules_allow/10.0.0.0/8': '1', // an expired Consul entry for the same network
      }),
      options,
      NOW,
    );
    assert.deepEqual(members(plan, 'rules_allow'), ['10.0.0.0/8']);
    assert.deepEqual(members(plan, 'rules_allow_v6'), ['2001:db8:ffff::/48']);
    // A deny of a management network is clipped: nothing in Consul cuts the management networks.
    assert.deepEqual(members(plan, 'rules_deny'), []);
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.code, d.subject]),
      [['protected-clipped', 'befw/$ipset$/rules_deny/10.0.0.0/8']],
    );
    const allow = view(plan, 'rules_allow');
    assert.deepEqual(
      allow.members.map((m) => [m.cidr, m.expiresAt, m.via]),
      [
        ['10.0.0.0/8', null, ['config']],
        ['2001:db8:ffff::/48', null, ['config']],
      ],
    );
    // The protected paths come first (management networks in befw~protect), then rules_allow.
    assert.deepEqual(plan.rules.slice(0, 3), [...PROTECTED_RULES, { kind: 'static', set: 'rules_allow', target: 'ACCEPT' }]);
    assert.deepEqual(members(plan, 'befw~protect'), ['10.0.0.0/8']);
    // And with an empty snapshot too.
    const empty = compile(snap({}, { agentServices: [] }), options, NOW);
    assert.deepEqual(members(empty, 'rules_allow'), ['10.0.0.0/8']);
  });

  test('expired entries are dropped, at their second exactly', () => {
    const kv = {
      'befw/$service$/web_tcp_8080/192.0.2.1': String(T), // leaves now
      'befw/$service$/web_tcp_8080/192.0.2.2': String(T + 1),
      'befw/$service$/web_tcp_8080/192.0.2.3': '0',
      'befw/$service$/web_tcp_8080/192.0.2.4': '-1',
      'befw/$service$/web_tcp_8080/192.0.2.5': String(T - 3600),
    };
    assert.deepEqual(members(compile(snap(kv), NO_OPTIONS, NOW), 'web_tcp_8080'), ['192.0.2.2/32', '192.0.2.4/32']);
    assert.deepEqual(members(compile(snap(kv), NO_OPTIONS, NOW - 1), 'web_tcp_8080'), ['192.0.2.1/32', '192.0.2.2/32', '192.0.2.4/32']);
    assert.deepEqual(members(compile(snap(kv), NO_OPTIONS, (T + 1) * 1000), 'web_tcp_8080'), ['192.0.2.4/32']);
  });

  test('bad values are not enforced and are reported', () => {
    const plan = compile(
      snap({ 'befw/$service$/web_tcp_8080/192.0.2.1': 'tomorrow', 'befw/$service$/web_tcp_8080/192.0.2.2': '-1' }),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['192.0.2.2/32']);
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.code, d.subject]),
      [['bad-expiry', 'befw/$service$/web_tcp_8080/192.0.2.1']],
    );
  });

  test('de-duplication keeps the longest expiry and every origin', () => {
    const plan = compile(
      snap({
        'befw/$service$/web_tcp_8080/192.0.2.1': String(T + 100),
        'befw/$service$/dc1/web_tcp_8080/192.0.2.1': String(T + 300),
        'befw/$service$/dc1/web-1/web_tcp_8080/192.0.2.1': String(T + 200),
        'befw/$service$/web_tcp_8080/192.0.2.2': String(T + 100),
        'befw/$service$/dc1/web_tcp_8080/192.0.2.2': '-1',
        'befw/$service$/web_tcp_8080/192.0.2.3/32': String(T + 5),
        'befw/$service$/web_tcp_8080/::ffff:192.0.2.3': String(T + 6), // same address, mapped form
      }),
      NO_OPTIONS,
      NOW,
    );
    const v = view(plan, 'web_tcp_8080');
    assert.deepEqual(
      v.members.map((m) => [m.cidr, m.expiresAt, m.via]),
      [
        ['192.0.2.1/32', (T + 300) * 1000, ['dc', 'node', 'world']],
        ['192.0.2.2/32', null, ['dc', 'world']],
        ['192.0.2.3/32', (T + 6) * 1000, ['world']],
      ],
    );
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['192.0.2.1/32', '192.0.2.2/32', '192.0.2.3/32']);
    assert.equal(plan.nextExpiry, (T + 6) * 1000);
  });

  test("/0 stays /0 in the plan (splitting it is ipset's business), overlaps kept as they are", () => {
    const plan = compile(
      snap({
        'befw/$ipset$/rules_allow/0.0.0.0/0': '-1',
        'befw/$ipset$/rules_allow/::/0': '-1',
        'befw/$ipset$/rules_allow/0.0.0.0/1': '-1',
      }),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(members(plan, 'rules_allow'), ['0.0.0.0/0', '0.0.0.0/1']);
    assert.deepEqual(members(plan, 'rules_allow_v6'), ['::/0']);
    assert.deepEqual(
      view(plan, 'rules_allow').members.map((m) => m.cidr),
      ['0.0.0.0/0', '0.0.0.0/1', '::/0'],
    );
  });

  test('a deny of /0 keeps denying the world except the protected paths', () => {
    const plan = compile(
      snap({ 'befw/$ipset$/rules_deny/0.0.0.0/0': '-1', 'befw/$ipset$/rules_deny/::/0': '-1' }),
      { customSets: [], managementNets: [net('10.0.0.0/8')] },
      NOW,
    );
    // 0.0.0.0/0 without 10.0.0.0/8 and 127.0.0.0/8; ::/0 without ::1.
    assert.deepEqual(members(plan, 'rules_deny'), [
      '0.0.0.0/5',
      '11.0.0.0/8',
      '112.0.0.0/5',
      '12.0.0.0/6',
      '120.0.0.0/6',
      '124.0.0.0/7',
      '126.0.0.0/8',
      '128.0.0.0/1',
      '16.0.0.0/4',
      '32.0.0.0/3',
      '64.0.0.0/3',
      '8.0.0.0/7',
      '96.0.0.0/4',
    ]);
    assert.equal(members(plan, 'rules_deny_v6').length, 128);
    assert.ok(!members(plan, 'rules_deny_v6').includes('::1/128'));
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.code, d.subject]),
      [
        ['protected-clipped', 'befw/$ipset$/rules_deny/0.0.0.0/0'],
        ['protected-clipped', 'befw/$ipset$/rules_deny/::/0'],
      ],
    );
  });

  test('grants for sets not on this node are silently ignored', () => {
    const plan = compile(
      snap({
        'befw/$service$/db_tcp_5432/192.0.2.1': '-1',
        'befw/$service$/dc1/web-1/mail_tcp_25/192.0.2.1': '-1',
        'befw/$ipset$/not_configured/192.0.2.1': '-1',
        'befw/$service$/rules_allow/192.0.2.9': '-1', // a service grant for a static set: wrong kind
        'befw/$ipset$/web_tcp_8080/192.0.2.9': '-1', // a static grant for a service set: wrong kind
      }),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(plan.diagnostics, []);
    for (const s of plan.sets) assert.deepEqual(s.members, [], s.name);
    assert.equal(
      plan.sets.some((s) => s.name.startsWith('db_') || s.name.startsWith('mail_') || s.name.startsWith('not_')),
      false,
    );
  });

  test('custom sets receive their $ipset$ members', () => {
    const plan = compile(
      snap({ 'befw/$ipset$/blocklist/203.0.113.0/24': '-1', 'befw/$ipset$/dc1/monitor/2001:db8::9': '-1' }),
      {
        customSets: [
          { name: 'blocklist', priority: 3, target: 'DROP' },
          { name: 'monitor', priority: 9, target: 'NOOP' },
        ],
        managementNets: [],
      },
      NOW,
    );
    assert.deepEqual(members(plan, 'blocklist'), ['203.0.113.0/24']);
    assert.deepEqual(members(plan, 'monitor_v6'), ['2001:db8::9/128']);
    assert.equal(view(plan, 'monitor').kind, 'static');
  });

  test('maxelem grows in powers of two with room to spare', () => {
    assert.equal(maxelemFor(0), MIN_MAXELEM);
    assert.equal(maxelemFor(32768), 65536);
    assert.equal(maxelemFor(32769), 131072);
    assert.equal(maxelemFor(100000), 262144);
    const kv: Record<string, string> = {};
    for (let i = 0; i < 40000; i++) kv[`befw/$service$/web_tcp_8080/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`] = '-1';
    const plan = compile(snap(kv), NO_OPTIONS, NOW);
    const s = plan.sets.find((x) => x.name === 'web_tcp_8080')!;
    assert.equal(s.members.length, 40000);
    assert.equal(s.maxelem, 131072);
    assert.equal(plan.sets.find((x) => x.name === 'web_tcp_8080_v6')!.maxelem, 65536);
  });
});

describe('compile: aliases', () => {
  test('alias grants expand with the effective expiry and the path in via', () => {
    const plan = compile(
      snap({
        'befw/$service$/web_tcp_8080/$ops$': String(T + 1000),
        'befw/$alias$/$ops$/192.0.2.10': '-1',
        'befw/$alias$/$ops$/$oncall$': String(T + 500),
        'befw/$alias$/dc1/$oncall$/192.0.2.11': String(T + 800),
        'befw/$alias$/$oncall$/2001:db8::11': String(T + 100),
      }),
      NO_OPTIONS,
      NOW,
    );
    const v = view(plan, 'web_tcp_8080');
    assert.deepEqual(
      v.members.map((m) => [m.cidr, m.expiresAt, m.via]),
      [
        ['192.0.2.10/32', (T + 1000) * 1000, ['world $ops$']],
        ['192.0.2.11/32', (T + 500) * 1000, ['world $ops$ > $oncall$']],
        ['2001:db8::11/128', (T + 100) * 1000, ['world $ops$ > $oncall$']],
      ],
    );
    assert.equal(plan.nextExpiry, (T + 100) * 1000);
    assert.deepEqual(plan.diagnostics, []);
  });

  test('unknown aliases and cycles are reported; the rest still applies', () => {
    const plan = compile(
      snap({
        'befw/$service$/web_tcp_8080/$ghost$': '-1',
        'befw/$service$/web_tcp_8080/$loop$': '-1',
        'befw/$alias$/$loop$/$loop2$': '-1',
        'befw/$alias$/$loop2$/$loop$': '-1',
        'befw/$alias$/$loop2$/192.0.2.20': '-1',
        'befw/$service$/web_tcp_8080/192.0.2.21': '-1',
      }),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['192.0.2.21/32']);
    assert.deepEqual(plan.diagnostics.map((d) => [d.code, d.subject]).sort(), [
      ['alias-cycle', 'befw/$alias$/$loop$/$loop2$'],
      ['alias-cycle', 'befw/$alias$/$loop2$/$loop$'],
      ['unknown-alias', 'befw/$service$/web_tcp_8080/$ghost$'],
    ]);
  });

  test('hostile alias graphs: a 10,000-deep chain and a 40-level diamond compile quickly', () => {
    const kv: Record<string, string> = { 'befw/$service$/web_tcp_8080/$c0$': '-1', 'befw/$service$/dns_udp_53/$d0$': '-1' };
    for (let i = 0; i < 10_000; i++) kv[`befw/$alias$/$c${i}$/$c${i + 1}$`] = '-1';
    kv['befw/$alias$/$c10000$/192.0.2.1'] = '-1';
    for (let i = 0; i < 40; i++) {
      kv[`befw/$alias$/$d${i}$/$d${i + 1}$`] = '-1';
      kv[`befw/$alias$/dc1/$d${i}$/$d${i + 1}$`] = '-1';
    }
    kv['befw/$alias$/$d40$/192.0.2.2'] = '-1';
    const started = performance.now();
    const plan = compile(snap(kv), NO_OPTIONS, NOW);
    const ms = performance.now() - started;
    assert.ok(ms < 3000, `took ${ms} ms`);
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['192.0.2.1/32']);
    assert.deepEqual(members(plan, 'dns_udp_53'), ['192.0.2.2/32']);
    assert.deepEqual(plan.diagnostics, []);
  });

  test('static sets take aliases too', () => {
    const plan = compile(snap({ 'befw/$ipset$/rules_deny/$bad$': '-1', 'befw/$alias$/$bad$/203.0.113.66': '-1' }), NO_OPTIONS, NOW);
    assert.deepEqual(members(plan, 'rules_deny'), ['203.0.113.66/32']);
  });
});

describe('compile: nextExpiry', () => {
  test('the earliest expiry among enforced members, ignoring expired, foreign and never-expiring entries', () => {
    const plan = compile(
      snap({
        'befw/$service$/web_tcp_8080/192.0.2.1': String(T + 50),
        'befw/$service$/web_tcp_8080/192.0.2.2': String(T + 20),
        'befw/$service$/web_tcp_8080/192.0.2.3': String(T - 5), // already gone
        'befw/$service$/web_tcp_8080/192.0.2.4': '-1',
        'befw/$service$/db_tcp_5432/192.0.2.5': String(T + 1), // not on this node
        'befw/$service$/dc2/web_tcp_8080/192.0.2.6': String(T + 2), // another dc
        'befw/$ipset$/rules_deny/192.0.2.7': String(T + 30),
      }),
      NO_OPTIONS,
      NOW,
    );
    assert.equal(plan.nextExpiry, (T + 20) * 1000);
  });

  test('an entry kept alive by a longer grant does not count', () => {
    const plan = compile(
      snap({ 'befw/$service$/web_tcp_8080/192.0.2.1': String(T + 10), 'befw/$service$/dc1/web_tcp_8080/192.0.2.1': '-1' }),
      NO_OPTIONS,
      NOW,
    );
    assert.equal(plan.nextExpiry, null);
  });

  test('recompiling at nextExpiry removes exactly that member', () => {
    const kv = { 'befw/$service$/web_tcp_8080/192.0.2.1': String(T + 10), 'befw/$service$/web_tcp_8080/192.0.2.2': String(T + 20) };
    const first = compile(snap(kv), NO_OPTIONS, NOW);
    assert.equal(first.nextExpiry, (T + 10) * 1000);
    const second = compile(snap(kv), NO_OPTIONS, first.nextExpiry);
    assert.deepEqual(members(second, 'web_tcp_8080'), ['192.0.2.2/32']);
    assert.notEqual(first.fingerprint, second.fingerprint);
    assert.equal(second.nextExpiry, (T + 20) * 1000);
  });
});

describe('compile: ipset files', () => {
  test("BEFW's meaning (the default): each file is a set of its own, named after the file, with no rule", () => {
    const plan = compile(
      snap(
        {},
        {
          ipsetFiles: [
            {
              file: '/etc/befw.ipset.d/rules_allow.ipset',
              set: 'rules_allow',
              text: '10.0.0.0/8 192.0.2.0/24\n\t2001:db8::/32  198.51.100.7\n',
            },
          ],
        },
      ),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(members(plan, 'rules_allow.ipset'), ['10.0.0.0/8', '192.0.2.0/24', '198.51.100.7/32']);
    assert.deepEqual(members(plan, 'rules_allow.ipset_v6'), ['2001:db8::/32']);
    assert.deepEqual(members(plan, 'rules_allow'), [], 'not merged into rules_allow: that would accept them on every port');
    assert.ok(!plan.rules.some((r) => r.kind === 'static' && r.set === 'rules_allow.ipset'), 'no rule: the host uses the set');
    assert.deepEqual(plan.diagnostics, []);
  });

  test('ipset_files=members: files add members; comments, blanks and CRLF are fine; bad tokens name file:line', () => {
    const plan = compile(
      snap(
        {},
        {
          ipsetFiles: [
            {
              file: '/etc/befw.ipset.d/rules_deny.ipset',
              set: 'rules_deny',
              text: '# deny list\r\n203.0.113.7\r\n\r\n203.0.113.0/24 # whole net\n999.1.1.1\n2001:db8::bad:1\n1.2.3.4 -j ACCEPT\n',
            },
            { file: '/etc/befw.ipset.d/web_tcp_8080.ipset', set: 'web_tcp_8080', text: '192.0.2.1\n' },
            { file: '/etc/befw.ipset.d/nope.ipset', set: 'nope', text: '192.0.2.1\n' },
          ],
        },
      ),
      { ...NO_OPTIONS, ipsetFiles: 'members' },
      NOW,
    );
    assert.deepEqual(members(plan, 'rules_deny'), ['1.2.3.4/32', '203.0.113.0/24', '203.0.113.7/32']);
    assert.deepEqual(members(plan, 'rules_deny_v6'), ['2001:db8::bad:1/128']);
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['192.0.2.1/32']);
    assert.deepEqual(
      plan.diagnostics.map((d) => [d.severity, d.code, d.subject]),
      [
        ['error', 'bad-address', '/etc/befw.ipset.d/rules_deny.ipset:5'],
        ['error', 'bad-address', '/etc/befw.ipset.d/rules_deny.ipset:7'],
        ['error', 'bad-address', '/etc/befw.ipset.d/rules_deny.ipset:7'],
        ['warning', 'unknown-set', '/etc/befw.ipset.d/nope.ipset'],
      ].sort((a, b) => (a[2]! < b[2]! ? -1 : 1)),
    );
    assert.deepEqual(view(plan, 'rules_deny').members.find((m) => m.cidr === '203.0.113.7/32')?.via, [
      'file /etc/befw.ipset.d/rules_deny.ipset',
    ]);
  });
});

describe('compile: input diagnostics and services', () => {
  test('input diagnostics are passed through first', () => {
    const d = { severity: 'error' as const, code: 'bad-service-file', subject: '/x.json', message: 'bad' };
    const plan = compile(snap({ 'befw/$service$/web_tcp_8080/1.2.3': '-1' }, { inputDiagnostics: [d] }), NO_OPTIONS, NOW);
    assert.deepEqual(
      plan.diagnostics.map((x) => x.code),
      ['bad-service-file', 'bad-address'],
    );
  });

  test('file services compile like agent services', () => {
    const plan = compile(
      snap(
        { 'befw/$service$/api_tcp_9000/192.0.2.1': '-1' },
        {
          agentServices: [],
          fileServices: [{ file: '/etc/befw.service.d/api.json', name: 'api', port: 9000, protocol: 'tcp', mode: 'enforcing', ports: [] }],
        },
      ),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(members(plan, 'api_tcp_9000'), ['192.0.2.1/32']);
    assert.deepEqual(plan.rules.slice(4), [
      { kind: 'service', service: 'api_tcp_9000', set: 'api_tcp_9000', proto: 'tcp', port: '9000', mode: 'enforcing' },
    ]);
    assert.deepEqual(plan.services[0]!.origins, ['file:/etc/befw.service.d/api.json']);
  });
});

describe('compile: determinism and fingerprint', () => {
  const KV: KvPair[] = [
    { key: 'befw/$service$/web_tcp_8080/198.51.100.2', value: '-1' },
    { key: 'befw/$service$/dc1/web_tcp_8080/198.51.100.0/24', value: String(T + 100) },
    { key: 'befw/$service$/web_tcp_8080/$ops$', value: String(T + 50) },
    { key: 'befw/$service$/web_tcp_8080/$ghost$', value: '-1' },
    { key: 'befw/$service$/dns_udp_53/$ghost$', value: '-1' },
    { key: 'befw/$service$/dns_udp_53/2001:db8::/48', value: '-1' },
    { key: 'befw/$alias$/$ops$/192.0.2.1', value: '-1' },
    { key: 'befw/$alias$/$ops$/$team$', value: '-1' },
    { key: 'befw/$alias$/$ops$/$other$', value: '-1' },
    { key: 'befw/$alias$/$team$/192.0.2.2', value: String(T + 10) },
    { key: 'befw/$alias$/$other$/192.0.2.2', value: String(T + 10) },
    { key: 'befw/$alias$/$team$/$ops$', value: '-1' },
    { key: 'befw/$ipset$/rules_deny/203.0.113.0/24', value: '-1' },
    { key: 'befw/$ipset$/rules_deny/999.1.1.1', value: '-1' },
    { key: 'befw/$ipset$/rules_deny/203.0.113.9', value: 'soon' },
    { key: 'befw/$service$/web_tcp_8080/198.51.100.77/24', value: '-1' },
  ];

  test('the same input in any KV order gives a byte-identical plan', () => {
    const ref = compile(snap(KV), NO_OPTIONS, NOW);
    assert.ok(ref.diagnostics.length >= 4, 'the fixture is meant to produce diagnostics');
    const refJson = JSON.stringify(ref);
    for (let seed = 1; seed <= 25; seed++) {
      const other = compile(snap(shuffled(KV, seed), { agentServices: shuffled([WEB, DNS], seed) }), NO_OPTIONS, NOW);
      assert.equal(other.fingerprint, ref.fingerprint);
      assert.equal(JSON.stringify(other), refJson, `seed ${seed}`);
    }
  });

  test('the fingerprint changes when a member changes', () => {
    const ref = compile(snap(KV), NO_OPTIONS, NOW);
    const changed = KV.map((p) =>
      p.key === 'befw/$service$/web_tcp_8080/198.51.100.2' ? { key: 'befw/$service$/web_tcp_8080/198.51.100.3', value: '-1' } : p,
    );
    assert.notEqual(compile(snap(changed), NO_OPTIONS, NOW).fingerprint, ref.fingerprint);
    const added = [...KV, { key: 'befw/$ipset$/rules_allow/2001:db8::1', value: '-1' }];
    assert.notEqual(compile(snap(added), NO_OPTIONS, NOW).fingerprint, ref.fingerprint);
    const removed = KV.filter((p) => p.key !== 'befw/$alias$/$ops$/192.0.2.1');
    assert.notEqual(compile(snap(removed), NO_OPTIONS, NOW).fingerprint, ref.fingerprint);
  });

  test('the fingerprint changes when a rule changes', () => {
    const ref = compile(snap(KV), NO_OPTIONS, NOW);
    const enforcingDns = { ...DNS, tags: [...DNS.tags, 'enforcing'] };
    assert.notEqual(compile(snap(KV, { agentServices: [WEB, enforcingDns] }), NO_OPTIONS, NOW).fingerprint, ref.fingerprint);
    assert.notEqual(
      compile(snap(KV), { customSets: [{ name: 'extra', priority: 3, target: 'NOOP' }], managementNets: [] }, NOW).fingerprint,
      ref.fingerprint,
    );
  });

  test('the fingerprint follows expiry times (the kernel holds them as element timeouts), not diagnostics', () => {
    const ref = compile(snap(KV, { agentServices: [WEB, DNS] }), NO_OPTIONS, NOW);
    // The $ops$ grant renewed: its members' expiry moves, so the kernel's element timeouts do.
    const laterExpiry = KV.map((p) => (p.key === 'befw/$service$/web_tcp_8080/$ops$' ? { ...p, value: String(T + 999) } : p));
    const renewed = compile(snap(laterExpiry, { agentServices: [WEB, DNS] }), NO_OPTIONS, NOW);
    assert.notEqual(renewed.fingerprint, ref.fingerprint);
    assert.deepEqual(renewed.sets.find((x) => x.name === 'web_tcp_8080')?.expiring?.at.includes(T + 999), true);
    const moreNoise = [...KV, { key: 'befw/$service$/web_tcp_8080/not-an-ip', value: '-1' }];
    assert.equal(compile(snap(moreNoise, { agentServices: [WEB, DNS] }), NO_OPTIONS, NOW).fingerprint, ref.fingerprint);
  });
});

describe('compile: what BEFW fleets write', () => {
  const ED: Snapshot['node'] = { name: 'ed-web-01', dc: 'dc1' };

  test("the local-datacenter scope (the node name up to its first '-') is read, as BEFW reads it", () => {
    const plan = compile(
      snap(
        {
          'befw/$service$/ed/web_tcp_8080/198.51.100.21': '-1',
          'befw/$service$/ed/ed-web-01/web_tcp_8080/198.51.100.22': '-1',
          'befw/$ipset$/ed/rules_deny/203.0.113.21': '-1',
          'befw/$service$/xx/web_tcp_8080/198.51.100.23': '-1',
        },
        { node: ED },
      ),
      NO_OPTIONS,
      NOW,
    );
    assert.deepEqual(members(plan, 'web_tcp_8080'), ['198.51.100.21/32', '198.51.100.22/32']);
    assert.deepEqual(members(plan, 'rules_deny'), ['203.0.113.21/32']);
  });

  test("other tools' keys (befw/.lock) are skipped silently", () => {
    const plan = compile(snap({ 'befw/.lock': 'befw-sync on host-7', 'befw/$service$/web_tcp_8080/198.51.100.2': '-1' }), NO_OPTIONS, NOW);
    assert.deepEqual(plan.diagnostics, []);
  });

  test('a bad value fails closed in a deny (enforced, never expiring) and is not enforced for a grant', () => {
    const plan = compile(
      snap({
        'befw/$ipset$/rules_deny/203.0.113.30': 'tomorrow',
        'befw/$ipset$/rules_deny/203.0.113.31': '',
        'befw/$ipset$/rules_deny/203.0.113.32': null,
        'befw/$ipset$/rules_allow/203.0.113.33': 'tomorrow',
        'befw/$service$/web_tcp_8080/198.51.100.30': 'tomorrow',
        'befw/$ipset$/blocklist/203.0.113.34': 'junk',
      }),
      { customSets: [{ name: 'blocklist', priority: 3, target: 'DROP' }], managementNets: [] },
      NOW,
    );
    assert.deepEqual(members(plan, 'rules_deny'), ['203.0.113.30/32', '203.0.113.31/32', '203.0.113.32/32']);
    assert.deepEqual(members(plan, 'blocklist'), ['203.0.113.34/32']);
    assert.deepEqual(members(plan, 'rules_allow'), []);
    assert.deepEqual(members(plan, 'web_tcp_8080'), []);
    assert.equal(plan.nextExpiry, null, 'a failed-closed deny never expires');
    const bad = plan.diagnostics.filter((d) => d.code === 'bad-expiry').map((d) => [d.subject, d.severity, /fails closed/.test(d.message)]);
    assert.deepEqual(bad.sort(), [
      ['befw/$ipset$/blocklist/203.0.113.34', 'warning', true],
      ['befw/$ipset$/rules_allow/203.0.113.33', 'error', false],
      ['befw/$ipset$/rules_deny/203.0.113.30', 'warning', true],
      ['befw/$ipset$/rules_deny/203.0.113.31', 'warning', true],
      ['befw/$ipset$/rules_deny/203.0.113.32', 'warning', true],
      ['befw/$service$/web_tcp_8080/198.51.100.30', 'error', false],
    ]);
  });
});

describe('compile: set naming of the fleet', () => {
  test('id-first-tag: service ID and its first port tag, as later BEFW releases name sets', () => {
    const services: AgentService[] = [
      { id: 'api-1', name: 'api', port: 9000, tags: ['befw'] },
      { id: 'web', name: 'web', port: 8080, tags: ['befw', '8443/tcp', '9443/tcp'] },
    ];
    const names = (naming: 'name-port' | 'id-first-tag') =>
      compile(snap({}, { agentServices: services }), { ...NO_OPTIONS, setNaming: naming }, NOW).services.map((s) => s.set);
    assert.deepEqual(names('id-first-tag'), ['api-1_tcp_9000', 'web_tcp_8443']);
    assert.deepEqual(names('name-port'), ['api_tcp_9000', 'web_tcp_8080']);
  });
});
