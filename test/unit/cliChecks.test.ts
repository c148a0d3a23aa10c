/**
 * What the access commands refuse and tell before writing (src/cli/access/checks.ts), run
 * against a recording fake of the operator's Consul: refused addresses, /0 and wide networks
 * without --yes, sets, datacenters and nodes the catalog does not know (with a suggestion)
 * without --force, a catalog that cannot be read, --dry-run, the node count of allow and deny,
 * and the protected-address warnings.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { type Output, runAdd, runRm, runRmAll } from '../../src/cli/access/commands.js';
import type { AccessContext } from '../../src/cli/access/context.js';
import { RefusedError, UsageError } from '../../src/cli/access/errors.js';
import { checkAddressArg, checkWorldWidth } from '../../src/cli/access/checks.js';
import { type ScopeSel, ALIAS_KIND, IPSET_KIND, SERVICE_KIND, WORLD, parseAddrArg } from '../../src/cli/access/layout.js';
import { parseConfig } from '../../src/config/config.js';
import { ConsulError } from '../../src/consul/connection.js';
import type { CatalogInstance, CatalogNode, ConsulMember, KvEntry, OperatorConsul } from '../../src/consul/kvWriter.js';
import { closest, editDistance } from '../../src/core/suggest.js';

const NOW = 1_800_000_000_000;
const WORDS = {
  added: (a: string, t: string) => `granted: ${a} may reach ${t}`,
  removed: (a: string, t: string) => `revoked: ${a} from ${t}`,
};

interface Catalog {
  dcs: string[];
  nodes: Record<string, string[]>;
  /** dc -> service name -> instances */
  services: Record<string, Record<string, CatalogInstance[]>>;
  members: ConsulMember[];
}

const befw = (node: string, port: number, ...tags: string[]): CatalogInstance => ({
  node,
  id: `svc-${node}`,
  port,
  tags: ['befw', ...tags],
});

function fleet(): Catalog {
  return {
    dcs: ['dc2', 'dc1'],
    nodes: { dc1: ['web-01.example.com', 'web-02', 'db-01'], dc2: ['web-11', 'ns-11'] },
    services: {
      dc1: {
        web: [befw('web-01.example.com', 8080), befw('web-02', 8080)],
        db: [befw('db-01', 5432)],
        consul: [{ node: 'db-01', id: 'consul', port: 8300, tags: [] }],
        api: [{ node: 'web-02', id: 'api-1', port: 8080, tags: ['befw', '9000/tcp'] }],
        ...Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`svc${i}`, [befw('db-01', 9000 + i)]])),
      },
      dc2: { web: [befw('web-11', 8080)], dns: [befw('ns-11', 53, 'udp')] },
    },
    members: [
      { name: 'server-1', addr: '198.51.100.50' },
      { name: 'web-01', addr: '2001:db8::50' },
      { name: 'dev', addr: '127.0.0.1' },
    ],
  };
}

/** The operator's Consul as the commands see it, recording every request. */
class FakeConsul implements OperatorConsul {
  readonly calls: string[] = [];
  readonly kv = new Map<string, { value: string; index: number }>();
  private index = 100;
  catalogError: ConsulError | null = null;
  membersError: ConsulError | null = null;

  constructor(readonly catalog: Catalog = fleet()) {}

