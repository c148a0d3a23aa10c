import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeJob, encodeJob } from '../../src/reactor/queue/job.js';
import type { Sender } from '../../src/reactor/syslog/pipeline.js';
import { testPipeline } from '../helpers/reactorFakes.js';

function pipeline(parser: Record<string, unknown> = {}, ignore: string[] = []): ReturnType<typeof testPipeline> {
  return testPipeline({ allowedDevices: ['198.51.100.0/24'], ...parser }, ignore);
}

const POLICY = { name: 'allowed', hostnames: null, udpActions: [] };
const DEVICE: Sender = { address: '198.51.100.2', via: 'proxy-v1', listener: 'tcp:127.0.0.1:5141', transport: 'tcp', policy: POLICY };
const fail = (addr: string): string => `<38>Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from ${addr} port 47336 ssh2`;

describe('SyslogPipeline', () => {
  test('five failed logins within findtime make one job; more make none', () => {
    const { p, jobs } = pipeline();
    for (let i = 0; i < 12; i++) p.handleText(fail('198.51.100.5'), DEVICE, 1000 + i);
    assert.equal(jobs.length, 1);
    const j = jobs[0]!;
    assert.equal(j.event, 'ssh-auth-failure');
    assert.equal(j.trigger, 'sshd-failed-password');
    assert.equal(j.subject, '198.51.100.5');
    assert.equal(j.count, 5);
    assert.deepEqual(j.device, {
      address: DEVICE.address,
      via: DEVICE.via,
      listener: DEVICE.listener,
      hostname: 'vyos',
      name: 'allowed',
      transport: 'tcp',
    });
    assert.deepEqual(j.evidence, { spoofable: false, udpActions: [] });
    assert.equal(j.firstSeenMs, 1000);
    assert.equal(j.lineReceivedMs, 1004);
    assert.equal(j.fields.user, 'root');
    assert.equal(p.counters.suppressed, 7);
    // A job survives the queue's encoding and a responder's validation.
    const back = decodeJob(encodeJob(j));
    assert.ok(back.ok, back.ok ? '' : back.error);
    assert.deepEqual(back.job, j);
  });

  test("sshd's own repeat line counts 4: one more failure crosses maxretry 5", () => {
    const { p, jobs } = pipeline();
    p.handleText(
      '<38>Aug 26 21:59:03 vyos sshd[2755]: message repeated 4 times: [ Failed password for root from 10.10.10.132 port 47336 ssh2]',
      DEVICE,
      0,
    );
    assert.equal(jobs.length, 0);
    p.handleText('Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.10.10.132 port 47336 ssh2', DEVICE, 1);
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]?.count, 5);
    assert.equal(jobs[0]?.subject, '10.10.10.132');
  });

  test('"message repeated" from another program never counts as sshd; the count is capped', () => {
    const { p, jobs, problems } = pipeline({ thresholds: { 'ssh-auth-failure': { maxRetry: 11, findTimeSec: 60 } } });
    const inner = 'Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 198.51.100.44 port 47336 ssh2';
    // Any local user can log as nginx (logger -t nginx), or as the relay itself.
    p.handleText(`<13>Aug 26 21:59:03 web nginx[1]: message repeated 999999999 times: [ ${inner}]`, DEVICE, 0);
    p.handleText(`<13>Aug 26 21:59:03 vyos vyos: message repeated 999999999 times: [ ${inner}]`, DEVICE, 0);
    p.handleText(`message repeated 999999999 times: [ ${inner}]`, DEVICE, 0);
    assert.equal(jobs.length, 0);
    assert.deepEqual(
      problems.map((x) => x.reason),
      ['repeat-program-mismatch', 'repeat-program-mismatch', 'repeat-program-mismatch'],
    );
    // sshd's own: 999,999,999 counts maxRepeat (10), below the threshold of 11.
    p.handleText(
      '<38>Aug 26 21:59:03 vyos sshd[2755]: message repeated 999999999 times: [ Failed password for root from 198.51.100.44 port 47336 ssh2]',
      DEVICE,
      1,
    );
    assert.equal(jobs.length, 0);
    p.handleText(inner, DEVICE, 2);
    assert.equal(jobs[0]?.count, 11);
  });

  test('a device configured with hostnames: a line naming another host is refused', () => {
    const { p, jobs, problems } = pipeline({ thresholds: { 'ssh-auth-failure': { maxRetry: 1, findTimeSec: 60 } } });
    const strict: Sender = { ...DEVICE, policy: { name: 'web-01', hostnames: new Set(['web-01']), udpActions: [] } };
    p.handleText(fail('198.51.100.45').replace(' vyos ', ' web-01 '), strict, 0);
    p.handleText(fail('198.51.100.46'), strict, 0); // "vyos"
    p.handleText('Failed password for root from 198.51.100.47 port 1 ssh2', strict, 0); // no hostname
    assert.deepEqual(
      jobs.map((j) => j.subject),
      ['198.51.100.45'],
    );
    assert.deepEqual(
      problems.map((x) => x.reason),
      ['hostname-mismatch', 'hostname-mismatch'],
    );
  });

  test('evidence: a job resting on UDP lines is spoofable and carries what every UDP sender allows', () => {
    const { p, jobs } = pipeline({ thresholds: { 'ssh-auth-failure': { maxRetry: 3, findTimeSec: 60 } } });
    const udp = (udpActions: string[]): Sender => ({ ...DEVICE, transport: 'udp', policy: { ...POLICY, udpActions } });
    p.handleText(fail('198.51.100.50'), udp(['ban', 'vyos-address-group']), 0);
    p.handleText(fail('198.51.100.50'), udp(['ban']), 1);
    p.handleText(fail('198.51.100.50'), DEVICE, 2);
    assert.deepEqual(jobs[0]?.evidence, { spoofable: true, udpActions: ['ban'] });
    assert.equal(jobs[0]?.device.transport, 'tcp', 'the line that crossed came over TCP');
    // Three over TCP (one line standing for three): not spoofable, whatever UDP added.
    p.handleText(fail('198.51.100.51'), udp([]), 0);
    p.handleText(
      '<38>Aug 26 21:59:03 vyos sshd[2755]: message repeated 3 times: [ Failed password for root from 198.51.100.51 port 47336 ssh2]',
      DEVICE,
      1,
    );
    assert.equal(jobs[1]?.count, 4);
    assert.deepEqual(jobs[1]?.evidence, { spoofable: false, udpActions: [] });
  });

  test('the interface line makes an iface-down job at once, per device', () => {
    const { p, jobs } = pipeline();
    p.handleText('eth1: state DOWN flags 0x00001002 …', DEVICE, 0);
    p.handleText('eth1: state DOWN flags 0x00001002 …', DEVICE, 1); // de-duplicated
    p.handleText('eth1: state DOWN flags 0x00001002 …', { ...DEVICE, address: '198.51.100.3' }, 2); // another device's eth1
    assert.deepEqual(
      jobs.map((j) => [j.event, j.subject, j.device.address]),
      [
        ['iface-down', 'eth1', '198.51.100.2'],
        ['iface-down', 'eth1', '198.51.100.3'],
      ],
    );
    assert.equal(jobs[0]?.device.hostname, null, 'a bare line names no host');
  });

  test('the attacker is counted across devices (one attacker, many victims)', () => {
    const { p, jobs } = pipeline();
    for (let i = 0; i < 5; i++) p.handleText(fail('2001:db8::66'), { ...DEVICE, address: `198.51.100.${10 + i}` }, i);
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]?.subject, '2001:db8::66');
  });

  test('ignored networks are counted and never make jobs', () => {
    const { p, jobs } = pipeline({}, ['203.0.113.0/24', '2001:db8:ffff::/48']);
    for (let i = 0; i < 10; i++) {
      p.handleText(fail('203.0.113.9'), DEVICE, i);
      p.handleText(fail('2001:db8:ffff::1'), DEVICE, i);
    }
    assert.equal(jobs.length, 0);
    assert.equal(p.counters.ignored, 20);
  });

  test('loopback, unspecified, link-local and multicast attackers never make jobs (a forged line must not ban 127.0.0.1)', () => {
    const { p, jobs } = pipeline({ thresholds: { 'ssh-auth-failure': { maxRetry: 1, findTimeSec: 10 } } });
    for (const a of [
      '127.0.0.1',
      '127.1.2.3',
      '::1',
      '0.0.0.0',
      '::',
      '169.254.1.1',
      'fe80::1',
      '224.0.0.1',
      'ff02::1',
      '255.255.255.255',
      '::ffff:127.0.0.1',
    ])
      p.handleText(fail(a), DEVICE, 0);
    assert.equal(jobs.length, 0);
    assert.equal(p.counters.ignored, 11);
    p.handleText(fail('198.51.100.5'), DEVICE, 0);
    assert.equal(jobs.length, 1);
  });

  test('malformed lines and bad subjects are counted, reported with where they came from, and dropped', () => {
    const { p, jobs, problems } = pipeline();
    p.handleText('<999>junk', DEVICE, 0);
    p.handleText(fail('999.1.1.1'), DEVICE, 0);
    p.handleText('<13>1 - host', DEVICE, 0);
    assert.equal(jobs.length, 0);
    assert.equal(p.counters.received, 3);
    assert.equal(p.counters.malformed, 3);
    assert.equal(p.counters.badSubject, 1);
    assert.deepEqual(
      problems.map((x) => x.reason),
      ['bad-syslog', 'bad-subject', 'bad-syslog'],
    );
    assert.ok(problems.every((x) => x.device === DEVICE.address && x.listener === DEVICE.listener));
    assert.match(problems[0]?.detail ?? '', /PRI/);
  });

  test('thresholds come from the config; configured triggers work end to end', () => {
    const { p, jobs } = pipeline({
      triggers: [
        { name: 'nginx-auth', event: 'http-auth', programs: ['nginx'], pattern: 'password mismatch, client: (?<attacker>[0-9.]+),' },
      ],
      thresholds: { 'http-auth': { maxRetry: 2, findTimeSec: 10 } },
    });
    const line = '<11>Aug 26 13:55:13 web nginx[9]: user "bob": password mismatch, client: 198.51.100.77, server: x';
    p.handleText(line, DEVICE, 0);
    p.handleText(line, DEVICE, 10_001); // the first fell out of the 10 s window
    assert.equal(jobs.length, 0);
    p.handleText(line, DEVICE, 10_002);
    assert.equal(jobs.length, 1);
    assert.equal(jobs[0]?.event, 'http-auth');
  });

  test('UTF-8 buffers are decoded; bytes are counted', () => {
    const { p, jobs } = pipeline({ thresholds: { 'ssh-auth-failure': { maxRetry: 1, findTimeSec: 10 } } });
    const buf = Buffer.from(`xx${fail('198.51.100.5').replace('root', 'rööt')}yy`);
    p.handleBuffer(buf, 2, buf.length - 2, DEVICE, 0);
    assert.equal(jobs[0]?.fields.user, 'rööt');
    assert.equal(p.counters.bytes, buf.length - 4);
  });
});
