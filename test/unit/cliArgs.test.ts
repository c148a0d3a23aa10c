import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RefusedError, UsageError } from '../../src/cli/access/errors.js';
import { CatalogView } from '../../src/cli/access/checks.js';
import { checkScopeOptions, nodeDatacenter } from '../../src/cli/access/nodeScope.js';
import {
  type AddrArg,
  WORLD,
  checkedKey,
  classify,
  entryKey,
  parseAddrArg,
  parseAliasName,
  parseServiceArg,
  scopeFromOptions,
} from '../../src/cli/access/layout.js';
import { inFilter } from '../../src/cli/access/entries.js';
import { aliasPath } from '../../src/cli/access/alias.js';
import { buildRegistration, serviceRows } from '../../src/cli/access/service.js';
import { purgeExpired } from '../../src/cli/access/purge.js';
import type { KvEntry } from '../../src/consul/kvWriter.js';
import { parseNet } from '../../src/core/address.js';
import { parseKv } from '../../src/core/kvLayout.js';
import { collectServices } from '../../src/core/services.js';

function usage(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, /[\u0000-\u001f\u007f]/, 'messages are printable');
    return true;
  });
}

const net = (a: AddrArg): string => (a.type === 'net' ? `${a.segment}|${a.net.cidr}` : `alias ${a.name}`);

