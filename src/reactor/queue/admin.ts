/**
 * Operator views of the queue: per server and per reactor tube, how many jobs are ready,
 * reserved, delayed and buried (`befw queue stats`), the next buried job with why it was buried
 * (`befw queue peek --buried`), and kicking buried jobs back to ready once
 * their cause is fixed (`befw queue kick`). Only the reactor's tubes (those with the configured
 * prefix) are shown or touched. A server that does not answer is reported, not fatal.
 */
import type { QueueAddress } from './address.js';
import { BeanstalkConnection } from './beanstalkConnection.js';
import { type JobNote, inspect } from './jobAuth.js';
import { printable } from '../../core/address.js';

export interface TubeStats {
  readonly tube: string;
  readonly ready: number;
  readonly reserved: number;
  readonly delayed: number;
  readonly buried: number;
  readonly total: number;
  readonly waiting: number;
}

export interface ServerStats {
  readonly server: string;
  readonly error: string | null;
  readonly tubes: readonly TubeStats[];
}

async function withConnection<T>(addr: QueueAddress, timeoutMs: number, fn: (c: BeanstalkConnection) => Promise<T>): Promise<T> {
  const c = await BeanstalkConnection.connect(addr, timeoutMs);
  try {
    return await fn(c);
  } finally {
    c.close();
  }
}

const num = (v: string | undefined): number => Number(v ?? '0') || 0;

export async function queueStats(servers: readonly QueueAddress[], prefix: string, timeoutMs: number): Promise<ServerStats[]> {
  return Promise.all(
    servers.map(async (addr): Promise<ServerStats> => {
      try {
        const tubes = await withConnection(addr, timeoutMs, async (c) => {
          const names = (await c.listTubes()).filter((t) => t.startsWith(prefix)).sort();
          const out: TubeStats[] = [];
          for (const tube of names) {
            const s = await c.statsTube(tube);
            if (s === null) continue; // went away between the two commands
            out.push({
              tube,
              ready: num(s['current-jobs-ready']),
              reserved: num(s['current-jobs-reserved']),
              delayed: num(s['current-jobs-delayed']),
              buried: num(s['current-jobs-buried']),
              total: num(s['total-jobs']),
              waiting: num(s['current-waiting']),
            });
          }
          return out;
        });
        return { server: addr.text, error: null, tubes };
      } catch (err) {
        return { server: addr.text, error: (err as Error).message, tubes: [] };
      }
    }),
  );
}

export interface KickResult {
  readonly server: string;
  readonly tube: string;
  readonly kicked: number;
  readonly error: string | null;
}

/**
 * Kicks up to `bound` buried jobs per tube. beanstalkd's `kick` moves delayed jobs when a tube
 * has no buried ones; that would cut short a retry delay, so tubes without buried jobs are skipped.
 */
export async function kickBuried(
  servers: readonly QueueAddress[],
  tubes: readonly string[] | null,
  prefix: string,
  bound: number,
  timeoutMs: number,
): Promise<KickResult[]> {
  const out: KickResult[] = [];
  for (const addr of servers) {
    try {
      await withConnection(addr, timeoutMs, async (c) => {
        const names = tubes ?? (await c.listTubes()).filter((t) => t.startsWith(prefix)).sort();
        for (const tube of names) {
          const s = await c.statsTube(tube);
          const buried = num(s?.['current-jobs-buried']);
          if (buried === 0) {
            out.push({ server: addr.text, tube, kicked: 0, error: null });
            continue;
          }
          await c.use(tube);
          out.push({ server: addr.text, tube, kicked: await c.kick(Math.min(bound, buried)), error: null });
        }
      });
    } catch (err) {
      out.push({ server: addr.text, tube: '*', kicked: 0, error: (err as Error).message });
    }
  }
  return out;
}

export interface BuriedView {
  readonly server: string;
  readonly tube: string;
  readonly buried: number;
  /** The next buried job (the one `kick` moves first), as an operator needs to see it. */
  readonly next: {
    readonly queueId: number;
    readonly signed: boolean;
    readonly job: Record<string, unknown> | null;
    readonly body: string;
    readonly note: JobNote | null;
  } | null;
  readonly error: string | null;
}

/**
 * Buried jobs per tube: how many, and the next one with the note its responder left (why it was
 * buried, the last error). beanstalkd shows only the next buried job of a tube; kicking it shows
 * the one after.
 */
export async function peekBuried(
  servers: readonly QueueAddress[],
  tubes: readonly string[] | null,
  prefix: string,
  timeoutMs: number,
): Promise<BuriedView[]> {
  const out: BuriedView[] = [];
  for (const addr of servers) {
    try {
      await withConnection(addr, timeoutMs, async (c) => {
        const names = tubes ?? (await c.listTubes()).filter((t) => t.startsWith(prefix)).sort();
        for (const tube of names) {
          const buried = num((await c.statsTube(tube))?.['current-jobs-buried']);
          if (buried === 0) continue;
          await c.use(tube);
          const j = await c.peekBuried();
          let next: BuriedView['next'] = null;
          if (j !== null) {
            const seen = inspect(j.body);
            let job: Record<string, unknown> | null = null;
            try {
              const parsed: unknown = JSON.parse(seen.payload.toString('utf8'));
              if (typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)) job = parsed as Record<string, unknown>;
            } catch {
              job = null;
            }
            // Whoever reached the queue wrote these bytes (the note is unsigned): printable only.
            const n = seen.note;
            const note =
              n === null ? null : { ...n, by: printable(n.by, 200), reason: printable(n.reason, 100), error: printable(n.error, 1000) };
            next = { queueId: j.id, signed: seen.signed, job, body: printable(seen.payload.toString('utf8'), 300), note };
          }
          out.push({ server: addr.text, tube, buried, next, error: null });
        }
      });
    } catch (err) {
      out.push({ server: addr.text, tube: '*', buried: 0, next: null, error: (err as Error).message });
    }
  }
  return out;
}