  async list(prefix: string): Promise<KvEntry[]> {
    this.calls.push(`list ${prefix}`);
    return [...this.kv]
      .filter(([k]) => k.startsWith(prefix))
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([key, v]) => ({ key, value: v.value, modifyIndex: v.index }));
  }
  async putCas(key: string, value: string, cas: number): Promise<boolean> {
    this.calls.push(`put ${key}=${value} cas ${cas}`);
    if ((this.kv.get(key)?.index ?? 0) !== cas) return false;
    this.kv.set(key, { value, index: ++this.index });
    return true;
  }
  async deleteCas(key: string, modifyIndex: number): Promise<boolean> {
    this.calls.push(`delete ${key}@${modifyIndex}`);
    if (this.kv.get(key)?.index !== modifyIndex) return false;
    this.kv.delete(key);
    return true;
  }
  private catalogCall(what: string): void {
    this.calls.push(what);
    if (this.catalogError !== null) throw this.catalogError;
  }
  async datacenters(): Promise<string[]> {
    this.catalogCall('datacenters');
    return this.catalog.dcs;
  }
  async catalogNodes(dc: string): Promise<CatalogNode[]> {
    this.catalogCall(`nodes ${dc}`);
    return (this.catalog.nodes[dc] ?? []).map((name) => ({ name, address: '192.0.2.1' }));
  }
  async catalogServices(dc: string): Promise<Map<string, string[]>> {
    this.catalogCall(`services ${dc}`);
    const out = new Map<string, string[]>();
    for (const [name, inst] of Object.entries(this.catalog.services[dc] ?? {})) out.set(name, [...new Set(inst.flatMap((i) => i.tags))]);
    return out;
  }
  async catalogService(name: string, dc: string): Promise<CatalogInstance[]> {
    this.catalogCall(`service ${name} ${dc}`);
    return this.catalog.services[dc]?.[name] ?? [];
  }
  async members(): Promise<ConsulMember[]> {
    this.calls.push('members');
    if (this.membersError !== null) throw this.membersError;
    return this.catalog.members;
  }
  private unused(): never {
    throw new Error('not used by these commands');
  }
  services = async () => this.unused();
  register = async () => this.unused();
  deregister = async () => this.unused();
  self = async () => this.unused();
  kvReadable = async () => this.unused();
  kvWritable = async () => this.unused();
  aclSelf = async () => this.unused();
  aclTokensReadable = async () => this.unused();
  catalogNodeVisible = async () => this.unused();
  close(): void {}

  writes(): string[] {
    return this.calls.filter((c) => c.startsWith('put ') || c.startsWith('delete '));
  }
}

const CONF = ['set.rules_allow=203.0.113.0/24;2001:db8:ffff::/48', 'protect=198.51.100.10', 'set.scanners=3;DROP'].join('\n');

function context(consul: FakeConsul, conf = CONF, json = false): AccessContext {
  return { config: parseConfig(conf, 'test.conf'), consul, nowMs: NOW, json };
}

const dc = (name: string): ScopeSel => ({ level: 'dc', dc: name, node: null });
const node = (d: string, n: string): ScopeSel => ({ level: 'node', dc: d, node: n });

type Flags = { yes?: boolean; force?: boolean; dryRun?: boolean };

function add(
  consul: FakeConsul,
  kind: typeof SERVICE_KIND,
  target: string,
  addr: string,
  scope: ScopeSel = WORLD,
  flags: Flags = {},
  conf = CONF,
): Promise<Output> {
  return runAdd(context(consul, conf), {
    kind,
    target,
    addr: parseAddrArg(addr),
    scope,
    opts: { config: 'test.conf', forever: true, ...flags },
    words: WORDS,
  });
}

async function refused(p: Promise<unknown>, pattern: RegExp, kind: 'usage' | 'refused' = 'refused'): Promise<string> {
  let message = '';
  await assert.rejects(p, (err: unknown) => {
    assert.ok(kind === 'usage' ? err instanceof UsageError : err instanceof RefusedError, `got ${String(err)}`);
    message = (err as Error).message;
    assert.match(message, pattern);
    return true;
  });
  return message;
}

