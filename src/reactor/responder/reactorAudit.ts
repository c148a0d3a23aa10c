/**
 * The reactor's audit records (core/audit.ts layout): what a responder writes is recorded by
 * `reactor` with the job's evidence, in the same transaction as the write. A token that may write
 * the entry but not befw-audit/ (a deployment not yet given the permission) must never stop a ban,
 * an unban or a lease: the write then goes alone, and the outcome says so.
 */
import { hostname } from 'node:os';
import { ConsulError } from '../../consul/connection.js';
import { type AuditRecord, auditKeyFor, encodeAudit } from '../../core/audit.js';
import type { ReactorJob } from '../queue/job.js';
import type { ReactorKv, TxnOp, TxnResult } from './consulKv.js';

/** The record of one write to `key`: `add` with its value, or `rm` (a tombstone) with the value it had. */
export function auditOp(key: string, r: Pick<AuditRecord, 'op' | 'by' | 'reason' | 'tool' | 'value' | 'evidence'>, nowMs: number): TxnOp[] {
  const auditKey = auditKeyFor(key);
  if (auditKey === null) return [];
  const value = encodeAudit({ v: 1, ...r, at: new Date(nowMs).toISOString(), from: hostname() });
  return [{ verb: 'set', key: auditKey, value }];
}

/** What a job saw, for the record: the log text is cleaned and capped by encodeAudit. */
export function jobEvidence(job: ReactorJob): NonNullable<AuditRecord['evidence']> {
  return {
    event: job.event,
    trigger: job.trigger,
    count: job.count,
    firstSeenMs: job.firstSeenMs,
    lastSeenMs: job.lineReceivedMs,
    device: job.device.name || job.device.address,
    transport: job.device.transport,
    sample: job.sample,
    spoofable: job.evidence.spoofable,
  };
}

/** `ops` with `audits` in one transaction; `ops` alone when the token may not write the records. */
export async function txnAudited(
  kv: Pick<ReactorKv, 'txn'>,
  ops: readonly TxnOp[],
  audits: readonly TxnOp[],
): Promise<TxnResult & { readonly audit: string }> {
  if (audits.length === 0) return { ...(await kv.txn(ops)), audit: 'none' };
  let denied: string;
  try {
    const r = await kv.txn([...ops, ...audits]);
    // Consul reports a denied operation of a transaction as a rollback (409) naming it.
    if (r.ok || !r.errors.some((e) => /permission denied/i.test(e))) return { ...r, audit: 'written' };
    denied = r.errors.join('; ');
  } catch (err) {
    if (!(err instanceof ConsulError) || err.statusCode !== 403) throw err;
    denied = err.message;
  }
  return { ...(await kv.txn(ops)), audit: `not written: ${denied}` };
}
