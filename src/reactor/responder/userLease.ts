/**
 * The `user-lease` action: RADIUS logins and DHCP leases joined per MAC into the user's alias,
 * `befw/$alias$/$user.NAME$/ADDR = <lease end>` (README "Users from DHCP and RADIUS").
 *
 * State: one record per MAC under `<stateKvPrefix>/users/mac/<mac>` (a path befw agents never
 * read), holding who logged in from it, which address it leases, until when, and the key it
 * granted. Each job reads the record, decides (core/userAlias.ts, pure) and writes the record,
 * the grant and the deletion of a moved or ended grant in one Consul transaction with
 * check-and-set on the record, so several responders and redelivered jobs agree: a lost race
 * reads again and decides again.
 *
 * Trust: the job is signed by a parser that took the line from a configured device whose `events`
 * lists the event (the DHCP and RADIUS servers; pipeline.ts mayProduce) under an anchored pattern
 * bound to the server's program name. The user name is whatever someone typed at a login prompt:
 * it is refused unless alias-safe (checkUserName), an address outside the action's `networks` is
 * refused, and a lease time a line states is capped by `maxLeaseSec`.
 *
 * A reassigned address: `<stateKvPrefix>/users/addr/<addr>` names the MAC that holds it (and the
 * receive time of the line that gave it); a newer lease of the address to another MAC takes it
 * from the old one, deleting its grant, in the same transaction.
 *
 * Audit (core/audit.ts): a grant carries its record (by `reactor`, with the line as evidence) and
 * a revocation its tombstone, in the same transaction; a token that may not write befw-audit/
 * still gets the grant written, and the outcome says the record was not.
 */
import { VERSION } from '../../core/version.js';
import type { UserLeaseAction } from '../config/reactorConfig.js';
import type { ReactorJob } from '../queue/job.js';
import { LEASE_OPS } from '../syslog/leaseTriggers.js';
import { ConsulError } from '../../consul/connection.js';
import { auditOp, jobEvidence, txnAudited } from './reactorAudit.js';
import {
  type Decision,
  type LeaseEvent,
  type MacRecord,
  canonicalMac,
  checkUserName,
  decideLease,
  encodeAddrOwner,
  evictAddress,
  leaseAddress,
  parseAddrOwner,
  parseMacRecord,
  withoutAddress,
} from '../../core/userAlias.js';
import { ActionError, type ActionOutcome, type ActionRunner } from './actionTypes.js';
import type { ReactorKv, TxnOp } from './consulKv.js';

const MAX_RACES = 5;

interface IndexChange {
  readonly decision: Decision;
  /** Index writes (and the evicted MAC's record), checked-and-set with the record. */
  readonly ops: readonly TxnOp[];
  /** The MAC the address was taken from, and its grant to delete. */
  readonly evicted: { readonly mac: string; readonly addr: string; readonly revoke: string | null } | null;
}

export interface UserLeaseContext {
  readonly kv: ReactorKv;
  readonly stateKvPrefix: string;
  readonly now: () => number;
}

export function macRecordKey(prefix: string, mac: string): string {
  return `${prefix}/users/mac/${mac}`;
}

/** Which MAC holds an address now (core/userAlias.ts AddrOwner): a reassigned address leaves its old MAC. */
export function addrIndexKey(prefix: string, addr: string): string {
  return `${prefix}/users/addr/${addr}`;
}

type Parsed = { readonly ok: true; readonly mac: string; readonly event: LeaseEvent } | { readonly ok: false; readonly refused: string };

