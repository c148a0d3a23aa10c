/**
 * ResponderWorker against a fake beanstalkd connection: scripted reservations in, the commands
 * the worker sent (delete, release with its delay, bury) out, with fake actions.
 *
 * The worker makes its own connection (`BeanstalkConnection.connect`) and takes no factory, so
 * the test replaces that static method for its duration and puts it back afterwards.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { type QueueAddress, parseQueueAddress } from '../../src/reactor/queue/address.js';
import { BeanstalkConnection, type ReservedJob } from '../../src/reactor/queue/beanstalkConnection.js';
import { JOB_VERSION, type ReactorJob, encodeJob } from '../../src/reactor/queue/job.js';
import { inspect, parseJobKeys, seal } from '../../src/reactor/queue/jobAuth.js';
import { ActionError, type ActionOutcome, type ActionRunner, type JobContext } from '../../src/reactor/responder/actionTypes.js';
import type { RetryPolicy } from '../../src/reactor/responder/retryPolicy.js';
import { BanBudget, ResponderWorker, type WorkerCounters, newWorkerCounters } from '../../src/reactor/responder/worker.js';
import { recordingLog } from '../helpers/recordingLog.js';

const EVENT = 'ssh-auth-failure';
const TUBE = `befw-${EVENT}`;
const POLICY: RetryPolicy = { maxAttempts: 5, retryDelaySec: 2, retryDelayMaxSec: 600 };
const KEYS = parseJobKeys('k'.repeat(40));
const OTHER_KEYS = parseJobKeys('o'.repeat(40));

function job(id: string, over: Partial<ReactorJob> = {}): ReactorJob {
  return {
    v: JOB_VERSION,
    id,
    event: EVENT,
    trigger: 'sshd-password',
    subject: '203.0.113.7',
    fields: { user: 'root' },
    count: 5,
    device: { address: '198.51.100.2', hostname: 'web-01', via: 'direct', listener: 'tcp:514', name: 'web', transport: 'tcp' },
    evidence: { spoofable: false, udpActions: [] },
    firstSeenMs: 1_700_000_000_000,
    lineReceivedMs: 1_700_000_001_000,
    queuedMs: 1_700_000_001_005,
    parser: 'parser-1:1234',
    sample: 'Failed password for root from 203.0.113.7 port 22 ssh2',
    ...over,
  };
}

interface Scripted {
  readonly reserved: ReservedJob;
  /** beanstalkd's count of reservations of the job (stats-job `reserves`), this one included. */
  readonly reserves: number;
  /** The tube stats-job names (default: the event's). */
  readonly tube?: string;
}

/** The subset of BeanstalkConnection the worker uses, recording each command. */
class FakeConnection {
  readonly sent: string[] = [];
  /** Copies put to be buried with a note: id -> body. */
  readonly copies = new Map<number, Buffer>();
  isOpen = true;
  onIdle: () => void = () => undefined;

  constructor(readonly script: Scripted[]) {}

  async watch(tube: string): Promise<number> {
    this.sent.push(`watch ${tube}`);
    return 2;
  }
  async ignore(tube: string): Promise<void> {
    this.sent.push(`ignore ${tube}`);
  }
  async reserve(_seconds: number): Promise<ReservedJob | null> {
    const next = this.script[0];
    if (next === undefined) {
      this.onIdle();
      return null;
    }
    this.sent.push(`reserve -> ${next.reserved.id}`);
    return next.reserved;
  }
  private current(id: number): Scripted {
    const s = this.script.shift();
    assert.ok(s !== undefined && s.reserved.id === id, 'commands are about the job just reserved');
    return s;
  }
  async statsJob(id: number): Promise<Record<string, string> | null> {
    this.sent.push(`stats-job ${id}`);
    const s = this.script[0];
    return s?.reserved.id === id ? { id: String(id), state: 'reserved', reserves: String(s.reserves), tube: s.tube ?? TUBE } : null;
  }
  async use(tube: string): Promise<void> {
    this.sent.push(`use ${tube}`);
  }
  async put(body: Buffer, opts: { delaySec?: number }): Promise<number> {
    const id = 1000 + this.copies.size + 1;
    this.copies.set(id, body);
    this.sent.push(`put ${id} held ${(opts.delaySec ?? 0) > 0 ? 'yes' : 'no'}`);
    return id;
  }
  async reserveJob(id: number): Promise<ReservedJob | null> {
    this.sent.push(`reserve-job ${id}`);
    const body = this.copies.get(id);
    return body === undefined ? null : { id, body };
  }
  /** The note of a buried copy. */
  note(id: number): { reason: string; error: string } | null {
    const b = this.copies.get(id);
    return b === undefined ? null : inspect(b).note;
  }
  async delete(id: number): Promise<boolean> {
    this.current(id);
    this.sent.push(`delete ${id}`);
    return true;
  }
  async release(id: number, pri: number, delaySec: number): Promise<'released'> {
    this.current(id);
    this.sent.push(`release ${id} ${pri} ${delaySec}`);
    return 'released';
  }
  async bury(id: number, pri: number): Promise<boolean> {
    if (!this.copies.has(id)) this.current(id);
    this.sent.push(`bury ${id} ${pri}`);
    return true;
  }
  async touch(id: number): Promise<boolean> {
    this.sent.push(`touch ${id}`);
    return true;
  }
  close(): void {
    this.isOpen = false;
  }
}

