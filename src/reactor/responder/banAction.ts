/**
 * The `ban` action: the attacker goes into rules_deny (or the configured set and scope) in Consul
 * with an expiry of now + bantime, and every befw agent enforces it within a second.
 *
 * Host-sized: the attacker's address alone (/32, /128), wider only when the action says so
 * (prefixV4, prefixV6), and then only when the wider network touches nothing protected (else
 * the ban falls back to the address).
 *
 * Idempotent under at-least-once delivery and several responders:
 *   - a protected address (protectedList.ts, rules_allow) is never written;
 *   - a job whose line was read before an operator's unban (`befw reactor unban`) changes nothing;
 *   - a job already applied (its id is in the offence record) changes nothing;
 *   - a live ban is left as it is (a burst seen by two parsers still gives one ban);
 *   - the ban and the offence record are written in one Consul transaction, each with
 *     check-and-set on the index it was read at, so two responders racing on the same attacker
 *     cannot both write: the loser re-reads, finds the ban, and stops.
 */
import { parseExpiry, isLive } from '../../core/kvLayout.js';
import type { ReactorJob } from '../queue/job.js';
import type { BanAction } from '../config/reactorConfig.js';
import { familyOf } from '../../core/netMatch.js';
import { ActionError, type ActionOutcome, type ActionRunner, type JobContext } from './actionTypes.js';
import { asNet } from './protection.js';
import type { ReactorKv, TxnOp } from './consulKv.js';
import { ConsulError } from '../../consul/connection.js';
import { auditOp, jobEvidence, txnAudited } from './reactorAudit.js';
import { VERSION } from '../../core/version.js';
import { JOBS_REMEMBERED, type OffenceRecord, banKey, bantimeFor, offenceKey, parseOffence, previousBans } from './banPolicy.js';
import type { Protection } from './protection.js';

const MAX_RACES = 5;

export interface BanContext {
  readonly kv: ReactorKv;
  readonly protection: Protection;
  readonly stateKvPrefix: string;
  /** The datacenter for dc/node scope when the action names none, and for rules_allow: the local agent's. */
  readonly localDc: () => Promise<string>;
  readonly now: () => number;
}

export class BanRunner implements ActionRunner {
  readonly type = 'ban';

  constructor(
    private readonly action: BanAction,
    private readonly ctx: BanContext,
  ) {}

  async run(job: ReactorJob, ctx: JobContext): Promise<ActionOutcome> {
    try {
      return await this.apply(job, ctx);
    } catch (err) {
      if (err instanceof ActionError) throw err;
      if (err instanceof ConsulError) throw new ActionError('ban', false, err.message, { statusCode: err.statusCode }, { cause: err });
      throw new ActionError('ban', false, (err as Error).message, {}, { cause: err });
    }
  }

  /** What to ban: the address, or the configured wider network when nothing protected is in it. */
  private async target(address: string, scope: { dc: string; node: string | null }): Promise<{ target: string; narrowed: string | null }> {
    const family = familyOf(address);
    const prefix = family === 4 ? this.action.prefixV4 : this.action.prefixV6;
    if (prefix === (family === 4 ? 32 : 128)) return { target: address, narrowed: null };
    const net = asNet(`${address}/${prefix}`);
    if (net === null) return { target: address, narrowed: null };
    const why = await this.ctx.protection.reason(net.cidr, scope, this.ctx.now());
    return why === null ? { target: net.cidr, narrowed: null } : { target: address, narrowed: `${net.cidr} ${why}` };
  }

  private async apply(job: ReactorJob, jobCtx: JobContext): Promise<ActionOutcome> {
    const address = job.subject;
    if (familyOf(address) === null) throw new ActionError('ban', true, `subject "${address}" is not an IP address`);
    const a = this.action;
    const dc = a.dc ?? (await this.ctx.localDc());
    const scope = { dc, node: a.scope === 'node' ? a.node : null };
    const protectedBy = await this.ctx.protection.reason(address, scope, this.ctx.now());
    if (protectedBy !== null) return { result: 'protected', detail: { set: a.set, scope: a.scope, reason: protectedBy } };
    const { target, narrowed } = await this.target(address, scope);
    const key = banKey(a, dc, target);
    const where = { key, set: a.set, scope: a.scope, ...(narrowed === null ? {} : { narrowed }) };

    const recKey = offenceKey(this.ctx.stateKvPrefix, address);
    for (let race = 0; race < MAX_RACES; race++) {
      const nowMs = this.ctx.now();
      const nowSec = Math.floor(nowMs / 1000);
      const [ban, rec] = await Promise.all([this.ctx.kv.get(key), this.ctx.kv.get(recKey)]);
      const record = parseOffence(rec?.value ?? null);
      if (record !== null && record.clearedMs !== null && job.lineReceivedMs <= record.clearedMs) {
        jobCtx.cleared = true;
        return { result: 'cleared-by-operator', detail: { ...where, clearedMs: record.clearedMs } };
      }
      if (ban !== null) {
        const exp = parseExpiry(ban.value);
        if (exp.ok && isLive(exp.expiry, nowMs)) {
          jobCtx.banExpiry = exp.expiry ?? -1;
          if (record?.jobs.includes(job.id) === true) return { result: 'already-applied', detail: { ...where, offences: record.count } };
          return { result: 'already-banned', detail: { ...where, expiry: exp.expiry ?? -1 } };
        }
      }
      if (record?.jobs.includes(job.id) === true) return { result: 'already-applied', detail: { ...where, offences: record.count } };
      const previous = previousBans(record, a, nowMs);
      const bantimeSec = bantimeFor(a, previous);
      const expiry = nowSec + bantimeSec;
      const next: OffenceRecord = {
        count: previous + 1,
        lastBanMs: nowMs,
        lastExpiry: expiry,
        lastBantimeSec: bantimeSec,
        jobs: [...(record?.jobs ?? []), job.id].slice(-JOBS_REMEMBERED),
        event: job.event,
        device: { address: job.device.address, hostname: job.device.hostname },
        clearedMs: record?.clearedMs ?? null,
        target,
      };
      const ops: TxnOp[] = [
        { verb: 'cas', key: recKey, value: JSON.stringify(next), index: rec?.modifyIndex ?? 0 },
        { verb: 'cas', key, value: String(expiry), index: ban?.modifyIndex ?? 0 },
      ];
      const audit = auditOp(
        key,
        {
          op: 'add',
          by: 'reactor',
          reason: `${job.event}: ${job.trigger}, ${job.count} event(s), offence ${previous + 1}, banned ${bantimeSec}s`,
          tool: `befw-reactor ${VERSION} ban`,
          value: String(expiry),
          evidence: jobEvidence(job),
        },
        nowMs,
      );
      const r = await txnAudited(this.ctx.kv, ops, audit);
      if (r.ok) {
        jobCtx.banExpiry = expiry;
        return {
          result: 'banned',
          detail: {
            ...where,
            expiry,
            bantimeSec,
            offence: previous + 1,
            replaced: ban === null ? null : ban.value,
            ...(r.audit === 'written' ? {} : { audit: r.audit }),
          },
        };
      }
      // Someone else wrote in between: read again and decide again.
    }
    throw new ActionError('ban', false, `lost ${MAX_RACES} check-and-set races on ${key}`, where);
  }
}
