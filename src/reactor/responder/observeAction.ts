/**
 * The `observe` action: a parser's sum of observe-mode sightings (observeAggregate.ts) merged into
 * `befw-observed/<tag>/<addr>` = {count, first, last, expires, nodes} (core/observe.ts), read by
 * `befw observed SET` and `befw client add SET --from-observed`. BEFW agents never read it (they
 * read only befw/...), and befw's agent does not either: nothing here changes a firewall.
 *
 * Bounded in Consul: at most OBSERVED_MAX_PER_SET live addresses per tag. A new address on a full
 * tag first takes the place of an expired record, else of the lowest count if its own is higher,
 * else it is not recorded (`set-full`): an attacker spraying source addresses cannot grow the KV.
 * Written with check-and-set so several responders merge, never overwrite each other.
 */
import { printable } from '../../core/address.js';
import { familyOf } from '../../core/netMatch.js';
import {
  OBSERVED_MAX_PER_SET,
  OBSERVE_TAG,
  type ObservedRecord,
  isObservedLive,
  mergeObserved,
  observedKey,
  observedPrefix,
  parseObservedRecord,
} from '../../core/observe.js';
import { ConsulError } from '../../consul/connection.js';
import type { ObserveAction } from '../config/reactorConfig.js';
import type { ReactorJob } from '../queue/job.js';
import { ActionError, type ActionOutcome, type ActionRunner } from './actionTypes.js';
import type { KvEntry, ReactorKv, TxnOp } from './consulKv.js';

const MAX_RACES = 5;

export interface ObserveContext {
  readonly kv: ReactorKv;
  readonly now: () => number;
}

export class ObserveRunner implements ActionRunner {
  readonly type = 'observe';

  constructor(
    private readonly action: ObserveAction,
    private readonly ctx: ObserveContext,
  ) {}

  async run(job: ReactorJob): Promise<ActionOutcome> {
    const tag = job.fields.set ?? '';
    if (!OBSERVE_TAG.test(tag)) throw new ActionError('observe', true, `field set "${printable(tag, 40)}" is not a set tag`);
    if (familyOf(job.subject) === null)
      throw new ActionError('observe', true, `subject "${printable(job.subject, 64)}" is not an IP address`);
    const nodes = (job.fields.nodes ?? '').split(',').filter((n) => n !== '');
    try {
      return await this.merge(tag, job.subject, Math.max(1, Math.floor(job.count)), nodes);
    } catch (err) {
      if (err instanceof ActionError) throw err;
      const status = err instanceof ConsulError ? { statusCode: err.statusCode } : {};
      throw new ActionError('observe', false, (err as Error).message, status, { cause: err });
    }
  }

  private async merge(tag: string, addr: string, count: number, nodes: readonly string[]): Promise<ActionOutcome> {
    const key = observedKey(tag, addr);
    for (let race = 0; race < MAX_RACES; race++) {
      const nowSec = Math.floor(this.ctx.now() / 1000);
      const cur = await this.ctx.kv.get(key);
      const prev = parseObservedRecord(cur?.value ?? null);
      const live = prev !== null && isObservedLive(prev, nowSec) ? prev : null;
      let next: ObservedRecord = mergeObserved(live, count, nodes[0] ?? null, nowSec, this.action.ttlSec);
      for (const n of nodes.slice(1)) next = { ...mergeObserved(next, 0, n, nowSec, this.action.ttlSec), count: next.count };
      const ops: TxnOp[] = [{ verb: 'cas', key, value: JSON.stringify(next), index: cur?.modifyIndex ?? 0 }];
      if (cur === null) {
        const room = await this.makeRoom(tag, next.count, nowSec);
        if (room === 'full') return { result: 'set-full', detail: { key, count: next.count, max: OBSERVED_MAX_PER_SET } };
        if (room !== null) ops.push(room);
      }
      const r = await this.ctx.kv.txn(ops);
      if (r.ok) return { result: live === null ? 'recorded' : 'updated', detail: { key, count: next.count, nodes: next.nodes } };
    }
    throw new ActionError('observe', false, `lost ${MAX_RACES} check-and-set races on ${key}`, { key });
  }

  /** Null: there is room; an op deleting the record to replace; 'full': the newcomer does not make it. */
  private async makeRoom(tag: string, count: number, nowSec: number): Promise<TxnOp | null | 'full'> {
    const entries: KvEntry[] = await this.ctx.kv.list(observedPrefix(tag));
    if (entries.length < OBSERVED_MAX_PER_SET) return null;
    let victim: { entry: KvEntry; count: number } | null = null;
    for (const e of entries) {
      const rec = parseObservedRecord(e.value);
      // Expired or unreadable records go first.
      const c = rec === null || !isObservedLive(rec, nowSec) ? -1 : rec.count;
      if (victim === null || c < victim.count) victim = { entry: e, count: c };
    }
    if (victim === null || victim.count >= count) return 'full';
    return { verb: 'delete-cas', key: victim.entry.key, index: victim.entry.modifyIndex };
  }
}