describe('parseAddrArg', () => {
  test('hosts are written bare, networks as two segments, all canonical', () => {
    assert.equal(net(parseAddrArg('198.51.100.7')), '198.51.100.7|198.51.100.7/32');
    assert.equal(net(parseAddrArg('198.51.100.7/32')), '198.51.100.7|198.51.100.7/32');
    assert.equal(net(parseAddrArg('198.51.100.0/24')), '198.51.100.0/24|198.51.100.0/24');
    assert.equal(net(parseAddrArg('2001:DB8:0::0007')), '2001:db8::7|2001:db8::7/128');
    assert.equal(net(parseAddrArg('2001:db8::/32')), '2001:db8::/32|2001:db8::/32');
    assert.equal(net(parseAddrArg('::ffff:203.0.113.9')), '203.0.113.9|203.0.113.9/32');
    assert.equal(net(parseAddrArg('$ops$')), 'alias $ops$');
  });

  test('hostile and malformed addresses are refused with the argument named', () => {
    usage(() => parseAddrArg('1.2.3.4 -j ACCEPT'), /^address "1\.2\.3\.4 -j ACCEPT": .*not an IP address/);
    usage(() => parseAddrArg('999.1.1.1'), /^address "999\.1\.1\.1": IPv4 octet 999 is above 255/);
    usage(() => parseAddrArg('010.1.1.1'), /bad IPv4 octet "010"/);
    usage(() => parseAddrArg('198.51.100.7/33'), /out of range/);
    usage(() => parseAddrArg('198.51.100.0/024'), /bad prefix length/);
    usage(() => parseAddrArg('fe80::1%eth0'), /not an IP address/);
    usage(() => parseAddrArg('198.51.100.7\n-A INPUT -j ACCEPT'), /^address "198\.51\.100\.7\\x0a-A INPUT/);
    usage(() => parseAddrArg(''), /empty address/);
    usage(() => parseAddrArg('web-01.example.com'), /not an IP address/);
  });

  test('host bits below the prefix are a typo, not a silent widening', () => {
    usage(() => parseAddrArg('198.51.100.7/24'), /host bits are set below the prefix; did you mean 198\.51\.100\.0\/24\?/);
    usage(() => parseAddrArg('2001:db8::1/32'), /did you mean 2001:db8::\/32\?/);
  });

  test('alias references, and a hint when the shell ate the name', () => {
    usage(() => parseAddrArg('$'), /not an alias reference.*single quotes/);
    usage(() => parseAddrArg('$ops'), /single quotes/);
    usage(() => parseAddrArg('$o p$'), /not an alias reference/);
    usage(() => parseAddrArg(`$${'a'.repeat(65)}$`), /not an alias reference/);
  });
});

describe('parseAliasName', () => {
  test('with or without dollars', () => {
    assert.equal(parseAliasName('ops'), '$ops$');
    assert.equal(parseAliasName('$ops$'), '$ops$');
    assert.equal(parseAliasName('on-call.eu_1'), '$on-call.eu_1$');
  });
  test('bad names', () => {
    for (const bad of ['', '$', '$$', 'o p', 'ops/x', '$ops', 'ops$x', 'a'.repeat(65), '../x', 'ops\u0000']) {
      usage(() => parseAliasName(bad), /^alias name ".*": expected 1-64 letters/s);
    }
  });
});

describe('parseServiceArg', () => {
  test('set names and NAME:PORT[/PROTO]', () => {
    assert.equal(parseServiceArg('web_tcp_8080'), 'web_tcp_8080');
    assert.equal(parseServiceArg('web:8080'), 'web_tcp_8080');
    assert.equal(parseServiceArg('Web:8080/tcp'), 'web_tcp_8080');
    assert.equal(parseServiceArg('dns:53/udp'), 'dns_udp_53');
    assert.equal(parseServiceArg('my.svc-1_tcp_443'), 'my.svc-1_tcp_443');
  });
  test('names that no service set can have', () => {
    for (const bad of [
      'web',
      'Web_tcp_8080',
      'web_tcp_0',
      'web_tcp_65536',
      'web_sctp_80',
      'web_tcp_80/x',
      'web:0',
      'web:70000',
      'web:80/sctp',
      '',
      'a b_tcp_80',
      '$web$',
    ]) {
      usage(() => parseServiceArg(bad), /^service ".*": /);
    }
  });
});

describe('scopeFromOptions', () => {
  test('world, dc, node (short, lower case)', () => {
    assert.deepEqual(scopeFromOptions({}), WORLD);
    assert.deepEqual(scopeFromOptions({ dc: 'dc1' }), { level: 'dc', dc: 'dc1', node: null });
    assert.deepEqual(scopeFromOptions({ dc: 'dc1', node: 'Web-01.example.com' }), { level: 'node', dc: 'dc1', node: 'web-01' });
  });
  test('bad scopes', () => {
    usage(() => scopeFromOptions({ node: 'web-01' }), /^--node "web-01": needs --dc/);
    usage(() => scopeFromOptions({ dc: 'd/c' }), /^--dc "d\/c"/);
    usage(() => scopeFromOptions({ dc: '' }), /^--dc ""/);
    usage(() => scopeFromOptions({ dc: 'dc1', node: 'a b' }), /^--node "a b"/);
    usage(() => scopeFromOptions({ dc: 'dc1', node: '.hidden' }), /^--node/);
  });
});

describe('keys: written by the CLI, read back by the agent parser', () => {
  test('exact key shapes', () => {
    const host = parseAddrArg('198.51.100.7');
    const network = parseAddrArg('198.51.100.0/24');
    assert.equal(entryKey('$service$', WORLD, 'web_tcp_8080', host), 'befw/$service$/web_tcp_8080/198.51.100.7');
    assert.equal(
      entryKey('$service$', { level: 'dc', dc: 'dc1', node: null }, 'web_tcp_8080', network),
      'befw/$service$/dc1/web_tcp_8080/198.51.100.0/24',
    );
    assert.equal(
      entryKey('$ipset$', { level: 'node', dc: 'dc1', node: 'web-01' }, 'rules_deny', host),
      'befw/$ipset$/dc1/web-01/rules_deny/198.51.100.7',
    );
    assert.equal(entryKey('$alias$', WORLD, '$ops$', parseAddrArg('$oncall$')), 'befw/$alias$/$ops$/$oncall$');
  });

  test('property: every key the CLI would write is read by the agent (as that node) as exactly that grant', () => {
    const v4 = fc
      .tuple(
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 255 }),
        fc.integer({ min: 0, max: 32 }),
      )
      .map(([a, b, c, d, p]) => `${a}.${b}.${c}.${d}/${p}`);
    const v6 = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 })).map(([ip, p]) => `${ip}/${p}`);
    const name = fc.stringMatching(/^[a-z0-9][a-z0-9._-]{0,20}$/);
    fc.assert(
      fc.property(
        fc.oneof(v4, v6),
        fc.constantFrom('world', 'dc', 'node'),
        name,
        name,
        fc.constantFrom('$service$', '$ipset$', '$alias$'),
        fc.integer({ min: -1, max: 4_000_000_000 }),
        (text, level, dc, node, kind, expiry) => {
          // Host bits cleared, as the CLI asks the operator to do.
          const cidr = parseNet(text);
          fc.pre(cidr.ok); // a mapped IPv4 with an IPv6-sized prefix, say
          if (!cidr.ok) return;
          const addr = parseAddrArg(cidr.value.cidr, 'x');
          const scope =
            level === 'world'
              ? WORLD
              : level === 'dc'
                ? { level: 'dc' as const, dc, node: null }
                : { level: 'node' as const, dc, node: node.split('.')[0] || 'n' };
          const target = kind === '$alias$' ? '$grp$' : 'web_tcp_8080';
          const key = checkedKey(kind, scope, target, addr, String(expiry));
          const parsed = parseKv([{ key, value: String(expiry) }], { dc: scope.dc ?? 'any', name: scope.node ?? 'any' });
          assert.equal(parsed.grants.length, 1, key);
          const g = parsed.grants[0]!;
          assert.equal(g.kind, kind);
          assert.equal(g.scope, level);
          assert.equal(g.target, target);
          assert.equal(g.addr === 'net' ? g.cidr : '', addr.type === 'net' ? addr.net.cidr : 'x');
          assert.equal(g.expiry, expiry < 0 ? null : expiry);
        },
      ),
      { numRuns: 300 },
    );
  });

  test('classify gives every well-formed key its scope, and reports what no node enforces', () => {
    const items: KvEntry[] = [
      { key: 'befw/$service$/web_tcp_8080/198.51.100.7', value: '-1', modifyIndex: 1 },
      { key: 'befw/$service$/dc2/web_tcp_8080/198.51.100.0/24', value: '100', modifyIndex: 2 },
      { key: 'befw/$service$/dc1/Web-01/web_tcp_8080/2001:db8::7', value: '200', modifyIndex: 3 },
      { key: 'befw/$service$/web_tcp_8080/198.51.100.8', value: 'tomorrow', modifyIndex: 4 },
      { key: 'befw/$service$/web_tcp_8080/1.2.3.4 -j ACCEPT', value: '-1', modifyIndex: 5 },
      { key: 'befw/$service$/', value: null, modifyIndex: 6 },
    ];
    const c = classify(items);
    assert.deepEqual(
      c.entries.map((e) => [
        e.key,
        e.scope.level,
        e.scope.dc,
        e.scope.node,
        e.target,
        e.addr.type === 'net' ? e.addr.net.cidr : '',
        e.expiry,
        e.modifyIndex,
      ]),
      [
        ['befw/$service$/web_tcp_8080/198.51.100.7', 'world', null, null, 'web_tcp_8080', '198.51.100.7/32', null, 1],
        ['befw/$service$/dc2/web_tcp_8080/198.51.100.0/24', 'dc', 'dc2', null, 'web_tcp_8080', '198.51.100.0/24', 100, 2],
        ['befw/$service$/dc1/Web-01/web_tcp_8080/2001:db8::7', 'node', 'dc1', 'web-01', 'web_tcp_8080', '2001:db8::7/128', 200, 3],
      ],
    );
    assert.deepEqual(
      c.invalid.map((i) => i.key),
      ['befw/$service$/web_tcp_8080/198.51.100.8', 'befw/$service$/web_tcp_8080/1.2.3.4 -j ACCEPT'],
    );
    assert.match(c.invalid[0]!.reason, /not an integer/);
  });

  test('checkedKey refuses a key the agent would read differently', () => {
    // Callers validate first; this is the net under them. A set name the parser rejects, and a
    // datacenter with a slash (one more segment: the agent would read a node-level key).
    usage(
      () => checkedKey('$service$', WORLD, 'Web_tcp_8080', parseAddrArg('198.51.100.7'), '-1'),
      /would not be enforced as meant \(bad set name/,
    );
    usage(
      () => checkedKey('$service$', { level: 'dc', dc: 'd/c', node: null }, 'web_tcp_8080', parseAddrArg('198.51.100.7'), '-1'),
      /would not be enforced as meant/,
    );
    usage(() => checkedKey('$alias$', WORLD, 'ops', parseAddrArg('198.51.100.7'), '-1'), /bad alias name/);
  });
});

