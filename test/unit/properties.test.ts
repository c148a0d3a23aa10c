/**
 * Property tests (fast-check) for the parsers and the compiler: hostile keys, values and names.
 * Runs are seeded per test so a failure reproduces; fast-check prints the seed and the shrunk
 * counterexample.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { isIP } from 'node:net';
import fc from 'fast-check';
import { parseIp, parseNet, printable } from '../../src/core/address.js';
import { ALIAS_NAME, SET_NAME, parseKv } from '../../src/core/kvLayout.js';
import { compile } from '../../src/core/compile.js';
import { serviceSetName } from '../../src/core/services.js';
import { chainRuleLines, renderChainRestore } from '../../src/dataplane/iptables/render.js';
import { ipsetMembers } from '../../src/dataplane/iptables/ipset.js';
import { kernelNamesFor } from '../../src/dataplane/iptables/setNames.js';
import { renderFull } from '../../src/dataplane/nft/render.js';
import { logicalOf } from '../../src/core/planSets.js';
import { DEFAULT_SERVICE_TEMPLATE, TemplateError, parseServiceTemplate } from '../../src/dataplane/iptables/templates.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { parseServiceFile } from '../../src/agent/inputs/localFiles.js';
import type { AgentService, CompileOptions, FileService, KvPair, Snapshot, StaticSetConfig } from '../../src/core/types.js';
import { shuffled } from '../helpers/shuffle.js';

const NODE = { name: 'web-1', dc: 'dc1' };
const NOW = 1_700_000_000_000;
const CANONICAL_CHARS = /^[0-9a-f.:/]+$/;

function isCanonicalCidr(cidr: string): boolean {
  const r = parseNet(cidr);
  return CANONICAL_CHARS.test(cidr) && cidr.includes('/') && r.ok && r.value.cidr === cidr && !r.value.hostBits;
}

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Strings that look like addresses often enough to hit the interesting branches. */
const addrTokens = fc.constantFrom(
  '0',
  '1',
  '9',
  '10',
  '01',
  '00',
  '255',
  '256',
  '999',
  '4294967295',
  'a',
  'ff',
  'FFFF',
  '0000',
  '12345',
  'g',
  '.',
  '.',
  ':',
  ':',
  '::',
  ':::',
  '/',
  '/0',
  '/8',
  '/24',
  '/32',
  '/33',
  '/64',
  '/128',
  '/024',
  '%eth0',
  ' ',
  '\n',
  '1.2.3.4',
  '::ffff:',
  '2001:db8',
  '1:2:3:4:5:6:7:8',
);
const addrLike = fc.oneof(
  fc.array(addrTokens, { maxLength: 12 }).map((t) => t.join('')),
  fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF.:/'.split('')), maxLength: 50 }),
  fc.ipV4(),
  fc.ipV6(),
  fc.ipV4Extended(),
  fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.integer({ min: 0, max: 140 })).map(([a, p]) => `${a}/${p}`),
  fc.string({ unit: 'binary', maxLength: 60 }),
);

const expiryValue = fc.oneof(
  { weight: 4, arbitrary: fc.constant('-1') },
  fc.constant(null),
  fc.integer({ min: -10, max: 2_000_000_000 }).map(String),
  { weight: 4, arbitrary: fc.integer({ min: NOW / 1000 - 100, max: NOW / 1000 + 100 }).map(String) },
  fc.constantFrom('', ' ', '0', '1.5', '1e9', 'abc', ' 1700000050 ', '99999999999999999999', '-0', '+1'),
  fc.string({ maxLength: 20 }),
);

const aliasPool = ['$a$', '$b$', '$c$', '$d$', '$e$'];
const anySegment = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: 'binary', maxLength: 12 }),
  fc.constantFrom('', '$$', '$x y$', 'a'.repeat(300)),
);