describe('suggestions', () => {
  test('edit distance counts a swap of neighbours as one typo', () => {
    assert.equal(editDistance('web_tcp_8080', 'web_tcp_8080'), 0);
    assert.equal(editDistance('wbe_tcp_8080', 'web_tcp_8080'), 1);
    assert.equal(editDistance('web_tcp_808', 'web_tcp_8080'), 1);
    assert.equal(editDistance('web_udp_8080', 'web_tcp_8080'), 2);
    assert.equal(editDistance('', 'abc'), 3);
    assert.equal(editDistance('kitten', 'sitting'), 3);
  });
  test('closest: a near name, ties to the first in order, nothing when far or exact', () => {
    assert.equal(closest('wbe_tcp_8080', ['db_tcp_5432', 'web_tcp_8080', 'dns_udp_53']), 'web_tcp_8080');
    assert.equal(closest('dc3', ['dc2', 'dc1']), 'dc1');
    assert.equal(closest('payments_tcp_443', ['web_tcp_8080', 'db_tcp_5432']), null);
    assert.equal(closest('web_tcp_8080', ['web_tcp_8080', 'web_tcp_8081']), null);
    assert.equal(closest('x', []), null);
  });
});

describe('addresses that cannot be meant', () => {
  test('loopback, link-local, unspecified and multicast are refused, as hosts and as networks inside them', () => {
    for (const a of [
      '127.0.0.1',
      '127.0.0.0/8',
      '::1',
      '169.254.10.1',
      'fe80::1',
      '0.0.0.0',
      '::',
      '224.0.0.1',
      'ff02::1',
      '::ffff:127.0.0.1',
    ]) {
      assert.throws(
        () => checkAddressArg(parseAddrArg(a), true),
        (e: unknown) =>
          e instanceof UsageError &&
          /is (loopback|link-local|the unspecified address|multicast): no node would ever enforce it/.test(e.message),
        a,
      );
    }
    // Aliases and ordinary addresses pass; a network that merely contains loopback is not refused here.
    for (const a of ['$ops$', '198.51.100.7', '2001:db8::7', '96.0.0.0/3']) checkAddressArg(parseAddrArg(a), false);
  });

  test('/0 needs --yes at any scope', () => {
    assert.throws(
      () => checkAddressArg(parseAddrArg('0.0.0.0/0'), false),
      /address "0\.0\.0\.0\/0": is every IPv4 address; add --yes if you mean it/,
    );
    assert.throws(() => checkAddressArg(parseAddrArg('::/0'), false), /is every IPv6 address; add --yes/);
    checkAddressArg(parseAddrArg('0.0.0.0/0'), true);
  });

  test('at world scope a network wider than cli_world_prefix(6) needs --yes; other scopes and narrower networks do not', () => {
    const limits = parseConfig('', 'f');
    assert.deepEqual([limits.cliWorldPrefix, limits.cliWorldPrefix6], [16, 48]);
    assert.throws(
      () => checkWorldWidth(parseAddrArg('10.0.0.0/8'), WORLD, limits, false),
      /address "10\.0\.0\.0\/8": is wider than \/16 at world scope \(cli_world_prefix\).*add --yes/,
    );
    assert.throws(
      () => checkWorldWidth(parseAddrArg('2001:db8::/32'), WORLD, limits, false),
      /wider than \/48 at world scope \(cli_world_prefix6\)/,
    );
    checkWorldWidth(parseAddrArg('10.0.0.0/8'), WORLD, limits, true);
    checkWorldWidth(parseAddrArg('10.0.0.0/8'), dc('dc1'), limits, false);
    checkWorldWidth(parseAddrArg('10.1.0.0/16'), WORLD, limits, false);
    checkWorldWidth(parseAddrArg('2001:db8:1::/48'), WORLD, limits, false);
    const loose = parseConfig('cli_world_prefix=8\ncli_world_prefix6=32', 'f');
    checkWorldWidth(parseAddrArg('10.0.0.0/8'), WORLD, loose, false);
    checkWorldWidth(parseAddrArg('2001:db8::/32'), WORLD, loose, false);
  });

  test('runAdd applies the address rules before any request', async () => {
    const c = new FakeConsul();
    await refused(add(c, SERVICE_KIND, 'web_tcp_8080', '127.0.0.1'), /is loopback/, 'usage');
    await refused(add(c, SERVICE_KIND, 'web_tcp_8080', '10.0.0.0/8'), /wider than \/16/, 'usage');
    await refused(add(c, SERVICE_KIND, 'web_tcp_8080', '0.0.0.0/0', dc('dc1')), /every IPv4 address/, 'usage');
    assert.deepEqual(c.calls, []);
    await add(c, SERVICE_KIND, 'web_tcp_8080', '10.0.0.0/8', WORLD, { yes: true });
    assert.deepEqual(c.writes(), ['put befw/$service$/web_tcp_8080/10.0.0.0/8=-1 cas 0']);
  });

  test('config keys are checked', () => {
    assert.throws(() => parseConfig('cli_world_prefix=33', 'f'), /cli_world_prefix.*IPv4 prefix length from 0 to 32/);
    assert.throws(() => parseConfig('cli_world_prefix6=129', 'f'), /cli_world_prefix6.*from 0 to 128/);
  });
});