/** The job's fields as a lease event; a field that is not what the trigger promises is permanent. */
export function leaseEventOf(job: ReactorJob, a: UserLeaseAction): Parsed {
  const f = job.fields;
  // Own keys only: "constructor" is not a verb.
  const op = f.op !== undefined && Object.hasOwn(LEASE_OPS, f.op) ? LEASE_OPS[f.op] : undefined;
  if (op === undefined) throw new ActionError('user-lease', true, `job field op "${f.op ?? ''}" is not a lease or login verb`);
  const mac = canonicalMac(f.mac ?? '');
  if (mac === null) throw new ActionError('user-lease', true, `job field mac "${f.mac ?? ''}" is not a MAC address`);
  const lineSec = Math.floor(job.lineReceivedMs / 1000);
  const addrOf = (required: boolean): string | null => {
    if (f.addr === undefined || f.addr === '') {
      if (required) throw new ActionError('user-lease', true, 'job has no addr field');
      return null;
    }
    const addr = leaseAddress(f.addr);
    if (addr === null) throw new ActionError('user-lease', true, `job field addr "${f.addr}" is not a unicast IP address a lease can hold`);
    return addr;
  };
  const outside = (addr: string | null): Parsed | null =>
    addr === null || a.networks.has(addr)
      ? null
      : { ok: false, refused: `address ${addr} is outside the action's networks (${a.networks.cidrs.map((n) => n.cidr).join(', ')})` };
  if (op === 'lease' || op === 'release') {
    const addr = addrOf(true) as string;
    const refused = outside(addr);
    if (refused !== null) return refused;
    if (op === 'release') return { ok: true, mac, event: { kind: 'release', addr } };
    const stated = f.lease === undefined ? null : Number(f.lease);
    const seconds = stated === null || !Number.isSafeInteger(stated) ? a.leaseSec : Math.min(stated, a.maxLeaseSec);
    return { ok: true, mac, event: { kind: 'lease', addr, until: lineSec + seconds } };
  }
  const user = checkUserName(f.user ?? '');
  if (!user.ok) return { ok: false, refused: user.error };
  const addr = addrOf(false);
  const refused = outside(addr);
  if (refused !== null) return refused;
  if (op === 'logout') return { ok: true, mac, event: { kind: 'logout', user: user.name, addr } };
  return { ok: true, mac, event: { kind: 'login', user: user.name, addr, until: lineSec + a.loginSec } };
}

export class UserLeaseRunner implements ActionRunner {
  readonly type = 'user-lease';

  constructor(
    private readonly action: UserLeaseAction,
    private readonly ctx: UserLeaseContext,
  ) {}

  async run(job: ReactorJob): Promise<ActionOutcome> {
    try {
      return await this.apply(job);
    } catch (err) {
      if (err instanceof ActionError) throw err;
      if (err instanceof ConsulError)
        throw new ActionError('user-lease', false, err.message, { statusCode: err.statusCode }, { cause: err });
      throw new ActionError('user-lease', false, (err as Error).message, {}, { cause: err });
    }
  }

  private async apply(job: ReactorJob): Promise<ActionOutcome> {
    const parsed = leaseEventOf(job, this.action);
    if (!parsed.ok)
      return { result: 'refused', detail: { reason: parsed.refused, user: job.fields.user ?? null, addr: job.fields.addr ?? null } };
    const { mac, event } = parsed;
    const recKey = macRecordKey(this.ctx.stateKvPrefix, mac);
    for (let race = 0; race < MAX_RACES; race++) {
      const nowMs = this.ctx.now();
      const entry = await this.ctx.kv.get(recKey);
      const prev = parseMacRecord(entry?.value ?? null);
      const decided = decideLease(prev, event, job.lineReceivedMs, Math.floor(nowMs / 1000));
      if (decided.stale) return { result: 'stale', detail: { mac, op: event.kind, user: prev.user, addr: prev.addr } };
      const index = await this.addressIndex(mac, prev, decided, job.lineReceivedMs);
      const d = index.decision;
      const detail = { mac, op: event.kind, user: d.record.user, addr: d.record.addr };
      const ops: TxnOp[] = [{ verb: 'cas', key: recKey, value: JSON.stringify(d.record), index: entry?.modifyIndex ?? 0 }, ...index.ops];
      const audits: TxnOp[] = [];
      const why = `${job.event}: ${job.trigger} (${event.kind}) for ${mac}${d.record.user === null ? '' : ` user ${d.record.user}`}`;
      const taken = index.evicted?.revoke ?? null;
      // The same user on both MACs: the key the evicted MAC held is the one granted again here.
      for (const key of [d.revoke, taken === d.revoke || taken === d.grant?.key ? null : taken]) {
        if (key === null) continue;
        ops.push({ verb: 'delete', key });
        const reason = key === d.revoke ? why : `${why}: address ${index.evicted?.addr ?? ''} taken from ${index.evicted?.mac ?? ''}`;
        audits.push(...leaseAudit(job, key, 'rm', null, reason, nowMs));
      }
      if (d.grant !== null) {
        ops.push({ verb: 'set', key: d.grant.key, value: String(d.grant.expiry) });
        audits.push(...leaseAudit(job, d.grant.key, 'add', String(d.grant.expiry), why, nowMs));
      }
      const r = await txnAudited(this.ctx.kv, ops, audits);
      if (!r.ok) continue; // another responder wrote the record in between: read again
      const result = d.grant !== null ? (d.revoke !== null ? 'moved' : 'granted') : d.revoke !== null ? 'revoked' : 'recorded';
      return {
        result,
        detail: {
          ...detail,
          key: d.grant?.key ?? null,
          expiry: d.grant?.expiry ?? null,
          revoked: d.revoke,
          ...(index.evicted === null ? {} : { evicted: index.evicted }),
          ...(r.audit === 'written' || r.audit === 'none' ? {} : { audit: r.audit }),
        },
      };
    }
    throw new ActionError('user-lease', false, `lost ${MAX_RACES} check-and-set races on ${recKey}`, { mac });
  }

