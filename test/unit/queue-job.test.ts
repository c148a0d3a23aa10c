import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseQueueAddress } from '../../src/reactor/queue/address.js';
import { TUBE_NAME, parseYamlList, parseYamlMap } from '../../src/reactor/queue/beanstalkConnection.js';
import { type ReactorJob, decodeJob, encodeJob, tubeFor } from '../../src/reactor/queue/job.js';
import { subjectHash } from '../../src/reactor/queue/producer.js';

const JOB: ReactorJob = {
  v: 1,
  id: '0b7e3c1e-8f0a-4c59-9d7e-1d2f3a4b5c6d',
  event: 'ssh-auth-failure',
  trigger: 'sshd-failed-password',
  subject: '198.51.100.5',
  fields: { attacker: '198.51.100.5', user: 'root' },
  count: 5,
  device: { address: '198.51.100.2', hostname: 'vyos', via: 'proxy-v1', listener: 'tcp:127.0.0.1:5141' },
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
    assert.match(decodeError({ ...JOB, v: 2 }), /^\/v: /);
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