describe('inFilter', () => {
  const world = WORLD;
  const dc1 = { level: 'dc' as const, dc: 'dc1', node: null };
  const dc2 = { level: 'dc' as const, dc: 'dc2', node: null };
  const n1 = { level: 'node' as const, dc: 'dc1', node: 'web-01' };
  const n2 = { level: 'node' as const, dc: 'dc1', node: 'web-02' };
  test('no filter shows everything; --dc and --node narrow to what such a node reads', () => {
    for (const s of [world, dc1, dc2, n1, n2]) assert.ok(inFilter(s, WORLD));
    assert.deepEqual(
      [world, dc1, dc2, n1, n2].map((s) => inFilter(s, dc1)),
      [true, true, false, true, true],
    );
    assert.deepEqual(
      [world, dc1, dc2, n1, n2].map((s) => inFilter(s, n1)),
      [true, true, false, true, false],
    );
  });
});

describe('aliasPath', () => {
  const e = (target: string, member: string, value = '-1'): KvEntry => ({ key: `befw/$alias$/${target}/${member}`, value, modifyIndex: 1 });
  test('finds the path that would close a cycle, ignores expired links', () => {
    const { entries } = classify([e('$a$', '$b$'), e('$b$', '$c$'), e('$c$', '198.51.100.1'), e('$x$', '$a$', '1')]);
    assert.deepEqual(aliasPath(entries, '$a$', '$c$', 10_000), ['$a$', '$b$', '$c$']);
    assert.equal(aliasPath(entries, '$c$', '$a$', 10_000), null);
    // $x$ -> $a$ expired at second 1: no path from $x$.
    assert.equal(aliasPath(entries, '$x$', '$c$', 10_000), null);
  });
});

