/**
 * `befw syslog` as a process in a namespace, fed over real sockets: UDP (IPv4 and IPv6), TCP with
 * octet counting, PROXY v1 and v2 from a trusted proxy (and from an untrusted one), datagrams
 * with a v2 header, and a stream of hostile input. Jobs land on a real beanstalkd; the device
 * each names is checked, bad input is counted, and the process outlives all of it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { buildProxyV1, buildProxyV2 } from '../../src/reactor/syslog/proxyProtocol.js';
import { type LabProcess, type LogEvent, ReactorLab, labConfig } from '../helpers/reactorLab.js';
import { NODE_V4, NODE_V6, Sandbox, clientV4, clientV6, mgmtV4 } from '../helpers/sandbox.js';

const PLAIN = 5514;
const PROXIED = 5601;
const PROXIED_PUBLIC = 5602;
const PROXIED_UDP = 5603;

const B = (s: string): Buffer => Buffer.from(s);
const fail = (addr: string): string => `<38>Aug 26 13:55:13 dev sshd[2755]: Failed password for root from ${addr} port 47336 ssh2`;
const octet = (m: string): Buffer => B(`${Buffer.byteLength(m)} ${m}`);

describe('befw syslog: listeners, framing, PROXY protocol, hostile input', () => {
  let sb: Sandbox;
  let lab: ReactorLab;
  let parser: LabProcess;

  before(async () => {
    sb = await Sandbox.create();
    lab = new ReactorLab(sb);
    await lab.beanstalkd(11300);
    const config = lab.writeConfig(
      'reactor.json',
      labConfig({
        parser: {
          listeners: [
            { protocol: 'tcp', address: '::', port: PLAIN },
            { protocol: 'udp', address: '::', port: PLAIN },
            { protocol: 'tcp', address: '127.0.0.1', port: PROXIED, proxyProtocol: true },
            { protocol: 'tcp', address: NODE_V4, port: PROXIED_PUBLIC, proxyProtocol: true },
            { protocol: 'udp', address: '127.0.0.1', port: PROXIED_UDP, proxyProtocol: true },
          ],
          trustedProxies: ['127.0.0.1/32'],
          allowedDevices: ['198.51.100.0/24', '2001:db8::/32'],
          limits: { maxConnections: 4, maxLineBytes: 512, maxMessageBytes: 512, proxyHeaderTimeoutSec: 1 },
          thresholds: { 'ssh-auth-failure': { maxRetry: 2, findTimeSec: 60 } },
        },
      }),
    );
    parser = await lab.parser(config, 'parser.log');
  });

  after(async () => {
    if (parser !== undefined) await parser.stop();
    if (sb !== undefined) await sb.destroy();
  });

  const jobFor = (subject: string): Promise<LogEvent> =>
    parser.waitFor((e) => e.event === 'job-queued' && (e.job as { subject: string }).subject === subject, 5000, `a job for ${subject}`);
  const device = (e: LogEvent): { address: string; via: string; listener: string; transport: string } =>
    (e.job as { device: { address: string; via: string; listener: string; transport: string } }).device;

  it('UDP, IPv4 and IPv6: one message per datagram, the sender is the device', async () => {
    lab.send(sb.clientNs, {
      proto: 'udp',
      host: NODE_V4,
      port: PLAIN,
      source: clientV4(3),
      payloads: [B(fail('198.51.100.21')), B(`${fail('198.51.100.21')}\n`)],
    });
    lab.send(sb.clientNs, {
      proto: 'udp',
      host: NODE_V6,
      port: PLAIN,
      source: clientV6(3),
      payloads: [B(fail('2001:db8:aaaa::21')), B(fail('2001:db8:aaaa::21'))],
    });
    assert.deepEqual(device(await jobFor('198.51.100.21')), {
      address: clientV4(3),
      via: 'direct',
      listener: `udp:[::]:${PLAIN}`,
      hostname: 'dev',
      name: 'allowed',
      transport: 'udp',
    });
    assert.equal(device(await jobFor('2001:db8:aaaa::21')).address, clientV6(3));
  });

  it('TCP with octet counting and LF framing mixed on one connection', async () => {
    const r = lab.send(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: PLAIN,
      source: clientV4(4),
      payloads: [octet(fail('198.51.100.22')), B(`${fail('198.51.100.22')}\n`)],
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(device(await jobFor('198.51.100.22')).address, clientV4(4));
  });

  it('PROXY v1 and v2 from a trusted proxy: the device is the address the header names', async () => {
    const v1 = buildProxyV1('198.51.100.77', '127.0.0.1', 40000, PROXIED);
    const v2 = buildProxyV2('2001:db8:100::77', '2001:db8:100::1', 40000, PROXIED);
    lab.send(sb.nodeNs, {
      proto: 'tcp',
      host: '127.0.0.1',
      port: PROXIED,
      payloads: [v1, B(`${fail('198.51.100.23')}\n${fail('198.51.100.23')}\n`)],
    });
    lab.send(sb.nodeNs, {
      proto: 'tcp',
      host: '127.0.0.1',
      port: PROXIED,
      payloads: [v2, octet(fail('198.51.100.24')), octet(fail('198.51.100.24'))],
    });
    const dg = buildProxyV2('198.51.100.78', '127.0.0.1', 514, PROXIED_UDP, { dgram: true });
    lab.send(sb.nodeNs, {
      proto: 'udp',
      host: '127.0.0.1',
      port: PROXIED_UDP,
      payloads: [Buffer.concat([dg, B(fail('198.51.100.25'))]), Buffer.concat([dg, B(fail('198.51.100.25'))])],
    });
    assert.deepEqual(device(await jobFor('198.51.100.23')), {
      address: '198.51.100.77',
      via: 'proxy-v1',
      listener: `tcp:127.0.0.1:${PROXIED}`,
      hostname: 'dev',
      name: 'allowed',
      transport: 'tcp',
    });
    const j24 = device(await jobFor('198.51.100.24'));
    assert.equal(j24.address, '2001:db8:100::77');
    assert.equal(j24.via, 'proxy-v2');
    assert.equal(device(await jobFor('198.51.100.25')).address, '198.51.100.78');
    assert.equal(device(await jobFor('198.51.100.25')).transport, 'udp', 'a PROXY header in a datagram is as forgeable as the datagram');
  });

  it('refuses what it must: untrusted proxies, spoofing without a header, devices not allowed, broken headers', async () => {
    // A client claiming to be a proxy is cut off before anything is read.
    const spoof = lab.send(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: PROXIED_PUBLIC,
      source: clientV4(5),
      payloads: [buildProxyV1('198.51.100.99', NODE_V4, 1, PROXIED_PUBLIC), B(`${fail('198.51.100.26')}\n${fail('198.51.100.26')}\n`)],
      holdMs: 300,
    });
    assert.equal((JSON.parse(spoof.stdout) as { closedByPeer: number }).closedByPeer, 1);
    // LOCAL (a health check) names nobody: the proxy itself is the device, and it is not allowed.
    lab.send(sb.nodeNs, {
      proto: 'tcp',
      host: '127.0.0.1',
      port: PROXIED,
      payloads: [
        buildProxyV2('198.51.100.1', '198.51.100.1', 1, 1, { local: true }),
        B(`${fail('198.51.100.27')}\n${fail('198.51.100.27')}\n`),
      ],
      holdMs: 300,
    });
    // A trusted proxy that sends no header, or a malformed one.
    lab.send(sb.nodeNs, {
      proto: 'tcp',
      host: '127.0.0.1',
      port: PROXIED,
      payloads: [B(`${fail('198.51.100.28')}\n${fail('198.51.100.28')}\n`)],
      holdMs: 300,
    });
    lab.send(sb.nodeNs, {
      proto: 'tcp',
      host: '127.0.0.1',
      port: PROXIED,
      payloads: [B('PROXY TCP4 198.51.100.300 127.0.0.1 1 2\r\n')],
      holdMs: 300,
    });
    // A device outside allowedDevices, on TCP and on UDP.
    lab.send(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: PLAIN,
      source: mgmtV4(3),
      payloads: [B(`${fail('198.51.100.29')}\n${fail('198.51.100.29')}\n`)],
      holdMs: 300,
    });
    lab.send(sb.clientNs, {
      proto: 'udp',
      host: NODE_V4,
      port: PLAIN,
      source: mgmtV4(3),
      payloads: [B(fail('198.51.100.29')), B(fail('198.51.100.29'))],
    });
    // HAProxy's health checks (check-send-proxy): a header naming the proxy itself, or LOCAL, then
    // nothing. Not data from a device, so not counted against anyone.
    lab.send(sb.nodeNs, {
      proto: 'tcp',
      host: '127.0.0.1',
      port: PROXIED,
      payloads: [buildProxyV1('127.0.0.1', '127.0.0.1', 39690, PROXIED)],
    });
    lab.send(sb.nodeNs, {
      proto: 'tcp',
      host: '127.0.0.1',
      port: PROXIED,
      payloads: [buildProxyV2('127.0.0.1', '127.0.0.1', 1, 1, { local: true })],
    });
    // A header that never arrives: cut off after proxyHeaderTimeout.
    const slow = lab.send(sb.nodeNs, { proto: 'tcp', host: '127.0.0.1', port: PROXIED, payloads: [B('PROX')], holdMs: 2500 });
    assert.equal((JSON.parse(slow.stdout) as { closedByPeer: number }).closedByPeer, 1);

    const counted = (e: LogEvent, k: string): number => Number((e.problems as Record<string, number> | undefined)?.[k] ?? 0);
    const stats = await parser.waitFor(
      (e) => e.event === 'stats' && counted(e, 'device-not-allowed') >= 4 && counted(e, 'bad-proxy-header') >= 3,
      5000,
      'stats with the refusals',
    );
    const problems = stats.problems as Record<string, number>;
    assert.ok((problems['untrusted-proxy'] ?? 0) >= 1, JSON.stringify(problems));
    assert.ok((problems['bad-proxy-header'] ?? 0) >= 3, JSON.stringify(problems));
    assert.equal(problems['device-not-allowed'], 4, JSON.stringify(problems)); // LOCAL with data, TCP, two datagrams; no health check
    for (const s of ['198.51.100.26', '198.51.100.27', '198.51.100.28', '198.51.100.29']) {
      assert.equal(
        parser.events().some((e) => e.event === 'job-queued' && (e.job as { subject: string }).subject === s),
        false,
        `no job for ${s}`,
      );
    }
    const rejected = parser.events().filter((e) => e.event === 'input-rejected');
    assert.ok(
      rejected.some((e) => e.reason === 'untrusted-proxy' && e.device === clientV4(5) && e.listener === `tcp:${NODE_V4}:${PROXIED_PUBLIC}`),
      'refusals are logged with what and where',
    );
  });

  it('survives hostile input: long lines, huge frames, bad lengths, binary garbage, a connection flood', async () => {
    const garbage = Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 7919) % 256));
    lab.send(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: PLAIN,
      source: clientV4(6),
      payloads: [B(`${'x'.repeat(2000)}\n${fail('198.51.100.30')}\n`), B('<13>'), B('z'.repeat(600)), B(`\n${fail('198.51.100.30')}\n`)],
    });
    lab.send(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: PLAIN,
      source: clientV4(6),
      payloads: [B('99999 '), B('y'.repeat(1000)), B(`${fail('198.51.100.30')}\n`)],
    });
    lab.send(sb.clientNs, { proto: 'tcp', host: NODE_V4, port: PLAIN, source: clientV4(6), payloads: [B('1234567890 ')] });
    lab.send(sb.clientNs, { proto: 'tcp', host: NODE_V4, port: PLAIN, source: clientV4(6), payloads: [garbage, garbage] });
    lab.send(sb.clientNs, {
      proto: 'udp',
      host: NODE_V4,
      port: PLAIN,
      source: clientV4(6),
      payloads: [garbage.subarray(0, 1000), B('<999>x'), B('\u0000\u0000')],
    });
    const flood = lab.send(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: PLAIN,
      source: clientV4(7),
      payloads: [],
      holdMs: 800,
      connections: 12,
    });
    const f = JSON.parse(flood.stdout) as { connected: number; closedByPeer: number };
    assert.ok(f.closedByPeer >= 8, `connections above the limit of 4 are refused: ${flood.stdout}`);
    // The lines after over-long ones still count: a job.
    await jobFor('198.51.100.30');
    const stats = await parser.waitFor(
      (e) => e.event === 'stats' && Number((e.problems as Record<string, number>)['too-many-connections'] ?? 0) >= 8,
      5000,
      'stats after the flood',
    );
    const problems = stats.problems as Record<string, number>;
    for (const k of ['line-too-long', 'message-too-large', 'bad-octet-count', 'bad-syslog'])
      assert.ok((problems[k] ?? 0) >= 1, `${k}: ${JSON.stringify(problems)}`);
    assert.equal(parser.proc.exitCode, null, 'still running');
    // And it still works.
    lab.send(sb.clientNs, {
      proto: 'udp',
      host: NODE_V4,
      port: PLAIN,
      source: clientV4(8),
      payloads: [B(fail('198.51.100.31')), B(fail('198.51.100.31'))],
    });
    await jobFor('198.51.100.31');
  });

  it('stops cleanly on SIGTERM with a last stats line', async () => {
    assert.equal(await parser.stop('SIGTERM'), 0);
    const last = parser.events().pop();
    assert.equal(last?.event, 'stats');
    assert.equal(last?.msg, 'parser stopped');
    assert.ok(Number(last?.jobs) >= 7);
  });
});
