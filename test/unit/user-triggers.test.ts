/**
 * Users from leases, the parser and responder sides: the built-in dhcp-lease and radius triggers
 * against the lines dnsmasq 2.90 and FreeRADIUS 3.2.1 really printed (see leaseTriggers.ts), and
 * against forged variants; every line a job; the user-lease runner on a fake Consul.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ReactorJob } from '../../src/reactor/queue/job.js';
import { type Sender, SyslogPipeline } from '../../src/reactor/syslog/pipeline.js';
import { type UserLeaseAction, parseReactorConfig } from '../../src/reactor/config/reactorConfig.js';
import { ConfigError } from '../../src/config/config.js';
import { ActionError } from '../../src/reactor/responder/actionTypes.js';
import { UserLeaseRunner, addrIndexKey, macRecordKey } from '../../src/reactor/responder/userLease.js';
import { NetSet } from '../../src/core/netMatch.js';
import type { TxnOp, TxnResult } from '../../src/reactor/responder/consulKv.js';
import { FakeKv, testJob, testPipeline } from '../helpers/reactorFakes.js';

function pipeline(parser: Record<string, unknown> = {}): ReturnType<typeof testPipeline> {
  return testPipeline({
    listeners: [{ protocol: 'tcp', port: 514 }],
    allowedDevices: ['198.51.100.1/32'],
    builtinTriggers: ['dhcp-lease', 'radius'],
    ...parser,
  });
}

const SERVER: Sender = {
  address: '198.51.100.1',
  via: 'direct',
  listener: 'tcp:0.0.0.0:514',
  transport: 'tcp',
  policy: { name: 'allowed', hostnames: null, udpActions: [], events: new Set(['dhcp-lease', 'radius-auth']) },
};
const line = (app: string, msg: string): string => `<30>Dec  1 17:42:06 srv ${app}[18108]: ${msg}`;

/** What the pipeline makes of one line: the job's op, mac, addr, user, lease fields, or null. */
function one(app: string, msg: string): Record<string, string> | null {
  const { p, jobs } = pipeline();
  p.handleText(line(app, msg), SERVER, 1000);
  if (jobs.length === 0) return null;
  const f = jobs[0]!.fields;
  const pick: Record<string, string> = { event: jobs[0]!.event };
  for (const k of ['op', 'mac', 'addr', 'user', 'lease']) if (f[k] !== undefined) pick[k] = f[k];
  return pick;
}