describe('buildRegistration', () => {
  test('tags as the agent reads them', () => {
    const r = buildRegistration('Web', '8080', { port: ['8443/tcp', '30000:30100/udp'], enforcing: true });
    assert.deepEqual(r.tags, ['befw', 'enforcing', '8443/tcp', '30000:30100/udp']);
    assert.equal(r.set, 'web_tcp_8080');
    // What the agent makes of the same registration.
    const def = collectServices([{ id: r.id, name: r.name, port: r.port, tags: r.tags }], []).services[0]!;
    assert.equal(def.set, r.set);
    assert.equal(def.mode, 'enforcing');
    assert.deepEqual(def.ports, r.ports);
    assert.deepEqual(buildRegistration('dns', '53/udp', {}).tags, ['befw', 'udp']);
    assert.equal(buildRegistration('dns', '53/udp', { id: 'dns-2' }).id, 'dns-2');
  });
  test('bad names and ports', () => {
    usage(() => buildRegistration('a b', '80', {}), /^service name "a b"/);
    usage(() => buildRegistration('-x', '80', {}), /^service name/);
    usage(() => buildRegistration('x', '80', { id: 'a/b' }), /^--id "a\/b"/);
    usage(() => buildRegistration('x', '0', {}), /^port "0"/);
    usage(() => buildRegistration('x', '65536', {}), /^port "65536"/);
    usage(() => buildRegistration('x', '80/sctp', {}), /^port "80\/sctp"/);
    usage(() => buildRegistration('x', '80', { port: ['80'] }), /^--port "80": not a port/);
    usage(() => buildRegistration('x', '80', { port: ['90:80/tcp'] }), /^--port "90:80\/tcp": port range .* runs backwards/);
    usage(() => buildRegistration('x', '80', { port: ['0/tcp'] }), /^--port "0\/tcp": port out of range/);
  });
});

describe('serviceRows', () => {
  test('befw services only, file mirrors marked, problems shown', () => {
    const rows = serviceRows([
      { id: 'web', name: 'web', port: 8080, tags: ['befw', 'enforcing'] },
      { id: 'files', name: 'files', port: 8443, tags: ['befw', 'local'] },
      { id: 'other', name: 'other', port: 1, tags: ['x'] },
      { id: 'broken', name: 'broken', port: 0, tags: ['befw'] },
    ]);
    assert.deepEqual(
      rows.map((r) => [r.id, r.set, r.ports.join(','), r.mode, r.source, r.problems.length]),
      [
        ['web', 'web_tcp_8080', '8080/tcp', 'enforcing', 'consul', 0],
        ['files', 'files_tcp_8443', '8443/tcp', 'default', 'service file', 0],
        ['broken', null, '', 'not enforced', 'consul', 1],
      ],
    );
  });
});