const scopeArb = fc.oneof(
  { weight: 4, arbitrary: fc.constant([] as string[]) },
  { weight: 2, arbitrary: fc.constantFrom(['dc1'], ['dc2'], ['DC1']) },
  { weight: 2, arbitrary: fc.constantFrom(['dc1', 'web-1'], ['dc1', 'WEB-1'], ['dc1', 'web-2'], ['dc2', 'web-1']) },
  { weight: 1, arbitrary: fc.array(anySegment, { maxLength: 4 }) },
);
const addrArb = fc.oneof(
  { weight: 3, arbitrary: fc.ipV4() },
  { weight: 2, arbitrary: fc.ipV6() },
  { weight: 2, arbitrary: fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 33 })).map(([a, p]) => `${a}/${p}`) },
  { weight: 1, arbitrary: fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 129 })).map(([a, p]) => `${a}/${p}`) },
  { weight: 4, arbitrary: fc.constantFrom(...aliasPool, '$ghost$') },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      '0.0.0.0/0',
      '::/0',
      '999.1.1.1',
      '1.2.3.4 -j ACCEPT',
      '1.2.3.4\n-A INPUT -j ACCEPT',
      'fe80::1%eth0',
      '010.1.1.1',
    ),
  },
  { weight: 1, arbitrary: addrLike },
);

/** Keys in the befw/ layout: mostly coherent (kind matches name), some subtly or wildly wrong. */
function layoutKey(setNames: readonly string[]): fc.Arbitrary<string> {
  const coherent = fc.oneof(
    fc.tuple(fc.constant('$service$'), fc.constantFrom(...setNames, 'other_tcp_1')),
    fc.tuple(fc.constant('$alias$'), fc.constantFrom(...aliasPool)),
    fc.tuple(fc.constant('$ipset$'), fc.constantFrom('rules_allow', 'rules_deny', 'custom', 'other')),
  );
  const incoherent = fc.tuple(
    fc.constantFrom('$service$', '$alias$', '$ipset$', '$weird$', 'service', ''),
    fc.oneof(fc.constantFrom(...setNames, 'rules_allow', ...aliasPool), anySegment),
  );
  return fc
    .tuple(fc.oneof({ weight: 6, arbitrary: coherent }, { weight: 1, arbitrary: incoherent }), scopeArb, addrArb, fc.nat(20))
    .map(([[kind, name], scope, addr, r]) => `befw/${[kind, ...scope, name, addr].join('/')}${r === 0 ? '/' : ''}`);
}

/** A KV listing: keys are unique, as in Consul. */
const kvPairs = (setNames: readonly string[]): fc.Arbitrary<KvPair[]> =>
  fc.uniqueArray(
    fc.record({
      key: fc.oneof(
        { weight: 10, arbitrary: layoutKey(setNames) },
        { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
        { weight: 1, arbitrary: anySegment.map((s) => `befw/${s}`) },
      ),
      value: expiryValue,
    }),
    { minLength: 3, maxLength: 80, size: 'medium', selector: (p) => p.key },
  );

const serviceName = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom('web', 'Web', 'dns', 'api', 'db', 'an-extremely-long-service-name-for-the-kernel', 'x') },
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 10 }),
);
const portTag = fc.oneof(
  fc.tuple(fc.integer({ min: 0, max: 70000 }), fc.constantFrom('tcp', 'udp', 'TCP', 'sctp')).map(([p, proto]) => `${p}/${proto}`),
  fc
    .tuple(fc.integer({ min: 0, max: 70000 }), fc.integer({ min: 0, max: 70000 }), fc.constantFrom('tcp', 'udp'))
    .map(([a, b, proto]) => `${a}:${b}/${proto}`),
);
const agentService: fc.Arbitrary<AgentService> = fc.record({
  id: fc.string({ maxLength: 10 }),
  name: serviceName,
  port: fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(53, 80, 443, 8080) },
    fc.integer({ min: -1, max: 70000 }),
    fc.constantFrom(0.5, Number.NaN),
  ),
  tags: fc
    .tuple(
      fc.oneof({ weight: 5, arbitrary: fc.constant(['befw']) }, fc.constant([] as string[])),
      fc.array(
        fc.oneof(
          { weight: 4, arbitrary: fc.constantFrom('udp', 'enforcing', 'local', 'befw') },
          { weight: 3, arbitrary: portTag },
          { weight: 1, arbitrary: fc.string({ maxLength: 10 }) },
        ),
        { maxLength: 5 },
      ),
    )
    .map(([a, b]) => [...a, ...b]),
});
const fileService: fc.Arbitrary<FileService> = fc.record({
  file: fc.string({ maxLength: 10 }).map((s) => `/etc/befw.service.d/${s}.json`),
  name: fc.stringMatching(/^[A-Za-z0-9._-]{1,40}$/),
  port: fc.integer({ min: 1, max: 65535 }),
  protocol: fc.constantFrom('tcp' as const, 'udp' as const),
  mode: fc.constantFrom('default' as const, 'enforcing' as const),
  ports: fc.array(
    fc
      .tuple(fc.constantFrom('tcp' as const, 'udp' as const), fc.integer({ min: 1, max: 65535 }), fc.integer({ min: 0, max: 100 }))
      .map(([proto, from, span]) => ({ proto, from, to: Math.min(65535, from + span) })),
    { maxLength: 3 },
  ),
});
const customSet: fc.Arbitrary<StaticSetConfig> = fc.record({
  // What config.ts lets through: [a-z0-9._-], at most 28, not built in, not ending in _v6.
  name: fc
    .oneof(fc.constantFrom('custom', 'web_tcp_8080'), fc.stringMatching(/^[a-z0-9._-]{1,28}$/))
    .filter((n) => !n.endsWith('_v6') && n !== 'rules_allow' && n !== 'rules_deny'),
  priority: fc.integer({ min: 3, max: 1000 }),
  target: fc.constantFrom('ACCEPT' as const, 'DROP' as const, 'REJECT' as const, 'NOOP' as const),
});