describe('grants checked against the catalog', () => {
  test('a known set is written, asking the catalog only about services with a near name', async () => {
    const c = new FakeConsul();
    const out = await add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7');
    assert.match(
      out.text,
      /^granted: 198\.51\.100\.7 may reach web_tcp_8080, world scope, never expires\n {2}befw\/\$service\$\/web_tcp_8080\/198\.51\.100\.7 = -1$/,
    );
    // The datacenter list, one services list per datacenter, instances of "web" only (not of
    // the 20 other services), then the KV read and the write.
    assert.deepEqual(c.calls, [
      'datacenters',
      'services dc1',
      'service web dc1',
      'services dc2',
      'service web dc2',
      'list befw/$service$/web_tcp_8080/',
      'put befw/$service$/web_tcp_8080/198.51.100.7=-1 cas 0',
    ]);
  });

  test('set_naming=id-first-tag: a set named after the instance ID and its first port tag is known', async () => {
    const c = new FakeConsul();
    const idFirstTag = `${CONF}\nset_naming=id-first-tag`;
    const out = await add(c, SERVICE_KIND, 'api-1_tcp_9000', '198.51.100.7', WORLD, {}, idFirstTag);
    assert.match(out.text, /^granted: 198\.51\.100\.7 may reach api-1_tcp_9000/);
    await refused(add(c, SERVICE_KIND, 'api_tcp_8080', '198.51.100.7', WORLD, {}, idFirstTag), /^no service has set api_tcp_8080/);
    // The same catalog under name-port: the set is the name and Port.
    await refused(add(c, SERVICE_KIND, 'api-1_tcp_9000', '198.51.100.7'), /^no service has set api-1_tcp_9000/);
  });

  test('a misspelt set is refused with the closest known name; --force writes it with a warning', async () => {
    const c = new FakeConsul();
    const msg = await refused(
      add(c, SERVICE_KIND, 'wbe_tcp_8080', '198.51.100.7'),
      /^no service has set wbe_tcp_8080 \(catalog of dc1, dc2\); did you mean web_tcp_8080\? nothing written \(--force writes it anyway\)$/,
    );
    assert.ok(msg.length > 0);
    await refused(add(c, SERVICE_KIND, 'web_tcp_8008', '198.51.100.7'), /did you mean web_tcp_8080\?/);
    await refused(add(c, SERVICE_KIND, 'dns_tcp_53', '198.51.100.7'), /did you mean dns_udp_53\?/);
    await refused(
      add(c, SERVICE_KIND, 'payments_tcp_443', '198.51.100.7'),
      /^no service has set payments_tcp_443 \(catalog of dc1, dc2\); nothing written/,
    );
    // dns runs in dc2 only.
    await refused(add(c, SERVICE_KIND, 'dns_udp_53', '198.51.100.7', dc('dc1')), /^no service has set dns_udp_53 \(catalog of dc1\)/);
    assert.deepEqual(c.writes(), []);

    const forced = await add(c, SERVICE_KIND, 'wbe_tcp_8080', '198.51.100.7', WORLD, { force: true });
    assert.match(forced.text, /\n {2}warning: no service has set wbe_tcp_8080 .*did you mean web_tcp_8080\? written anyway \(--force\)$/);
    assert.deepEqual(c.writes(), ['put befw/$service$/wbe_tcp_8080/198.51.100.7=-1 cas 0']);
    assert.deepEqual((forced.json as { warnings: string[] }).warnings.length, 1);
  });

  test('an unknown datacenter or node is refused with a suggestion', async () => {
    const c = new FakeConsul();
    await refused(
      add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7', dc('dc3')),
      /^no datacenter dc3 in the catalog \(known: dc1, dc2\); did you mean dc1\? nothing written/,
    );
    await refused(
      add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7', node('dc1', 'web-1')),
      /^no node web-1 in the catalog of dc1; did you mean web-01\?/,
    );
    // Nodes are matched by their short, lower-case name, as the agent reads its own.
    await add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7', node('dc1', 'web-01'));
    // Alias members and static sets are checked for their scope only.
    await refused(
      runAdd(context(c), {
        kind: ALIAS_KIND,
        target: '$ops$',
        addr: parseAddrArg('198.51.100.7'),
        scope: node('dc2', 'web-01'),
        opts: { config: 'x', forever: true },
        words: WORDS,
      }),
      /^no node web-01 in the catalog of dc2; did you mean web-11\?/,
    );
    assert.deepEqual(c.writes(), ['put befw/$service$/dc1/web-01/web_tcp_8080/198.51.100.7=-1 cas 0']);
  });

  test('a node that does not run the service yet is a note, not a refusal', async () => {
    const c = new FakeConsul();
    const out = await add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7', node('dc1', 'db-01'));
    assert.match(
      out.text,
      /\n {2}note: node dc1\/db-01 has no service with set web_tcp_8080 now \(it runs on web-01\.example\.com, web-02\); the entry takes effect there when it has one$/,
    );
    assert.equal(c.writes().length, 1);
  });

  test('a catalog that cannot be read refuses (never a silent pass); --force writes with a warning', async () => {
    const c = new FakeConsul();
    c.catalogError = new ConsulError('catalog/services?dc=dc1', 403, new Error('permission denied: the ACL token lacks service read'));
    await refused(
      add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7'),
      /^cannot check web_tcp_8080 and its scope against the catalog: consul catalog\/services\?dc=dc1 failed \(HTTP 403\): permission denied.*; nothing written \(--force writes it without the check\)$/,
    );
    assert.deepEqual(c.writes(), []);
    const out = await add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7', WORLD, { force: true });
    assert.match(out.text, /warning: cannot check web_tcp_8080 .*HTTP 403.*written without the check \(--force\)/);
    assert.equal(c.writes().length, 1);
  });

  test('a catalog that shows no befw service at all hints at the token', async () => {
    const c = new FakeConsul({ ...fleet(), services: {} });
    await refused(
      add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7'),
      /the catalog shows no befw service at all: does the token have service read\?/,
    );
  });
});

