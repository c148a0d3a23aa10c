/**
 * The reactor's side of trap ports and observe mode: kernel lines as the kernel printed them in a
 * namespace on this machine (iptables LOG and nft log, IPv4 and IPv6), forged variants, the
 * distinct-port count, observe sums and the responder's observe action.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ReactorJob } from '../../src/reactor/queue/job.js';
import { decodeJob, encodeJob } from '../../src/reactor/queue/job.js';
import type { Sender } from '../../src/reactor/syslog/pipeline.js';
import { ObserveRunner } from '../../src/reactor/responder/observeAction.js';
import { OBSERVED_MAX_PER_SET, observedKey, parseObservedRecord } from '../../src/core/observe.js';
import { FakeKv, testJob, testPipeline } from '../helpers/reactorFakes.js';
import { readObserved } from '../../src/cli/observed.js';

function pipeline(udpActions: string[] = []): ReturnType<typeof testPipeline> {
  return testPipeline({ devices: [{ name: 'nodes', addresses: ['198.51.100.0/24'], udpActions }] });
}

const POLICY = { name: 'nodes', hostnames: null, udpActions: [] };
const NODE: Sender = { address: '198.51.100.2', via: 'direct', listener: 'tcp:127.0.0.1:5141', transport: 'tcp', policy: POLICY };

/** Lines as this machine's kernel printed them (dmesg) for befw's trap rule, iptables LOG and nft log. */
const V4 = (port: number, src = '203.0.113.9'): string =>
  `[ 8941.611193] befw-trap IN=vbt1 OUT= MAC=5e:ad:fa:30:bc:a2:06:f5:30:de:bf:44:08:00 SRC=${src} DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=38776 DF PROTO=TCP SPT=38772 DPT=${port} WINDOW=64240 RES=0x00 SYN URGP=0 `;
const V6 = (port: number): string =>
  `befw-trap IN=vbt1 OUT= MAC=5e:ad:fa:30:bc:a2:06:f5:30:de:bf:44:86:dd SRC=2001:0db8:0000:0000:0000:0000:0000:0009 DST=2001:0db8:0000:0000:0000:0000:0000:0001 LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=289614 PROTO=TCP SPT=43890 DPT=${port} WINDOW=64800 RES=0x00 SYN URGP=0 `;
/** RFC 3164 as rsyslog forwards kern.warning (facility 0, severity 4). */
const kern = (msg: string, pri = 4, app = 'kernel'): string => `<${pri}>Dec  1 17:00:00 web-1 ${app}: ${msg}`;