const snapshotArb: fc.Arbitrary<{ snapshot: Snapshot; options: CompileOptions; now: number }> = fc
  // Consul service IDs and service file paths are unique.
  .tuple(
    fc.uniqueArray(agentService, { maxLength: 6, selector: (s) => s.id }),
    fc.uniqueArray(fileService, { maxLength: 3, selector: (f) => f.file }),
  )
  .chain(([agent, files]) => {
    const names = [
      'web_tcp_8080',
      ...agent.flatMap((s) => [serviceSetName(s.name, 'tcp', s.port), serviceSetName(s.name, 'udp', s.port)]),
      ...files.map((f) => serviceSetName(f.name, f.protocol, f.port)),
    ];
    return fc.record({
      snapshot: fc.record({
        node: fc.constant(NODE),
        agentServices: fc.constant(agent),
        fileServices: fc.constant(files),
        kv: kvPairs(names),
        // One file per set name, as in a directory: <dir>/<set>.ipset.
        ipsetFiles: fc.uniqueArray(
          fc
            .record({
              set: fc.oneof(fc.constantFrom('rules_allow', 'rules_deny', 'custom', ...names), fc.string({ maxLength: 8 })),
              text: fc.array(fc.oneof(addrLike, fc.constant('# comment')), { maxLength: 6 }).map((l) => l.join('\n')),
            })
            .map((f) => ({ ...f, file: `/etc/befw.ipset.d/${f.set}.ipset` })),
          { maxLength: 3, selector: (f) => f.set },
        ),
        inputDiagnostics: fc.constant([]),
      }),
      options: fc.record({
        customSets: fc.uniqueArray(customSet, { maxLength: 4, selector: (s) => s.name }),
        managementNets: fc.array(
          fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('10.0.0.0/8', '0.0.0.0/0', '::/0')).map((t) => {
            const r = parseNet(t);
            if (!r.ok) throw new Error(`generator made a bad network ${t}`);
            return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
          }),
          { maxLength: 2 },
        ),
      }),
      now: fc.oneof(fc.constant(NOW), fc.integer({ min: NOW - 200_000, max: NOW + 200_000 })),
    });
  });

// ---------------------------------------------------------------------------------------------
// Addresses

