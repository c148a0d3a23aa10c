/**
 * The queue against a real beanstalkd (listening on unix sockets in a temporary directory, so
 * no network traffic at all): the protocol client, the producer's sharding and failover, the
 * responder worker's reserve / act / delete, release with growing delay, bury after the last
 * attempt, bad jobs, and the operator's stats and kick.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/log/logger.js';
import { type QueueAddress, parseQueueAddress } from '../../src/reactor/queue/address.js';
import { kickBuried, peekBuried, queueStats } from '../../src/reactor/queue/admin.js';
import { BeanstalkConnection, BeanstalkError } from '../../src/reactor/queue/beanstalkConnection.js';
import { type ReactorJob, encodeJob } from '../../src/reactor/queue/job.js';
import { JobProducer, subjectHash } from '../../src/reactor/queue/producer.js';
import { open, parseJobKeys, seal } from '../../src/reactor/queue/jobAuth.js';
import { BanBudget } from '../../src/reactor/responder/worker.js';

const KEYS = parseJobKeys('queue-test-key-'.repeat(3));
const GUARD = { isProtected: async (): Promise<string | null> => null, budget: new BanBudget(1000) };
import { ActionError, type ActionOutcome, type ActionRunner } from '../../src/reactor/responder/actionTypes.js';
import { ResponderWorker, newWorkerCounters } from '../../src/reactor/responder/worker.js';
import { sleep } from '../helpers/sandbox.js';

const dir = mkdtempSync(join(tmpdir(), 'befw-queue-'));
const procs = new Map<string, ChildProcess>();
// Also when a test dies half-way: no beanstalkd outlives this process.
process.on('exit', () => {
  for (const p of procs.values()) p.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

async function startServer(name: string): Promise<QueueAddress> {
  const path = join(dir, `${name}.sock`);
  rmSync(path, { force: true });
  const p = spawn('beanstalkd', ['-l', `unix:${path}`], { stdio: 'ignore' });
  procs.set(name, p);
  const addr = parseQueueAddress(`unix:${path}`) as QueueAddress;
  for (let i = 0; i < 100; i++) {
    try {
      (await BeanstalkConnection.connect(addr, 500)).close();
      return addr;
    } catch {
      await sleep(20);
    }
  }
  throw new Error(`beanstalkd ${name} did not start`);
}

async function stopServer(name: string): Promise<void> {
  const p = procs.get(name);
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    p.once('exit', () => resolve());
    p.kill('SIGKILL');
  });
}

function logSink(): { log: ReturnType<typeof createLogger>; events: () => Record<string, unknown>[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(
        ...chunk
          .toString()
          .split('\n')
          .filter((l) => l !== ''),
      );
      cb();
    },
  });
  return { log: createLogger('debug', stream), events: () => lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

let seq = 0;
function job(over: Partial<ReactorJob> = {}): ReactorJob {
  seq++;
  return {
    v: 2,
    id: `queue-test-${String(seq).padStart(6, '0')}`,
    event: 'ssh-auth-failure',
    trigger: 'sshd-failed-password',
    subject: `198.51.100.${seq % 250}`,
    fields: {},
    count: 5,
    device: { address: '198.51.100.2', hostname: 'vyos', via: 'direct', listener: 'tcp:0.0.0.0:514', name: 'edge', transport: 'tcp' },
    evidence: { spoofable: false, udpActions: [] },
    firstSeenMs: Date.now(),
    lineReceivedMs: Date.now(),
    queuedMs: Date.now(),
    parser: 'test:1',
    sample: 'x',
    ...over,
  };
}

describe('beanstalkd protocol client (real beanstalkd)', () => {
  let addr: QueueAddress;
  before(async () => {
    addr = await startServer('proto');
  });
  after(async () => stopServer('proto'));

  it('put, reserve, release with delay, bury, kick, delete, stats', async () => {
    const c = await BeanstalkConnection.connect(addr, 2000);
    try {
      await c.use('t-proto');
      // Pipelined: three commands in flight, replies in order.
      const ids = await Promise.all([
        c.put(Buffer.from('a'), { ttrSec: 5 }),
        c.put(Buffer.from('bb'), { ttrSec: 5 }),
        c.put(Buffer.from('c\r\nc'), { ttrSec: 5 }),
      ]);
      assert.equal(new Set(ids).size, 3);
      assert.equal(await c.watch('t-proto'), 2);
      await c.ignore('default');
      const first = await c.reserve(1);
      assert.deepEqual(first?.body.toString(), 'a');
      assert.equal((await c.statsJob(first.id))?.reserves, '1');
      assert.equal(await c.release(first.id, 1024, 1), 'released');
      const second = await c.reserve(1);
      assert.equal(second?.body.toString(), 'bb', 'the released job waits out its delay');
      assert.equal(await c.bury(second.id, 1024), true);
      const third = await c.reserve(1);
      assert.equal(third?.body.toString(), 'c\r\nc', 'bodies are bytes, CRLF included');
      assert.equal(await c.touch(third.id), true);
      assert.equal(await c.delete(third.id), true);
      assert.equal(await c.delete(third.id), false);
      const tube = await c.statsTube('t-proto');
      assert.equal(tube?.['current-jobs-buried'], '1');
      assert.equal(tube?.['current-jobs-delayed'], '1');
      assert.equal(await c.kick(10), 1, 'kick moves the buried job first');
      assert.ok((await c.listTubes()).includes('t-proto'));
      assert.equal(await c.statsTube('no-such-tube'), null);
      assert.equal(await c.reserve(0).then((j) => j?.body.toString()), 'bb');
      assert.ok(Number((await c.stats())['total-jobs']) >= 3);
      await assert.rejects(c.use('bad tube\r\nput'), BeanstalkError);
    } finally {
      c.close();
    }
  });

  it('a closed connection fails every waiter with a typed error', async () => {
    const c = await BeanstalkConnection.connect(addr, 2000);
    await c.watch('t-closing');
    const waiting = c.reserve(5);
    c.close();
    await assert.rejects(waiting, (e: unknown) => e instanceof BeanstalkError && /closed/.test(e.message));
    await assert.rejects(
      BeanstalkConnection.connect(parseQueueAddress(`unix:${join(dir, 'nothing.sock')}`) as QueueAddress, 500),
      BeanstalkError,
    );
  });
});

describe('job producer: sharding by subject, failover, bounded pending', () => {
  let a: QueueAddress;
  let b: QueueAddress;
  before(async () => {
    a = await startServer('pa');
    b = await startServer('pb');
  });
  after(async () => {
    await stopServer('pa');
    await stopServer('pb');
  });

  it('puts each subject on its hashed server, fails over, and catches up after an outage', async () => {
    const { log, events } = logSink();
    const placed: [string, string][] = [];
    const opts = { tubePrefix: 'p-', ttrSec: 5, connectTimeoutMs: 500, maxPending: 4, keys: KEYS };
    const producer = new JobProducer([a, b], opts, log, (j, server) => placed.push([j.subject, server]));
    const subjects = ['198.51.100.10', '198.51.100.11', '198.51.100.12', '198.51.100.13'];
    for (const s of subjects) producer.submit(job({ subject: s }));
    assert.equal(await producer.drain(3000), true);
    for (const [s, server] of placed) assert.equal(server, [a, b][subjectHash(s) % 2]?.text, s);

    await stopServer('pb');
    placed.length = 0;
    for (const s of subjects) producer.submit(job({ subject: s }));
    assert.equal(await producer.drain(5000), true);
    assert.ok(
      placed.every(([, server]) => server === a.text),
      'everything went to the server still up',
    );
    assert.ok(events().some((e) => e.event === 'queue-put-failed'));

    await stopServer('pa');
    placed.length = 0;
    const accepted = [0, 1, 2, 3, 4, 5].map(() => producer.submit(job({ subject: '198.51.100.99' })));
    assert.deepEqual(accepted, [true, true, true, true, false, false], 'pending is bounded; the rest is dropped and counted');
    assert.equal(producer.counters.dropped, 2);
    await sleep(300);
    assert.equal(placed.length, 0);
    a = await startServer('pa');
    assert.equal(await producer.drain(10_000), true, 'pending jobs reach the queue once a server is back');
    assert.equal(placed.length, 4);
    producer.close();
  });
});

class ScriptedAction implements ActionRunner {
  calls: string[] = [];
  constructor(
    readonly type: string,
    private readonly script: (job: ReactorJob, call: number) => ActionOutcome,
  ) {}
  async run(job: ReactorJob): Promise<ActionOutcome> {
    this.calls.push(job.id);
    return this.script(job, this.calls.filter((c) => c === job.id).length);
  }
}

describe('responder worker: reserve, act, delete; release with growing delay; bury', () => {
  let addr: QueueAddress;
  before(async () => {
    addr = await startServer('worker');
  });
  after(async () => stopServer('worker'));

  async function put(tube: string, body: Buffer): Promise<number> {
    const c = await BeanstalkConnection.connect(addr, 1000);
    try {
      await c.use(tube);
      return await c.put(body, { ttrSec: 5 });
    } finally {
      c.close();
    }
  }

  it('acts, retries transient failures with doubling delays, buries permanent ones and spent jobs, drops bad jobs', async () => {
    const { log, events } = logSink();
    const okJob = job({ subject: '198.51.100.50' });
    const flaky = job({ subject: '198.51.100.51' });
    const broken = job({ subject: '198.51.100.52' });
    const hopeless = job({ subject: '198.51.100.53' });
    const action = new ScriptedAction('scripted', (j, call) => {
      if (j.id === flaky.id && call <= 2) throw new ActionError('scripted', false, `device busy (call ${call})`);
      if (j.id === broken.id) throw new ActionError('scripted', true, 'wrong key');
      if (j.id === hopeless.id) throw new ActionError('scripted', false, 'never answers');
      return { result: 'done', detail: { call } };
    });
    const counters = newWorkerCounters();
    const worker = new ResponderWorker(
      addr,
      {
        tubes: new Map([['w-ssh-auth-failure', 'ssh-auth-failure']]),
        actions: new Map([['ssh-auth-failure', [action]]]),
        policy: { maxAttempts: 3, retryDelaySec: 1, retryDelayMaxSec: 2 },
        ttrSec: 5,
        connectTimeoutMs: 1000,
        keys: KEYS,
        guard: GUARD,
        responderId: 'test:1',
      },
      log,
      counters,
    );
    const running = worker.run();
    const signed = (j: ReactorJob): Buffer => seal(KEYS, 'job', 'w-ssh-auth-failure', encodeJob(j));
    for (const j of [okJob, flaky, broken, hopeless]) await put('w-ssh-auth-failure', signed(j));
    await put('w-ssh-auth-failure', encodeJob(job())); // well-formed, unsigned: anyone with access to beanstalkd
    await put('w-ssh-auth-failure', signed(job({ event: 'iface-down' }))); // signed, but not this tube's event
    const deadline = Date.now() + 15_000;
    while (counters.done < 2 || counters.buried < 4 || counters.rejected < 2) {
      assert.ok(Date.now() < deadline, `worker did not finish: ${JSON.stringify(counters)}`);
      await sleep(50);
    }
    worker.stop();
    await running;

    const ev = events();
    const released = ev.filter((e) => e.event === 'job-released').map((e) => [(e.job as { id: string }).id, e.attempt, e.delaySec]);
    assert.deepEqual(
      released.filter(([id]) => id === flaky.id),
      [
        [flaky.id, 1, 1],
        [flaky.id, 2, 2],
      ],
    );
    assert.deepEqual(
      released.filter(([id]) => id === hopeless.id),
      [
        [hopeless.id, 1, 1],
        [hopeless.id, 2, 2],
      ],
    );
    const buried = ev.filter((e) => e.event === 'job-buried').map((e) => [(e.job as { id: string }).id, e.attempt]);
    assert.deepEqual(
      buried.sort(),
      [
        [broken.id, 1],
        [hopeless.id, 3],
      ].sort(),
    );
    const done = ev.filter((e) => e.event === 'action' && e.result === 'done');
    assert.deepEqual(done.map((e) => (e.job as { id: string }).id).sort(), [okJob.id, flaky.id].sort());
    for (const e of done) {
      assert.equal(typeof e.lineToActionMs, 'number');
      assert.equal((e.job as { device: { address: string } }).device.address, '198.51.100.2');
    }
    assert.deepEqual(
      ev
        .filter((e) => e.event === 'job-rejected')
        .map((e) => e.reason)
        .sort(),
      ['unsigned', 'wrong-tube'],
    );

    // Operators see the buried jobs, and kick them back once the cause is fixed.
    const stats = await queueStats([addr], 'w-', 1000);
    assert.deepEqual(
      stats[0]?.tubes.map((t) => [t.tube, t.ready, t.buried, t.reserved]),
      [['w-ssh-auth-failure', 0, 4, 0]],
    );
    // Each buried job says why (befw queue peek --buried).
    const peeked = await peekBuried([addr], null, 'w-', 1000);
    assert.equal(peeked[0]?.buried, 4);
    assert.ok(peeked[0]?.next?.note !== null && peeked[0]?.next?.note !== undefined, JSON.stringify(peeked));
    assert.ok(open(KEYS, 'job', 'w-ssh-auth-failure', Buffer.from('x')).ok === false);
    const kicked = await kickBuried([addr], null, 'w-', 1000, 1000);
    assert.deepEqual(
      kicked.map((k) => [k.tube, k.kicked]),
      [['w-ssh-auth-failure', 4]],
    );
    const after = await queueStats([addr], 'w-', 1000);
    assert.equal(after[0]?.tubes[0]?.ready, 4);
    assert.equal(after[0]?.tubes[0]?.buried, 0);
  });

  it('a job whose responder dies half-way goes back to the queue and is done by another', async () => {
    const { log } = logSink();
    const j = job({ subject: '198.51.100.60' });
    await put('w2-ssh-auth-failure', seal(KEYS, 'job', 'w2-ssh-auth-failure', encodeJob(j)));
    // A worker that reserves and then loses its connection mid-action.
    const c = await BeanstalkConnection.connect(addr, 1000);
    await c.watch('w2-ssh-auth-failure');
    const held = await c.reserve(1);
    assert.ok(held !== null);
    c.close();
    const action = new ScriptedAction('scripted', () => ({ result: 'done', detail: {} }));
    const counters = newWorkerCounters();
    const worker = new ResponderWorker(
      addr,
      {
        tubes: new Map([['w2-ssh-auth-failure', 'ssh-auth-failure']]),
        actions: new Map([['ssh-auth-failure', [action]]]),
        policy: { maxAttempts: 3, retryDelaySec: 1, retryDelayMaxSec: 1 },
        ttrSec: 5,
        connectTimeoutMs: 1000,
        keys: KEYS,
        guard: GUARD,
        responderId: 'test:1',
      },
      log,
      counters,
    );
    const running = worker.run();
    const deadline = Date.now() + 5000;
    while (counters.done < 1) {
      assert.ok(Date.now() < deadline, 'the job came back');
      await sleep(20);
    }
    worker.stop();
    await running;
    assert.deepEqual(action.calls, [j.id]);
  });
});

after(async () => {
  for (const name of procs.keys()) await stopServer(name);
  rmSync(dir, { recursive: true, force: true });
});