  /**
   * The per-address index, under the same check-and-set: the MAC that now holds an address takes it
   * from the one that held it (whose grant is deleted), unless that one's line is newer (then this
   * MAC loses the address instead); an address this MAC left is un-indexed.
   */
  private async addressIndex(mac: string, prev: MacRecord, decided: Decision, lineMs: number): Promise<IndexChange> {
    const ops: TxnOp[] = [];
    let decision = decided;
    let evicted: IndexChange['evicted'] = null;
    const addr = decided.record.addr;
    if (addr !== null) {
      const idxKey = addrIndexKey(this.ctx.stateKvPrefix, addr);
      const idx = await this.ctx.kv.get(idxKey);
      const owner = parseAddrOwner(idx?.value ?? null);
      const seenMs = decided.record.leaseSeenMs;
      const claim: TxnOp = { verb: 'cas', key: idxKey, value: encodeAddrOwner({ mac, seenMs }), index: idx?.modifyIndex ?? 0 };
      if (owner !== null && owner.mac !== mac && owner.seenMs > seenMs) {
        decision = withoutAddress(prev, decided);
      } else if (owner !== null && owner.mac !== mac) {
        const otherKey = macRecordKey(this.ctx.stateKvPrefix, owner.mac);
        const other = await this.ctx.kv.get(otherKey);
        const out = evictAddress(parseMacRecord(other?.value ?? null), addr, lineMs);
        ops.push(claim);
        if (out !== null) {
          ops.push({ verb: 'cas', key: otherKey, value: JSON.stringify(out.record), index: other?.modifyIndex ?? 0 });
          evicted = { mac: owner.mac, addr, revoke: out.revoke };
        }
      } else if (owner === null || owner.seenMs !== seenMs) {
        ops.push(claim);
      }
    }
    const left = prev.addr;
    if (left !== null && left !== decision.record.addr) {
      const idxKey = addrIndexKey(this.ctx.stateKvPrefix, left);
      const idx = await this.ctx.kv.get(idxKey);
      if (idx !== null && parseAddrOwner(idx.value)?.mac === mac) ops.push({ verb: 'delete-cas', key: idxKey, index: idx.modifyIndex });
    }
    return { decision, ops, evicted };
  }
}

/** The audit record of a grant (`add`) or its removal (`rm`, a tombstone), by reactor with the line as evidence. */
function leaseAudit(job: ReactorJob, key: string, op: 'add' | 'rm', value: string | null, reason: string, nowMs: number): TxnOp[] {
  const tool = `befw-reactor ${VERSION} user-lease`;
  return auditOp(key, { op, by: 'reactor', reason, tool, value, evidence: jobEvidence(job) }, nowMs);
}
