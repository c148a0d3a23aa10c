/**
 * The responder's protected list (what the nodes publish, the Consul agents, the config), the
 * keeper of VyOS address-group entries (expiry, and putting them back after a restart), and how
 * the interface a router is reached by is recognised.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { NetSet } from '../../src/core/netMatch.js';
import type { DeviceConfig } from '../../src/reactor/config/reactorConfig.js';
import { ProtectedList, ProtectedListError, parsePublished } from '../../src/reactor/responder/protectedList.js';
import type { VyosFleet } from '../../src/reactor/responder/vyosActions.js';
import { interfaceAddresses, managementInterfaces } from '../../src/reactor/responder/vyosActions.js';
import type { VyosClient } from '../../src/reactor/responder/vyosClient.js';
import { GroupKeeper, groupRecordKey, laterExpiry, recordEntries } from '../../src/reactor/responder/vyosGroups.js';
import { FakeKv, protectionFor, quietLog } from '../helpers/reactorFakes.js';
import { asNet } from '../../src/reactor/responder/protection.js';

const net = (t: string): NonNullable<ReturnType<typeof asNet>> => {
  const n = asNet(t);
  assert.ok(n !== null, t);
  return n;
};

describe('protected list', () => {
  test('published values: {"v":1,"nets":[...]} and nothing else', () => {
    assert.deepEqual(parsePublished('{"v":1,"nets":["203.0.113.0/24","2001:db8:ffff::/48"]}'), {
      ok: true,
      nets: [net('203.0.113.0/24'), net('2001:db8:ffff::/48')],
    });
    for (const bad of [
      null,
      '',
      'x',
      '{}',
      '{"v":2,"nets":[]}',
      '{"v":1,"nets":"x"}',
      '{"v":1,"nets":[1]}',
      '{"v":1,"nets":["10.0.0.300/8"]}',
    ])
      assert.equal(parsePublished(bad).ok, false, String(bad));
  });

  test('the union of published lists, Consul members and servers, and the config, each with why', async () => {
    const kv = new FakeKv();
    kv.put('befw-protect/dc1/web-01', '{"v":1,"nets":["203.0.113.0/24"]}');
    kv.membersLan = [
      { name: 'consul-1', addr: '192.0.2.10', role: 'consul' },
      { name: 'web-01', addr: '192.0.2.21', role: 'node' },
    ];
    kv.membersWan = [{ name: 'consul-1.dc2', addr: '2001:db8:2::10', role: 'consul' }];
    const list = new ProtectedList(kv, [{ what: 'the protect list', nets: NetSet.parse(['198.51.100.0/28']) }], 5000, quietLog());
    assert.match(String(await list.reason(net('203.0.113.9'))), /published by node dc1\/web-01/);
    assert.match(String(await list.reason(net('192.0.2.10'))), /Consul server consul-1/);
    assert.match(String(await list.reason(net('192.0.2.21'))), /Consul member web-01/);
    assert.match(String(await list.reason(net('2001:db8:2::10'))), /Consul server consul-1\.dc2/);
    assert.match(String(await list.reason(net('198.51.100.3'))), /the protect list/);
    assert.equal(await list.reason(net('198.51.100.77')), null);
    // A wider network touching a protected one is protected too.
    assert.match(String(await list.reason(net('192.0.2.0/24'))), /Consul/);
  });

  test("a value that does not parse keeps that node's last good one; without one, nothing is banned", async () => {
    const kv = new FakeKv();
    let now = 0;
    kv.put('befw-protect/dc1/web-01', '{"v":1,"nets":["203.0.113.0/24"]}');
    const list = new ProtectedList(kv, [], 1000, quietLog(), () => now);
    assert.equal(await list.reason(net('198.51.100.77')), null);
    kv.put('befw-protect/dc1/web-01', 'garbage');
    now += 2000;
    assert.match(String(await list.reason(net('203.0.113.9'))), /web-01/, 'the last good value still protects');
    kv.put('befw-protect/dc1/web-02', 'garbage');
    now += 2000;
    await assert.rejects(list.reason(net('198.51.100.77')), (e: unknown) => e instanceof ProtectedListError && /web-02/.test(e.message));
    assert.equal(list.counters.badPublished, 2);
    kv.put('befw-protect/dc1/web-02', '{"v":1,"nets":[]}');
    assert.equal(await list.reason(net('198.51.100.77')), null, 'fixed: read again at once');
  });

  test('Consul unreachable: the last list while fresh, then nobody is banned', async () => {
    const kv = new FakeKv();
    let now = 0;
    const list = new ProtectedList(kv, [], 1000, quietLog(), () => now);
    kv.failing = true;
    await assert.rejects(list.reason(net('198.51.100.77')), ProtectedListError, 'never read: not "nothing protected"');
    kv.failing = false;
    assert.equal(await list.reason(net('198.51.100.77')), null);
    kv.failing = true;
    now += 30_000;
    assert.equal(await list.reason(net('198.51.100.77')), null, 'a 30 s old list still serves');
    now += 60_000;
    await assert.rejects(list.reason(net('198.51.100.77')), ProtectedListError);
  });

  test('protection refuses special-purpose ranges, and a wide ban reaching a protected network', async () => {
    const kv = new FakeKv();
    const p = protectionFor(kv, ['198.51.100.0/28']);
    const scope = { dc: 'dc1', node: null };
    for (const a of ['127.0.0.1', '169.254.1.1', '224.0.0.1', '::1', 'fe80::1', '255.255.255.255', '0.0.0.0'])
      assert.match(String(await p.reason(a, scope, 0)), /special-purpose/, a);
    assert.match(String(await p.reason('198.51.100.0/24', scope, 0)), /protect list/);
    assert.equal(await p.reason('198.51.100.77', scope, 0), null);
  });
});

class FakeClient {
  readonly calls: string[] = [];
  constructor(readonly groups: Map<string, Set<string>>) {}
  async post(endpoint: string, data: { op: string; path?: string[] }): Promise<unknown> {
    const path = data.path ?? [];
    this.calls.push(`${endpoint} ${data.op} ${path.join(' ')}`.trim());
    const group = path[3] ?? '';
    const set = this.groups.get(group) ?? new Set<string>();
    this.groups.set(group, set);
    if (data.op === 'returnValues') return [...set];
    if (data.op === 'set') set.add(path[5] ?? '');
    if (data.op === 'delete') set.delete(path[5] ?? '');
    return null;
  }
}

function fleetOf(client: FakeClient): VyosFleet {
  const device = { name: 'edge1' } as DeviceConfig;
  return { devices: new Map([['edge1', device]]), client: async () => client as unknown as VyosClient };
}

describe('VyOS address-group entries expire with the ban', () => {
  test('recorded before they are made; merged, the later expiry kept', async () => {
    const kv = new FakeKv();
    await recordEntries(kv, 'befw-reactor', '198.51.100.5', 100, [{ device: 'edge1', kind: 'address-group', group: 'B' }]);
    await recordEntries(kv, 'befw-reactor', '198.51.100.5', 50, [{ device: 'edge2', kind: 'address-group', group: 'B' }]);
    const rec = JSON.parse(kv.data.get(groupRecordKey('befw-reactor', '198.51.100.5'))?.value ?? '{}') as {
      expiry: number;
      entries: unknown[];
    };
    assert.equal(rec.expiry, 100);
    assert.equal(rec.entries.length, 2);
    assert.equal(laterExpiry(5, -1), -1);
  });

  test('the sweeper takes expired entries out of the router; at a start it puts live ones back', async () => {
    const kv = new FakeKv();
    const client = new FakeClient(new Map([['B', new Set(['198.51.100.5'])]]));
    await recordEntries(kv, 'p', '198.51.100.5', 100, [{ device: 'edge1', kind: 'address-group', group: 'B' }]);
    await recordEntries(kv, 'p', '198.51.100.6', 300, [{ device: 'edge1', kind: 'address-group', group: 'B' }]);
    let now = 200_000;
    const keeper = new GroupKeeper(kv, fleetOf(client), 'p', 1000, quietLog(), () => now);
    await keeper.sweep();
    // .5 expired (100 s < now): removed and forgotten; .6 live and missing on the router: put back.
    assert.deepEqual([...(client.groups.get('B') ?? [])], ['198.51.100.6']);
    assert.equal(kv.data.has(groupRecordKey('p', '198.51.100.5')), false);
    assert.ok(client.calls.includes('/configure set firewall group address-group B address 198.51.100.6'));
    client.calls.length = 0;
    now = 250_000;
    client.groups.get('B')?.delete('198.51.100.6');
    await keeper.sweep();
    assert.deepEqual(client.calls, [], 'only the first sweep re-asserts; nothing expired yet');
    now = 301_000;
    client.groups.get('B')?.add('198.51.100.6');
    await keeper.sweep();
    assert.deepEqual([...(client.groups.get('B') ?? [])], []);
  });
});

describe('the interface a router is reached by', () => {
  const device: DeviceConfig = {
    name: 'edge1',
    url: new URL('https://192.0.2.1'),
    keyFile: '/k',
    caFile: null,
    addresses: NetSet.parse(['198.51.100.254/32']),
    timeoutMs: 1000,
    interfaces: [],
  };
  const config = {
    ethernet: {
      eth0: { address: '192.0.2.1/24' },
      eth1: { address: ['198.51.100.254/24', '2001:db8::1/64'], vif: { '10': { address: '203.0.113.1/24' } } },
      eth2: { address: 'dhcp' },
      eth3: {},
    },
    loopback: { lo: {} },
  };

  test('every address of every interface, vifs as eth1.10', () => {
    assert.deepEqual(
      interfaceAddresses(config).map((x) => [x.iface, x.addresses]),
      [
        ['eth0', ['192.0.2.1/24']],
        ['eth1', ['198.51.100.254/24', '2001:db8::1/64']],
        ['eth1.10', ['203.0.113.1/24']],
        ['eth2', ['dhcp']],
        ['eth3', []],
        ['lo', []],
      ],
    );
  });

  test("the API's address, an address it logs from, the responder's subnet", () => {
    assert.deepEqual(
      managementInterfaces(config, device, null).map((m) => m.iface),
      ['eth0', 'eth1'],
    );
    assert.deepEqual(
      managementInterfaces(
        config,
        { ...device, url: new URL('https://edge1.example'), addresses: NetSet.parse(['192.0.2.200/32']) },
        '203.0.113.77',
      ).map((m) => m.iface),
      ['eth1.10'],
    );
  });
});