/** An action that records the jobs it got and answers from a script (an Error is thrown). */
class FakeAction implements ActionRunner {
  readonly got: ReactorJob[] = [];
  constructor(
    readonly type: string,
    private readonly answers: (ActionOutcome | Error)[] = [],
    private readonly during: () => void = () => undefined,
  ) {}
  async run(j: ReactorJob, _ctx: JobContext): Promise<ActionOutcome> {
    this.got.push(j);
    this.during();
    const a = this.answers.shift() ?? { result: 'done', detail: {} };
    if (a instanceof Error) throw a;
    return a;
  }
}

const ADDR = parseQueueAddress('127.0.0.1:11300') as QueueAddress;
const realConnect = BeanstalkConnection.connect.bind(BeanstalkConnection);

interface Run {
  readonly conn: FakeConnection;
  readonly counters: WorkerCounters;
  readonly logged: ReturnType<typeof recordingLog>;
}

/** Runs a worker until the scripted jobs are used up. */
async function runWorker(
  script: Scripted[],
  actions: readonly ActionRunner[],
  opts: { policy?: RetryPolicy; ttrSec?: number; protectedReason?: string | null; budget?: BanBudget } = {},
): Promise<Run> {
  const conn = new FakeConnection(script);
  const connects: QueueAddress[] = [];
  BeanstalkConnection.connect = async (addr) => {
    connects.push(addr);
    return conn as unknown as BeanstalkConnection;
  };
  const logged = recordingLog();
  const counters = newWorkerCounters();
  const worker = new ResponderWorker(
    ADDR,
    {
      tubes: new Map([[TUBE, EVENT]]),
      actions: new Map([[EVENT, actions]]),
      policy: opts.policy ?? POLICY,
      ttrSec: opts.ttrSec ?? 60,
      connectTimeoutMs: 1000,
      keys: KEYS,
      guard: { isProtected: async () => opts.protectedReason ?? null, budget: opts.budget ?? new BanBudget(1000) },
      responderId: 'test:1',
    },
    logged.log,
    counters,
  );
  conn.onIdle = () => worker.stop();
  await worker.run();
  assert.deepEqual(connects, [ADDR]);
  assert.deepEqual(conn.sent.slice(0, 2), [`watch ${TUBE}`, 'ignore default'], 'watches its tubes, not the default one');
  assert.equal(conn.isOpen, false, 'the connection is closed when the worker stops');
  return { conn, counters, logged };
}

/** A job as a parser puts it: signed for the tube. A string is put as it is. */
const reserved = (id: number, j: ReactorJob | string, reserves = 1, tube?: string): Scripted => ({
  reserved: { id, body: typeof j === 'string' ? Buffer.from(j) : seal(KEYS, 'job', TUBE, encodeJob(j)) },
  reserves,
  ...(tube === undefined ? {} : { tube }),
});
/** The commands of a bury with a note: a held copy, reserved by id, buried; the original deleted. */
const buryNoted = (id: number, copy: number): string[] => [
  `use ${TUBE}`,
  `put ${copy} held yes`,
  `reserve-job ${copy}`,
  `bury ${copy} 1024`,
  `delete ${id}`,
];

