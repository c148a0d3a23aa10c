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
import { ActionError, type ActionOutcome, type ActionRunner } from '../../src/reactor/responder/actionTypes.js';
import type { RetryPolicy } from '../../src/reactor/responder/retryPolicy.js';
import { ResponderWorker, type WorkerCounters, newWorkerCounters } from '../../src/reactor/responder/worker.js';
import { recordingLog } from '../helpers/recordingLog.js';

const EVENT = 'ssh-auth-failure';
const TUBE = `befw-${EVENT}`;
const POLICY: RetryPolicy = { maxAttempts: 5, retryDelaySec: 2, retryDelayMaxSec: 600 };

function job(id: string, over: Partial<ReactorJob> = {}): ReactorJob {
  return {
    v: JOB_VERSION,
    id,
    event: EVENT,
    trigger: 'sshd-password',
    subject: '203.0.113.7',
    fields: { user: 'root' },
    count: 5,
    device: { address: '198.51.100.2', hostname: 'web-01', via: 'direct', listener: 'tcp:514' },
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
}

/** The subset of BeanstalkConnection the worker uses, recording each command. */
class FakeConnection {
  readonly sent: string[] = [];
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
    return s?.reserved.id === id ? { id: String(id), state: 'reserved', reserves: String(s.reserves) } : null;
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
    this.current(id);
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
  async run(j: ReactorJob): Promise<ActionOutcome> {
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
  opts: { policy?: RetryPolicy; ttrSec?: number } = {},
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

const reserved = (id: number, j: ReactorJob | string, reserves = 1): Scripted => ({
  reserved: { id, body: Buffer.from(typeof j === 'string' ? j : encodeJob(j)) },
  reserves,
});

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
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 11', 'delete 11']);
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
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 14', 'stats-job 14', 'bury 14 1024']);
    assert.deepEqual(counters, { ...newWorkerCounters(), jobs: 1, buried: 1, actions: 1, actionFailures: 1 });
    const buried = logged.named('job-buried');
    assert.equal(buried.length, 1);
    assert.equal(buried[0]?.attempt, POLICY.maxAttempts);
    assert.equal(buried[0]?.reason, `failed ${POLICY.maxAttempts} of ${POLICY.maxAttempts} attempts`);
  });

  it('buries a job at once when its action failed permanently', async () => {
    const failing = new FakeAction('vyos-address-group', [new ActionError('vyos-address-group', true, 'HTTP 403: bad key')]);
    const { conn, logged } = await runWorker([reserved(15, job('job-0005-eeee'), 1)], [failing]);
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 15', 'stats-job 15', 'bury 15 1024']);
    assert.equal(logged.named('job-buried')[0]?.reason, 'permanent failure');
  });

  it('drops a job that is not a valid reactor job without acting on it', async () => {
    const action = new FakeAction('ban');
    const { conn, counters, logged } = await runWorker(
      [
        reserved(16, '{"v":1,"id":"x"'),
        reserved(17, JSON.stringify({ ...job('job-0007-gggg'), subject: '203.0.113.7; rm -rf /' })),
        reserved(18, job('job-0008-hhhh', { event: 'interface-down' })),
      ],
      [action],
    );
    // The worker deletes such a job (worker.ts: "logged and deleted without acting"); it is
    // not buried for an operator.
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 16', 'delete 16', 'reserve -> 17', 'delete 17', 'reserve -> 18', 'delete 18']);
    assert.equal(action.got.length, 0);
    assert.deepEqual(counters, { ...newWorkerCounters(), jobs: 3, badJobs: 3 });
    const bad = logged.named('bad-job');
    assert.equal(bad.length, 3);
    assert.match(String(bad[0]?.error), /^not JSON/);
    assert.match(String(bad[1]?.error), /^\/subject: /);
    assert.match(String(bad[2]?.error), /no actions for event "interface-down"/);
  });

  it('touches the job while a slow action runs, at half its time to run', async () => {
    mock.timers.enable({ apis: ['setInterval'] });
    const slow = new FakeAction('ban', [], () => mock.timers.tick(30_000 * 2 + 1));
    const { conn } = await runWorker([reserved(19, job('job-0009-iiii'))], [slow], { ttrSec: 60 });
    assert.deepEqual(conn.sent.slice(2), ['reserve -> 19', 'touch 19', 'touch 19', 'delete 19']);
  });
});
