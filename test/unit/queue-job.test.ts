import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseQueueAddress } from '../../src/reactor/queue/address.js';
import { TUBE_NAME, parseYamlList, parseYamlMap } from '../../src/reactor/queue/beanstalkConnection.js';
import { type ReactorJob, decodeJob, encodeJob, tubeFor } from '../../src/reactor/queue/job.js';
import { subjectHash } from '../../src/reactor/queue/producer.js';
import { inspect, keyId, open, parseJobKeys, seal, withNote } from '../../src/reactor/queue/jobAuth.js';
import { controlTube, decodeControl } from '../../src/reactor/queue/control.js';

const JOB: ReactorJob = {
  v: 2,
  id: '0b7e3c1e-8f0a-4c59-9d7e-1d2f3a4b5c6d',
  event: 'ssh-auth-failure',
  trigger: 'sshd-failed-password',
  subject: '198.51.100.5',
  fields: { attacker: '198.51.100.5', user: 'root' },
  count: 5,
  device: { address: '198.51.100.2', hostname: 'vyos', via: 'proxy-v1', listener: 'tcp:127.0.0.1:5141', name: 'edge1', transport: 'tcp' },
  evidence: { spoofable: false, udpActions: [] },
  firstSeenMs: 1_700_000_000_000,
  lineReceivedMs: 1_700_000_000_100,
  queuedMs: 1_700_000_000_101,
  parser: 'parser-1:123',
  sample: '<38>Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 198.51.100.5 port 47336 ssh2',
};

function decodeError(v: unknown): string {
  const r = decodeJob(Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)));
  assert.equal(r.ok, false, JSON.stringify(v));
  return r.ok ? '' : r.error;
}

describe('reactor jobs', () => {
  test('round trip, tube per event', () => {
    const r = decodeJob(encodeJob(JOB));
    assert.ok(r.ok);
    assert.deepEqual(r.job, JOB);
    assert.equal(tubeFor('befw-', 'ssh-auth-failure'), 'befw-ssh-auth-failure');
    assert.ok(TUBE_NAME.test(tubeFor('befw-', 'iface-down')));
  });

  test('bad jobs are refused with the field named', () => {
    assert.match(decodeError('not json'), /not JSON/);
    assert.match(decodeError({ ...JOB, v: 1 }), /^\/v: /);
    assert.match(decodeError({ ...JOB, evidence: { spoofable: 'no', udpActions: [] } }), /^\/evidence\/spoofable: /);
    assert.match(decodeError({ ...JOB, extra: 1 }), /^\/extra: unknown field/);
    const { device: _d, ...noDevice } = JOB;
    assert.match(decodeError(noDevice), /^\/device: /);
    assert.match(decodeError({ ...JOB, subject: '1.2.3.4; rm -rf /' }), /^\/subject: /);
    assert.match(decodeError({ ...JOB, device: { ...JOB.device, address: '$(reboot)' } }), /^\/device\/address: /);
    assert.match(decodeError({ ...JOB, count: 0 }), /^\/count: /);
    assert.match(decodeError({ ...JOB, fields: { 'bad key': 'x' } }), /fields/);
    assert.match(decodeError('x'.repeat(20000)), /above/);
  });

  test('property: mutated jobs and random bytes never throw', () => {
    const keys = Object.keys(JOB);
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue({ maxDepth: 2 }), fc.uint8Array({ maxLength: 200 }), (key, value, bytes) => {
        const r = decodeJob(Buffer.from(JSON.stringify({ ...JOB, [key]: value })));
        if (r.ok) assert.deepEqual(Object.keys(r.job).sort(), keys.sort());
        decodeJob(Buffer.from(bytes));
      }),
      { seed: 6601, numRuns: 1000 },
    );
  });
});