describe('lease triggers', () => {
  test('dnsmasq 2.90 lines as printed (with and without --log-dhcp)', () => {
    const ack = { event: 'dhcp-lease', op: 'DHCPACK', mac: '3a:95:af:d6:5b:7f', addr: '198.51.100.53' };
    assert.deepEqual(one('dnsmasq-dhcp', '29912587 DHCPACK(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f alicepc'), ack);
    assert.deepEqual(one('dnsmasq-dhcp', 'DHCPACK(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f '), ack);
    assert.deepEqual(one('dnsmasq-dhcp', 'DHCPRELEASE(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f '), { ...ack, op: 'DHCPRELEASE' });
    assert.equal(one('dnsmasq-dhcp', 'DHCPOFFER(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f '), null);
    assert.equal(one('dnsmasq-dhcp', '29912587 sent size:  4 option: 51 lease-time  2m'), null);
  });

  test('ISC dhcpd 4.4.3-P1 and Kea 2.2.0 lines as printed', () => {
    const dhcpd = one('dhcpd', 'DHCPACK on 198.51.100.50 to 02:be:f0:00:00:02 (bobpc) via uxds');
    assert.deepEqual(dhcpd, { event: 'dhcp-lease', op: 'DHCPACK', mac: '02:be:f0:00:00:02', addr: '198.51.100.50' });
    assert.equal(one('dhcpd', 'DHCPRELEASE of 198.51.100.50 from 02:be:f0:00:00:02 (bobpc) via uxds (found)')?.op, 'DHCPRELEASE');
    assert.equal(one('dhcpd', 'DHCPOFFER on 198.51.100.50 to 02:be:f0:00:00:02 (bobpc) via uxds'), null);
    const head = 'INFO  [kea-dhcp4.leases.139948014891520] ';
    assert.deepEqual(
      one(
        'kea-dhcp4',
        `${head}DHCP4_LEASE_ALLOC [hwtype=1 02:be:f0:00:00:02], cid=[01:02:be:f0:00:00:02], tid=0x3d1e252b: lease 198.51.100.70 has been allocated for 120 seconds`,
      ),
      { event: 'dhcp-lease', op: 'DHCP4_LEASE_ALLOC', mac: '02:be:f0:00:00:02', addr: '198.51.100.70', lease: '120' },
    );
    assert.deepEqual(
      one(
        'kea-dhcp4',
        `${head}DHCP4_RELEASE [hwtype=1 02:be:f0:00:00:02], cid=[01:02:be:f0:00:00:02], tid=0x29d17906: address 198.51.100.70 was released properly.`,
      ),
      { event: 'dhcp-lease', op: 'DHCP4_RELEASE', mac: '02:be:f0:00:00:02', addr: '198.51.100.70' },
    );
  });

  test('ISC dhcpd and Kea variants (no host name, no log head)', () => {
    assert.deepEqual(one('dhcpd', 'DHCPACK on 198.51.100.53 to 3a:95:af:d6:5b:7f (alicepc) via eth0'), {
      event: 'dhcp-lease',
      op: 'DHCPACK',
      mac: '3a:95:af:d6:5b:7f',
      addr: '198.51.100.53',
    });
    assert.equal(one('dhcpd', 'DHCPRELEASE of 198.51.100.53 from 3a:95:af:d6:5b:7f (alicepc) via eth0 (found)')?.op, 'DHCPRELEASE');
    assert.deepEqual(
      one(
        'kea-dhcp4',
        'DHCP4_LEASE_ALLOC [hwtype=1 3a:95:af:d6:5b:7f], cid=[no info], tid=0x1a2b3c4d: lease 198.51.100.53 has been allocated for 120 seconds',
      ),
      { event: 'dhcp-lease', op: 'DHCP4_LEASE_ALLOC', mac: '3a:95:af:d6:5b:7f', addr: '198.51.100.53', lease: '120' },
    );
  });

  test('FreeRADIUS 3.2.1 Login OK and the shipped linelog accounting wording', () => {
    assert.deepEqual(one('radiusd', 'Auth: (0) Login OK: [alice] (from client localhost port 7 cli 3A-95-AF-D6-5B-7F)'), {
      event: 'radius-auth',
      op: 'Login OK',
      mac: '3A-95-AF-D6-5B-7F',
      user: 'alice',
    });
    assert.deepEqual(one('radiusd', 'Connect: [alice] (did  cli 3A-95-AF-D6-5B-7F port 7 ip 198.51.100.53)'), {
      event: 'radius-auth',
      op: 'Connect',
      mac: '3A-95-AF-D6-5B-7F',
      addr: '198.51.100.53',
      user: 'alice',
    });
    assert.equal(one('radiusd', 'Disconnect: [alice] (did  cli 3A-95-AF-D6-5B-7F port 7 ip 198.51.100.53) 30 seconds')?.op, 'Disconnect');
    assert.equal(one('radiusd', 'Connect: [alice] (did  cli 3A-95-AF-D6-5B-7F port  ip )')?.addr, undefined);
  });

  test('forged and lookalike lines make no job', () => {
    const forged: [string, string][] = [
      // the wrong program: anyone on the allowed device could log as "myapp"
      ['myapp', 'DHCPACK(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f x'],
      ['sshd', 'Auth: (0) Login OK: [alice] (from client localhost port 7 cli 3A-95-AF-D6-5B-7F)'],
      // a user name that tries to carry its own MAC, a rejected login, a password in the name
      [
        'radiusd',
        'Auth: (0) Login OK: [x] (from client a port 1 cli 3A-95-AF-D6-5B-7F)] (from client localhost port 7 cli 11-22-33-44-55-66)',
      ],
      ['radiusd', 'Auth: (1) Login incorrect (No Auth-Type found): [mallory] (from client localhost port 0 cli 3A-95-AF-D6-5B-7F)'],
      ['radiusd', 'Auth: (0) Login OK: [alice/secret] (from client localhost port 7 cli 3A-95-AF-D6-5B-7F)'],
      ['radiusd', 'Auth: (0) Login OK: [alice] (from client localhost port 7)'],
      // text before or after the fixed shape
      ['dnsmasq-dhcp', 'x DHCPACK(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f x'],
      ['dnsmasq-dhcp', 'DHCPACK(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f host extra'],
      ['dhcpd', 'DHCPACK on 198.51.100.53 to 3a:95:af:d6:5b:7f (x) via eth0) via eth1'],
    ];
    for (const [app, msg] of forged) assert.equal(one(app, msg), null, `${app}: ${msg}`);
  });

  test('every line is a job: a renewal and a release right after the ACK are not de-duplicated', () => {
    const { p, jobs } = pipeline();
    const ack = line('dnsmasq-dhcp', 'DHCPACK(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f alicepc');
    p.handleText(ack, SERVER, 1000);
    p.handleText(ack, SERVER, 2000);
    p.handleText(line('dnsmasq-dhcp', 'DHCPRELEASE(uxs0) 198.51.100.53 3a:95:af:d6:5b:7f '), SERVER, 3000);
    assert.deepEqual(
      jobs.map((j) => [j.fields.op, j.lineReceivedMs, j.evidence.spoofable]),
      [
        ['DHCPACK', 1000, false],
        ['DHCPACK', 2000, false],
        ['DHCPRELEASE', 3000, false],
      ],
    );
    p.handleText(ack, { ...SERVER, transport: 'udp' }, 4000);
    assert.deepEqual(jobs[3]?.evidence, { spoofable: true, udpActions: [] });
  });

  test('the lease groups are off unless named (they grant access)', () => {
    const c = parseReactorConfig(
      JSON.stringify({
        queue: { servers: ['127.0.0.1:11300'], hmacKeyFile: '/etc/befw/reactor.key' },
        parser: { listeners: [{ protocol: 'tcp', port: 514 }], allowedDevices: ['198.51.100.1/32'] },
      }),
      'test.json',
    );
    const events = c.parser?.triggers.events ?? [];
    assert.ok(events.includes('ssh-auth-failure'), events.join());
    assert.ok(!events.includes('dhcp-lease') && !events.includes('radius-auth'), events.join());
    assert.throws(
      () =>
        parseReactorConfig(
          JSON.stringify({
            queue: { servers: ['127.0.0.1:11300'], hmacKeyFile: '/k' },
            parser: { listeners: [{ protocol: 'tcp', port: 514 }], allowedDevices: ['198.51.100.1/32'], builtinTriggers: ['dhcp-lease'] },
            responder: {
              actions: { 'dhcp-lease': [{ type: 'user-lease', leaseSec: 600, maxLeaseSec: 60, networks: ['198.51.100.0/24'] }] },
            },
          }),
          'test.json',
        ),
      (err: unknown) => err instanceof ConfigError && /maxLeaseSec/.test(String(err.message)),
    );
  });
});

