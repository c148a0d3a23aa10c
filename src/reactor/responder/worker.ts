/**
 * One responder worker: a connection to one beanstalkd, watching the tubes of the configured
 * events, doing reserve → check → act → delete. Before anything is done, a job must earn it:
 *   - its signature must check out for the tube it was taken from (jobAuth.ts), its body must be
 *     a valid job, and its event must be the tube's: otherwise it is buried at once, the reason
 *     beside it for `befw queue peek --buried`;
 *   - evidence: a job that rests on UDP lines (spoofable) runs only the actions its devices allow
 *     for UDP, and never a disruptive one (vyos-disable-interface); the others are skipped;
 *   - a protected subject (protection.ts) is dropped with a warning and a counter, before any
 *     action, so nothing about it reaches Consul or a router;
 *   - the ban budget: past `banBudgetPerMinute` bans in the last minute this responder stops and
 *     buries (a circuit breaker an operator resets with `befw queue kick`), with an alert.
 * A failed action releases the job with a growing delay (or buries it, see retryPolicy). While
 * actions run, the reservation is touched so a slow device does not hand the job to another
 * worker half-way. A lost connection is re-made with backoff; a job reserved on it goes back to
 * the ready queue by beanstalkd's own rule.
 *
 * Every action is logged with the job, its result and the time from the log line to the action.
 */
import type { Logger } from 'pino';
import type { QueueAddress } from '../queue/address.js';
import { BeanstalkConnection, type ReservedJob } from '../queue/beanstalkConnection.js';
import { type ReactorJob, bodyExcerpt, decodeJob } from '../queue/job.js';
import { type JobKeys, type JobNote, open, withNote } from '../queue/jobAuth.js';
import { familyOf } from '../../core/netMatch.js';
import { ActionError, type ActionRunner, newJobContext } from './actionTypes.js';
import { type RetryPolicy, decideRetry } from './retryPolicy.js';

export interface WorkerCounters {
  jobs: number;
  done: number;
  released: number;
  buried: number;
  badJobs: number;
  /** Unsigned, mis-signed, or in the wrong tube. */
  rejected: number;
  /** Jobs about a protected subject, dropped before any action. */
  protectedDropped: number;
  /** Actions not run because the job rests on UDP lines. */
  skippedUdp: number;
  /** Jobs buried by the ban budget. */
  budgetHeld: number;
  actions: number;
  actionFailures: number;
}

export function newWorkerCounters(): WorkerCounters {
  return {
    jobs: 0,
    done: 0,
    released: 0,
    buried: 0,
    badJobs: 0,
    rejected: 0,
    protectedDropped: 0,
    skippedUdp: 0,
    budgetHeld: 0,
    actions: 0,
    actionFailures: 0,
  };
}

/** A sliding window of the last minute's bans, with its own breaker alert. */
class BanWindow {
  private readonly times: number[] = [];
  private alerted = false;

  constructor(private readonly perMinute: number) {}

  used(nowMs: number): number {
    while (this.times.length > 0 && nowMs - (this.times[0] as number) >= 60_000) this.times.shift();
    if (this.times.length < this.perMinute) this.alerted = false;
    return this.times.length;
  }

  firstAlert(): boolean {
    if (this.alerted) return false;
    this.alerted = true;
    return true;
  }

  record(nowMs: number): void {
    this.times.push(nowMs);
  }
}

/**
 * Events whose bans count against a budget of their own. A port-scan job rests on one SYN whose
 * source anyone can forge: a spray of forged "scanners" may open that breaker, never the one the
 * bans of sshd or haproxy (a completed login attempt) go through.
 */
export const SEPARATE_BUDGET_EVENTS: ReadonlySet<string> = new Set(['port-scan']);

/**
 * Bans per minute, shared by a responder's workers: a sliding window of the last minute, one for
 * SEPARATE_BUDGET_EVENTS each and one for all other events; each holds `perMinute`.
 */
export class BanBudget {
  private readonly windows = new Map<string, BanWindow>();

  constructor(readonly perMinute: number) {}

