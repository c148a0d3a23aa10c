/**
 * Operator views of the queue: per server and per reactor tube, how many jobs are ready,
 * reserved, delayed and buried (`befw queue stats`), and kicking buried jobs back to ready once
 * their cause is fixed (`befw queue kick`). Only the reactor's tubes (those with the configured
 * prefix) are shown or touched. A server that does not answer is reported, not fatal.
 */
import type { QueueAddress } from './address.js';
import { BeanstalkConnection } from './beanstalkConnection.js';

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