const ACTION: UserLeaseAction = {
  type: 'user-lease',
  leaseSec: 120,
  loginSec: 86400,
  maxLeaseSec: 3600,
  networks: NetSet.parse(['198.51.100.0/24', '2001:db8:1::/64']),
};
const AT = 1_700_000_000_000;

function leaseJob(fields: Record<string, string>, atMs: number, event = 'dhcp-lease'): ReactorJob {
  return testJob(fields.mac ?? 'x', { event, trigger: 't', fields }, atMs);
}

describe('user-lease runner', () => {
  test('login + ACK grant until the lease end; a new address moves it; release removes it', async () => {
    const kv = new FakeKv();
    const r = new UserLeaseRunner(ACTION, { kv, stateKvPrefix: 'befw-reactor', now: () => AT + 5000 });
    const login = await r.run(leaseJob({ op: 'Login OK', user: 'alice', mac: '3A-95-AF-D6-5B-7F' }, AT, 'radius-auth'));
    assert.equal(login.result, 'recorded');
    const ack = await r.run(leaseJob({ op: 'DHCPACK', mac: '3a:95:af:d6:5b:7f', addr: '198.51.100.53' }, AT + 1000));
    assert.equal(ack.result, 'granted');
    assert.equal(kv.data.get('befw/$alias$/$user.alice$/198.51.100.53')?.value, String(AT / 1000 + 1 + 120));
    const audit = JSON.parse(kv.data.get('befw-audit/$alias$/$user.alice$/198.51.100.53')?.value ?? '{}') as Record<string, unknown>;
    assert.equal(audit.op, 'add');
    assert.equal(audit.by, 'reactor');
    assert.equal(audit.value, String(AT / 1000 + 1 + 120));
    assert.equal((audit.evidence as { event?: string } | undefined)?.event, 'dhcp-lease');
    const moved = await r.run(leaseJob({ op: 'DHCPACK', mac: '3a:95:af:d6:5b:7f', addr: '198.51.100.54' }, AT + 2000));
    assert.equal(moved.result, 'moved');
    assert.equal(kv.data.has('befw/$alias$/$user.alice$/198.51.100.53'), false);
    const tomb = JSON.parse(kv.data.get('befw-audit/$alias$/$user.alice$/198.51.100.53')?.value ?? '{}') as Record<string, unknown>;
    assert.equal(tomb.op, 'rm', 'the moved-away address has a tombstone');
    assert.ok(kv.data.has('befw/$alias$/$user.alice$/198.51.100.54'));
    const rel = await r.run(leaseJob({ op: 'DHCPRELEASE', mac: '3a:95:af:d6:5b:7f', addr: '198.51.100.54' }, AT + 3000));
    assert.equal(rel.result, 'revoked');
    assert.deepEqual(
      [...kv.data.keys()].filter((k) => k.startsWith('befw/')),
      [],
    );
    assert.ok(kv.data.has(macRecordKey('befw-reactor', '3a:95:af:d6:5b:7f')));
  });

  test('a stated lease time is capped; a hostile user name is refused and writes nothing', async () => {
    const kv = new FakeKv();
    const r = new UserLeaseRunner(ACTION, { kv, stateKvPrefix: 'befw-reactor', now: () => AT });
    await r.run(leaseJob({ op: 'Connect', user: 'bob', mac: '11:22:33:44:55:66', addr: '198.51.100.9' }, AT, 'radius-auth'));
    await r.run(leaseJob({ op: 'DHCP4_LEASE_ALLOC', mac: '11:22:33:44:55:66', addr: '198.51.100.9', lease: '99999999' }, AT));
    assert.equal(kv.data.get('befw/$alias$/$user.bob$/198.51.100.9')?.value, String(AT / 1000 + 3600));
    const before = kv.data.size;
    for (const user of ['..', 'a/b', '$x$', 'x@realm', 'a'.repeat(64), 'BOB', 'anonymous']) {
      const out = await r.run(leaseJob({ op: 'Login OK', user, mac: '11:22:33:44:55:66' }, AT + 1, 'radius-auth'));
      assert.equal(out.result, 'refused', user);
    }
    assert.equal(kv.data.size, before);
    for (const op of ['constructor', '__proto__', 'DHCPOFFER'])
      await assert.rejects(
        r.run(leaseJob({ op, mac: '11:22:33:44:55:66', addr: '198.51.100.9', user: 'bob' }, AT)),
        (e: unknown) => e instanceof ActionError && e.permanent,
        op,
      );
    await assert.rejects(
      r.run(leaseJob({ op: 'DHCPACK', mac: 'not-a-mac', addr: '198.51.100.9' }, AT)),
      (e: unknown) => e instanceof ActionError && e.permanent,
    );
    await assert.rejects(
      r.run(leaseJob({ op: 'DHCPACK', mac: '11:22:33:44:55:66', addr: '198.51.100.0/24' }, AT)),
      (e: unknown) => e instanceof ActionError && e.permanent,
    );
  });

  test('a token that may not write befw-audit/ still grants, and the outcome says the record is missing', async () => {
    class NoAuditKv extends FakeKv {
      override async txn(ops: readonly TxnOp[]): Promise<TxnResult> {
        if (ops.some((o) => o.key.startsWith('befw-audit/'))) return { ok: false, errors: ['Permission denied: befw-audit/...'] };
        return super.txn(ops);
      }
    }
    const kv = new NoAuditKv();
    const r = new UserLeaseRunner(ACTION, { kv, stateKvPrefix: 'befw-reactor', now: () => AT });
    await r.run(leaseJob({ op: 'Login OK', user: 'alice', mac: '3a:95:af:d6:5b:7f' }, AT, 'radius-auth'));
    const out = await r.run(leaseJob({ op: 'DHCPACK', mac: '3a:95:af:d6:5b:7f', addr: '198.51.100.53' }, AT + 1));
    assert.equal(out.result, 'granted');
    assert.match(String(out.detail.audit), /not written: Permission denied/);
    assert.ok(kv.data.has('befw/$alias$/$user.alice$/198.51.100.53'));
    assert.equal([...kv.data.keys()].filter((k) => k.startsWith('befw-audit/')).length, 0);
  });

  test('two responders racing on one MAC: the loser reads again, the grant is written once', async () => {
    const kv = new FakeKv();
    const r = new UserLeaseRunner(ACTION, { kv, stateKvPrefix: 'befw-reactor', now: () => AT });
    await r.run(leaseJob({ op: 'Login OK', user: 'alice', mac: '3a:95:af:d6:5b:7f' }, AT, 'radius-auth'));
    kv.beforeTxn = () =>
      kv.put(macRecordKey('befw-reactor', '3a:95:af:d6:5b:7f'), kv.data.get(macRecordKey('befw-reactor', '3a:95:af:d6:5b:7f'))!.value);
    const out = await r.run(leaseJob({ op: 'DHCPACK', mac: '3a:95:af:d6:5b:7f', addr: '198.51.100.53' }, AT + 1));
    assert.equal(out.result, 'granted');
    assert.equal(kv.txns, 3);
  });
});

