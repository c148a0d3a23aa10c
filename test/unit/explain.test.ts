/**
 * `befw explain` on compiled plans: the verdict and the path to it, table by table. Each case is
 * compiled by the real compiler from a snapshot, so the rule order explain walks is the one the
 * backends render.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseNet } from '../../src/core/address.js';
import { compile } from '../../src/core/compile.js';
import { type Explanation, ExplainError, type Probe, addressIn, explain } from '../../src/core/explain.js';
import { parseKv } from '../../src/core/kvLayout.js';
import type { AgentService, CompileOptions, Snapshot } from '../../src/core/types.js';

const NOW = 1_700_000_000_000;
const T = NOW / 1000;
const NODE = { name: 'web-01', dc: 'dc1' };

const WEB: AgentService = { id: 'web', name: 'web', port: 8080, tags: ['befw', 'enforcing'] };
const BLOG: AgentService = { id: 'blog', name: 'blog', port: 8081, tags: ['befw'] };
const DNS: AgentService = { id: 'dns', name: 'dns', port: 53, tags: ['befw', 'udp'] };

function net(text: string) {
  const r = parseNet(text);
  assert.ok(r.ok);
  return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
}

const OPTIONS: CompileOptions = { customSets: [], managementNets: [net('203.0.113.0/28')] };

function run(
  kv: Record<string, string>,
  address: string,
  port: number | null,
  proto: 'tcp' | 'udp' = 'tcp',
  options = OPTIONS,
  extra: Partial<Snapshot> = {},
): Explanation {
  const snapshot: Snapshot = {
    node: NODE,
    agentServices: [WEB, BLOG, DNS],
    fileServices: [],
    kv: Object.entries(kv).map(([key, value]) => ({ key, value })),
    ipsetFiles: [],
    inputDiagnostics: [],
    ...extra,
  };
  const plan = compile(snapshot, options, NOW);
  const grants = parseKv(snapshot.kv, NODE).grants;
  return explain({ plan, node: NODE, nowMs: NOW, grants }, { address, port, proto });
}

function only(e: Explanation): Probe {
  assert.equal(e.probes.length, 1);
  return e.probes[0] as Probe;
}

function decider(p: Probe) {
  const s = p.steps.find((x) => x.index === p.decidedBy);
  assert.ok(s, `no deciding step in ${JSON.stringify(p.steps)}`);
  return s;
}

describe('explain: verdicts on the chain path', () => {
  test('a protected management address with a deny on it is accepted by the protected rule; the deny is reported as clipped', () => {
    const e = run({ 'befw/$ipset$/rules_deny/203.0.113.5': '-1' }, '203.0.113.5', 8080);
    const p = only(e);
    assert.equal(p.verdict, 'ACCEPT');
    assert.match(decider(p).rule, /protected networks/);
    assert.deepEqual(
      p.steps.map((s) => s.kind),
      ['loopback', 'static'],
      'decided at the protected rule: rules_deny is never reached',
    );
    assert.ok(
      e.notes.some((n) => n.includes('befw/$ipset$/rules_deny/203.0.113.5') && /protected/.test(n)),
      e.notes.join('\n'),
    );
  });

  test('a deny through an alias chain names every key and expires with the shortest link', () => {
    const e = run(
      {
        'befw/$ipset$/rules_deny/$bad$': String(T + 7200),
        'befw/$alias$/$bad$/$scanners$': String(T + 3600),
        'befw/$alias$/$scanners$/198.51.100.0/24': '-1',
        'befw/$service$/web_tcp_8080/198.51.100.3': '-1',
      },
      '198.51.100.3',
      8080,
    );
    const p = only(e);
    assert.equal(p.verdict, 'REJECT');
    const s = decider(p);
    assert.equal(s.rule, 'rules_deny REJECT');
    assert.equal(p.until, (T + 3600) * 1000, 'the alias link that ends first ends the deny');
    const m = s.members[0];
    assert.ok(m);
    assert.equal(m.cidr, '198.51.100.0/24');
    assert.deepEqual(m.via, ['world $bad$ > $scanners$']);
    assert.deepEqual(
      m.chains[0]?.map((l) => [l.key, l.expiresAt]),
      [
        ['befw/$ipset$/rules_deny/$bad$', (T + 7200) * 1000],
        ['befw/$alias$/$bad$/$scanners$', (T + 3600) * 1000],
        ['befw/$alias$/$scanners$/198.51.100.0/24', null],
      ],
    );
    // The service grant is never reached: rules_deny comes first in plan.rules.
    assert.ok(!p.steps.some((x) => x.kind === 'service'));
  });

  test('the same deny, explained after the alias link expired: the client grant accepts', () => {
    const kv = {
      'befw/$ipset$/rules_deny/$bad$': String(T + 7200),
      'befw/$alias$/$bad$/198.51.100.0/24': String(T - 1),
      'befw/$service$/web_tcp_8080/198.51.100.3': '-1',
    };
    const p = only(run(kv, '198.51.100.3', 8080));
    assert.equal(p.verdict, 'ACCEPT');
    assert.equal(decider(p).rule, 'web_tcp_8080 8080/tcp enforcing');
    assert.equal(p.until, null);
  });

  test('a default-mode service falls through to INPUT for a non-client', () => {
    const p = only(run({}, '198.51.100.9', 8081));
    assert.equal(p.verdict, 'INPUT');
    assert.equal(p.decidedBy, null);
    const svc = p.steps.find((s) => s.kind === 'service');
    assert.ok(svc);
    assert.equal(svc.effect, 'next');
    assert.match(svc.why, /mode default/);
  });

  test('an enforcing service drops a non-client; a client is accepted with its expiry', () => {
    const kv = { 'befw/$service$/dc1/web_tcp_8080/198.51.100.7': String(T + 600) };
    const refused = only(run(kv, '198.51.100.9', 8080));
    assert.equal(refused.verdict, 'DROP');
    assert.equal(decider(refused).effect, 'drop');
    const ok = only(run(kv, '198.51.100.7', 8080));
    assert.equal(ok.verdict, 'ACCEPT');
    assert.equal(ok.until, (T + 600) * 1000);
    assert.deepEqual(decider(ok).members[0]?.chains, [
      [{ key: 'befw/$service$/dc1/web_tcp_8080/198.51.100.7', expiresAt: (T + 600) * 1000 }],
    ]);
  });

  test('IPv6: a grant of a /64 accepts an address in it; the IPv4 sets never match an IPv6 address', () => {
    const kv = { 'befw/$service$/web_tcp_8080/2001:db8:100::/64': '-1', 'befw/$ipset$/rules_deny/0.0.0.0/0': '-1' };
    const p = only(run(kv, '2001:DB8:100::7', 8080));
    assert.equal(p.verdict, 'ACCEPT');
    assert.equal(decider(p).members[0]?.cidr, '2001:db8:100::/64');
    const other = only(run(kv, '2001:db8:200::7', 8080));
    assert.equal(other.verdict, 'DROP');
  });

  test('a network member: every member network holding the address is listed, and the match lasts while any does', () => {
    const kv = {
      'befw/$ipset$/rules_allow/198.51.100.0/24': String(T + 60),
      'befw/$ipset$/rules_allow/198.51.100.0/25': String(T + 120),
      'befw/$ipset$/rules_allow/198.51.100.128/25': '-1',
    };
    const p = only(run(kv, '198.51.100.3', 9999));
    assert.equal(p.verdict, 'ACCEPT');
    const s = decider(p);
    assert.equal(s.rule, 'rules_allow ACCEPT');
    assert.deepEqual(s.members.map((m) => m.cidr).sort(), ['198.51.100.0/24', '198.51.100.0/25']);
    assert.equal(p.until, (T + 120) * 1000);
  });

  test('without a port: one verdict per service port, plus any other port', () => {
    const e = run({ 'befw/$service$/dns_udp_53/198.51.100.7': '-1' }, '198.51.100.7', null);
    assert.deepEqual(
      new Map(e.probes.map((p) => [p.label, p.verdict])),
      new Map([
        ['8081/tcp (blog_tcp_8081)', 'INPUT'],
        ['53/udp (dns_udp_53)', 'ACCEPT'],
        ['8080/tcp (web_tcp_8080)', 'DROP'],
        ['any other port', 'INPUT'],
      ]),
    );
    assert.equal(e.probes[e.probes.length - 1]?.label, 'any other port');
    assert.equal(e.probes.length, 4);
  });

  test('without a port, a verdict decided before any port condition is said once for every port', () => {
    const e = run({ 'befw/$ipset$/rules_deny/198.51.100.8': '-1' }, '198.51.100.8', null);
    assert.deepEqual(
      e.probes.map((p) => [p.label, p.verdict]),
      [['every port', 'REJECT']],
    );
  });

  test('the wrong protocol does not match a service rule', () => {
    const p = only(run({}, '198.51.100.7', 53, 'tcp'));
    assert.equal(p.verdict, 'INPUT');
    assert.ok(!p.steps.some((s) => s.kind === 'service'));
  });

  test('custom sets in their order: LOG goes on, RETURN leaves the chain, a user chain decides', () => {
    const options: CompileOptions = {
      ...OPTIONS,
      customSets: [
        { name: 'watch', priority: 3, target: 'LOG' },
        { name: 'office', priority: 4, target: 'chain:OFFICE' },
        { name: 'bypass', priority: 5, target: 'RETURN' },
      ],
    };
    const kv = {
      'befw/$ipset$/watch/198.51.100.0/24': '-1',
      'befw/$ipset$/office/198.51.100.5': '-1',
      'befw/$ipset$/bypass/198.51.100.0/24': '-1',
    };
    const logged = only(run(kv, '198.51.100.6', 8080, 'tcp', options));
    assert.equal(logged.verdict, 'INPUT');
    assert.equal(logged.steps.find((s) => s.rule === 'watch LOG')?.effect, 'log');
    assert.equal(decider(logged).rule, 'bypass RETURN');
    const office = only(run(kv, '198.51.100.5', 8080, 'tcp', options));
    assert.equal(office.verdict, 'chain:OFFICE');
  });

  test('an expired entry is reported as such, and a loopback address is accepted on lo', () => {
    const e = run({ 'befw/$ipset$/rules_deny/198.51.100.4': String(T - 10) }, '198.51.100.4', 8080);
    assert.equal(only(e).verdict, 'DROP');
    assert.ok(
      e.notes.some((n) => /expired/.test(n)),
      e.notes.join('\n'),
    );
    assert.equal(only(run({}, '127.0.0.1', 8080)).verdict, 'ACCEPT');
  });

  test('the order comes from plan.rules: a Consul peer is accepted on its ports only', () => {
    const peers = { addrs: ['198.51.100.50'], tcpPorts: [8300, 8301], udpPorts: [8301] };
    const kv = { 'befw/$ipset$/rules_deny/198.51.100.50': '-1' };
    assert.equal(only(run(kv, '198.51.100.50', 8300, 'tcp', OPTIONS, { consulPeers: peers })).verdict, 'ACCEPT');
    // The deny is clipped (a peer is protected) so on other ports the service decides.
    assert.equal(only(run(kv, '198.51.100.50', 8080, 'tcp', OPTIONS, { consulPeers: peers })).verdict, 'DROP');
  });

  test('hostile and malformed questions are clear errors', () => {
    for (const bad of ['198.51.100.0/24', '198.51.100.07', 'x'.repeat(10_000), '', '::ffff:1.2.3.4.5']) {
      assert.throws(() => run({}, bad, 8080), ExplainError);
    }
    assert.throws(() => run({}, '198.51.100.1', 70000), ExplainError);
  });

  test('addressIn: networks that contain an address, across the mapped IPv4 form', () => {
    assert.equal(addressIn('198.51.100.0/24', '198.51.100.9'), true);
    assert.equal(addressIn('198.51.100.0/24', '::ffff:198.51.100.9'), true);
    assert.equal(addressIn('198.51.100.0/25', '198.51.100.200'), false);
    assert.equal(addressIn('2001:db8::/32', '198.51.100.1'), false);
    assert.equal(addressIn('0.0.0.0/0', '203.0.113.1'), true);
  });
});