describe('port-scan trigger', () => {
  test('11 distinct trap ports from one source within 300 s make one job; repeats of a port do not count', () => {
    const { p, jobs } = pipeline();
    for (let i = 0; i < 9; i++) for (let r = 0; r < 3; r++) p.handleText(kern(V4(2000 + i)), NODE, 1000 + i * 10 + r);
    assert.equal(jobs.length, 0, '9 distinct ports, each three times');
    // One line for 2009 that rsyslog folded nine times: one more port, not nine.
    p.handleText(kern(`message repeated 9 times: [ ${V4(2009)}]`), NODE, 1200);
    assert.equal(jobs.length, 0, '10 distinct ports: not a scan yet (BEFW: more than 10)');
    assert.equal(p.counters.matched, 28, 'the repeat line did match');
    p.handleText(kern(V4(2010)), NODE, 1300);
    assert.equal(jobs.length, 1);
    const j = jobs[0]!;
    assert.equal(j.event, 'port-scan');
    assert.equal(j.subject, '203.0.113.9');
    assert.equal(j.count, 11);
    assert.equal(j.fields.port, '2010');
    assert.ok(decodeJob(encodeJob(j)).ok);
  });

  test('ports spread over more than 300 s are not a scan', () => {
    const { p, jobs } = pipeline();
    for (let i = 0; i < 15; i++) p.handleText(kern(V4(2000 + i)), NODE, i * 40_000);
    assert.equal(jobs.length, 0);
  });

  test('IPv6 as the kernel prints it (eight full groups) gives the canonical address', () => {
    const { p, jobs } = pipeline();
    for (let i = 0; i < 11; i++) p.handleText(kern(V6(3000 + i)), NODE, 1000 + i);
    assert.equal(jobs[0]?.subject, '2001:db8::9');
  });

  test('forged lines: another facility, another program, the prefix inside other text, free text after it', () => {
    const { p, jobs, problems } = pipeline();
    for (let i = 0; i < 12; i++) {
      // A user's `logger -p user.warn -t kernel`: facility user (1).
      p.handleText(kern(V4(2000 + i, '198.51.100.77'), 12), NODE, 1000 + i);
      // Another program's line with the text of a trap line.
      p.handleText(kern(V4(2000 + i, '198.51.100.78'), 4, 'sshd'), NODE, 1000 + i);
      // The prefix inside something an attacker controls.
      p.handleText(kern(`Invalid user x ${V4(2000 + i, '198.51.100.79')}`), NODE, 1000 + i);
      // Trailing free text where the kernel prints only its fields.
      p.handleText(kern(`${V4(2000 + i, '198.51.100.80')}SRC=198.51.100.81 please`), NODE, 1000 + i);
    }
    assert.deepEqual(jobs, []);
    assert.ok(problems.some((x) => x.reason === 'wrong-facility'));
  });

  test('a protected subject is never counted', () => {
    const { p, jobs } = testPipeline({ allowedDevices: ['198.51.100.0/24'] }, ['203.0.113.0/24']);
    for (let i = 0; i < 20; i++) p.handleText(kern(V4(2000 + i)), NODE, 1000 + i);
    assert.deepEqual(jobs, []);
  });
});

describe('observe trigger and aggregation', () => {
  const OBS = (src: string, port = 9000): string =>
    `[ 12.5] befw-obs:app_tcp_9000 IN=vbt1 OUT= MAC=5e:ad:fa:30:bc:a2:06:f5:30:de:bf:44:08:00 SRC=${src} DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=40000 DPT=${port} WINDOW=64240 RES=0x00 SYN URGP=0`;

  test('sightings are summed per set and address and flushed as one job each', () => {
    const { p, jobs } = pipeline();
    for (let i = 0; i < 5; i++) p.handleText(kern(OBS('203.0.113.20')), NODE, 1000 + i);
    p.handleText(kern(OBS('203.0.113.21')), { ...NODE, address: '198.51.100.3' }, 1100);
    assert.equal(jobs.length, 0, 'nothing before the flush');
    p.sweep(7000);
    assert.equal(jobs.length, 2);
    const a = jobs.find((j) => j.subject === '203.0.113.20')!;
    assert.equal(a.event, 'observed');
    assert.equal(a.count, 5);
    assert.equal(a.fields.set, 'app_tcp_9000');
    assert.equal(a.fields.nodes, 'web-1');
    assert.equal(a.evidence.spoofable, false);
    assert.ok(decodeJob(encodeJob(a)).ok);
  });

  test('over UDP: the job is marked spoofable, so the observe action runs only where the device allows it', () => {
    const { p, jobs } = pipeline();
    p.handleText(kern(OBS('203.0.113.22')), { ...NODE, transport: 'udp' }, 1000);
    p.sweep(7000);
    assert.equal(jobs[0]?.evidence.spoofable, true);
    assert.deepEqual(jobs[0]?.evidence.udpActions, []);
  });

  test('a spray of addresses is bounded per set', () => {
    const { p, jobs } = pipeline();
    for (let i = 0; i < 3000; i++) p.handleText(kern(OBS(`203.0.${113 + Math.floor(i / 250)}.${i % 250}`)), NODE, 1000);
    p.sweep(7000);
    assert.ok(jobs.length <= 1000, `${jobs.length} jobs`);
  });
});