describe('which device may send which event', () => {
  const config = (extra: Record<string, unknown> = {}, responder?: unknown): ReturnType<typeof parseReactorConfig> =>
    parseReactorConfig(
      JSON.stringify({
        queue: { servers: ['127.0.0.1:11300'], hmacKeyFile: '/etc/befw/reactor.key' },
        parser: {
          listeners: [{ protocol: 'tcp', port: 514 }],
          devices: [
            { name: 'dhcp1', addresses: ['198.51.100.53/32'], events: ['dhcp-lease'] },
            { name: 'radius1', addresses: ['198.51.100.54/32'], events: ['radius-auth'] },
            { name: 'ssh1', addresses: ['198.51.100.60/32'] },
          ],
          builtinTriggers: ['sshd', 'dhcp-lease', 'radius'],
          thresholds: { 'ssh-auth-failure': { maxRetry: 1, findTimeSec: 60 } },
          ...extra,
        },
        ...(responder === undefined ? {} : { responder }),
      }),
      'test.json',
    );

  function feed(from: string, app: string, msg: string): { jobs: ReactorJob[]; problems: string[] } {
    const c = config();
    const jobs: ReactorJob[] = [];
    const problems: string[] = [];
    const p = new SyslogPipeline(
      c.parser!,
      c.protect,
      (j) => jobs.push(j),
      (pr) => problems.push(pr.reason),
      'test:1',
    );
    const policy = c.parser!.devices.lookup(from)!;
    p.handleText(line(app, msg), { address: from, via: 'direct', listener: 'tcp:0.0.0.0:514', transport: 'tcp', policy }, 1000);
    assert.equal(p.counters.refusedEvent, problems.filter((r) => r === 'event-not-allowed').length);
    return { jobs, problems };
  }
  const LOGIN = 'Auth: (0) Login OK: [admin] (from client localhost port 7 cli 3A-95-AF-D6-5B-66)';
  const ACK = 'DHCPACK(uxs0) 198.51.100.66 3a:95:af:d6:5b:66 x';
  const SSH = 'Failed password for root from 203.0.113.5 port 22 ssh2';

  test('the DHCP server cannot log a RADIUS login, nor the RADIUS server a lease', () => {
    const login = feed('198.51.100.53', 'radiusd', LOGIN);
    assert.deepEqual(login, { jobs: [], problems: ['event-not-allowed'] });
    assert.equal(feed('198.51.100.53', 'dnsmasq-dhcp', ACK).jobs.length, 1);
    assert.deepEqual(feed('198.51.100.54', 'dnsmasq-dhcp', ACK), { jobs: [], problems: ['event-not-allowed'] });
    assert.equal(feed('198.51.100.54', 'radiusd', LOGIN).jobs[0]?.event, 'radius-auth');
  });

  test('a device without "events" sends every event but the granting ones (sshd hosts keep working)', () => {
    assert.deepEqual(feed('198.51.100.60', 'radiusd', LOGIN), { jobs: [], problems: ['event-not-allowed'] });
    assert.deepEqual(feed('198.51.100.60', 'dnsmasq-dhcp', ACK), { jobs: [], problems: ['event-not-allowed'] });
    assert.equal(feed('198.51.100.60', 'sshd', SSH).jobs[0]?.event, 'ssh-auth-failure');
    assert.deepEqual(
      feed('198.51.100.53', 'sshd', SSH),
      { jobs: [], problems: ['event-not-allowed'] },
      'a listed device sends only its events',
    );
  });

  test('config: an unknown event, user-lease on a non-granting event, user-lease without networks', () => {
    const bad = (f: () => unknown, re: RegExp): void =>
      assert.throws(f, (e: unknown) => e instanceof ConfigError && re.test(`${e.message} ${JSON.stringify(e)}`), String(re));
    bad(() => config({ devices: [{ name: 'd', addresses: ['198.51.100.53/32'], events: ['dhcp-leases'] }] }), /dhcp-leases/);
    bad(() => config({}, { actions: { 'ssh-auth-failure': [{ type: 'user-lease', networks: ['198.51.100.0/24'] }] } }), /grants access/);
    bad(() => config({}, { actions: { 'dhcp-lease': [{ type: 'user-lease' }] } }), /networks/);
    const ok = config({}, { actions: { 'dhcp-lease': [{ type: 'user-lease', networks: ['198.51.100.0/24'] }] } });
    const a = ok.responder?.actions.get('dhcp-lease')?.[0];
    assert.equal(a?.type === 'user-lease' && a.networks.has('198.51.100.66'), true);
  });
});

