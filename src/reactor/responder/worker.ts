/**
 * One responder worker: a connection to one beanstalkd, watching the tubes of the configured
 * events, doing reserve → act → delete. A failed action releases the job with a growing delay
 * (or buries it, see retryPolicy); a job that is not a valid reactor job is logged and deleted
 * without acting. While actions run, the reservation is touched so a slow device does not hand
 * the job to another worker half-way. A lost connection is re-made with backoff; a job reserved
 * on it goes back to the ready queue by beanstalkd's own rule.
 *
 * Every action is logged with the job, its result and the time from the log line to the action.
 */
import type { Logger } from 'pino';
import type { QueueAddress } from '../queue/address.js';
import { BeanstalkConnection, type ReservedJob } from '../queue/beanstalkConnection.js';
import { type ReactorJob, bodyExcerpt, decodeJob } from '../queue/job.js';
import { ActionError, type ActionRunner } from './actionTypes.js';
import { type RetryPolicy, decideRetry } from './retryPolicy.js';

export interface WorkerCounters {
  jobs: number;
  done: number;
  released: number;
  buried: number;
  badJobs: number;
  actions: number;
  actionFailures: number;
}

export function newWorkerCounters(): WorkerCounters {
  return { jobs: 0, done: 0, released: 0, buried: 0, badJobs: 0, actions: 0, actionFailures: 0 };
}

export interface WorkerOptions {
  readonly tubes: ReadonlyMap<string, string>;
  readonly actions: ReadonlyMap<string, readonly ActionRunner[]>;
  readonly policy: RetryPolicy;
  readonly ttrSec: number;
  readonly connectTimeoutMs: number;
}

const RESERVE_WAIT_SEC = 1;
const JOB_PRI = 1024;

export class ResponderWorker {
  private stopped = false;
  private conn: BeanstalkConnection | null = null;
  private failures = 0;
  private wakeSleep: (() => void) | null = null;
  private reserving = false;

  constructor(
    private readonly addr: QueueAddress,
    private readonly opts: WorkerOptions,
    private readonly log: Logger,
    readonly counters: WorkerCounters,
  ) {}

  stop(): void {
    this.stopped = true;
    this.wakeSleep?.();
    // Waiting in reserve holds no job: drop the connection instead of waiting out the reserve.
    if (this.reserving) this.conn?.close();
  }