describe('--dry-run', () => {
  test('add makes every check and read, writes nothing, and says what it would write', async () => {
    const c = new FakeConsul();
    c.kv.set('befw/$service$/web_tcp_8080/198.51.100.7', { value: '123', index: 7 });
    const out = await add(c, SERVICE_KIND, 'web_tcp_8080', '198.51.100.7', WORLD, { dryRun: true });
    assert.equal(
      out.text,
      [
        'dry run, nothing written; without --dry-run:',
        'granted: 198.51.100.7 may reach web_tcp_8080, world scope, never expires',
        '  would write befw/$service$/web_tcp_8080/198.51.100.7 = -1 (was "123")',
      ].join('\n'),
    );
    assert.deepEqual(c.writes(), []);
    assert.ok(c.calls.includes('list befw/$service$/web_tcp_8080/'), 'reads as a real run does');
    const json = out.json as { dryRun: boolean; written: { key: string; value: string; previous: string }[] };
    assert.deepEqual(
      [json.dryRun, json.written[0]?.key, json.written[0]?.value, json.written[0]?.previous],
      [true, 'befw/$service$/web_tcp_8080/198.51.100.7', '-1', '123'],
    );
    // Refusals still apply on a dry run.
    await refused(add(c, SERVICE_KIND, 'wbe_tcp_8080', '198.51.100.7', WORLD, { dryRun: true }), /did you mean web_tcp_8080\?/);
  });

  test('rm and rm --all delete nothing and list what would go', async () => {
    const c = new FakeConsul();
    c.kv.set('befw/$alias$/$ops$/198.51.100.7', { value: '-1', index: 3 });
    c.kv.set('befw/$alias$/$ops$/198.51.100.8', { value: '-1', index: 4 });
    const spec = { kind: ALIAS_KIND, scope: WORLD, target: '$ops$', addr: parseAddrArg('198.51.100.7') };
    const rm = await runRm(context(c), spec, { dryRun: true }, WORDS);
    assert.equal(
      rm.text,
      'dry run, nothing written; without --dry-run:\nrevoked: 198.51.100.7 from $ops$ at world scope\n  would delete befw/$alias$/$ops$/198.51.100.7 (was "-1")',
    );
    assert.deepEqual(rm.json, { dryRun: true, deleted: [{ key: 'befw/$alias$/$ops$/198.51.100.7', value: '-1' }] });
    const all = await runRmAll(context(c), ALIAS_KIND, '$ops$', WORLD, { dryRun: true }, 'removed alias $ops$');
    assert.equal((all.json as { deleted: unknown[] }).deleted.length, 2);
    assert.deepEqual(c.writes(), []);
    assert.equal(c.kv.size, 2);
    await runRm(context(c), spec, {}, WORDS);
    assert.deepEqual(c.writes(), ['delete befw/$alias$/$ops$/198.51.100.7@3']);
  });
});