describe('observe action', () => {
  const job = (subject: string, count: number, nodes = 'web-1'): ReactorJob =>
    testJob(subject, { event: 'observed', trigger: 'observe', count, fields: { set: 'app_tcp_9000', attacker: subject, nodes } });

  test('merges counts, first/last seen and nodes into befw-observed/<tag>/<addr>', async () => {
    const kv = new FakeKv();
    let now = 1_700_000_000_000;
    const r = new ObserveRunner({ type: 'observe', ttlSec: 3600 }, { kv, now: () => now });
    assert.equal((await r.run(job('203.0.113.20', 5))).result, 'recorded');
    now += 60_000;
    assert.equal((await r.run(job('203.0.113.20', 2, 'web-2'))).result, 'updated');
    const rec = parseObservedRecord((await kv.get(observedKey('app_tcp_9000', '203.0.113.20')))?.value ?? null);
    assert.deepEqual(rec, {
      count: 7,
      first: 1_700_000_000,
      last: 1_700_000_060,
      expires: 1_700_000_060 + 3600,
      nodes: ['web-1', 'web-2'],
    });
  });

  test('a full set keeps the highest counts: a newcomer replaces the lowest only if it beats it', async () => {
    const kv = new FakeKv();
    const now = 1_700_000_000_000;
    const live = JSON.stringify({ count: 3, first: 1, last: 1, expires: 1_800_000_000, nodes: [] });
    for (let i = 0; i < OBSERVED_MAX_PER_SET; i++) kv.put(observedKey('app_tcp_9000', `10.${Math.floor(i / 250)}.0.${i % 250}`), live);
    const r = new ObserveRunner({ type: 'observe', ttlSec: 3600 }, { kv, now: () => now });
    assert.equal((await r.run(job('203.0.113.30', 1))).result, 'set-full');
    assert.equal((await r.run(job('203.0.113.31', 9))).result, 'recorded');
    assert.equal([...kv.data.keys()].filter((k) => k.startsWith('befw-observed/app_tcp_9000/')).length, OBSERVED_MAX_PER_SET);
  });

  test('a hostile job is refused for good', async () => {
    const r = new ObserveRunner({ type: 'observe', ttlSec: 3600 }, { kv: new FakeKv(), now: () => 0 });
    await assert.rejects(r.run(testJob('203.0.113.5', { fields: { set: '../befw/$ipset$/rules_allow' } })), /not a set tag/);
  });
});

describe('befw observed: reading records', () => {
  test('only live records under a canonical address key; hostile keys and values are set aside', async () => {
    const now = 1_700_000_000_000;
    const rec = (count: number, expires = 1_800_000_000): string =>
      JSON.stringify({ count, first: 1, last: 2, expires, nodes: ['node1', 'bad name!'] });
    const entries = [
      { key: 'befw-observed/app_tcp_9000/203.0.113.20', value: rec(5), modifyIndex: 1 },
      { key: 'befw-observed/app_tcp_9000/2001:db8::7', value: rec(9), modifyIndex: 2 },
      { key: 'befw-observed/app_tcp_9000/203.0.113.0/24', value: rec(50), modifyIndex: 3 },
      { key: 'befw-observed/app_tcp_9000/2001:0db8::0008', value: rec(50), modifyIndex: 4 },
      { key: 'befw-observed/app_tcp_9000/203.0.113.21', value: rec(7, 1_600_000_000), modifyIndex: 5 },
      { key: 'befw-observed/app_tcp_9000/203.0.113.22', value: '{"count":"lots"}', modifyIndex: 6 },
      { key: 'befw-observed/app_tcp_9000/203.0.113.23', value: 'x'.repeat(10_000), modifyIndex: 7 },
    ];
    const consul = { list: async () => entries } as unknown as Parameters<typeof readObserved>[0]['consul'];
    const list = await readObserved({ consul, nowMs: now }, 'app_tcp_9000');
    assert.deepEqual(
      list.live.map((o) => [o.address, o.count, o.nodes]),
      [
        ['2001:db8::7', 9, ['node1']],
        ['203.0.113.20', 5, ['node1']],
      ],
    );
    assert.equal(list.stale.length, 5);
  });
});