  async run(): Promise<void> {
    while (!this.stopped) {
      try {
        const conn = await this.connection();
        this.reserving = true;
        const reserved = await conn.reserve(RESERVE_WAIT_SEC).finally(() => (this.reserving = false));
        if (reserved === null) continue;
        await this.handle(conn, reserved);
      } catch (err) {
        this.conn?.close();
        this.conn = null;
        if (this.stopped) break;
        this.failures++;
        const backoff = Math.min(30_000, 200 * 2 ** Math.min(this.failures, 7));
        const waitMs = Math.round(backoff / 2 + Math.random() * (backoff / 2));
        this.log.warn(
          { event: 'queue-error', server: this.addr.text, err: (err as Error).message, failures: this.failures, retryInMs: waitMs },
          'queue connection failed',
        );
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, waitMs);
          this.wakeSleep = () => {
            clearTimeout(t);
            resolve();
          };
        });
        this.wakeSleep = null;
      }
    }
    this.conn?.close();
    this.conn = null;
  }

  private async connection(): Promise<BeanstalkConnection> {
    if (this.conn !== null && this.conn.isOpen) return this.conn;
    const conn = await BeanstalkConnection.connect(this.addr, this.opts.connectTimeoutMs);
    for (const tube of this.opts.tubes.keys()) await conn.watch(tube);
    await conn.ignore('default');
    if (this.failures > 0) this.log.info({ event: 'queue-up', server: this.addr.text }, 'queue server reachable again');
    this.failures = 0;
    this.conn = conn;
    return conn;
  }

  private async handle(conn: BeanstalkConnection, reserved: ReservedJob): Promise<void> {
    this.counters.jobs++;
    const ref = { server: this.addr.text, queueId: reserved.id };
    const decoded = decodeJob(reserved.body);
    const runners = decoded.ok ? this.opts.actions.get(decoded.job.event) : undefined;
    if (!decoded.ok || runners === undefined) {
      this.counters.badJobs++;
      const error = decoded.ok
        ? `no actions for event "${decoded.job.event}" (job in a tube this responder watches, but not its event)`
        : decoded.error;
      this.log.error({ event: 'bad-job', ...ref, error, body: bodyExcerpt(reserved.body) }, 'job dropped: not a valid reactor job');
      await conn.delete(reserved.id);
      return;
    }
    const job = decoded.job;
    const jobLog = {
      id: job.id,
      ...ref,
      event: job.event,
      trigger: job.trigger,
      subject: job.subject,
      count: job.count,
      device: job.device,
      parser: job.parser,
    };
    const touchEvery = Math.max(1000, (this.opts.ttrSec * 1000) / 2);
    const toucher = setInterval(() => void conn.touch(reserved.id).catch(() => undefined), touchEvery);
    let failure: ActionError | null = null;
    try {
      for (const runner of runners) {
        this.counters.actions++;
        const t0 = Date.now();
        try {
          const outcome = await runner.run(job);
          this.log.info(
            {
              event: 'action',
              job: jobLog,
              action: runner.type,
              result: outcome.result,
              ...outcome.detail,
              actionMs: Date.now() - t0,
              lineToActionMs: Date.now() - job.lineReceivedMs,
            },
            `${runner.type}: ${outcome.result}`,
          );
        } catch (err) {
          this.counters.actionFailures++;
          failure = err instanceof ActionError ? err : new ActionError(runner.type, false, (err as Error).message, {}, { cause: err });
          this.log.warn(
            {
              event: 'action-failed',
              job: jobLog,
              action: runner.type,
              error: failure.message,
              permanent: failure.permanent,
              ...failure.detail,
              actionMs: Date.now() - t0,
              lineToActionMs: Date.now() - job.lineReceivedMs,
            },
            `${runner.type} failed`,
          );
          break; // later actions run on the retry, after this one succeeded
        }
      }
    } finally {
      clearInterval(toucher);
    }
    if (failure === null) {
      const deleted = await conn.delete(reserved.id);
      this.counters.done++;
      if (!deleted) this.log.warn({ event: 'job-lost-reservation', job: jobLog }, 'job was no longer reserved by this worker when done');
      return;
    }
    await this.retry(conn, reserved, job, jobLog, failure);
  }

  private async retry(
    conn: BeanstalkConnection,
    reserved: ReservedJob,
    job: ReactorJob,
    jobLog: Record<string, unknown>,
    failure: ActionError,
  ): Promise<void> {
    const stats = await conn.statsJob(reserved.id);
    const attempt = Number(stats?.reserves ?? '1') || 1;
    const decision = decideRetry(this.opts.policy, attempt, failure.permanent);
    if (decision.kind === 'release') {
      await conn.release(reserved.id, JOB_PRI, decision.delaySec);
      this.counters.released++;
      this.log.warn(
        {
          event: 'job-released',
          job: jobLog,
          attempt,
          maxAttempts: this.opts.policy.maxAttempts,
          delaySec: decision.delaySec,
          error: failure.message,
        },
        'job released for a later attempt',
      );
    } else {
      await conn.bury(reserved.id, JOB_PRI);
      this.counters.buried++;
      this.log.error(
        {
          event: 'job-buried',
          job: jobLog,
          attempt,
          reason: decision.reason,
          error: failure.message,
          lineToActionMs: Date.now() - job.lineReceivedMs,
        },
        'job buried: `befw queue kick` retries it once the cause is fixed',
      );
    }
  }
}
