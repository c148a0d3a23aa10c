/**
 * The parser's side of the queue: puts jobs on one of several beanstalkd servers. A job goes to
 * the server its subject hashes to, so every job about one attacker lands in one FIFO; when that
 * server is down, to the next one that is up. Every job is signed for its tube (jobAuth.ts). Jobs wait in a bounded in-memory queue while no
 * server answers (the parser keeps parsing); beyond the bound they are dropped and counted.
 */
import type { Logger } from 'pino';
import type { QueueAddress } from './address.js';
import { BeanstalkConnection } from './beanstalkConnection.js';
import { type ReactorJob, encodeJob, tubeFor } from './job.js';
import { type JobKeys, seal } from './jobAuth.js';

interface Link {
  readonly addr: QueueAddress;
  conn: BeanstalkConnection | null;
  used: string | null;
  failures: number;
  downUntil: number;
}

export interface ProducerOptions {
  readonly tubePrefix: string;
  readonly ttrSec: number;
  readonly connectTimeoutMs: number;
  readonly maxPending: number;
  /** Every job is signed with the first key (responders act only on signed jobs). */
  readonly keys: JobKeys;
}

export interface ProducerCounters {
  put: number;
  putFailures: number;
  dropped: number;
}

/** FNV-1a: cheap, stable across processes (every parser sends one subject to one server). */
export function subjectHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

export class JobProducer {
  private readonly links: Link[];
  private readonly pending: ReactorJob[] = [];
  private pumping = false;
  private stopped = false;
  private wake: (() => void) | null = null;
  private idleWaiters: (() => void)[] = [];
  readonly counters: ProducerCounters = { put: 0, putFailures: 0, dropped: 0 };

  constructor(
    servers: readonly QueueAddress[],
    private readonly opts: ProducerOptions,
    private readonly log: Logger,
    private readonly onPut?: (job: ReactorJob, server: string, id: number) => void,
  ) {
    this.links = servers.map((addr) => ({ addr, conn: null, used: null, failures: 0, downUntil: 0 }));
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  submit(job: ReactorJob): boolean {
    if (this.pending.length >= this.opts.maxPending) {
      this.counters.dropped++;
      if (this.counters.dropped === 1 || this.counters.dropped % 1000 === 0) {
        this.log.error(
          {
            event: 'job-dropped',
            reason: 'queue unavailable and pending jobs at the limit',
            limit: this.opts.maxPending,
            dropped: this.counters.dropped,
            job: { id: job.id, event: job.event, subject: job.subject },
          },
          'job dropped',
        );
      }
      return false;
    }
    this.pending.push(job);
    if (!this.pumping) void this.pump();
    else this.wake?.();
    return true;
  }

  /** Resolves once nothing is pending (or after `timeoutMs`). */
  drain(timeoutMs: number): Promise<boolean> {
    if (this.pending.length === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(this.pending.length === 0), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(timer);
        resolve(true);
      });
    });
  }

  close(): void {
    this.stopped = true;
    this.wake?.();
    for (const l of this.links) l.conn?.close();
  }

  private async pump(): Promise<void> {
    this.pumping = true;
    try {
      while (!this.stopped && this.pending.length > 0) {
        const job = this.pending[0] as ReactorJob;
        const done = await this.putOne(job);
        if (done) {
          this.pending.shift();
          continue;
        }
        // Every server failed: wait for the first to come out of its backoff (or a stop).
        const next = Math.min(...this.links.map((l) => l.downUntil));
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, Math.max(50, next - Date.now()));
          this.wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
        this.wake = null;
      }
    } finally {
      this.pumping = false;
      if (this.pending.length === 0) {
        for (const w of this.idleWaiters.splice(0)) w();
      }
    }
  }

  private async putOne(job: ReactorJob): Promise<boolean> {
    const n = this.links.length;
    const start = subjectHash(job.subject) % n;
    const tube = tubeFor(this.opts.tubePrefix, job.event);
    const body = seal(this.opts.keys, 'job', tube, encodeJob(job));
    for (let k = 0; k < n; k++) {
      const link = this.links[(start + k) % n] as Link;
      if (link.conn === null && Date.now() < link.downUntil) continue;
      try {
        if (link.conn === null || !link.conn.isOpen) {
          link.conn = await BeanstalkConnection.connect(link.addr, this.opts.connectTimeoutMs);
          link.used = null;
        }
        if (link.used !== tube) {
          await link.conn.use(tube);
          link.used = tube;
        }
        const id = await link.conn.put(body, { ttrSec: this.opts.ttrSec });
        if (link.failures > 0) this.log.info({ event: 'queue-up', server: link.addr.text }, 'queue server reachable again');
        link.failures = 0;
        this.counters.put++;
        this.onPut?.(job, link.addr.text, id);
        return true;
      } catch (err) {
        this.counters.putFailures++;
        link.failures++;
        link.conn?.close();
        link.conn = null;
        // Exponential backoff with jitter, capped at 30 s.
        const backoff = Math.min(30_000, 250 * 2 ** Math.min(link.failures, 7));
        link.downUntil = Date.now() + backoff / 2 + Math.random() * (backoff / 2);
        this.log.warn(
          {
            event: 'queue-put-failed',
            server: link.addr.text,
            tube,
            job: job.id,
            failures: link.failures,
            retryInMs: Math.round(link.downUntil - Date.now()),
            err: (err as Error).message,
          },
          'putting a job failed',
        );
      }
    }
    return false;
  }
}