describe('purgeExpired against a recording store', () => {
  function store(items: KvEntry[], changedMeanwhile: Set<string>) {
    const deletes: string[] = [];
    return {
      deletes,
      list: async () => items,
      deleteCas: async (key: string, index: number) => {
        deletes.push(`${key}@${index}`);
        return !changedMeanwhile.has(key);
      },
    };
  }
  const items: KvEntry[] = [
    { key: 'befw/$service$/web_tcp_8080/198.51.100.2', value: '100', modifyIndex: 7 },
    { key: 'befw/$service$/web_tcp_8080/198.51.100.3', value: '2000', modifyIndex: 8 },
    { key: 'befw/$ipset$/dc1/rules_deny/198.51.100.4', value: '999', modifyIndex: 9 },
    { key: 'befw/$alias$/$ops$/198.51.100.5', value: '-1', modifyIndex: 10 },
    { key: 'befw/$service$/web_tcp_8080/198.51.100.6', value: 'yesterday', modifyIndex: 11 },
  ];

  test('dry run deletes nothing', async () => {
    const s = store(items, new Set());
    const r = await purgeExpired(s, 1_000_000, true);
    assert.deepEqual(s.deletes, []);
    assert.deepEqual(
      r.deleted.map((e) => e.key),
      ['befw/$service$/web_tcp_8080/198.51.100.2', 'befw/$ipset$/dc1/rules_deny/198.51.100.4'],
    );
    assert.equal(r.invalid, 1);
  });

  test('deletes expired entries with their ModifyIndex; a refused swap is kept and reported', async () => {
    const s = store(items, new Set(['befw/$ipset$/dc1/rules_deny/198.51.100.4']));
    const r = await purgeExpired(s, 1_000_000, false);
    assert.deepEqual(s.deletes, ['befw/$service$/web_tcp_8080/198.51.100.2@7', 'befw/$ipset$/dc1/rules_deny/198.51.100.4@9']);
    assert.deepEqual(
      r.deleted.map((e) => e.key),
      ['befw/$service$/web_tcp_8080/198.51.100.2'],
    );
    assert.deepEqual(
      r.kept.map((e) => e.key),
      ['befw/$ipset$/dc1/rules_deny/198.51.100.4'],
    );
  });

  test('an entry expires at its second, not before', async () => {
    const s = store([{ key: 'befw/$service$/web_tcp_8080/198.51.100.2', value: '1000', modifyIndex: 1 }], new Set());
    assert.equal((await purgeExpired(s, 999_999, true)).deleted.length, 0);
    assert.equal((await purgeExpired(s, 1_000_000, true)).deleted.length, 1);
  });
});

describe('--node without --dc: the node datacenter from the catalog', () => {
  const catalog = (nodes: Record<string, string[]>, fail = false): CatalogView =>
    new CatalogView({
      datacenters: async () => {
        if (fail) throw new Error('connect ECONNREFUSED');
        return Object.keys(nodes);
      },
      catalogNodes: async (dc) => (nodes[dc] ?? []).map((name) => ({ name, address: '192.0.2.1' })),
      catalogServices: async () => new Map(),
      catalogService: async () => [],
      members: async () => [],
    });

  test('found in one datacenter: that one, matched by short lower-case name', async () => {
    const view = catalog({ dc1: ['node1', 'web-01.example.com'], dc2: ['db-01'] });
    assert.equal(await nodeDatacenter(view, 'web-01'), 'dc1');
    assert.equal(await nodeDatacenter(view, 'Web-01.example.com'), 'dc1');
    assert.equal(await nodeDatacenter(view, 'db-01'), 'dc2');
  });

  test('unknown: refused with the closest node; in two datacenters: --dc needed; unreadable: refused', async () => {
    const view = catalog({ dc1: ['web-01'], dc2: ['web-01', 'db-01'] });
    await assert.rejects(
      nodeDatacenter(view, 'web-1'),
      (e: unknown) =>
        e instanceof RefusedError &&
        /^--node "web-1": no such node in the catalog of datacenters dc1, dc2; did you mean web-01\? nothing written/.test(e.message),
    );
    await assert.rejects(
      nodeDatacenter(view, 'web-01'),
      (e: unknown) => e instanceof UsageError && /is in dc1 and dc2: say which with --dc/.test(e.message),
    );
    await assert.rejects(
      nodeDatacenter(catalog({}, true), 'web-01'),
      (e: unknown) =>
        e instanceof RefusedError && /could not be read to find its datacenter \(connect ECONNREFUSED\); give --dc DC/.test(e.message),
    );
  });

  test('the node text is checked before Consul is asked', () => {
    checkScopeOptions({ node: 'web-01' });
    checkScopeOptions({ dc: 'dc1', node: 'web-01' });
    usage(() => checkScopeOptions({ node: 'web 01' }), /^--node "web 01": expected a node name/);
    usage(() => checkScopeOptions({ dc: 'd c' }), /^--dc "d c"/);
  });
});
