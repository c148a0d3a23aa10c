/**
 * The reactor under attack (issue 11), every part a real process in the sandbox's namespaces:
 * `befw syslog` (TCP, UDP, UDP behind PROXY v2), beanstalkd on a unix socket (so this process can
 * put jobs into it as an attacker with access to the queue would), `befw responder`, Consul
 * (bound to the node's management address, so it is a member with a real address) and a VyOS
 * API stand-in. The client namespace plays the devices, and the attacker: it takes the router's
 * and the trusted proxy's addresses to forge datagrams from them.
 *
 * Each attack shows that nothing protected is banned, no interface is touched, and that the real
 * attack beside it is still banned.
 */
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type QueueAddress, parseQueueAddress } from '../../src/reactor/queue/address.js';
import { BeanstalkConnection } from '../../src/reactor/queue/beanstalkConnection.js';
import { type ReactorJob, encodeJob } from '../../src/reactor/queue/job.js';
import { parseJobKeys, seal } from '../../src/reactor/queue/jobAuth.js';
import { buildProxyV2 } from '../../src/reactor/syslog/proxyProtocol.js';
import { type LabProcess, type LogEvent, ReactorLab, labConfig } from '../helpers/reactorLab.js';
import { NODE_MGMT_V4, NODE_V4, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';

const PORT = 5514;
const PROXY_UDP = 5603;
const API_PORT = 8443;
const ROUTER = '198.51.100.254';
const PROXY = '198.51.100.10';
const SERVER = clientV4(3);
const HELPERS = new URL('../helpers/', import.meta.url).pathname;
const B = (s: string): Buffer => Buffer.from(s);
const sshd = (msg: string, host = 'web-01'): string => `<38>Nov 21 02:00:01 ${host} sshd[4242]: ${msg}`;
const failed = (addr: string, user = 'root'): string => `Failed password for ${user} from ${addr} port 47336 ssh2`;
const ifaceDown = (iface: string): string =>
  `<30>Nov 21 02:00:01 edge1 netplugd[1021]: ${iface}: state DOWN flags 0x00001002 BROADCAST,MULTICAST -> 0x00001003 UP,BROADCAST,MULTICAST`;

interface ApiRequest {
  endpoint: string;
  data: { op: string; path?: string[] };
}

describe('the reactor under attack: forged lines, forged jobs, hostile names, floods', () => {
  let sb: Sandbox;
  let lab: ReactorLab;
  let parser: LabProcess;
  let responder: LabProcess;
  let config = '';
  let queue: QueueAddress;
  let raw: Record<string, unknown>;

  before(async () => {
    sb = await Sandbox.create({ consulBind: NODE_MGMT_V4 });
    lab = new ReactorLab(sb);
    lab.addClientAddresses([`${ROUTER}/24`, `${PROXY}/24`]);
    const sock = join(sb.dir, 'beanstalkd.sock');
    sb.spawnIn(sb.nodeNs, 'beanstalkd', ['-l', `unix:${sock}`], 'beanstalkd.log');
    queue = parseQueueAddress(`unix:${sock}`) as QueueAddress;
    for (let i = 0; ; i++) {
      try {
        (await BeanstalkConnection.connect(queue, 500)).close();
        break;
      } catch (err) {
        if (i > 100) throw err;
        await sleep(20);
      }
    }
    const keyFile = sb.writeFile('edge1.key', 'edge1-api-key-0123456789\n');
    chmodSync(keyFile, 0o600);
    sb.spawnIn(
      sb.nodeNs,
      process.execPath,
      [join(HELPERS, 'vyosMock.js'), String(API_PORT), keyFile, sb.writeFile('vyos.json', '[]')],
      'vyos.log',
    );
    await lab.waitListening(sb.nodeNs, API_PORT);
    // What the node's befw agent publishes: its own addresses are never to be banned.
    await sb.kvPut('befw-protect/dc1/node1', JSON.stringify({ v: 1, nets: [`${NODE_V4}/32`, '2001:db8:100::1/128'] }));
    raw = labConfig({
      queue: { servers: [`unix:${sock}`] },
      parser: {
        listeners: [
          { protocol: 'tcp', address: NODE_V4, port: PORT },
          { protocol: 'udp', address: NODE_V4, port: PORT },
          { protocol: 'udp', address: NODE_V4, port: PROXY_UDP, proxyProtocol: true },
        ],
        trustedProxies: [`${PROXY}/32`],
        devices: [
          { name: 'edge1', addresses: [`${ROUTER}/32`], hostnames: ['edge1'] },
          { name: 'servers', addresses: ['198.51.100.0/24'], udpActions: ['ban'] },
        ],
        limits: { maxConnections: 8, maxConnectionsPerDevice: 3, idleTimeoutSec: 2, maxTracked: 200 },
        thresholds: { 'ssh-auth-failure': { maxRetry: 3, findTimeSec: 600 } },
        dedupSec: 600,
      },
      responder: {
        consul: { address: '127.0.0.1:8500' },
        protectedListRefreshSec: 1,
        vyosSweepSec: 1,
        actions: {
          'ssh-auth-failure': [
            { type: 'ban', bantimeSec: 4 },
            { type: 'vyos-address-group', devices: ['edge1'], group: 'BEFW-BLOCK', ipv6Group: 'BEFW-BLOCK6' },
          ],
          'iface-down': [{ type: 'vyos-disable-interface' }],
        },
        devices: {
          edge1: { url: `http://127.0.0.1:${API_PORT}`, keyFile, addresses: [`${ROUTER}/32`], interfaces: ['eth0', 'eth1'], timeoutSec: 2 },
        },
      },
    });
    config = lab.writeConfig('reactor.json', raw);
    parser = await lab.parser(config, 'parser.log');
    responder = await lab.responder(config, 'responder.log');
  });

  after(async () => {
    for (const p of [parser, responder]) if (p !== undefined) await p.stop();
    if (sb !== undefined) await sb.destroy();
  });

  const requests = (): ApiRequest[] => lab.events('vyos.log').filter((e) => e.event === 'request') as unknown as ApiRequest[];
  const about = (subject: string) => (e: LogEvent) => (e.job as { subject?: string } | undefined)?.subject === subject;
  const banned = (subject: string, timeoutMs = 8000): Promise<LogEvent> =>
    responder.waitFor(
      (e) => e.event === 'action' && e.action === 'ban' && e.result === 'banned' && about(subject)(e),
      timeoutMs,
      `a ban of ${subject}`,
    );
  const denyKeys = async (): Promise<string[]> => {
    const r = await sb.consul('GET', '/v1/kv/befw/$ipset$/rules_deny/?keys');
    return r.status === 404 ? [] : (JSON.parse(r.body) as string[]);
  };
  const tcp = (source: string, lines: readonly string[]): void => {
    const r = lab.send(sb.clientNs, { proto: 'tcp', host: NODE_V4, port: PORT, source, payloads: [B(`${lines.join('\n')}\n`)] });
    assert.equal(r.code, 0, r.stderr);
  };
  const udp = (source: string, lines: readonly string[], port = PORT, header?: Buffer): void => {
    const payloads = lines.map((l) => (header === undefined ? B(l) : Buffer.concat([header, B(l)])));
    const r = lab.send(sb.clientNs, { proto: 'udp', host: NODE_V4, port, source, payloads });
    assert.equal(r.code, 0, r.stderr);
  };
  const queued = (subject: string): boolean => parser.events().some((e) => e.event === 'job-queued' && about(subject)(e));
  const stats = (): Promise<LogEvent> => {
    const seen = parser.events().filter((e) => e.event === 'stats').length;
    return parser
      .waitFor(() => parser.events().filter((e) => e.event === 'stats').length > seen + 1, 5000, 'fresh parser stats')
      .then(
        () =>
          parser
            .events()
            .filter((e) => e.event === 'stats')
            .pop() as LogEvent,
      );
  };

  it('a forged datagram from the router (direct, or behind a forged trusted proxy) or a job put into beanstalkd disables nothing', async () => {
    udp(ROUTER, [ifaceDown('eth1')]);
    udp(PROXY, [ifaceDown('eth1')], PROXY_UDP, buildProxyV2(ROUTER, NODE_V4, 514, PROXY_UDP, { dgram: true }));
    // The same as a job straight into the queue, claiming TCP from the router: not signed.
    const forged: ReactorJob = {
      v: 2,
      id: 'forged-iface-0001',
      event: 'iface-down',
      trigger: 'iface-down',
      subject: 'eth1',
      fields: { iface: 'eth1' },
      count: 1,
      device: { address: ROUTER, hostname: 'edge1', via: 'direct', listener: `tcp:${NODE_V4}:${PORT}`, name: 'edge1', transport: 'tcp' },
      evidence: { spoofable: false, udpActions: [] },
      firstSeenMs: Date.now(),
      lineReceivedMs: Date.now(),
      queuedMs: Date.now(),
      parser: 'attacker:1',
      sample: 'x',
    };
    const c = await BeanstalkConnection.connect(queue, 1000);
    await c.use('befw-iface-down');
    await c.put(encodeJob(forged), { ttrSec: 10 });
    c.close();
    await responder.waitFor(
      (e) => e.event === 'action-skipped' && e.action === 'vyos-disable-interface',
      5000,
      'the forged datagrams skipped',
    );
    await responder.waitFor((e) => e.event === 'job-rejected' && e.reason === 'unsigned', 5000, 'the injected job rejected');
    assert.equal(
      requests().some((r) => r.endpoint === '/configure'),
      false,
      'no interface touched',
    );
    // Both datagrams were marked UDP, the proxied one too.
    const jobs = parser.events().filter((e) => e.event === 'job-queued' && about('eth1')(e));
    assert.ok(jobs.every((j) => (j.job as { device: { transport: string } }).device.transport === 'udp'));

    // The router itself, over TCP: the forged datagrams did not silence it.
    tcp(ROUTER, [ifaceDown('eth1')]);
    const done = await responder.waitFor(
      (e) => e.event === 'action' && e.action === 'vyos-disable-interface' && about('eth1')(e),
      5000,
      'eth1 disabled',
    );
    assert.equal(done.result, 'disabled');
    // ...but never the interface the router is reached by.
    tcp(ROUTER, [ifaceDown('eth0')]);
    const mgmt = await responder.waitFor((e) => e.event === 'action' && about('eth0')(e), 5000, 'eth0 refused');
    assert.equal(mgmt.result, 'refused');
    assert.deepEqual(
      requests()
        .filter((r) => r.endpoint === '/configure')
        .map((r) => r.data.path?.join(' ')),
      ['interfaces ethernet eth1 disable'],
    );
  });

  it('forged bans of the infrastructure are never written: the node, the Consul server, the trusted proxy, the router, loopback', async () => {
    const infra = [NODE_V4, NODE_MGMT_V4, PROXY, ROUTER, '127.0.0.1'];
    const attacker = '198.51.100.77';
    tcp(
      SERVER,
      [...infra, attacker].flatMap((a) => [1, 2, 3].map(() => sshd(failed(a)))),
    );
    await banned(attacker);
    const dropped = async (a: string, why: RegExp): Promise<void> => {
      const e = await responder.waitFor((x) => x.event === 'protected-subject' && about(a)(x), 5000, `${a} dropped`);
      assert.match(String(e.reason), why);
    };
    await dropped(NODE_V4, /published by node dc1\/node1/);
    await dropped(NODE_MGMT_V4, /Consul server node1/);
    for (const a of [PROXY, ROUTER, '127.0.0.1']) assert.equal(queued(a), false, `${a} is never even queued`);
    assert.deepEqual(await denyKeys(), [`befw/$ipset$/rules_deny/${attacker}`]);
    assert.deepEqual(
      requests()
        .filter((r) => r.endpoint === '/configure' && r.data.path?.[2] === 'address-group')
        .map((r) => r.data.path?.[5]),
      [attacker],
    );
  });

  it('a published list that does not parse stops bans until it is fixed (never "nothing protected")', async () => {
    await sb.kvPut('befw-protect/dc1/node7', 'not json');
    try {
      await sleep(1200); // the list is read every protectedListRefreshSec (1 s here)
      const attacker = '198.51.100.78';
      tcp(
        SERVER,
        [1, 2, 3].map(() => sshd(failed(attacker))),
      );
      const held = await responder.waitFor((e) => e.event === 'job-released' && about(attacker)(e), 5000, 'the job held back');
      assert.match(String(held.error), /protected list.*node7/);
      assert.equal((await denyKeys()).includes(`befw/$ipset$/rules_deny/${attacker}`), false);
      await responder.waitFor((e) => e.event === 'protected-list-bad-value' && e.key === 'befw-protect/dc1/node7', 1000, 'reported');
      await sb.kvPut('befw-protect/dc1/node7', JSON.stringify({ v: 1, nets: ['192.0.2.0/24'] }));
      await banned(attacker, 10_000);
    } finally {
      await sb.kvPut('befw-protect/dc1/node7', JSON.stringify({ v: 1, nets: ['192.0.2.0/24'] }));
    }
  });

  it('SSH user names holding "from ADDR port N" never get that address banned', async () => {
    const victim = '192.0.2.77';
    const attacker = '198.51.100.79';
    lab.logger(
      sb.clientNs,
      ['-T', '-n', NODE_V4, '-P', String(PORT), '--rfc3164', '-t', 'sshd', '--id=4242'],
      [
        failed(attacker, `invalid user x from ${victim} port 1`),
        `Invalid user x from ${victim} port 1 from ${attacker} port 47336`,
        failed(attacker, `invalid user "x from ${victim} port 1 ssh2"`),
      ],
    );
    await banned(attacker);
    assert.equal(queued(victim), false);
    assert.equal(
      (await denyKeys()).some((k) => k.endsWith(victim)),
      false,
    );
  });

  it('"message repeated" from another program counts for nothing; sshd\'s own counts at most maxRepeat', async () => {
    lab.logger(
      sb.clientNs,
      ['-T', '-n', NODE_V4, '-P', String(PORT), '--rfc3164', '-t', 'nginx'],
      [`message repeated 999999999 times: [ Nov 21 02:00:01 web-01 sshd[1]: ${failed('198.51.100.80')}]`],
    );
    lab.logger(
      sb.clientNs,
      ['-T', '-n', NODE_V4, '-P', String(PORT), '--rfc3164', '-t', 'sshd', '--id=4242'],
      [`message repeated 999999999 times: [ ${failed('198.51.100.81')}]`],
    );
    const job = (await banned('198.51.100.81')).job as { count: number };
    assert.equal(job.count, 10, 'capped at maxRepeat');
    const s = await stats();
    assert.ok(Number((s.problems as Record<string, number>)['repeat-program-mismatch']) >= 1);
    assert.equal(queued('198.51.100.80'), false);
  });

  it('jobs put into beanstalkd by anyone are buried with the reason, shown by `befw queue peek --buried`', async () => {
    const job: ReactorJob = {
      v: 2,
      id: 'forged-ssh-000001',
      event: 'ssh-auth-failure',
      trigger: 'sshd-failed-password',
      subject: '198.51.100.82',
      fields: {},
      count: 5,
      device: { address: SERVER, hostname: 'web-01', via: 'direct', listener: `tcp:${NODE_V4}:${PORT}`, name: 'servers', transport: 'tcp' },
      evidence: { spoofable: false, udpActions: [] },
      firstSeenMs: Date.now(),
      lineReceivedMs: Date.now(),
      queuedMs: Date.now(),
      parser: 'attacker:1',
      sample: 'x',
    };
    const c = await BeanstalkConnection.connect(queue, 1000);
    await c.use('befw-ssh-auth-failure');
    await c.put(encodeJob(job), { ttrSec: 10 });
    await c.put(seal(parseJobKeys('an-attackers-own-key-0123456789abcdef'), 'job', 'befw-ssh-auth-failure', encodeJob(job)), {
      ttrSec: 10,
    });
    c.close();
    await responder.waitFor(
      () => responder.events().filter((e) => e.event === 'job-rejected').length >= 3,
      5000,
      'three rejections (with the one from the first test)',
    );
    const peek = sb.befw(['queue', 'peek', '--buried', '-c', config, '--event', 'ssh-auth-failure']);
    assert.equal(peek.code, 0, peek.stderr);
    assert.match(peek.stdout, /befw-ssh-auth-failure: 2 buried/);
    assert.match(peek.stdout, /UNSIGNED, event ssh-auth-failure, subject 198\.51\.100\.82/);
    assert.match(peek.stdout, /: unsigned: no signature/);
    assert.equal(
      (await denyKeys()).some((k) => k.endsWith('198.51.100.82')),
      false,
    );
  });

  it('a job resting on UDP lines does only what the device allows for UDP (here: ban, not the router)', async () => {
    const attacker = '198.51.100.83';
    udp(
      SERVER,
      [1, 2, 3].map(() => sshd(failed(attacker))),
    );
    await banned(attacker);
    const skipped = await responder.waitFor(
      (e) => e.event === 'action-skipped' && e.action === 'vyos-address-group' && about(attacker)(e),
      5000,
      'the router action skipped',
    );
    assert.match(String(skipped.reason), /allows only \[ban\] for UDP/);
  });

  it('one device cannot take every connection: a per-device limit, and idleness counted in messages, not bytes', async () => {
    const flood = lab.sendAsync(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: PORT,
      source: clientV4(4),
      payloads: [B('<38>')],
      connections: 10,
      holdMs: 4000,
      trickleMs: 200,
    });
    await sleep(300);
    const attacker = '198.51.100.84';
    tcp(
      clientV4(5),
      [1, 2, 3].map(() => sshd(failed(attacker))),
    );
    await banned(attacker);
    const r = JSON.parse((await flood).stdout) as { connected: number; closedByPeer: number };
    assert.equal(r.closedByPeer, 10, `all ten closed by the parser (7 at once, 3 idle): ${JSON.stringify(r)}`);
    const s = await stats();
    assert.ok(Number((s.problems as Record<string, number>)['too-many-connections']) >= 7, JSON.stringify(s.problems));
  });

  it("a flood of decoy subjects does not evict a real attacker's count", async () => {
    const attacker = '198.51.100.85';
    tcp(clientV4(6), [sshd(failed(attacker)), sshd(failed(attacker))]);
    const decoys = Array.from({ length: 5000 }, (_, i) => sshd(failed(`2001:db8:dec0::${i.toString(16)}`)));
    tcp(clientV4(6), decoys);
    tcp(clientV4(6), [sshd(failed(attacker))]);
    const job = (await banned(attacker)).job as { count: number };
    assert.equal(job.count, 3);
    const s = await stats();
    assert.ok(Number(s.trackedEvicted) >= 4500, `evicted ${String(s.trackedEvicted)}`);
  });

  it("unban: the deny, the router entry and the parsers' de-duplication go; the next ban is a repeat unless --forget", async () => {
    const attacker = '198.51.100.86';
    tcp(
      SERVER,
      [1, 2, 3].map(() => sshd(failed(attacker))),
    );
    await banned(attacker);
    await responder.waitFor((e) => e.event === 'action' && e.action === 'vyos-address-group' && about(attacker)(e), 5000, 'router entry');
    const out = sb.befw(['reactor', 'unban', attacker, '-c', config]);
    assert.equal(out.code, 0, out.stdout + out.stderr);
    assert.match(out.stdout, new RegExp(`ok  consul: deny: deleted befw/\\$ipset\\$/rules_deny/${attacker.replace(/\./g, '\\.')}`));
    assert.match(out.stdout, /ok {2}vyos: address groups: edge1 address-group BEFW-BLOCK: removed/);
    assert.match(out.stdout, /ok {2}parsers: de-duplication: told 1 parser/);
    assert.equal((await denyKeys()).includes(`befw/$ipset$/rules_deny/${attacker}`), false);
    await parser.waitFor((e) => e.event === 'forgotten' && e.subject === attacker, 5000, 'the parser forgot');
    // Back at once: reported again (no 600 s de-duplication), banned as a repeat offender.
    tcp(
      SERVER,
      [1, 2, 3].map(() => sshd(failed(attacker))),
    );
    const again = await responder.waitFor(
      (e) => e.event === 'action' && e.action === 'ban' && e.result === 'banned' && about(attacker)(e) && e.offence === 2,
      8000,
      'banned again, offence 2',
    );
    assert.equal(again.bantimeSec, 8);
    const forget = sb.befw(['reactor', 'unban', attacker, '--forget', '-c', config]);
    assert.equal(forget.code, 0, forget.stdout + forget.stderr);
    assert.match(forget.stdout, /history forgotten/);
    const rec = JSON.parse((await sb.consul('GET', `/v1/kv/befw-reactor/offences/${attacker}?raw`)).body) as { count: number };
    assert.equal(rec.count, 0);
  });

  it('address-group entries expire with the ban: the responder takes them out of the router', async () => {
    const e = await responder.waitFor((x) => x.event === 'vyos-entry-expired' && x.address === '198.51.100.77', 10_000, '.77 expired');
    assert.deepEqual(e.devices, { 'edge1 address-group BEFW-BLOCK': 'removed' });
    assert.ok(requests().some((r) => r.endpoint === '/configure' && r.data.op === 'delete' && r.data.path?.[5] === '198.51.100.77'));
  });

  it('befw syslog --test explains a line; --check opens every file the config names and checks modes', () => {
    const t = sb.befw([
      'syslog',
      '-c',
      config,
      '--device',
      SERVER,
      '--test',
      sshd(failed('198.51.100.9', 'invalid user x from 192.0.2.77 port 1')),
    ]);
    assert.equal(t.code, 0, t.stderr);
    assert.match(t.stdout, /trigger sshd-failed-password: event ssh-auth-failure, subject 198\.51\.100\.9 \(a job at 3 within 600 s\)/);
    assert.match(t.stdout, /job \(tube befw-ssh-auth-failure\): \{"v":2/);
    const ok = sb.befw(['responder', '-c', config, '--check']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /warning: .*a ban of 4 s is shorter than \/parser\/dedupSec \(600 s\)/);
    assert.match(ok.stdout, /ok \(.*files checked\)/);
    const keyFile = String((raw.queue as { hmacKeyFile: string }).hmacKeyFile);
    chmodSync(keyFile, 0o644);
    try {
      const open = sb.befw(['syslog', '-c', config, '--check']);
      assert.equal(open.code, 1);
      assert.match(open.stdout, /error: job signing keys .*: readable by group or others/);
    } finally {
      chmodSync(keyFile, 0o600);
    }
    const missing = lab.writeConfig('missing.json', { ...raw, queue: { ...(raw.queue as object), hmacKeyFile: join(sb.dir, 'nope.key') } });
    const m = sb.befw(['responder', '-c', missing, '--check']);
    assert.equal(m.code, 1);
    assert.match(m.stdout, /error: job signing keys .*nope\.key: cannot read/);
  });

  it('past the ban budget a responder stops acting, alerts and holds the jobs for an operator', async () => {
    await responder.stop();
    const tight = lab.writeConfig('budget.json', { ...raw, responder: { ...(raw.responder as object), banBudgetPerMinute: 1 } });
    responder = await lab.responder(tight, 'responder-budget.log');
    tcp(
      SERVER,
      ['198.51.100.87', '198.51.100.88'].flatMap((a) => [1, 2, 3].map(() => sshd(failed(a)))),
    );
    await responder.waitFor((e) => e.event === 'ban-budget-exceeded', 8000, 'the alert');
    await responder.waitFor((e) => e.event === 'job-held', 5000, 'a job held');
    const peek = sb.befw(['queue', 'peek', '--buried', '-c', config, '--event', 'ssh-auth-failure']);
    assert.match(peek.stdout, /3 buried/);
    const keys = await denyKeys();
    assert.equal(['198.51.100.87', '198.51.100.88'].filter((a) => keys.includes(`befw/$ipset$/rules_deny/${a}`)).length, 1);
  });
});
