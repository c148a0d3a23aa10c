/**
 * The syslog reactor end to end, every part a real process in the sandbox's namespaces:
 *
 *   client ns: logger (the device, 198.51.100.2)
 *     --TCP--> node ns: HAProxy 198.51.100.1:5140 (send-proxy / send-proxy-v2, round robin)
 *              --> two `befw syslog` parsers (PROXY v1 and v2, trusted 127.0.0.1)
 *              --> beanstalkd --> two `befw responder`s --> Consul (dev agent)
 *              --> befw agent --> ipset/iptables in the node namespace
 *   client ns: TCP probes from the attacker's address.
 *
 * A burst of failed logins is split over two connections, so each parser sees enough of it to
 * make its own job: the two responders race on the same attacker and exactly one ban is written.
 */
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, NODE_V4, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';
import { type LabProcess, ReactorLab, labConfig } from '../helpers/reactorLab.js';

const WEB = 8080;
const HAPROXY_PORT = 5140;
const PARSER_PORTS = [5141, 5142];
const DEVICE = clientV4(2); // the client namespace's primary address: logger's source
const ATTACKER = clientV4(5);
const QUIET = clientV4(6);
const MGMT = '203.0.113.5';

function failedLogin(addr: string, user = 'root'): string {
  return `Failed password for ${user} from ${addr} port 47336 ssh2`;
}