/** A JSON value the runner stored (index entry, MAC record, audit record). */
const stored = (text: string): Record<string, unknown> => JSON.parse(text) as Record<string, unknown>;

describe('user-lease: networks and reassigned addresses', () => {
  const A = '3a:95:af:d6:5b:7f';
  const B = '02:be:f0:00:00:02';
  const X = '198.51.100.53';

  test('an address outside the networks is refused and writes nothing', async () => {
    const kv = new FakeKv();
    const r = new UserLeaseRunner(ACTION, { kv, stateKvPrefix: 'befw-reactor', now: () => AT });
    await r.run(leaseJob({ op: 'Login OK', user: 'alice', mac: A }, AT, 'radius-auth'));
    const before = kv.data.size;
    for (const addr of ['203.0.113.1', '198.51.101.1', '2001:db8::', '2001:db8:2::5']) {
      const out = await r.run(leaseJob({ op: 'DHCPACK', mac: A, addr }, AT + 1));
      assert.equal(out.result, 'refused', addr);
      assert.match(String(out.detail.reason), /outside the action's networks \(198\.51\.100\.0\/24, 2001:db8:1::\/64\)/);
      const framed = await r.run(leaseJob({ op: 'Connect', user: 'alice', mac: A, addr }, AT + 1, 'radius-auth'));
      assert.equal(framed.result, 'refused', `framed ${addr}`);
    }
    assert.equal(kv.data.size, before);
    assert.equal((await r.run(leaseJob({ op: 'DHCPACK', mac: A, addr: '2001:db8:1::5' }, AT + 2))).result, 'granted');
  });

  test("a lease of X to another MAC deletes the old MAC's grant for X in the same transaction", async () => {
    const kv = new FakeKv();
    const r = new UserLeaseRunner(ACTION, { kv, stateKvPrefix: 'befw-reactor', now: () => AT + 10_000 });
    await r.run(leaseJob({ op: 'Login OK', user: 'alice', mac: A }, AT, 'radius-auth'));
    await r.run(leaseJob({ op: 'Login OK', user: 'bob', mac: B }, AT, 'radius-auth'));
    assert.equal((await r.run(leaseJob({ op: 'DHCPACK', mac: A, addr: X }, AT + 1000))).result, 'granted');
    assert.equal(stored(kv.data.get(addrIndexKey('befw-reactor', X))!.value).mac, A);
    const txns = kv.txns;
    const out = await r.run(leaseJob({ op: 'DHCPACK', mac: B, addr: X }, AT + 2000));
    assert.equal(kv.txns, txns + 1, 'one transaction');
    assert.equal(out.result, 'granted');
    assert.deepEqual(out.detail.evicted, { mac: A, addr: X, revoke: `befw/$alias$/$user.alice$/${X}` });
    assert.equal(kv.data.has(`befw/$alias$/$user.alice$/${X}`), false);
    assert.ok(kv.data.has(`befw/$alias$/$user.bob$/${X}`));
    assert.equal(stored(kv.data.get('befw-audit/$alias$/$user.alice$/' + X)!.value).op, 'rm');
    assert.equal(stored(kv.data.get(addrIndexKey('befw-reactor', X))!.value).mac, B);
    assert.equal(stored(kv.data.get(macRecordKey('befw-reactor', A))!.value).addr, null);
    // alice's ACK redelivered late changes nothing; a login of alice does not bring X back.
    assert.equal((await r.run(leaseJob({ op: 'DHCPACK', mac: A, addr: X }, AT + 1000))).result, 'stale');
    assert.equal((await r.run(leaseJob({ op: 'Login OK', user: 'alice', mac: A }, AT + 3000, 'radius-auth'))).result, 'recorded');
    assert.equal(kv.data.has(`befw/$alias$/$user.alice$/${X}`), false);
    // bob releases X: the index entry goes with the grant.
    assert.equal((await r.run(leaseJob({ op: 'DHCPRELEASE', mac: B, addr: X }, AT + 4000))).result, 'revoked');
    assert.equal(kv.data.has(addrIndexKey('befw-reactor', X)), false);
  });

  test('an older ACK of X processed after a newer one to another MAC grants nothing', async () => {
    const kv = new FakeKv();
    const r = new UserLeaseRunner(ACTION, { kv, stateKvPrefix: 'befw-reactor', now: () => AT + 10_000 });
    await r.run(leaseJob({ op: 'Login OK', user: 'alice', mac: A }, AT, 'radius-auth'));
    await r.run(leaseJob({ op: 'Login OK', user: 'bob', mac: B }, AT, 'radius-auth'));
    await r.run(leaseJob({ op: 'DHCPACK', mac: A, addr: X }, AT + 5000));
    const late = await r.run(leaseJob({ op: 'DHCPACK', mac: B, addr: X }, AT + 2000));
    assert.equal(late.result, 'recorded');
    assert.equal(kv.data.has(`befw/$alias$/$user.bob$/${X}`), false);
    assert.ok(kv.data.has(`befw/$alias$/$user.alice$/${X}`));
    assert.equal(stored(kv.data.get(addrIndexKey('befw-reactor', X))!.value).mac, A);
  });
});
