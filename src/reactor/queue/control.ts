/**
 * Telling every parser to forget a subject (`befw reactor unban`): beanstalkd has no broadcast,
 * so each running parser watches a control tube of its own on every queue server,
 * `<prefix>control.<host>.<pid>`, which beanstalkd keeps only while someone watches it. The unban
 * command lists the tubes of every server and puts one signed message (jobAuth.ts, kind "ctl")
 * into each control tube; a parser checks the signature, forgets the subject's counters and
 * de-duplication, and deletes the message. A tube name holds a ".", which no event name does, so
 * control tubes never mix with event tubes.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import type { QueueAddress } from './address.js';
import { BeanstalkConnection } from './beanstalkConnection.js';
import { type JobKeys, open, seal } from './jobAuth.js';

export interface ControlMessage {
  readonly op: 'forget';
  readonly subject: string;
  readonly at: number;
  readonly by: string;
}

const SUBJECT = /^[A-Za-z0-9._:@/-]{1,64}$/;

export function controlTubePrefix(prefix: string): string {
  return `${prefix}control.`;
}

/** This process's control tube. */
export function controlTube(prefix: string, pid = process.pid, host = hostname()): string {
  const tag = host.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 60) || 'host';
  return `${controlTubePrefix(prefix)}${tag}.${pid}`;
}

export function decodeControl(payload: Buffer): ControlMessage | null {
  try {
    const m = JSON.parse(payload.toString('utf8')) as Partial<ControlMessage>;
    if (m.op !== 'forget' || typeof m.subject !== 'string' || !SUBJECT.test(m.subject)) return null;
    return { op: 'forget', subject: m.subject, at: Number(m.at) || 0, by: String(m.by ?? '').slice(0, 200) };
  } catch {
    return null;
  }
}

/** Puts a signed "forget" into every parser's control tube on every server; how many per server (or why not). */
export async function broadcastForget(
  servers: readonly QueueAddress[],
  prefix: string,
  keys: JobKeys,
  subject: string,
  timeoutMs: number,
): Promise<{ server: string; parsers: number; error: string | null }[]> {
  const payload = Buffer.from(JSON.stringify({ op: 'forget', subject, at: Date.now(), by: `${hostname()}:${process.pid}` }));
  return Promise.all(
    servers.map(async (addr) => {
      let c: BeanstalkConnection | null = null;
      try {
        c = await BeanstalkConnection.connect(addr, timeoutMs);
        const tubes = (await c.listTubes()).filter((t) => t.startsWith(controlTubePrefix(prefix)));
        for (const tube of tubes) {
          await c.use(tube);
          await c.put(seal(keys, 'ctl', tube, payload), { ttrSec: 60 });
        }
        return { server: addr.text, parsers: tubes.length, error: null };
      } catch (err) {
        return { server: addr.text, parsers: 0, error: (err as Error).message };
      } finally {
        c?.close();
      }
    }),
  );
}

/** A parser's side: watches its control tube on every server and hands verified messages on. */
export class ControlListener {
  private stopped = false;
  private readonly conns = new Set<BeanstalkConnection>();
  private readonly sleeps = new Set<() => void>();
  readonly tube: string;

  constructor(
    private readonly servers: readonly QueueAddress[],
    prefix: string,
    private readonly keys: JobKeys,
    private readonly timeoutMs: number,
    private readonly log: Logger,
    private readonly onMessage: (m: ControlMessage) => void,
  ) {
    this.tube = controlTube(prefix);
  }

  start(): Promise<void[]> {
    return Promise.all(this.servers.map((s) => this.loop(s)));
  }

  stop(): void {
    this.stopped = true;
    for (const c of this.conns) c.close();
    for (const wake of this.sleeps) wake();
  }

  private async loop(addr: QueueAddress): Promise<void> {
    let failures = 0;
    while (!this.stopped) {
      let c: BeanstalkConnection | null = null;
      try {
        c = await BeanstalkConnection.connect(addr, this.timeoutMs);
        this.conns.add(c);
        await c.watch(this.tube);
        await c.ignore('default');
        failures = 0;
        while (!this.stopped) {
          const job = await c.reserve(5);
          if (job === null) continue;
          const opened = open(this.keys, 'ctl', this.tube, job.body);
          const msg = opened.ok ? decodeControl(opened.payload) : null;
          if (msg === null)
            this.log.warn(
              { event: 'control-rejected', server: addr.text, error: opened.ok ? 'not a control message' : opened.error },
              'control message rejected',
            );
          else this.onMessage(msg);
          await c.delete(job.id);
        }
      } catch (err) {
        if (this.stopped) break;
        failures++;
        const waitMs = Math.min(30_000, 250 * 2 ** Math.min(failures, 7));
        this.log.debug({ event: 'control-error', server: addr.text, err: (err as Error).message, retryInMs: waitMs }, 'control tube');
        await new Promise<void>((resolve) => {
          const wake = (): void => {
            clearTimeout(t);
            this.sleeps.delete(wake);
            resolve();
          };
          const t = setTimeout(wake, waitMs);
          this.sleeps.add(wake);
        });
      } finally {
        if (c !== null) {
          this.conns.delete(c);
          c.close();
        }
      }
    }
  }
}