describe('signed jobs (HMAC)', () => {
  const KEY_A = 'a'.repeat(32);
  const KEY_B = 'b'.repeat(48);
  const signer = parseJobKeys(`${KEY_A}\n`);
  const TUBE = 'befw-ssh-auth-failure';
  const payload = encodeJob(JOB);

  test('a job signed for its tube opens with the same key, and with a key file that still lists it', () => {
    const body = seal(signer, 'job', TUBE, payload);
    const r = open(signer, 'job', TUBE, body);
    assert.ok(r.ok);
    assert.deepEqual(r.payload, payload);
    // Rotation: the new key signs, the old one still verifies.
    const rotated = parseJobKeys(`# new first\n${KEY_B}\n${KEY_A}\n`);
    assert.equal(rotated.signing.id, keyId(Buffer.from(KEY_B)));
    assert.ok(open(rotated, 'job', TUBE, body).ok);
    assert.ok(open(signer, 'job', TUBE, seal(rotated, 'job', TUBE, payload)).ok === false);
  });

  test('unsigned, altered, moved to another tube, another kind, or another key: refused with the reason', () => {
    const body = seal(signer, 'job', TUBE, payload);
    const reason = (b: Buffer, tube = TUBE, kind: 'job' | 'ctl' = 'job'): string => {
      const r = open(signer, kind, tube, b);
      return r.ok ? 'ok' : r.reason;
    };
    assert.equal(reason(payload), 'unsigned');
    const altered = Buffer.from(body.toString().replace('198.51.100.5"', '198.51.100.6"'));
    assert.equal(reason(altered), 'bad-signature');
    assert.equal(reason(body, 'befw-iface-down'), 'bad-signature');
    assert.equal(reason(body, TUBE, 'ctl'), 'wrong-kind');
    assert.equal(reason(seal(parseJobKeys(KEY_B), 'job', TUBE, payload)), 'unknown-key');
    assert.equal(reason(Buffer.from(`BEFW1 job ${signer.signing.id} AAAA\n${payload.toString()}`)), 'bad-signature');
  });

  test('a note rides after the signed part: the job still opens, the note is read back, a new note replaces the old', () => {
    const body = seal(signer, 'job', TUBE, payload);
    const noted = withNote(withNote(body, { at: 1, by: 'r:1', reason: 'old', error: 'x' }), {
      at: 2,
      by: 'r:1',
      reason: 'ban-budget',
      error: 'y',
    });
    const r = open(signer, 'job', TUBE, noted);
    assert.ok(r.ok);
    assert.deepEqual(r.payload, payload);
    assert.equal(r.note?.reason, 'ban-budget');
    assert.equal(inspect(noted).signed, true);
    assert.equal(inspect(payload).signed, false);
  });

  test('key files: short keys, spaces and empty files are refused without echoing the key', () => {
    for (const bad of ['', '# only a comment', 'short', `${'x'.repeat(31)}`, `has space ${'x'.repeat(40)}`]) {
      assert.throws(
        () => parseJobKeys(bad),
        (e: unknown) => e instanceof Error && !e.message.includes('has space'),
      );
    }
  });

  test('property: random bodies never open and never throw', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.string(), (bytes, prefix) => {
        const b = Buffer.concat([Buffer.from(prefix), Buffer.from(bytes)]);
        assert.equal(open(signer, 'job', TUBE, b).ok, false);
        inspect(b);
      }),
      { seed: 1101, numRuns: 500 },
    );
  });

  test('control messages: one tube per parser, only "forget" of a valid subject', () => {
    assert.match(controlTube('befw-', 4242, 'web-01.example'), /^befw-control\.web-01-example\.4242$/);
    assert.ok(TUBE_NAME.test(controlTube('befw-', 4242, 'wëird host')));
    assert.deepEqual(decodeControl(Buffer.from('{"op":"forget","subject":"198.51.100.5","at":1,"by":"x"}')), {
      op: 'forget',
      subject: '198.51.100.5',
      at: 1,
      by: 'x',
    });
    for (const bad of ['{"op":"ban","subject":"198.51.100.5"}', '{"op":"forget","subject":"a b"}', 'x'])
      assert.equal(decodeControl(Buffer.from(bad)), null, bad);
  });
});

describe('queue addresses, beanstalkd YAML, subject hashing', () => {
  test('addresses', () => {
    assert.deepEqual(parseQueueAddress('127.0.0.1:11300'), { kind: 'tcp', host: '127.0.0.1', port: 11300, text: '127.0.0.1:11300' });
    assert.deepEqual(parseQueueAddress('[2001:db8::1]:11300'), {
      kind: 'tcp',
      host: '2001:db8::1',
      port: 11300,
      text: '[2001:db8::1]:11300',
    });
    assert.deepEqual(parseQueueAddress('queue-1.example:11300'), {
      kind: 'tcp',
      host: 'queue-1.example',
      port: 11300,
      text: 'queue-1.example:11300',
    });
    assert.deepEqual(parseQueueAddress('unix:/run/beanstalkd.sock'), {
      kind: 'unix',
      path: '/run/beanstalkd.sock',
      text: 'unix:/run/beanstalkd.sock',
    });
    for (const bad of ['127.0.0.1', '127.0.0.1:0', '127.0.0.1:99999', 'unix:run', '[2001:db8::1]11300', 'a b:1', ':11300']) {
      assert.equal(typeof parseQueueAddress(bad), 'string', bad);
    }
  });

  test('stats YAML as beanstalkd writes it', () => {
    const stats = parseYamlMap('---\nname: befw-ssh-auth-failure\ncurrent-jobs-ready: 3\ncurrent-jobs-buried: 1\nversion: "1.12"\n');
    assert.equal(stats.name, 'befw-ssh-auth-failure');
    assert.equal(stats['current-jobs-ready'], '3');
    assert.equal(stats.version, '1.12');
    assert.deepEqual(parseYamlList('---\n- default\n- befw-iface-down\n'), ['default', 'befw-iface-down']);
  });

  test('tube names refuse anything that could break the command line', () => {
    for (const bad of ['', '-x', 'a b', 'a\r\nput', 'x'.repeat(201), 'ünï']) assert.equal(TUBE_NAME.test(bad), false, bad);
  });

  test('subject hashing is stable across processes (fixed values) and spreads', () => {
    assert.equal(subjectHash(''), 0x811c9dc5);
    assert.equal(subjectHash('198.51.100.5'), subjectHash('198.51.100.5'));
    const buckets = new Set<number>();
    for (let i = 0; i < 64; i++) buckets.add(subjectHash(`198.51.100.${i}`) % 4);
    assert.equal(buckets.size, 4);
  });
});