describe('property: parseNet', () => {
  test('never throws; what it accepts is canonical, a fixed point, and only [0-9a-f.:/]', () => {
    fc.assert(
      fc.property(addrLike, (text) => {
        const r = parseNet(text);
        if (!r.ok) {
          assert.equal(typeof r.error, 'string');
          return;
        }
        const { cidr, family, prefix } = r.value;
        assert.match(cidr, CANONICAL_CHARS);
        assert.ok(prefix >= 0 && prefix <= (family === 4 ? 32 : 128));
        assert.equal(cidr.endsWith(`/${prefix}`), true);
        assert.equal(family === 4, cidr.includes('.'));
        const again = parseNet(cidr);
        assert.ok(again.ok, `canonical ${cidr} of ${JSON.stringify(text)} does not re-parse`);
        assert.equal(again.value.cidr, cidr);
        assert.equal(again.value.hostBits, false);
        assert.equal(again.value.family, family);
        assert.equal(again.value.prefix, prefix);
      }),
      { numRuns: 3000, seed: 1 },
    );
  });

  test("accepts exactly the addresses node's net.isIP accepts (no zone ids)", () => {
    const text = fc.oneof(
      fc
        .array(
          addrTokens.filter((t) => !t.includes('/') && !t.includes('%')),
          { maxLength: 12 },
        )
        .map((t) => t.join('')),
      fc.ipV4(),
      fc.ipV6(),
      fc.ipV4Extended(),
      fc.ipV6().map((a) => a.toUpperCase()),
    );
    fc.assert(
      fc.property(text, (t) => {
        assert.equal(parseIp(t).ok, isIP(t) !== 0, `parseIp and net.isIP disagree on ${JSON.stringify(t)}`);
      }),
      { numRuns: 3000, seed: 2 },
    );
  });

  test('IPv6 canonical text matches the WHATWG URL serializer (RFC 5952 compression, lowercase)', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.ipV6(),
          fc.ipV4().map((v4) => `::ffff:${v4}`),
          fc.tuple(fc.nat(0xffff), fc.nat(0xffff)).map(([x, y]) => `0::ffff:${x.toString(16)}:${y.toString(16)}`),
        ),
        (a) => {
          const r = parseNet(a);
          assert.ok(r.ok, a);
          const whatwg = new URL(`http://[${a}]/`).hostname.slice(1, -1);
          const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(whatwg);
          if (mapped !== null) {
            // Only IPv4-mapped addresses turn into IPv4, and into the address they carry.
            const hi = parseInt(mapped[1]!, 16);
            const lo = parseInt(mapped[2]!, 16);
            assert.equal(r.value.cidr, `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}/32`);
            return;
          }
          assert.equal(r.value.family, 6);
          assert.equal(r.value.cidr, `${whatwg}/128`);
        },
      ),
      { numRuns: 2000, seed: 3 },
    );
  });

  test('every IPv4 dotted quad round-trips; every prefix masks like integer arithmetic', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 32 }), (v, p) => {
        const text = [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
        const host = parseNet(text);
        assert.ok(host.ok);
        assert.equal(host.value.cidr, `${text}/32`);
        const n = parseNet(`${text}/${p}`);
        assert.ok(n.ok);
        const masked = p === 0 ? 0 : Number((BigInt(v) >> BigInt(32 - p)) << BigInt(32 - p));
        assert.equal(n.value.cidr, `${[masked >>> 24, (masked >>> 16) & 255, (masked >>> 8) & 255, masked & 255].join('.')}/${p}`);
        assert.equal(n.value.hostBits, masked !== v);
      }),
      { numRuns: 2000, seed: 4 },
    );
  });

  test('printable never leaves control characters and respects its cap', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'binary', maxLength: 300 }), fc.integer({ min: 1, max: 120 }), (s, max) => {
        const out = printable(s, max);
        assert.doesNotMatch(out, /[\u0000-\u001f\u007f-\u009f]/);
        assert.ok(out.length <= max + 1);
        if (s.length <= max && !/[\u0000-\u001f\u007f-\u009f]/.test(s)) assert.equal(out, s);
      }),
      { numRuns: 1000, seed: 5 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// KV layout

function checkParsedKv(pairs: readonly KvPair[]): void {
  const r = parseKv(pairs, NODE);
  for (const g of r.grants) {
    if (g.addr === 'net') assert.ok(isCanonicalCidr(g.cidr), `grant address ${g.cidr} is not canonical`);
    else assert.match(g.alias, ALIAS_NAME);
    assert.match(g.target, g.kind === '$alias$' ? ALIAS_NAME : SET_NAME);
    assert.ok(g.expiry === null || (Number.isSafeInteger(g.expiry) && g.expiry >= 0));
    // A bad value is carried for the compiler to judge (a deny fails closed), never as an expiry.
    if (g.badValue !== undefined) assert.equal(g.expiry, null);
    assert.ok(pairs.some((p) => p.key === g.key));
  }
  for (const d of r.diagnostics) {
    assert.doesNotMatch(d.subject, /[\u0000-\u001f\u007f]/);
    assert.doesNotMatch(d.message, /[\u0000-\u001f\u007f]/);
    assert.ok(d.subject.length <= 201);
  }
  // Every pair in the layout (not a folder) is exactly one of: a grant, an error, foreign.
  // Keys of other tools (`befw/.lock`: a first segment starting with ".") are skipped silently.
  const inLayout = pairs.filter((p) => p.key.startsWith('befw/') && !p.key.endsWith('/') && !p.key.startsWith('befw/.')).length;
  const errors = r.diagnostics.filter((d) => d.severity === 'error').length;
  assert.equal(r.grants.length + errors + r.foreign, inLayout, 'a pair was neither granted, reported nor foreign');
  // Warnings only ever accompany a grant (host bits).
  for (const d of r.diagnostics.filter((x) => x.severity === 'warning')) assert.equal(d.code, 'host-bits');
}

describe('property: parseKv', () => {
  test('arbitrary keys and values: never throws, everything accounted for', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ key: fc.string({ unit: 'binary', maxLength: 80 }), value: fc.option(fc.string({ unit: 'binary', maxLength: 20 })) }),
          { maxLength: 30 },
        ),
        (pairs) => {
          checkParsedKv(pairs);
          // Keys outside befw/ are nobody's business here.
          const outside = pairs.filter((p) => !p.key.startsWith('befw/'));
          const r = parseKv(outside, NODE);
          assert.deepEqual(r, { grants: [], diagnostics: [], foreign: 0 });
        },
      ),
      { numRuns: 1000, seed: 6 },
    );
  });

  test('keys built from befw/ and arbitrary segments: every pair is a grant, an error or foreign', () => {
    fc.assert(
      fc.property(kvPairs(['web_tcp_8080', 'dns_udp_53']), (pairs) => checkParsedKv(pairs)),
      { numRuns: 1000, seed: 7 },
    );
  });

  test('well-formed entries at this node always grant, whatever the address text', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('befw/$service$/web_tcp_8080/', 'befw/$service$/dc1/web_tcp_8080/', 'befw/$ipset$/dc1/web-1/rules_allow/'),
        fc.oneof(
          fc.ipV4(),
          fc.ipV6(),
          fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 })).map(([a, p]) => `${a}/${p}`),
        ),
        fc.integer({ min: -5, max: 2_000_000_000 }),
        (prefix, addr, expiry) => {
          const r = parseKv([{ key: `${prefix}${addr}`, value: String(expiry) }], NODE);
          assert.equal(r.grants.length, 1, `${prefix}${addr}`);
          const g = r.grants[0]!;
          const want = parseNet(addr);
          assert.ok(want.ok);
          assert.ok(g.addr === 'net');
          assert.deepEqual(
            { family: g.family, cidr: g.cidr, prefix: g.prefix },
            { family: want.value.family, cidr: want.value.cidr, prefix: want.value.prefix },
          );
          assert.equal(g.expiry, expiry < 0 ? null : expiry);
        },
      ),
      { numRuns: 1000, seed: 8 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Compiler

const SET = '[a-z0-9._~-]{1,31}';
const PORT = '[1-9][0-9]{0,4}(?::[1-9][0-9]{0,4})?';
const RULE_SHAPES = [
  /^-A BEFW -i lo -j ACCEPT$/,
  new RegExp(`^-A BEFW -p (?:tcp|udp) -m set --match-set (${SET}) src -m multiport --dports [0-9,]+ -j ACCEPT$`),
  new RegExp(
    `^-A BEFW -p (?:tcp|udp) -m set --match-set (${SET}) src -m multiport --sports [0-9,]+ -m conntrack --ctstate ESTABLISHED -j ACCEPT$`,
  ),
  new RegExp(`^-A BEFW -m set --match-set (${SET}) src -j (?:ACCEPT|REJECT|DROP)$`),
  new RegExp(`^-A BEFW -p (?:tcp|udp) --dport (${PORT}) -m set --match-set (${SET}) src -j ACCEPT$`),
  new RegExp(`^-A BEFW -p (?:tcp|udp) --dport (${PORT}) -j DROP$`),
];

describe('property: compile', () => {
  test('never throws; the kernel sees only short names, canonical members and allowed rule shapes', () => {
    fc.assert(
      fc.property(snapshotArb, fc.integer({ min: 1, max: 1000 }), ({ snapshot, options, now }, seed) => {
        const plan = compile(snapshot, options, now);
        const names = new Set(plan.sets.map((s) => s.name));
        assert.equal(names.size, plan.sets.length, 'duplicate plan set names');
        // The plan names logical sets; the iptables backend names them for ipset (31 characters).
        const kernel = kernelNamesFor(plan);
        const kernelNames = new Set<string>();
        for (const s of plan.sets) {
          assert.equal(s.family === 'inet6', s.name.endsWith('_v6'));
          if (s.family === 'inet') assert.ok(names.has(`${s.name}_v6`), `${s.name} has no IPv6 half`);
          const k = kernel.set(logicalOf(s), s.family);
          assert.ok(k.length <= 31, `ipset name ${k} is too long`);
          assert.match(k, /^[a-z0-9._~-]+$/);
          kernelNames.add(k);
          assert.deepEqual([...s.members], [...new Set(s.members)].sort(), `${s.name} members are not sorted and unique`);
          assert.ok(s.maxelem >= 65536 && s.maxelem >= s.members.length);
          for (const m of s.members) {
            assert.ok(isCanonicalCidr(m), `member ${m} of ${s.name} is not a canonical CIDR`);
            assert.equal(m.includes(':'), s.family === 'inet6', `member ${m} is in the wrong family set ${s.name}`);
          }
          for (const m of ipsetMembers(s.members)) assert.ok(!m.endsWith('/0'), 'ipset gets /0 split');
          if (s.expiring !== undefined) {
            assert.equal(s.expiring.members.length, s.expiring.at.length);
            for (const m of s.expiring.members) assert.ok(s.members.includes(m), `expiring ${m} is not a member`);
            assert.deepEqual([...s.expiring.members], [...s.expiring.members].sort());
          }
        }
        assert.equal(kernelNames.size, plan.sets.length, 'duplicate ipset names');
        // The nftables backend: valid identifiers, one transaction nft can parse (shape-checked).
        const nft = renderFull(plan, now);
        for (const x of nft.sets) assert.match(x.name, /^(ip|net)[46]_[A-Za-z0-9._-]+$/);
        assert.equal(new Set(nft.sets.map((x) => x.name)).size, nft.sets.length, 'duplicate nft set names');
        for (const line of nft.text.split('\n').filter((l) => l.startsWith('add element'))) {
          assert.match(
            line,
            /^add element inet befw [A-Za-z0-9._-]+ \{ [0-9a-f.:/-]+( timeout (?:\d+(?:d|h|m|s|ms))+)?(, [0-9a-f.:/-]+( timeout (?:\d+(?:d|h|m|s|ms))+)?)* \}$/,
            line,
          );
        }
        // Management networks are always allowed.
        const allow = plan.setViews.find((v) => v.logical === 'rules_allow');
        assert.ok(allow !== undefined);
        for (const n of options.managementNets) assert.ok(allow.members.some((m) => m.cidr === n.cidr && m.expiresAt === null));
        // Everything enforced is live, and nextExpiry is the earliest expiry among them.
        const expiries = plan.setViews.flatMap((v) => v.members.map((m) => m.expiresAt)).filter((e): e is number => e !== null);
        for (const e of expiries) assert.ok(e > now, 'an expired member is enforced');
        assert.equal(plan.nextExpiry, expiries.length === 0 ? null : Math.min(...expiries));
        // The rendered chain: only known shapes, only sets the plan creates, ports in range.
        for (const family of [4, 6] as const) {
          const lines = chainRuleLines(plan.rules, family, DEFAULT_SERVICE_TEMPLATE, kernel);
          for (const line of lines) {
            const m = RULE_SHAPES.map((re) => re.exec(line)).find((x) => x !== null);
            assert.ok(m, `unexpected rule line ${JSON.stringify(line)}`);
            const set = m.slice(1).find((g) => g !== undefined && !/^[0-9:]+$/.test(g));
            if (set !== undefined) {
              assert.ok(kernelNames.has(set), `rule references unknown set ${set}`);
              assert.equal(set.endsWith('_v6'), family === 6);
            }
            for (const port of (/--dport ([0-9:]+)/.exec(line)?.[1] ?? '').split(':').filter((p) => p !== '')) {
              assert.ok(Number(port) >= 1 && Number(port) <= 65535, `port ${port} out of range`);
            }
          }
          const text = renderChainRestore(plan.rules, family, DEFAULT_SERVICE_TEMPLATE, true, kernel);
          assert.equal(text, ['*filter', ':BEFW - [0:0]', ...lines, '-I INPUT 1 -j BEFW', 'COMMIT', ''].join('\n'));
        }
        // Enforcing services drop what they do not accept, default ones never drop.
        for (const r of plan.rules) {
          if (r.kind !== 'service') continue;
          const svc = plan.services.find((s) => s.set === r.service);
          assert.ok(svc !== undefined);
          assert.equal(r.mode, svc.mode);
        }
        // Diagnostics are printable.
        for (const d of plan.diagnostics) assert.doesNotMatch(`${d.subject}${d.message}`, /[\u0000-\u001f\u007f]/);
        // The same input in another order gives the same bytes.
        const again = compile(
          {
            ...snapshot,
            kv: shuffled(snapshot.kv, seed),
            agentServices: shuffled(snapshot.agentServices, seed + 1),
            ipsetFiles: shuffled(snapshot.ipsetFiles, seed + 2),
          },
          options,
          now,
        );
        assert.equal(again.fingerprint, plan.fingerprint);
        assert.equal(JSON.stringify(again), JSON.stringify(plan));
      }),
      { numRuns: 300, seed: 9 },
    );
  });

  test('alias graphs with cycles: compile finishes and grants only reachable, live members', () => {
    const edge = fc.record({ from: fc.constantFrom(...aliasPool), to: fc.constantFrom(...aliasPool), live: fc.boolean() });
    const member = fc.record({ alias: fc.constantFrom(...aliasPool), octet: fc.integer({ min: 1, max: 254 }), live: fc.boolean() });
    fc.assert(
      fc.property(
        fc.uniqueArray(edge, { maxLength: 15, selector: (e) => `${e.from}>${e.to}` }),
        fc.uniqueArray(member, { maxLength: 10, selector: (m) => `${m.alias}>${m.octet}` }),
        fc.constantFrom(...aliasPool),
        (edges, members, root) => {
          const kv: KvPair[] = [{ key: `befw/$service$/web_tcp_8080/${root}`, value: '-1' }];
          for (const e of edges) kv.push({ key: `befw/$alias$/${e.from}/${e.to}`, value: e.live ? '-1' : '1' });
          for (const m of members) kv.push({ key: `befw/$alias$/${m.alias}/192.0.2.${m.octet}`, value: m.live ? '-1' : '1' });
          const snapshot: Snapshot = {
            node: NODE,
            agentServices: [{ id: 'web', name: 'web', port: 8080, tags: ['befw'] }],
            fileServices: [],
            kv,
            ipsetFiles: [],
            inputDiagnostics: [],
          };
          const plan = compile(snapshot, { customSets: [], managementNets: [] }, NOW);
          const got = plan.sets.find((s) => s.name === 'web_tcp_8080')!.members;
          // Reference: members reachable from root over live edges that are not part of a cycle.
          const live = edges.filter((e) => e.live);
          const reach = (from: string): Set<string> => {
            const out = new Set<string>();
            const todo = [from];
            while (todo.length > 0) {
              const n = todo.pop()!;
              for (const e of live)
                if (e.from === n && !out.has(e.to)) {
                  out.add(e.to);
                  todo.push(e.to);
                }
            }
            return out;
          };
          const hasMembers = new Set([...live.map((e) => e.from), ...members.filter((m) => m.live).map((m) => m.alias)]);
          const inCycle = (e: { from: string; to: string }): boolean => hasMembers.has(e.to) && reach(e.to).has(e.from);
          const followed = live.filter((e) => !inCycle(e));
          const visited = new Set<string>([root]);
          const todo = [root];
          while (todo.length > 0) {
            const n = todo.pop()!;
            for (const e of followed)
              if (e.from === n && !visited.has(e.to)) {
                visited.add(e.to);
                todo.push(e.to);
              }
          }
          const want = [...new Set(members.filter((m) => m.live && visited.has(m.alias)).map((m) => `192.0.2.${m.octet}/32`))].sort();
          assert.deepEqual([...got], want);
          const cycleDiags = plan.diagnostics.filter((d) => d.code === 'alias-cycle').length;
          assert.equal(cycleDiags, live.filter(inCycle).length);
        },
      ),
      { numRuns: 500, seed: 10 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Other parsers: only their own errors, never a crash

describe('property: other parsers fail only in their own way', () => {
  test('parseConfig throws only ConfigError', () => {
    const line = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc
        .tuple(
          fc.constantFrom(
            'address',
            'dc',
            'token',
            'token_file',
            'nodename',
            'services',
            'set.rules_allow',
            'set.x',
            'set.rules_deny',
            'resync_interval',
            'consul_wait',
            'log_level',
            '__proto__',
            'x',
          ),
          fc.string({ maxLength: 20 }),
        )
        .map(([k, v]) => `${k}=${v}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 8 }), (lines) => {
        try {
          const c = parseConfig(lines.join('\n'), '/etc/befw.conf');
          for (const n of c.managementNets) assert.ok(isCanonicalCidr(n.cidr));
          for (const s of c.customSets) assert.ok(s.priority >= 3 && s.name.length <= 28);
        } catch (e) {
          assert.ok(e instanceof ConfigError, `threw ${String(e)}`);
          assert.doesNotMatch(e.message, /[\u0000-\u0008\u000a-\u001f]/);
        }
      }),
      { numRuns: 1000, seed: 11 },
    );
  });

  test('parseServiceFile never throws: a service or exactly one diagnostic', () => {
    const text = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.json(),
      fc
        .record(
          {
            name: fc.oneof(fc.string({ maxLength: 10 }), fc.integer()),
            port: fc.oneof(fc.integer({ min: -1, max: 70000 }), fc.string()),
            ports: fc.array(fc.oneof(portTag, fc.record({ port: fc.integer({ min: 0, max: 70000 }) }))),
          },
          { requiredKeys: [] },
        )
        .map((o) => JSON.stringify(o)),
    );
    fc.assert(
      fc.property(text, (t) => {
        const r = parseServiceFile(t, '/etc/befw.service.d/x.json');
        assert.equal(r.service === undefined, r.diagnostics.length === 1);
        if (r.service !== undefined) {
          assert.match(r.service.name, /^[^\u0000-\u001f\u007f]{1,128}$/);
          for (const p of [{ from: r.service.port, to: r.service.port }, ...r.service.ports])
            assert.ok(p.from >= 1 && p.to <= 65535 && p.from <= p.to);
        } else {
          assert.doesNotMatch(r.diagnostics[0]!.message, /[\u0000-\u001f\u007f]/);
        }
      }),
      { numRuns: 1000, seed: 12 },
    );
  });

  test('parseServiceTemplate throws only TemplateError, and what it accepts renders only -A BEFW lines', () => {
    const line = fc.oneof(
      fc.string({ maxLength: 40 }),
      fc.constantFrom(
        '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {SET} src -j ACCEPT',
        'enforcing: -A BEFW -j DROP',
        '-A BEFW -j BEFW',
        '# c',
        '',
        '-A BEFW {X}',
      ),
      fc.string({ maxLength: 20 }).map((s) => `-A BEFW ${s} {SET}`),
    );
    fc.assert(
      fc.property(fc.array(line, { maxLength: 5 }), (lines) => {
        try {
          const t = parseServiceTemplate(lines.join('\n'), 't');
          const out = chainRuleLines(
            [{ kind: 'service', service: 'web_tcp_80', set: 'web_tcp_80', proto: 'tcp', port: '80', mode: 'enforcing' }],
            4,
            t,
          );
          for (const l of out) {
            assert.ok(l.startsWith('-A BEFW '));
            assert.doesNotMatch(l, /[\n\r;$`|&<>\\]/);
          }
        } catch (e) {
          assert.ok(e instanceof TemplateError, `threw ${String(e)}`);
        }
      }),
      { numRuns: 1000, seed: 13 },
    );
  });
});