describe('ResponderWorker', () => {
  beforeEach(() => {
    BeanstalkConnection.connect = () => Promise.reject(new Error('connect not replaced by the test'));
  });
  afterEach(() => {
    BeanstalkConnection.connect = realConnect;
    mock.timers.reset();
  });

  it('reserves a job, runs its actions in order, and deletes it', async () => {
    const first = new FakeAction('ban');
    const second = new FakeAction('vyos-address-group', [{ result: 'added', detail: { group: 'attackers' } }]);
    const j = job('job-0001-aaaa');
    const { conn, counters, logged } = await runWorker([reserved(11, j)], [first, second]);
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 11', 'stats-job 11', 'delete 11']);
    assert.deepEqual(first.got, [j], 'the action gets the decoded job');
    assert.deepEqual(second.got, [j]);
    assert.deepEqual(counters, { ...newWorkerCounters(), jobs: 1, done: 1, actions: 2 });
    const acted = logged.named('action');
    assert.deepEqual(
      acted.map((e) => [e.action, e.result]),
      [
        ['ban', 'done'],
        ['vyos-address-group', 'added'],
      ],
    );
    assert.equal(acted[1]?.group, 'attackers', 'the outcome detail is logged');
    assert.equal((acted[0]?.job as { id: string }).id, j.id);
  });

  it('releases a job whose action failed, with the delay of its attempt, and runs no later action', async () => {
    const failing = new FakeAction('ban', [new ActionError('ban', false, 'Consul did not answer')]);
    const later = new FakeAction('vyos-address-group');
    const { conn, counters, logged } = await runWorker([reserved(12, job('job-0002-bbbb'), 3)], [failing, later]);
    // retryDelaySec 2, attempt 3: 2 * 2^(3-1) = 8 s.
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 12', 'stats-job 12', 'release 12 1024 8']);
    assert.equal(later.got.length, 0);
    assert.deepEqual(counters, { ...newWorkerCounters(), jobs: 1, released: 1, actions: 1, actionFailures: 1 });
    const released = logged.named('job-released');
    assert.equal(released.length, 1);
    assert.equal(released[0]?.attempt, 3);
    assert.equal(released[0]?.delaySec, 8);
    assert.match(String(released[0]?.error), /Consul did not answer/);
  });

  it('caps the retry delay, and treats an unexpected exception as a transient failure', async () => {
    const failing = new FakeAction('ban', [new Error('socket hang up')]);
    const { conn, logged } = await runWorker([reserved(13, job('job-0003-cccc'), 4)], [failing], {
      policy: { maxAttempts: 10, retryDelaySec: 100, retryDelayMaxSec: 300 },
    });
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 13', 'stats-job 13', 'release 13 1024 300']);
    assert.equal(logged.named('action-failed')[0]?.permanent, false);
  });

  it('buries a job that failed its last attempt', async () => {
    const failing = new FakeAction('ban', [new ActionError('ban', false, 'Consul did not answer')]);
    const { conn, counters, logged } = await runWorker([reserved(14, job('job-0004-dddd'), POLICY.maxAttempts)], [failing]);
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 14', 'stats-job 14', ...buryNoted(14, 1001)]);
    assert.deepEqual(counters, { ...newWorkerCounters(), jobs: 1, buried: 1, actions: 1, actionFailures: 1 });
    assert.deepEqual(conn.note(1001)?.reason, `failed ${POLICY.maxAttempts} of ${POLICY.maxAttempts} attempts`);
    assert.match(String(conn.note(1001)?.error), /Consul did not answer/);
    const buried = logged.named('job-buried');
    assert.equal(buried.length, 1);
    assert.equal(buried[0]?.attempt, POLICY.maxAttempts);
    assert.equal(buried[0]?.reason, `failed ${POLICY.maxAttempts} of ${POLICY.maxAttempts} attempts`);
  });

  it('buries a job at once when its action failed permanently', async () => {
    const failing = new FakeAction('vyos-address-group', [new ActionError('vyos-address-group', true, 'HTTP 403: bad key')]);
    const { conn, logged } = await runWorker([reserved(15, job('job-0005-eeee'), 1)], [failing]);
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 15', 'stats-job 15', ...buryNoted(15, 1001)]);
    assert.equal(logged.named('job-buried')[0]?.reason, 'permanent failure');
  });

  it('rejects and buries, with the reason beside it, jobs unsigned, mis-signed, in the wrong tube, or not valid', async () => {
    const action = new FakeAction('ban');
    const forged = job('job-0007-gggg');
    const { conn, counters, logged } = await runWorker(
      [
        reserved(16, encodeJob(forged).toString()), // well-formed but unsigned: put by anyone
        { reserved: { id: 17, body: seal(OTHER_KEYS, 'job', TUBE, encodeJob(forged)) }, reserves: 1 }, // another key
        { reserved: { id: 18, body: seal(KEYS, 'job', 'befw-iface-down', encodeJob(forged)) }, reserves: 1 }, // signed for another tube
        { reserved: { id: 19, body: seal(KEYS, 'job', TUBE, Buffer.from('{"v":2,"id":"x"')) }, reserves: 1 }, // signed, not a job
        reserved(20, job('job-0008-hhhh', { event: 'iface-down' })), // signed for this tube, another event
      ],
      [action],
    );
    assert.equal(action.got.length, 0, 'nothing acted on');
    assert.deepEqual(
      [1001, 1002, 1003, 1004, 1005].map((id) => conn.note(id)?.reason),
      ['unsigned', 'unknown-key', 'bad-signature', 'bad-job', 'wrong-tube'],
    );
    assert.equal(conn.sent.filter((c) => c.startsWith('delete ')).length, 5, 'each original is replaced by its noted copy');
    assert.deepEqual(counters, { ...newWorkerCounters(), jobs: 5, buried: 5, rejected: 5, badJobs: 1 });
    assert.equal(logged.named('job-rejected').length, 5);
  });

  it('on a job resting on UDP lines runs only what the device allows for UDP, and never a disruptive action', async () => {
    const ban = new FakeAction('ban');
    const group = new FakeAction('vyos-address-group');
    const disable = new FakeAction('vyos-disable-interface');
    const spoofable = job('job-0010-jjjj', { evidence: { spoofable: true, udpActions: ['vyos-address-group', 'vyos-disable-interface'] } });
    const { counters, logged } = await runWorker([reserved(21, spoofable)], [ban, group, disable]);
    assert.deepEqual([ban.got.length, group.got.length, disable.got.length], [0, 1, 0]);
    assert.equal(counters.skippedUdp, 2);
    assert.deepEqual(
      logged.named('action-skipped').map((e) => e.action),
      ['ban', 'vyos-disable-interface'],
    );
  });

  it('drops a job about a protected subject before any action, with a warning and a counter', async () => {
    const ban = new FakeAction('ban');
    const { conn, counters, logged } = await runWorker([reserved(22, job('job-0011-kkkk'))], [ban], {
      protectedReason: 'protected: Consul server consul-1 (203.0.113.7/32)',
    });
    assert.equal(ban.got.length, 0);
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 22', 'stats-job 22', 'delete 22']);
    assert.equal(counters.protectedDropped, 1);
    assert.match(String(logged.named('protected-subject')[0]?.reason), /Consul server/);
  });

  it('past the ban budget, holds (buries) instead of acting, and alerts once', async () => {
    const budget = new BanBudget(2);
    const ban = new FakeAction('ban', [
      { result: 'banned', detail: {} },
      { result: 'banned', detail: {} },
    ]);
    const { conn, counters, logged } = await runWorker(
      [
        reserved(31, job('job-0031-aaaa')),
        reserved(32, job('job-0032-aaaa')),
        reserved(33, job('job-0033-aaaa')),
        reserved(34, job('job-0034-aaaa')),
      ],
      [ban],
      { budget },
    );
    assert.equal(ban.got.length, 2);
    assert.equal(counters.budgetHeld, 2);
    assert.equal(conn.note(1001)?.reason, 'ban-budget');
    assert.equal(logged.named('ban-budget-exceeded').length, 1);
  });

  it('touches the job while a slow action runs, at half its time to run', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    const slow = new FakeAction('ban', [], () => mock.timers.tick(30_000 * 2 + 1));
    const { conn } = await runWorker([reserved(19, job('job-0009-iiii'))], [slow], { ttrSec: 60 });
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 19', 'stats-job 19', 'touch 19', 'touch 19', 'delete 19']);
  });
});