describe('allow and deny: reach and protected addresses', () => {
  const staticAdd = (c: FakeConsul, set: string, addr: string, scope: ScopeSel = WORLD, flags: Flags = {}): Promise<Output> =>
    runAdd(context(c), {
      kind: IPSET_KIND,
      target: set,
      addr: parseAddrArg(addr),
      scope,
      opts: { config: 'x', ttl: '1h', ...flags },
      words: { added: (a) => `denied: ${a}`, removed: (a) => `removed: ${a}` },
    });

  test('how many nodes an entry reaches, counted from the catalog', async () => {
    const c = new FakeConsul();
    const world = await staticAdd(c, 'rules_deny', '198.51.100.66');
    assert.match(world.text, /\n {2}reaches every node in 2 datacenters \(5 nodes\)$/);
    assert.deepEqual((world.json as { reach: unknown }).reach, { datacenters: 2, nodes: 5 });
    // Scope checks and the count share their reads; no service is looked up for a static set.
    assert.deepEqual(
      c.calls.filter((x) => !x.startsWith('list') && !x.startsWith('put')),
      ['datacenters', 'nodes dc1', 'nodes dc2', 'members'],
    );
    assert.match(
      (await staticAdd(c, 'rules_deny', '198.51.100.67', dc('dc1'))).text,
      /\n {2}reaches every node in dc1 \(3 nodes in the catalog\)$/,
    );
    assert.match((await staticAdd(c, 'rules_allow', '198.51.100.68', node('dc2', 'ns-11'))).text, /\n {2}reaches 1 node \(dc2\/ns-11\)$/);
    const single = new FakeConsul({ ...fleet(), dcs: ['dc1'] });
    assert.match((await staticAdd(single, 'rules_deny', '198.51.100.66')).text, /reaches every node in dc1 \(3 nodes in the catalog\)/);
  });

  test('a node count that cannot be read is a note (the scope check passed or was forced)', async () => {
    const c = new FakeConsul();
    c.catalogError = new ConsulError('catalog/datacenters', null, new Error('socket hang up'));
    const out = await staticAdd(c, 'rules_deny', '198.51.100.66', WORLD, { force: true });
    assert.match(out.text, /note: cannot count the nodes it reaches: consul catalog\/datacenters failed: socket hang up/);
    assert.equal((out.json as { reach: unknown }).reach, null);
  });

  test('a deny of, or covering, a protected address warns; so does an allow of one already protected', async () => {
    const c = new FakeConsul();
    const mgmt = await staticAdd(c, 'rules_deny', '203.0.113.7');
    assert.match(
      mgmt.text,
      /\n {2}warning: 203\.0\.113\.7 is protected: 203\.0\.113\.0\/24 \(management network, set\.rules_allow of this config\); nodes never deny it, so this entry has no effect there/,
    );
    const peer = await staticAdd(c, 'rules_deny', '198.51.100.50');
    assert.match(peer.text, /warning: 198\.51\.100\.50 is protected: 198\.51\.100\.50\/32 \(Consul peer server-1\)/);
    const wide = await staticAdd(c, 'rules_deny', '198.51.100.0/24');
    assert.match(
      wide.text,
      /warning: 198\.51\.100\.0\/24 covers protected addresses: 198\.51\.100\.10\/32 \(protect= of this config\), 198\.51\.100\.50\/32 \(Consul peer server-1\); nodes clip them out and deny only the rest/,
    );
    const v6 = await staticAdd(c, 'rules_deny', '2001:db8::/32', dc('dc1'));
    assert.match(
      v6.text,
      /covers protected addresses: 2001:db8:ffff::\/48 \(management network.*\), 2001:db8::50\/128 \(Consul peer web-01\)/,
    );
    const all = await staticAdd(c, 'rules_deny', '0.0.0.0/0', dc('dc1'), { yes: true });
    assert.match(all.text, /covers protected addresses: 127\.0\.0\.0\/8 \(loopback\), 203\.0\.113\.0\/24/);
    assert.ok(!all.text.includes('127.0.0.1/32'), 'a member on loopback is not listed again');
    const allow = await staticAdd(c, 'rules_allow', '203.0.113.9');
    assert.match(
      allow.text,
      /note: 203\.0\.113\.9 is protected already: 203\.0\.113\.0\/24 \(management network.*\); nodes with this config accept it anyway/,
    );
    const plain = await staticAdd(c, 'rules_deny', '192.0.2.66');
    assert.deepEqual((plain.json as { warnings: string[] }).warnings, []);
    // Warnings never stop the write.
    assert.equal(c.writes().length, 7);
  });

  test('members that cannot be read leave a note and the config-based check', async () => {
    const c = new FakeConsul();
    c.membersError = new ConsulError('agent/members', 403, new Error('permission denied'));
    const out = await staticAdd(c, 'rules_deny', '203.0.113.7');
    assert.match(out.text, /warning: 203\.0\.113\.7 is protected/);
    assert.match(
      out.text,
      /note: Consul peers not checked \(cannot read the local agent's members: consul agent\/members failed \(HTTP 403\)/,
    );
  });

  test('static sets the config does not declare are refused', async () => {
    const c = new FakeConsul();
    await refused(
      staticAdd(c, 'scaners', '198.51.100.1'),
      /^no static set scaners \(known: rules_allow, rules_deny, scanners\); did you mean scanners\?/,
    );
    await staticAdd(c, 'scanners', '198.51.100.1');
  });
});
