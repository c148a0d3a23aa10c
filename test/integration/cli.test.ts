/**
 * The operator commands against a real Consul dev agent in a sandbox namespace: what they write
 * (keys and values, exactly), what they list, what they refuse (writing nothing), purge with its
 * check-and-set, and the agent's compiler agreeing with what the CLI wrote.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { purgeExpired } from '../../src/cli/access/purge.js';
import { writeEntry } from '../../src/cli/access/entries.js';
import { AccessError } from '../../src/cli/access/errors.js';
import { WORLD, parseAddrArg } from '../../src/cli/access/layout.js';
import { parseConfig } from '../../src/config/config.js';
import { type OperatorConsul, createOperatorConsul } from '../../src/consul/kvWriter.js';
import { Cli, expectFailure, kvRaw, kvTree } from '../helpers/cli.js';
import { ROOT, Sandbox, nowSec } from '../helpers/sandbox.js';
import { SYSTEM_CONFIG_PATH } from '../../src/cli/configSource.js';

const S = 'befw/$service$/';
const WEB = 'web_tcp_8080';

describe('befw operator commands against a real Consul', () => {
  let sb: Sandbox;
  let cli: Cli;
  let consul: OperatorConsul;

  before(async () => {
    sb = await Sandbox.create();
    const conf = sb.writeFile(
      'befw.conf',
      [`services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, `state=${sb.dir}/state.bin`].join('\n'),
    );
    cli = await Cli.start(sb, conf);
    // Another node of the fleet, in the catalog only: it runs web (8080/tcp) and dns (53/udp),
    // so grants to their sets pass the CLI's catalog check before node1 registers its own.
    for (const svc of [
      { ID: 'web', Service: 'web', Port: 8080, Tags: ['befw'] },
      { ID: 'dns', Service: 'dns', Port: 53, Tags: ['befw', 'udp'] },
    ]) {
      const r = await sb.consul('PUT', '/v1/catalog/register', JSON.stringify({ Node: 'web-01', Address: '192.0.2.11', Service: svc }));
      assert.equal(r.status, 200, r.body);
    }
    // In-process access for the race cases: the same module the CLI uses, over the sandbox's socket.
    consul = createOperatorConsul({
      host: 'consul',
      port: 0,
      secure: false,
      token: null,
      timeoutMs: 5000,
      socketPath: sb.consulSock,
      dc: null,
    });
  });

  after(async () => {
    consul?.close();
    if (sb !== undefined) await sb.destroy();
  });

  it('client add writes the exact keys and values at world, datacenter and node scope', async () => {
    const t0 = nowSec();
    const out = await cli.ok(['client', 'add', WEB, '198.51.100.7', '--ttl', '2h']);
    const t1 = nowSec();
    await cli.ok(['client', 'add', 'web:8080', '198.51.100.0/24', '--forever', '--dc', 'dc1']);
    await cli.ok([
      'client',
      'add',
      WEB,
      '2001:DB8:0::7',
      '--until',
      '2030-01-01T02:00:00+02:00',
      '--dc',
      'dc1',
      '--node',
      'Node1.example.com',
    ]);
    const json = JSON.parse(await cli.ok(['client', 'add', 'dns:53/udp', '$ops$', '--ttl', '1h', '--json'])) as {
      written: { key: string; value: string; previous: string | null }[];
    };

    const tree = await kvTree(sb, S);
    const ttl = Number(tree[`${S}${WEB}/198.51.100.7`]);
    assert.ok(ttl >= t0 + 7200 && ttl <= t1 + 7200, `ttl ${ttl} not in [${t0 + 7200}, ${t1 + 7200}]`);
    const dnsTtl = Number(tree[`${S}dns_udp_53/$ops$`]);
    assert.deepEqual(tree, {
      [`${S}${WEB}/198.51.100.7`]: String(ttl),
      [`${S}dc1/${WEB}/198.51.100.0/24`]: '-1',
      [`${S}dc1/node1/${WEB}/2001:db8::7`]: '1893456000',
      [`${S}dns_udp_53/$ops$`]: String(dnsTtl),
    });
    assert.match(out, new RegExp(`^granted: 198\\.51\\.100\\.7 may reach ${WEB}, world scope, until .* \\(in (1h59m|2h)\\)`));
    assert.ok(out.includes(`  ${S}${WEB}/198.51.100.7 = ${ttl}\n`), out);
    assert.deepEqual(
      json.written.map((w) => [w.key, w.value, w.previous]),
      [[`${S}dns_udp_53/$ops$`, String(dnsTtl), null]],
    );

    // Writing again replaces the value and says what it was.
    const again = await cli.ok(['client', 'add', WEB, '198.51.100.7', '--forever']);
    assert.ok(again.includes(`= -1 (was "${ttl}")`), again);
    assert.equal((await kvTree(sb, S))[`${S}${WEB}/198.51.100.7`], '-1');
  });

  it('client ls shows scope, time left and expired or invalid entries; --dc/--node narrow it', async () => {
    await sb.kvPut(`${S}${WEB}/198.51.100.3`, String(nowSec() - 120));
    await sb.kvPut(`${S}${WEB}/198.51.100.4`, 'tomorrow');
    await sb.kvPut(`${S}dc2/${WEB}/198.51.100.5`, '-1');
    const text = await cli.ok(['client', 'ls', WEB]);
    const lines = text.split('\n');
    assert.match(lines[0] ?? '', /^SERVICE\s+ADDRESS\s+SCOPE\s+EXPIRY$/);
    assert.ok(
      lines.some((l) => /^web_tcp_8080\s+198\.51\.100\.3\s+world\s+EXPIRED .* \(2m\d*s? ago\)$/.test(l)),
      text,
    );
    assert.ok(
      lines.some((l) => /^web_tcp_8080\s+198\.51\.100\.0\/24\s+dc dc1\s+never expires$/.test(l)),
      text,
    );
    assert.ok(
      lines.some((l) => /^web_tcp_8080\s+2001:db8::7\s+node dc1\/node1\s+until 2030-01-01T00:00:00Z \(in /.test(l)),
      text,
    );
    assert.ok(
      lines.some((l) => l.includes('dc dc2')),
      text,
    );
    assert.ok(!text.includes('dns_udp_53'), 'only the named service');
    assert.match(
      text,
      /Not enforced \(1\)[^\n]*\n {2}befw\/\$service\$\/web_tcp_8080\/198\.51\.100\.4 = "tomorrow": value "tomorrow" is not an integer/,
    );

    const json = JSON.parse(await cli.ok(['client', 'ls', '--dc', 'dc1', '--node', 'NODE1', '--json'])) as {
      entries: { key: string; scope: { level: string }; expired: boolean; secondsLeft: number | null }[];
    };
    // What node1 in dc1 reads: world, dc1 and node1 entries; not dc2.
    assert.deepEqual(
      json.entries.map((e) => e.key).sort(),
      [
        `${S}dc1/${WEB}/198.51.100.0/24`,
        `${S}dc1/node1/${WEB}/2001:db8::7`,
        `${S}dns_udp_53/$ops$`,
        `${S}${WEB}/198.51.100.3`,
        `${S}${WEB}/198.51.100.7`,
      ].sort(),
    );
    const expired = json.entries.find((e) => e.key.endsWith('198.51.100.3'));
    assert.deepEqual([expired?.expired, expired?.secondsLeft], [true, 0]);
  });

  it('client rm removes every key read as that address at that scope, and only there', async () => {
    await sb.kvPut(`${S}${WEB}/2001:DB8:0::7`, '-1'); // hand-written, not canonical
    await sb.kvPut(`${S}${WEB}/2001:db8::7`, '-1');
    const out = await cli.ok(['client', 'rm', WEB, '2001:db8::7']);
    assert.match(out, /^revoked: 2001:db8::7 no longer reaches web_tcp_8080 at world scope\n/);
    const tree = await kvTree(sb, S);
    assert.equal(tree[`${S}${WEB}/2001:DB8:0::7`], undefined);
    assert.equal(tree[`${S}${WEB}/2001:db8::7`], undefined);
    assert.equal(tree[`${S}dc1/node1/${WEB}/2001:db8::7`], '1893456000', 'the node-level entry stays');
    await cli.fails(
      ['client', 'rm', WEB, '2001:db8::7'],
      /^befw: error: 2001:db8::7: no entry for it in web_tcp_8080 at world scope; nothing removed/,
    );
    // A typo'd value at the exact key is still removable.
    await cli.ok(['client', 'rm', WEB, '198.51.100.4']);
    assert.equal((await kvTree(sb, S))[`${S}${WEB}/198.51.100.4`], undefined);
  });

  it('refuses bad input with one clear line and writes nothing', async () => {
    const before = await kvRaw(sb);
    await cli.fails(['client', 'add', WEB, '1.2.3.4 -j ACCEPT', '--ttl', '2h'], /address "1\.2\.3\.4 -j ACCEPT": .*not an IP address/);
    await cli.fails(['client', 'add', WEB, '999.1.1.1', '--ttl', '2h'], /address "999\.1\.1\.1": IPv4 octet 999 is above 255/);
    await cli.fails(['deny', '198.51.100.7/24', '--ttl', '2h'], /host bits are set below the prefix; did you mean 198\.51\.100\.0\/24\?/);
    await cli.fails(['client', 'add', WEB, '198.51.100.7', '--ttl', '5x'], /--ttl "5x": unknown unit "x"/);
    await cli.fails(['allow', '198.51.100.7', '--until', '2020-01-01T00:00:00Z'], /--until "2020-01-01T00:00:00Z": is not in the future/);
    await cli.fails(['client', 'add', WEB, '198.51.100.7'], /say how long the entry lasts/);
    await cli.fails(['alias', 'add', 'o p', '198.51.100.7', '--forever'], /alias name "o p": expected 1-64 letters/);
    await cli.fails(['client', 'add', WEB, '$', '--forever'], /address "\$": not an alias reference.*single quotes/);
    await cli.fails(['client', 'add', 'web', '198.51.100.7', '--forever'], /service "web": expected the service set name/);
    await cli.fails(
      ['client', 'add', WEB, '198.51.100.7', '--forever', '--node', 'nosuch'],
      /--node "nosuch": no such node in the catalog of datacenter dc1; nothing written/,
    );
    assert.equal(await kvRaw(sb), before, 'the KV store is untouched');
  });

  it('alias add, nesting, ls, cycle refusal and rm --all', async () => {
    await cli.ok(['alias', 'add', 'ops', '203.0.113.0/28', '--forever']);
    await cli.ok(['alias', 'add', '$oncall$', '$ops$', '--ttl', '1h']);
    await cli.ok(['alias', 'add', 'ops', '2001:db8:100::3', '--forever', '--dc', 'dc1']);
    await cli.fails(
      ['alias', 'add', 'ops', '$oncall$', '--forever'],
      /\$oncall\$ in \$ops\$: would close a cycle \$ops\$ -> \$oncall\$ -> \$ops\$/,
    );
    const tree = await kvTree(sb, 'befw/$alias$/');
    assert.deepEqual(Object.keys(tree).sort(), [
      'befw/$alias$/$oncall$/$ops$',
      'befw/$alias$/$ops$/203.0.113.0/28',
      'befw/$alias$/dc1/$ops$/2001:db8:100::3',
    ]);
    assert.equal(tree['befw/$alias$/$ops$/203.0.113.0/28'], '-1');
    const ls = await cli.ok(['alias', 'ls', 'ops']);
    assert.match(ls, /^\$ops\$\s+203\.0\.113\.0\/28\s+world\s+never expires$/m);
    assert.match(ls, /^\$ops\$\s+2001:db8:100::3\s+dc dc1\s+never expires$/m);
    assert.ok(!ls.includes('$oncall$'), ls);
    await cli.fails(['alias', 'rm', 'ops'], /\$ops\$: say which member to remove, or add --all/);
    const rm = await cli.ok(['alias', 'rm', 'ops', '--all']);
    assert.match(rm, /^removed alias \$ops\$ at world scope\n {2}deleted befw\/\$alias\$\/\$ops\$\/203\.0\.113\.0\/28 \(was "-1"\)\n$/);
    assert.deepEqual(Object.keys(await kvTree(sb, 'befw/$alias$/')).sort(), [
      'befw/$alias$/$oncall$/$ops$',
      'befw/$alias$/dc1/$ops$/2001:db8:100::3',
    ]);
  });

  it('allow and deny write rules_allow and rules_deny, --rm removes, ls lists', async () => {
    const t0 = nowSec();
    await cli.ok(['deny', '198.51.100.66', '--ttl', '15m']);
    await cli.ok(['deny', '2001:db8::/32', '--forever', '--dc', 'dc1']);
    await cli.ok(['allow', '203.0.113.5', '--until', '2030-06-30T18:00:00Z', '--dc', 'dc1', '--node', 'node1']);
    const tree = await kvTree(sb, 'befw/$ipset$/');
    const deny = Number(tree['befw/$ipset$/rules_deny/198.51.100.66']);
    assert.ok(deny >= t0 + 900 && deny <= nowSec() + 900);
    assert.deepEqual(tree, {
      'befw/$ipset$/rules_deny/198.51.100.66': String(deny),
      'befw/$ipset$/dc1/rules_deny/2001:db8::/32': '-1',
      'befw/$ipset$/dc1/node1/rules_allow/203.0.113.5': String(Date.UTC(2030, 5, 30, 18) / 1000),
    });
    const denyLs = JSON.parse(await cli.ok(['deny', 'ls', '--json'])) as {
      entries: { address: string; scope: { level: string; dc: string | null } }[];
    };
    assert.deepEqual(
      denyLs.entries.map((e) => [e.address, e.scope.level, e.scope.dc]),
      [
        ['198.51.100.66', 'world', null],
        ['2001:db8::/32', 'dc', 'dc1'],
      ],
    );
    assert.match(await cli.ok(['allow', 'ls']), /^rules_allow\s+203\.0\.113\.5\s+node dc1\/node1\s+until 2030-06-30T18:00:00Z/m);
    await cli.fails(['deny', '198.51.100.66', '--rm', '--dc', 'dc1'], /no entry for it in rules_deny at dc dc1 scope/);
    assert.match(await cli.ok(['deny', '198.51.100.66', '--rm']), /^removed: 198\.51\.100\.66 is no longer in rules_deny at world scope/);
    assert.equal((await kvTree(sb, 'befw/$ipset$/'))['befw/$ipset$/rules_deny/198.51.100.66'], undefined);

    // The same as add|rm|ls, like client.
    await cli.ok(['deny', 'add', '198.51.100.67', '--ttl', '1h30m']);
    assert.match(await cli.ok(['deny', 'ls']), /^rules_deny\s+198\.51\.100\.67\s+world\s+until \S+Z \(in 1h(29m\d*s?|30m)\)/m);
    assert.match(await cli.ok(['deny', 'rm', '198.51.100.67']), /^removed: 198\.51\.100\.67 is no longer in rules_deny at world scope/);
    await cli.fails(['deny', 'rm', '198.51.100.67'], /no entry for it in rules_deny at world scope; nothing removed/);
    await cli.fails(['deny', 'rm', '198.51.100.67', '--ttl', '1h'], /unknown option '--ttl' \(try befw deny rm --help\)$/);
  });

  it('service register, ls and deregister; services of others are refused', async () => {
    const reg = await cli.ok(['service', 'register', 'Web', '8080', '--port', '8443/tcp', '--port', '30000:30100/udp', '--enforcing']);
    assert.match(reg, /^registered: service Web \(id Web\) ports 8080\/tcp, 8443\/tcp, 30000:30100\/udp, mode enforcing, set web_tcp_8080/);
    await cli.ok(['service', 'register', 'dns', '53/udp']);
    const services = await sb.agentServices();
    assert.deepEqual([services.Web?.Port, services.Web?.Tags], [8080, ['befw', 'enforcing', '8443/tcp', '30000:30100/udp']]);
    assert.deepEqual([services.dns?.Port, services.dns?.Tags], [53, ['befw', 'udp']]);

    await sb.registerService({ name: 'app', port: 9000, tags: ['web'] });
    await sb.registerService({ name: 'files', port: 8444, tags: ['befw', 'local'] });
    await cli.fails(
      ['service', 'register', 'app', '9001'],
      /service id "app": is registered without the befw tag by someone else; refusing to replace it/,
    );
    await cli.fails(['service', 'deregister', 'app'], /refusing to deregister it/);
    await cli.fails(['service', 'deregister', 'files'], /mirrors a service file \(tag local\)/);
    await cli.fails(['service', 'register', 'x', '99999'], /port "99999": expected PORT or PORT\/PROTO/);

    const ls = JSON.parse(await cli.ok(['service', 'ls', '--json'])) as {
      services: { id: string; set: string; ports: string[]; mode: string; source: string }[];
    };
    assert.deepEqual(
      ls.services.map((s) => [s.id, s.set, s.ports.join(' '), s.mode, s.source]),
      [
        ['Web', 'web_tcp_8080', '8080/tcp 8443/tcp 30000:30100/udp', 'enforcing', 'consul'],
        ['dns', 'dns_udp_53', '53/udp', 'default', 'consul'],
        ['files', 'files_tcp_8444', '8444/tcp', 'default', 'service file'],
      ],
    );
    assert.match(await cli.ok(['service', 'deregister', 'dns']), /^deregistered: service dns \(id dns\)/);
    const after = await sb.agentServices();
    assert.equal(after.dns, undefined);
    assert.deepEqual(after.app?.Tags, ['web'], "someone else's service untouched");
  });

  it("the agent's compiler enforces what the CLI wrote", async () => {
    // Web (enforcing, 8080) is registered above; grant a host, an alias and a deny through the CLI.
    await cli.ok(['client', 'add', WEB, '198.51.100.9', '--ttl', '1h']);
    await cli.ok(['alias', 'add', 'dbas', '198.51.100.8', '--forever']);
    await cli.ok(['client', 'add', WEB, '$dbas$', '--forever', '--dc', 'dc1']);
    await cli.ok(['deny', '203.0.113.66', '--ttl', '1h']);
    const plan = JSON.parse(await cli.ok(['plan', '--json'])) as { sets: { name: string; members: string[] }[] };
    const members = (name: string): string[] => plan.sets.find((s) => s.name === name)?.members ?? [];
    for (const m of ['198.51.100.9/32', '198.51.100.8/32', '198.51.100.0/24', '198.51.100.7/32'])
      assert.ok(members(WEB).includes(m), `${m} in ${members(WEB).join(' ')}`);
    assert.ok(!members(WEB).includes('198.51.100.3/32'), 'the expired entry is not enforced');
    assert.ok(members('web_tcp_8080_v6').includes('2001:db8::7/128'), 'node-level IPv6 entry');
    assert.ok(members('rules_deny').includes('203.0.113.66/32'));
  });

  it('purge-expired: --dry-run deletes nothing; then exactly the expired entries go', async () => {
    const past = String(nowSec() - 60);
    await sb.kvPut(`${S}dc1/${WEB}/198.51.100.20`, past);
    await sb.kvPut('befw/$ipset$/dc9/node7/rules_deny/198.51.100.21', past);
    await sb.kvPut('befw/$alias$/$oncall$/198.51.100.22', past);
    await sb.kvPut(`${S}${WEB}/198.51.100.23`, 'soon'); // invalid: left alone
    const before = await kvTree(sb);
    const expiredKeys = Object.keys(before).filter(
      (k) => /^-?[0-9]+$/.test(before[k] ?? '') && Number(before[k]) >= 0 && Number(before[k]) <= nowSec(),
    );
    assert.ok(expiredKeys.length >= 4, expiredKeys.join(' ')); // the three above and 198.51.100.3

    const raw = await kvRaw(sb);
    const dry = await cli.ok(['purge-expired', '--dry-run']);
    assert.equal(await kvRaw(sb), raw, 'a dry run writes nothing');
    assert.match(dry, new RegExp(`^would delete ${expiredKeys.length} expired entries\n`));
    assert.match(dry, /left 1 invalid key\(s\) alone/);
    for (const k of expiredKeys) assert.ok(dry.includes(k.split('/').pop() ?? '?'), `${k} listed`);

    const real = JSON.parse(await cli.ok(['purge-expired', '--json'])) as {
      dryRun: boolean;
      deleted: { key: string }[];
      kept: unknown[];
      invalid: number;
    };
    assert.deepEqual(
      [real.dryRun, real.deleted.map((d) => d.key).sort(), real.kept, real.invalid],
      [false, [...expiredKeys].sort(), [], 1],
    );
    const afterTree = await kvTree(sb);
    const want = { ...before };
    for (const k of expiredKeys) delete want[k];
    assert.deepEqual(afterTree, want);
    assert.match(await cli.ok(['purge-expired']), /^deleted 0 expired entries\n/);
  });

  it('purge-expired keeps an entry renewed between its read and its delete (check-and-set)', async () => {
    const renewed = `${S}${WEB}/198.51.100.30`;
    const gone = `${S}${WEB}/198.51.100.31`;
    await sb.kvPut(renewed, String(nowSec() - 5));
    await sb.kvPut(gone, String(nowSec() - 5));
    const future = String(nowSec() + 3600);
    // The renewal lands after purge has read the tree and before it deletes.
    const racing = {
      list: async (prefix: string) => {
        const items = await consul.list(prefix);
        await sb.kvPut(renewed, future);
        return items;
      },
      deleteCas: (key: string, modifyIndex: number) => consul.deleteCas(key, modifyIndex),
    };
    const r = await purgeExpired(racing, Date.now(), false);
    assert.deepEqual(
      r.deleted.map((e) => e.key),
      [gone],
    );
    assert.deepEqual(
      r.kept.map((e) => e.key),
      [renewed],
    );
    const tree = await kvTree(sb, S);
    assert.equal(tree[renewed], future, 'the renewal survives');
    assert.equal(tree[gone], undefined);
  });

  it('an add racing another writer fails and leaves the other write in place', async () => {
    const key = `${S}${WEB}/198.51.100.40`;
    const config = parseConfig('', 'test.conf');
    const racing: OperatorConsul = {
      ...consul,
      list: async (prefix: string) => {
        const items = await consul.list(prefix);
        await sb.kvPut(key, '-1'); // someone else grants it forever meanwhile
        return items;
      },
    };
    const ctx = { config, consul: racing, nowMs: Date.now(), json: false };
    await assert.rejects(
      writeEntry(
        ctx,
        { kind: '$service$', scope: WORLD, target: WEB, addr: parseAddrArg('198.51.100.40') },
        { value: nowSec() + 60, expiresAt: null },
      ),
      (err: unknown) =>
        err instanceof AccessError && /changed by someone else between reading and writing; nothing written/.test(err.message),
    );
    assert.equal((await kvTree(sb, S))[key], '-1');
  });

  it('bin/befw itself: output and exit 0 on success, one line and exit 1 on bad input', async () => {
    const okRun = cli.binary(['allow', '203.0.113.77', '--ttl', '10m', '--json']);
    assert.equal(okRun.code, 0, okRun.stderr);
    const written = (JSON.parse(okRun.stdout) as { written: { key: string }[] }).written;
    assert.deepEqual(
      written.map((w) => w.key),
      ['befw/$ipset$/rules_allow/203.0.113.77'],
    );
    expectFailure(cli.binary(['allow', '203.0.113.777', '--ttl', '10m']), /address "203\.0\.113\.777": IPv4 octet 777 is above 255/);
  });

  it('an unreachable Consul is one clear error line', async () => {
    const offline = sb.writeFile('offline.conf', 'address=127.0.0.1:1\nconsul_timeout_sec=2\n');
    await cli.fails(
      ['client', 'ls'],
      /^befw: error: consul kv list befw\/\$service\$\/ failed: .*ECONNREFUSED 127\.0\.0\.1:1/,
      {},
      offline,
    );
    await cli.fails(['client', 'add', WEB, '198.51.100.7', '--ttl', '1h'], /ECONNREFUSED/, {}, offline);
  });
  it('refuses loopback, link-local, unspecified and multicast addresses, and writes nothing', async () => {
    const before = await kvRaw(sb);
    await cli.fails(
      ['deny', '127.0.0.1', '--ttl', '1h'],
      /^befw: error: address "127\.0\.0\.1": is loopback: no node would ever enforce it/,
    );
    await cli.fails(['deny', '127.0.0.0/8', '--forever', '--dc', 'dc1'], /address "127\.0\.0\.0\/8": is loopback/);
    await cli.fails(['deny', '::1', '--ttl', '1h'], /address "::1": is loopback/);
    await cli.fails(['client', 'add', WEB, '169.254.0.9', '--ttl', '1h'], /is link-local/);
    await cli.fails(['allow', '224.0.0.1', '--ttl', '1h'], /is multicast/);
    await cli.fails(['alias', 'add', 'ops', '0.0.0.0', '--forever'], /is the unspecified address/);
    assert.equal(await kvRaw(sb), before, 'the KV store is untouched');
  });

  it('a grant to a set, datacenter or node the catalog does not know is refused with a suggestion; --force writes it', async () => {
    const before = await kvRaw(sb);
    await cli.fails(
      ['client', 'add', 'wbe_tcp_8080', '198.51.100.7', '--ttl', '1h'],
      /^befw: error: no service has set wbe_tcp_8080 \(catalog of dc1\); did you mean web_tcp_8080\? nothing written \(--force writes it anyway\)$/,
    );
    await cli.fails(
      ['client', 'add', WEB, '198.51.100.7', '--ttl', '1h', '--dc', 'dc2'],
      /no datacenter dc2 in the catalog \(known: dc1\); did you mean dc1\? nothing written/,
    );
    await cli.fails(
      ['deny', '198.51.100.66', '--ttl', '1h', '--dc', 'dc1', '--node', 'web-1'],
      /no node web-1 in the catalog of dc1; did you mean web-01\? nothing written/,
    );
    assert.equal(await kvRaw(sb), before, 'nothing written');

    const forced = await cli.ok(['client', 'add', 'wbe_tcp_8080', '198.51.100.7', '--ttl', '1h', '--force']);
    assert.match(forced, /^granted: 198\.51\.100\.7 may reach wbe_tcp_8080, world scope/);
    assert.match(
      forced,
      /\n {2}warning: no service has set wbe_tcp_8080 \(catalog of dc1\); did you mean web_tcp_8080\? written anyway \(--force\)\n$/,
    );
    assert.ok((await kvTree(sb, S))[`${S}wbe_tcp_8080/198.51.100.7`] !== undefined, 'written');
    await cli.ok(['client', 'rm', 'wbe_tcp_8080', '198.51.100.7']);
  });

  it('--dry-run makes every check, prints what it would do, and writes nothing', async () => {
    const key = `${S}${WEB}/198.51.100.91`;
    const before = await kvRaw(sb);
    const add = await cli.ok(['client', 'add', WEB, '198.51.100.91', '--ttl', '1h', '--dry-run']);
    assert.match(
      add,
      /^dry run, nothing written; without --dry-run:\ngranted: 198\.51\.100\.91 may reach web_tcp_8080, world scope, until /,
    );
    assert.match(add, /\n {2}would write befw\/\$service\$\/web_tcp_8080\/198\.51\.100\.91 = [0-9]+\n$/);
    const json = JSON.parse(await cli.ok(['deny', '198.51.100.92', '--forever', '--dry-run', '--json'])) as {
      dryRun: boolean;
      written: { key: string; value: string }[];
    };
    assert.deepEqual([json.dryRun, json.written.map((w) => [w.key, w.value])], [true, [['befw/$ipset$/rules_deny/198.51.100.92', '-1']]]);
    // Checks still refuse on a dry run.
    await cli.fails(['client', 'add', 'wbe_tcp_8080', '198.51.100.91', '--ttl', '1h', '--dry-run'], /did you mean web_tcp_8080\?/);
    assert.equal((await kvTree(sb, S))[key], undefined, 'the key was not written');

    // Removal and service changes too.
    assert.match(
      await cli.ok(['client', 'rm', WEB, '198.51.100.7', '--dry-run']),
      /^dry run, nothing written; without --dry-run:\nrevoked: 198\.51\.100\.7 no longer reaches web_tcp_8080 at world scope\n {2}would delete befw\/\$service\$\/web_tcp_8080\/198\.51\.100\.7 \(was "-1"\)\n$/,
    );
    await cli.ok(['alias', 'rm', 'oncall', '--all', '--dry-run']);
    await cli.ok(['allow', '203.0.113.5', '--rm', '--dc', 'dc1', '--node', 'node1', '--dry-run']);
    await cli.ok(['purge-expired', '--dry-run']);
    const services = await sb.agentServices();
    assert.match(
      await cli.ok(['service', 'register', 'db', '5432', '--dry-run']),
      /^dry run, nothing written; without --dry-run:\nregistered: service db/,
    );
    assert.match(await cli.ok(['service', 'deregister', 'Web', '--dry-run']), /\nderegistered: service Web \(id Web\)/);
    assert.deepEqual(await sb.agentServices(), services, 'no service registered or deregistered');
    assert.equal(await kvRaw(sb), before, 'the KV store is untouched');
  });

  it('/0, and networks wider than cli_world_prefix at world scope, need --yes', async () => {
    const before = await kvRaw(sb);
    await cli.fails(
      ['deny', '0.0.0.0/0', '--ttl', '1h'],
      /^befw: error: address "0\.0\.0\.0\/0": is every IPv4 address; add --yes if you mean it; nothing written \(try befw deny add --help\)$/,
    );
    await cli.fails(['allow', '::/0', '--ttl', '1h', '--dc', 'dc1'], /address "::\/0": is every IPv6 address; add --yes/);
    await cli.fails(
      ['client', 'add', WEB, '10.0.0.0/8', '--ttl', '1h'],
      /address "10\.0\.0\.0\/8": is wider than \/16 at world scope \(cli_world_prefix\)/,
    );
    await cli.fails(['deny', '2001:db8::/32', '--ttl', '1h'], /is wider than \/48 at world scope \(cli_world_prefix6\)/);
    assert.equal(await kvRaw(sb), before, 'nothing written');
    // A datacenter scope is not world; --yes accepts (here as a dry run).
    await cli.ok(['deny', '10.0.0.0/8', '--ttl', '1h', '--dc', 'dc1', '--dry-run']);
    const all = await cli.ok(['deny', '0.0.0.0/0', '--ttl', '1h', '--yes', '--dry-run']);
    assert.match(all, /\n {2}warning: 0\.0\.0\.0\/0 covers protected addresses: 127\.0\.0\.0\/8 \(loopback\)/);
    assert.equal(await kvRaw(sb), before, 'nothing written');
  });

  it('allow and deny say how many nodes they reach and warn when the address is protected', async () => {
    const guarded = sb.writeFile('guarded.conf', ['set.rules_allow=203.0.113.0/24', 'protect=198.51.100.10'].join('\n'));
    const world = await cli.ok(['deny', '203.0.113.7', '--ttl', '1h', '--dry-run'], {}, guarded);
    assert.match(world, /\n {2}reaches every node in dc1 \(2 nodes in the catalog\)\n/);
    assert.match(
      world,
      /\n {2}warning: 203\.0\.113\.7 is protected: 203\.0\.113\.0\/24 \(management network, set\.rules_allow of this config\); nodes never deny it/,
    );
    const one = JSON.parse(
      await cli.ok(['deny', '198.51.100.10', '--ttl', '1h', '--dc', 'dc1', '--node', 'node1', '--json'], {}, guarded),
    ) as { reach: { datacenters: number; nodes: number }; warnings: string[] };
    assert.deepEqual(one.reach, { datacenters: 1, nodes: 1 });
    assert.match(one.warnings.join('\n'), /198\.51\.100\.10 is protected: 198\.51\.100\.10\/32 \(protect= of this config\)/);
    assert.match(
      await cli.ok(['allow', '198.51.100.93', '--ttl', '1h', '--dc', 'dc1'], {}, guarded),
      /reaches every node in dc1 \(2 nodes in the catalog\)/,
    );
    await cli.ok(['deny', '198.51.100.10', '--rm', '--dc', 'dc1', '--node', 'node1']);
    await cli.ok(['allow', '198.51.100.93', '--rm', '--dc', 'dc1']);
  });
  it("--node alone takes the node's datacenter from the catalog; an unknown node is refused even with --force", async () => {
    const t0 = nowSec();
    await cli.ok(['client', 'add', WEB, '198.51.100.61', '--ttl', '1h30m', '--node', 'web-01']);
    const key = `${S}dc1/web-01/${WEB}/198.51.100.61`;
    const value = Number((await kvTree(sb, S))[key]);
    assert.ok(value >= t0 + 5400 && value <= nowSec() + 5400, `${key} = ${value}`);

    const denied = JSON.parse(
      await cli.ok(['deny', 'add', '198.51.100.62', '--until', '+2h', '--node', 'Web-01.example.com', '--json']),
    ) as {
      written: { key: string }[];
    };
    assert.deepEqual(
      denied.written.map((w) => w.key),
      ['befw/$ipset$/dc1/web-01/rules_deny/198.51.100.62'],
    );
    const ls = JSON.parse(await cli.ok(['deny', 'ls', '--node', 'web-01', '--json'])) as { entries: { key: string }[] };
    assert.ok(
      ls.entries.some((e) => e.key === 'befw/$ipset$/dc1/web-01/rules_deny/198.51.100.62'),
      JSON.stringify(ls),
    );
    assert.match(await cli.ok(['deny', 'rm', '198.51.100.62', '--node', 'web-01']), /at node dc1\/web-01 scope/);

    const before = await kvRaw(sb);
    await cli.fails(
      ['client', 'add', WEB, '198.51.100.63', '--ttl', '1h', '--node', 'web-1'],
      /^befw: error: --node "web-1": no such node in the catalog of datacenter dc1; did you mean web-01\? nothing written \(for a node not registered yet, give --dc DC and --force\)$/,
    );
    await cli.fails(['client', 'add', WEB, '198.51.100.63', '--ttl', '1h', '--node', 'web-1', '--force'], /no such node in the catalog/);
    assert.equal(await kvRaw(sb), before, 'nothing written');
    await cli.ok(['client', 'rm', WEB, '198.51.100.61', '--node', 'web-01']);
  });

  it('service register refuses a mode change without --force, and says what changes', async () => {
    await cli.ok(['service', 'register', 'modal', '7000', '--enforcing']);
    await cli.fails(
      ['service', 'register', 'modal', '7000'],
      /service id "modal" is registered in enforcing mode; this changes modal from enforcing to default mode: non-clients would no longer be dropped.*add --enforcing to keep it, or --force to change it; nothing registered$/,
    );
    assert.deepEqual((await sb.agentServices()).modal?.Tags, ['befw', 'enforcing'], 'still enforcing');
    await cli.ok(['service', 'register', 'modal', '7000', '--enforcing']);
    const forced = await cli.ok(['service', 'register', 'modal', '7000', '--force']);
    assert.match(forced, /\n {2}mode changed: changes modal from enforcing to default mode/);
    assert.deepEqual((await sb.agentServices()).modal?.Tags, ['befw']);
    await cli.fails(
      ['service', 'register', 'modal', '7000', '--enforcing'],
      /from default to enforcing mode: every address that is not a client would be dropped/,
    );
    await cli.ok(['service', 'deregister', 'modal']);
  });

  it('errors under --json: one JSON object on stderr, nothing on stdout, exit 2 for usage and 1 for the rest', async () => {
    const usage = await cli.run(['client', 'add', WEB, '198.51.100.7', '--ttl', '1h30x', '--json']);
    assert.deepEqual([usage.code, usage.stdout], [2, '']);
    assert.equal(usage.stderr.split('\n').length, 2, usage.stderr);
    const u = JSON.parse(usage.stderr) as { error: { kind: string; command: string; message: string } };
    assert.deepEqual(
      [u.error.kind, u.error.command, u.error.message],
      ['usage', 'befw client add', '--ttl "1h30x": unknown unit "x"; units are s, m, h, d and w'],
    );
    const refused = await cli.run(['client', 'add', 'wbe_tcp_8080', '198.51.100.7', '--ttl', '1h', '--json']);
    assert.deepEqual([refused.code, refused.stdout], [1, '']);
    const r = JSON.parse(refused.stderr) as { error: { kind: string; message: string } };
    assert.equal(r.error.kind, 'refused');
    assert.match(r.error.message, /did you mean web_tcp_8080\?/);
  });
  it('without -c, BEFW_CONFIG or /etc/befw.conf: the local agent with defaults, said once on stderr', (t) => {
    if (existsSync(SYSTEM_CONFIG_PATH)) return t.skip(`${SYSTEM_CONFIG_PATH} exists on this machine`);
    const env: NodeJS.ProcessEnv = { ...process.env };
    delete env.BEFW_CONFIG;
    const run = (...args: string[]) =>
      spawnSync('ip', ['netns', 'exec', sb.nodeNs, process.execPath, join(ROOT, 'bin/befw'), 'deny', 'ls', ...args], {
        encoding: 'utf8',
        env,
      });
    const r = run();
    assert.equal(r.status, 0, r.stderr);
    assert.equal(
      r.stderr,
      'befw: note: no /etc/befw.conf (and no -c or BEFW_CONFIG): using the local Consul agent at 127.0.0.1:8500 with default settings\n',
    );
    // Under --json stderr stays clean: on a failure it carries exactly one JSON object.
    const j = run('--json');
    assert.equal(j.status, 0, j.stderr);
    assert.equal(j.stderr, '');
    assert.ok(Array.isArray((JSON.parse(j.stdout) as { entries: unknown }).entries), j.stdout);
  });
});