  private window(event: string | undefined): BanWindow {
    const lane = event !== undefined && SEPARATE_BUDGET_EVENTS.has(event) ? event : '';
    let w = this.windows.get(lane);
    if (w === undefined) {
      w = new BanWindow(this.perMinute);
      this.windows.set(lane, w);
    }
    return w;
  }

  used(nowMs: number, event?: string): number {
    return this.window(event).used(nowMs);
  }

  over(nowMs: number, event?: string): boolean {
    return this.used(nowMs, event) >= this.perMinute;
  }

  /** True once per trip of that event's breaker (for one alert, not one per job). */
  firstAlert(event?: string): boolean {
    return this.window(event).firstAlert();
  }

  record(nowMs: number, event?: string): void {
    this.window(event).record(nowMs);
  }
}

/** Actions that target an address (and so the protected list and the budget apply). */
const ADDRESS_ACTIONS = new Set(['ban', 'vyos-address-group']);
/** Actions that cut something off: only on evidence that cannot be forged. */
const DISRUPTIVE = new Set(['vyos-disable-interface']);

export interface WorkerGuard {
  /** Why the subject must not be acted on, or null; throws when that cannot be known now. */
  isProtected(address: string): Promise<string | null>;
  readonly budget: BanBudget;
}

export interface WorkerOptions {
  readonly tubes: ReadonlyMap<string, string>;
  readonly actions: ReadonlyMap<string, readonly ActionRunner[]>;
  readonly policy: RetryPolicy;
  readonly ttrSec: number;
  readonly connectTimeoutMs: number;
  readonly keys: JobKeys;
  readonly guard: WorkerGuard;
  /** host:pid, written in the note of a buried job. */
  readonly responderId: string;
}