describe('syslog reactor end to end (logger -> HAProxy -> 2 parsers -> beanstalkd -> 2 responders -> Consul -> agent)', () => {
  let sb: Sandbox;
  let lab: ReactorLab;
  let agent: AgentProcess;
  const parsers: LabProcess[] = [];
  const responders: LabProcess[] = [];
  let config = '';

  before(async () => {
    sb = await Sandbox.create();
    lab = new ReactorLab(sb);
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw'] });
    await sb.listen([WEB]);
    const befwConf = sb.writeFile(
      'befw.conf',
      [`services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, `state=${sb.dir}/state.bin`, 'set.rules_allow=203.0.113.0/28'].join('\n'),
    );
    agent = sb.startAgent(befwConf);
    await lab.beanstalkd(11300);
    config = lab.writeConfig(
      'reactor.json',
      labConfig({
        protect: ['203.0.113.0/28'],
        parser: {
          listeners: PARSER_PORTS.map((port) => ({ protocol: 'tcp', address: '127.0.0.1', port, proxyProtocol: true })),
          trustedProxies: ['127.0.0.1/32'],
          allowedDevices: ['198.51.100.0/24'],
          thresholds: { 'ssh-auth-failure': { maxRetry: 3, findTimeSec: 60 } },
          dedupSec: 60,
        },
        responder: {
          consul: { address: '127.0.0.1:8500' },
          actions: {
            'ssh-auth-failure': [{ type: 'ban', set: 'rules_deny', scope: 'world', bantimeSec: 600, factor: 2, maxBantimeSec: 86400 }],
          },
        },
      }),
    );
    // Each parser listens on its own port: one config per parser, differing only there.
    for (const [i, port] of PARSER_PORTS.entries()) {
      const own = JSON.parse(sb.log('reactor.json')) as { parser: { listeners: unknown[] } };
      own.parser.listeners = [{ protocol: 'tcp', address: '127.0.0.1', port, proxyProtocol: true }];
      parsers.push(await lab.parser(lab.writeConfig(`parser-${i}.json`, own), `parser-${i}.log`));
    }
    for (let i = 0; i < 2; i++) responders.push(await lab.responder(config, `responder-${i}.log`));
    await lab.haproxy(
      [
        'global',
        '  maxconn 1000',
        'defaults',
        '  mode tcp',
        '  timeout connect 2s',
        '  timeout client 60s',
        '  timeout server 60s',
        'frontend syslog',
        `  bind ${NODE_V4}:${HAPROXY_PORT}`,
        '  default_backend parsers',
        'backend parsers',
        '  balance roundrobin',
        // One parser gets PROXY v1, the other v2, both as HAProxy itself writes them.
        ...PARSER_PORTS.map((p, i) => `  server p${i} 127.0.0.1:${p} ${i === 0 ? 'send-proxy' : 'send-proxy-v2'} check`),
        '',
      ].join('\n'),
      HAPROXY_PORT,
    );
    const deadline = Date.now() + 15_000;
    while (!agent.events().some((e) => e.event === 'applied')) {
      if (Date.now() > deadline) throw new Error(`agent never applied:\n${sb.log('agent.log')}`);
      await sleep(50);
    }
  });

  after(async () => {
    for (const p of [...parsers, ...responders]) await p.stop();
    if (agent !== undefined) await agent.stop();
    if (sb !== undefined) await sb.destroy();
  });

  const logger = (format: '--rfc3164' | '--rfc5424', lines: string[]): void =>
    lab.logger(sb.clientNs, ['-T', '-n', NODE_V4, '-P', String(HAPROXY_PORT), format, '-t', 'sshd', '--id=2755', '-p', 'auth.info'], lines);

  it('bans a brute-forcing address on the node: refused, exactly one ban, the device identified', async () => {
    assert.equal(await sb.probe(ATTACKER, NODE_V4, WEB), 'open', 'the attacker reaches the service before the burst');
    // Two connections, so HAProxy's round robin gives one to each parser; each crosses the threshold.
    logger('--rfc3164', [failedLogin(ATTACKER), failedLogin(ATTACKER, 'invalid user admin'), failedLogin(ATTACKER)]);
    logger('--rfc5424', [failedLogin(ATTACKER, 'oracle'), failedLogin(ATTACKER), failedLogin(ATTACKER, 'invalid user test')]);
    await sb.waitFor('blocked', ATTACKER, NODE_V4, WEB, 10_000);
    assert.equal(await sb.probe(ATTACKER, NODE_V4, WEB), 'refused', 'rules_deny rejects');
    assert.equal(await sb.probe(QUIET, NODE_V4, WEB), 'open', 'another client is untouched');

    // Both parsers made a job, each naming the device that sent the lines (not HAProxy).
    const queued = await Promise.all(parsers.map((p) => p.waitFor((e) => e.event === 'job-queued', 5000, 'job-queued')));
    const vias = new Set<string>();
    for (const q of queued) {
      const job = q.job as { subject: string; device: { address: string; hostname: string; via: string } };
      assert.equal(job.subject, ATTACKER);
      assert.equal(job.device.address, DEVICE, 'the device is the PROXY header source');
      vias.add(job.device.via);
      // logger writes the short name in RFC 3164 and gethostname()'s answer in RFC 5424.
      assert.ok([hostname(), hostname().split('.')[0]].includes(job.device.hostname), job.device.hostname);
    }
    assert.deepEqual([...vias].sort(), ['proxy-v1', 'proxy-v2']);

    // Both jobs acted on: one ban, the other found it in place.
    const actions = async (): Promise<{ result: string; key: string; expiry: number }[]> =>
      responders.flatMap((r) => r.events()).filter((e) => e.event === 'action') as unknown as {
        result: string;
        key: string;
        expiry: number;
      }[];
    const end = Date.now() + 5000;
    while ((await actions()).length < 2 && Date.now() < end) await sleep(20);
    const results = (await actions()).map((a) => a.result).sort();
    assert.deepEqual(results, ['already-banned', 'banned']);

    const keys = JSON.parse((await sb.consul('GET', '/v1/kv/befw/$ipset$/rules_deny/?keys')).body) as string[];
    assert.deepEqual(keys, [`befw/$ipset$/rules_deny/${ATTACKER}`], 'exactly one ban written');
    const banned = (await actions()).find((a) => a.result === 'banned');
    const value = JSON.parse((await sb.consul('GET', `/v1/kv/befw/$ipset$/rules_deny/${ATTACKER}`)).body) as {
      Value: string;
      ModifyIndex: number;
      CreateIndex: number;
    }[];
    assert.equal(Buffer.from(value[0]?.Value ?? '', 'base64').toString(), String(banned?.expiry));
    assert.equal(value[0]?.ModifyIndex, value[0]?.CreateIndex, 'written once, never rewritten');
    const rec = JSON.parse((await sb.consul('GET', `/v1/kv/befw-reactor/offences/${ATTACKER}`)).body) as { Value: string }[];
    const offence = JSON.parse(Buffer.from(rec[0]?.Value ?? '', 'base64').toString()) as { count: number; device: { address: string } };
    assert.equal(offence.count, 1);
    assert.equal(offence.device.address, DEVICE);

    // Every action logs the time from the log line to the action.
    for (const e of responders.flatMap((r) => r.events()).filter((x) => x.event === 'action'))
      assert.equal(typeof e.lineToActionMs, 'number');
  });

  it('leaves addresses under the threshold, on the ignore list, or unparseable alone', async () => {
    logger('--rfc3164', [failedLogin(QUIET), failedLogin(QUIET)]); // 2 < maxRetry 3
    logger('--rfc3164', [failedLogin(MGMT), failedLogin(MGMT), failedLogin(MGMT), failedLogin(MGMT)]);
    logger('--rfc3164', ['Failed password for root from 999.1.1.1 port 1 ssh2', 'Failed password for root from 1.2.3.4;rm port 1 ssh2']);
    // A marker burst proves the lines above have been through the pipeline.
    const marker = clientV4(7);
    logger('--rfc3164', [failedLogin(marker), failedLogin(marker), failedLogin(marker)]);
    await sb.waitFor('blocked', marker, NODE_V4, WEB, 10_000);
    assert.equal(await sb.probe(QUIET, NODE_V4, WEB), 'open');
    const keys = JSON.parse((await sb.consul('GET', '/v1/kv/befw/$ipset$/rules_deny/?keys')).body) as string[];
    assert.deepEqual(keys.sort(), [`befw/$ipset$/rules_deny/${ATTACKER}`, `befw/$ipset$/rules_deny/${marker}`].sort());
    // Counted by the parsers: the ignored address and the bad subject.
    await sleep(1100); // one stats interval
    const stats = parsers.map(
      (p) =>
        p
          .events()
          .filter((e) => e.event === 'stats')
          .pop() ?? {},
    );
    const sum = (k: string): number => stats.reduce((n, s) => n + Number(s[k] ?? 0), 0);
    assert.ok(sum('ignored') >= 4, `ignored: ${sum('ignored')}`);
    assert.ok(sum('badSubject') >= 1, `badSubject: ${sum('badSubject')}`);
    // HAProxy's health checks (every 2 s, connect and reset) are not counted as bad input.
    for (const s of stats) {
      const problems = (s.problems ?? {}) as Record<string, number>;
      assert.deepEqual(
        Object.keys(problems).filter((k) => k !== 'bad-subject'),
        [],
        JSON.stringify(problems),
      );
    }
    for (const p of [...parsers, ...responders]) assert.equal(p.proc.exitCode, null, `${p.logName} still running`);
  });

  it('shows the queue to operators: nothing left ready, reserved or buried', () => {
    const stats = lab.queueStats(config);
    assert.equal(stats[0]?.error, null);
    const tube = stats[0]?.tubes.find((t) => t.tube === 'befw-ssh-auth-failure');
    assert.ok(tube !== undefined, JSON.stringify(stats));
    assert.equal(tube.ready + tube.reserved + tube.buried + tube.delayed, 0);
    assert.ok(tube.total >= 3);
  });
});