const RESERVE_WAIT_SEC = 1;
const JOB_PRI = 1024;
/** A copy waiting to be buried is put delayed by this much, so nobody else can reserve it first. */
const HOLD_SEC = 2 ** 31 - 1;

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
    const stats = await conn.statsJob(reserved.id);
    const tube = stats?.tube ?? '';
    const attempt = Number(stats?.reserves ?? '1') || 1;
    const event = this.opts.tubes.get(tube);
    const reject = async (reason: string, error: string): Promise<void> => {
      this.counters.rejected++;
      this.log.error({ event: 'job-rejected', ...ref, tube, reason, error, body: bodyExcerpt(reserved.body) }, 'job rejected and buried');
      await this.buryWithNote(conn, reserved, tube, { reason, error, attempt });
    };
    if (event === undefined) return reject('unknown-tube', `tube "${tube}" is not one this responder acts on`);
    const opened = open(this.opts.keys, 'job', tube, reserved.body);
    if (!opened.ok) return reject(opened.reason, opened.error);
    const decoded = decodeJob(opened.payload);
    if (!decoded.ok) {
      this.counters.badJobs++;
      return reject('bad-job', decoded.error);
    }
    const job = decoded.job;
    if (job.event !== event) return reject('wrong-tube', `a job for event "${job.event}" in tube ${tube} (event "${event}")`);
    const runners = this.opts.actions.get(event) ?? [];
    const jobLog = {
      id: job.id,
      ...ref,
      event: job.event,
      trigger: job.trigger,
      subject: job.subject,
      count: job.count,
      device: job.device,
      evidence: job.evidence,
      parser: job.parser,
    };

    // Evidence: what a job resting on forgeable lines may still do.
    const runnable: ActionRunner[] = [];
    for (const r of runners) {
      const ok = !job.evidence.spoofable || (!DISRUPTIVE.has(r.type) && job.evidence.udpActions.includes(r.type));
      if (ok) {
        runnable.push(r);
        continue;
      }
      this.counters.skippedUdp++;
      this.log.warn(
        {
          event: 'action-skipped',
          job: jobLog,
          action: r.type,
          reason: DISRUPTIVE.has(r.type)
            ? 'a disruptive action needs TCP from the device or a trusted proxy; this job rests on UDP lines'
            : `this job rests on UDP lines, and the device allows only [${job.evidence.udpActions.join(', ')}] for UDP`,
        },
        `${r.type} skipped: evidence over UDP`,
      );
    }
    if (runnable.length === 0) return this.finish(conn, reserved, jobLog);

    // The protected list, before anything reaches Consul or a router.
    if (familyOf(job.subject) !== null && runnable.some((r) => ADDRESS_ACTIONS.has(r.type))) {
      let reason: string | null;
      try {
        reason = await this.opts.guard.isProtected(job.subject);
      } catch (err) {
        return this.failed(conn, reserved, tube, job, jobLog, attempt, new ActionError('protection', false, (err as Error).message));
      }
      if (reason !== null) {
        this.counters.protectedDropped++;
        this.log.warn({ event: 'protected-subject', job: jobLog, reason }, `job dropped: ${job.subject} is protected`);
        return this.finish(conn, reserved, jobLog);
      }
      const budget = this.opts.guard.budget;
      if (budget.over(Date.now(), job.event)) {
        this.counters.budgetHeld++;
        const error = `${budget.used(Date.now(), job.event)} bans in the last minute, budget ${budget.perMinute}: not acting (befw queue kick once checked)`;
        if (budget.firstAlert(job.event))
          this.log.error(
            { event: 'ban-budget-exceeded', job: jobLog, budget: budget.perMinute, separate: SEPARATE_BUDGET_EVENTS.has(job.event) },
            'ban budget exceeded: circuit open',
          );
        this.log.warn({ event: 'job-held', job: jobLog, reason: 'ban-budget' }, 'job held by the ban budget');
        await this.buryWithNote(conn, reserved, tube, { reason: 'ban-budget', error, attempt });
        return;
      }
    }

    const ctx = newJobContext();
    const touchEvery = Math.max(1000, (this.opts.ttrSec * 1000) / 2);
    const toucher = setInterval(() => void conn.touch(reserved.id).catch(() => undefined), touchEvery);
    let failure: ActionError | null = null;
    let changed = false;
    try {
      for (const runner of runnable) {
        this.counters.actions++;
        const t0 = Date.now();
        try {
          const outcome = await runner.run(job, ctx);
          if (outcome.result === 'banned' || outcome.result === 'added') changed = true;
          const warn = outcome.result === 'protected' || outcome.result === 'refused';
          this.log[warn ? 'warn' : 'info'](
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
    if (changed) this.opts.guard.budget.record(Date.now(), job.event);
    if (failure === null) return this.finish(conn, reserved, jobLog);
    await this.failed(conn, reserved, tube, job, jobLog, attempt, failure);
  }

  private async finish(conn: BeanstalkConnection, reserved: ReservedJob, jobLog: Record<string, unknown>): Promise<void> {
    const deleted = await conn.delete(reserved.id);
    this.counters.done++;
    if (!deleted) this.log.warn({ event: 'job-lost-reservation', job: jobLog }, 'job was no longer reserved by this worker when done');
  }

  /**
   * Buries the job with a note saying why: a copy with the note is put (held back by a delay so
   * nobody else takes it), reserved by id and buried, and the original deleted. If that fails
   * half-way the original is buried as it is.
   */
  private async buryWithNote(
    conn: BeanstalkConnection,
    reserved: ReservedJob,
    tube: string,
    note: Omit<JobNote, 'at' | 'by'>,
  ): Promise<void> {
    this.counters.buried++;
    const full: JobNote = { at: Date.now(), by: this.opts.responderId, ...note };
    if (tube !== '') {
      try {
        await conn.use(tube);
        const copy = await conn.put(withNote(reserved.body, full), { pri: JOB_PRI, delaySec: HOLD_SEC, ttrSec: this.opts.ttrSec });
        const got = await conn.reserveJob(copy);
        if (got !== null && (await conn.bury(copy, JOB_PRI))) {
          await conn.delete(reserved.id);
          return;
        }
      } catch (err) {
        this.log.warn({ event: 'bury-note-failed', err: (err as Error).message }, 'buried without a note');
      }
    }
    await conn.bury(reserved.id, JOB_PRI);
  }

  private async failed(
    conn: BeanstalkConnection,
    reserved: ReservedJob,
    tube: string,
    job: ReactorJob,
    jobLog: Record<string, unknown>,
    attempt: number,
    failure: ActionError,
  ): Promise<void> {
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
      await this.buryWithNote(conn, reserved, tube, { reason: decision.reason, error: failure.message, attempt });
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
