/**
 * The CLI's side of the audit trail (core/audit.ts has the layout): who is writing and why
 * (`--by`, `--reason`, the config's audit_by and audit_require_reason, the environment), the
 * transaction that writes an entry with its record, and the records `ls` shows.
 *
 * `--by` is an attribution, not an authentication: Consul's ACL token decides who may write.
 */
import { hostname } from 'node:os';
import type { Command } from 'commander';
import type { Config } from '../../config/config.js';
import { ConsulError } from '../../consul/connection.js';
import type { KvTxnOp, KvWriter } from '../../consul/kvWriter.js';
import {
  AUDIT_ROOT,
  type AuditRecord,
  type AuditView,
  MAX_REASON,
  auditKeyFor,
  auditView,
  checkIdentity,
  encodeAudit,
  operatorIdentity,
} from '../../core/audit.js';
import { UNPRINTABLE, printable } from '../../core/address.js';
import { formatTime } from '../../core/timeText.js';
import { VERSION } from '../../core/version.js';
import { UsageError, quoted } from './errors.js';

export interface AuditOpts {
  readonly reason?: string;
  readonly by?: string;
}

/** Who, why, where from and with what: the part of a record that does not depend on the entry. */
export interface AuditStamp {
  readonly by: string;
  readonly reason: string | null;
  readonly from: string;
  readonly tool: string;
  readonly atMs: number;
  /** audit=required: refuse the write when the record cannot be written. */
  readonly required: boolean;
  /** Filled while writing: records that could not be written (the command prints them). */
  readonly warnings: string[];
}

export function addAuditOptions(cmd: Command): Command {
  return cmd
    .option('--reason <text>', `why (a ticket, an incident), recorded beside the entry in befw-audit/ (at most ${MAX_REASON} characters)`)
    .option('--by <name>', 'who, recorded beside the entry (default: audit_by of the config, else SUDO_USER, USER or LOGNAME)');
}

/** Checks --reason and --by before Consul is contacted; the stamp for a write, or null when audit=false. */
export function auditStamp(
  opts: AuditOpts,
  config: Pick<Config, 'audit' | 'auditRequireReason' | 'auditBy'>,
  tool: string,
  nowMs: number,
): AuditStamp | null {
  const reason = opts.reason?.trim();
  if (reason !== undefined) {
    if (reason === '') throw new UsageError('--reason', 'is empty; say why, e.g. --reason "SEC-1234: vendor VPN"');
    if (reason.length > MAX_REASON) throw new UsageError('--reason', `is ${reason.length} characters long; at most ${MAX_REASON}`);
    if (UNPRINTABLE.test(reason)) throw new UsageError('--reason', 'contains control, invisible or bidi characters');
  }
  if (reason === undefined && config.auditRequireReason)
    throw new UsageError(
      '--reason',
      'is required by this config (audit_require_reason=true): say why, e.g. --reason "SEC-1234"; nothing written',
    );
  if (opts.by !== undefined && checkIdentity(opts.by) === null)
    throw new UsageError(quoted('--by', opts.by), 'expected 1-64 letters, digits, ".", "_", "@", "+" or "-"');
  if (config.audit === 'false') return null;
  return {
    by: operatorIdentity(opts.by ?? null, config.auditBy, process.env),
    reason: reason ?? null,
    from: hostname(),
    tool: `befw ${VERSION} ${tool}`,
    atMs: nowMs,
    required: config.audit === 'required',
    warnings: [],
  };
}

function record(stamp: AuditStamp, op: AuditRecord['op'], value: string | null): string {
  const { by, reason, from, tool } = stamp;
  return encodeAudit({ v: 1, op, by, reason, at: new Date(stamp.atMs).toISOString().replace('.000Z', 'Z'), from, tool, value });
}

/**
 * Writes `key = value` if its ModifyIndex is still `cas` (0: absent), with its audit record in
 * the same transaction. Without a stamp (audit=false) or a writer without transactions, the entry alone.
 */
export async function putAudited(kv: KvWriter, key: string, value: string, cas: number, stamp: AuditStamp | null): Promise<boolean> {
  const auditKey = auditKeyFor(key);
  if (stamp === null || auditKey === null || kv.txn === undefined) return kv.putCas(key, value, cas);
  const ops: KvTxnOp[] = [
    { verb: 'cas', key, value, index: cas },
    { verb: 'set', key: auditKey, value: record(stamp, 'add', value) },
  ];
  return withRecord(kv.txn.bind(kv), ops, stamp, () => kv.putCas(key, value, cas));
}

/** Deletes `key` if unchanged since read, leaving a tombstone record (who removed it, why, what it was) in the same transaction. */
export async function deleteAudited(
  kv: KvWriter,
  key: string,
  was: string | null,
  index: number,
  stamp: AuditStamp | null,
): Promise<boolean> {
  const auditKey = auditKeyFor(key);
  if (stamp === null || auditKey === null || kv.txn === undefined) return kv.deleteCas(key, index);
  const ops: KvTxnOp[] = [
    { verb: 'delete-cas', key, index },
    { verb: 'set', key: auditKey, value: record(stamp, 'rm', was) },
  ];
  return withRecord(kv.txn.bind(kv), ops, stamp, () => kv.deleteCas(key, index));
}

async function withRecord(
  txn: (ops: readonly KvTxnOp[]) => Promise<boolean>,
  ops: readonly KvTxnOp[],
  stamp: AuditStamp,
  alone: () => Promise<boolean>,
): Promise<boolean> {
  try {
    return await txn(ops);
  } catch (err) {
    // A denied entry key reads as it always did. A denied record key must not stop a deny in an
    // emergency: the entry goes alone, said loudly, unless audit=required.
    if (!(err instanceof ConsulError) || err.statusCode !== 403 || !err.operation.includes(AUDIT_ROOT)) throw err;
    const where = err.operation.replace(/^kv \w+ /, '');
    if (stamp.required)
      throw new ConsulError(
        err.operation,
        403,
        new Error(
          `permission denied: the ACL token lacks key write on ${where}, where the audit record goes (audit=required); nothing written`,
        ),
      );
    stamp.warnings.push(
      `warning: audit record not written: the ACL token lacks key write on ${where} (grant befw-audit/ as in docs/acl/engineer.hcl, or set audit=false)`,
    );
    return alone();
  }
}

/** Audit records under `befw-audit/<kind>/`, by entry key; null (with why) when they cannot be read. */
/** An audit record as read: its text and its ModifyIndex (the same as its entry's when written with it). */
export interface StoredAudit {
  readonly text: string;
  readonly modifyIndex: number;
}

export async function readAudits(kv: KvWriter, kindPrefix: string): Promise<{ byEntry: Map<string, StoredAudit>; error: string | null }> {
  const prefix = auditKeyFor(kindPrefix) ?? AUDIT_ROOT;
  try {
    const items = await kv.list(prefix);
    const byEntry = new Map<string, StoredAudit>();
    for (const i of items)
      if (i.value !== null) byEntry.set(`befw/${i.key.slice(AUDIT_ROOT.length)}`, { text: i.value, modifyIndex: i.modifyIndex });
    return { byEntry, error: null };
  } catch (err) {
    // Listing entries must not fail because the token may not read the records.
    if (err instanceof ConsulError) return { byEntry: new Map(), error: `audit records not shown: ${printable(err.message, 200)}` };
    throw err;
  }
}

export function viewOf(
  audits: ReadonlyMap<string, StoredAudit> | null,
  entry: { readonly key: string; readonly value: string | null; readonly modifyIndex: number },
): AuditView {
  const a = audits?.get(entry.key);
  return a === undefined
    ? auditView(undefined, entry.value)
    : auditView(a.text, entry.value, { record: a.modifyIndex, entry: entry.modifyIndex });
}

/** A record's time in the one format every time is printed in; a record is input, so an odd one is shown escaped. */
function atText(at: string): string {
  const ms = Date.parse(at);
  return Number.isFinite(ms) && ms >= 0 && ms < 253_402_300_800_000 ? formatTime(ms) : printable(at, 40);
}

/**
 * The line under an entry in `ls`: who, from where, when, with what, and why. On a line of its
 * own so a long reason never stretches the table; null when the entry has no record.
 */
export function auditLine(v: AuditView): string | null {
  switch (v.state) {
    case 'none':
      return null;
    case 'bad':
      return `audit: ${printable(v.error, 120)}`;
    case 'stale':
      return `audit: the record (${v.record.op} by ${v.record.by} at ${atText(v.record.at)}) is for value ${v.record.value ?? '-'}: the entry was changed since by a writer that keeps none`;
    case 'ok': {
      const r = v.record;
      const ev = r.evidence;
      const why = r.reason ?? (ev === undefined ? 'no reason given' : `${ev.trigger}: ${ev.count} event(s)`);
      const sample = ev === undefined || ev.sample === '' ? '' : `; sample: "${printable(ev.sample, 120)}"`;
      return `by ${r.by} from ${r.from || '?'} at ${atText(r.at)} (${r.tool || '?'}): ${printable(why, 200)}${sample}`;
    }
  }
}

export function auditJson(v: AuditView): unknown {
  switch (v.state) {
    case 'none':
      return null;
    case 'bad':
      return { error: v.error };
    case 'stale':
      return { ...v.record, stale: true };
    case 'ok':
      return v.record;
  }
}

/** The command as the record names it: `client add`, `deny rm`, `alias add`. */
export function toolName(kind: string, target: string, verb: 'add' | 'rm'): string {
  const group =
    kind === '$service$'
      ? 'client'
      : kind === '$alias$'
        ? 'alias'
        : target === 'rules_allow'
          ? 'allow'
          : target === 'rules_deny'
            ? 'deny'
            : 'ipset';
  return `${group} ${verb}`;
}

/** What a write could not record, once each (a removal of several keys says it once). */
export function auditWarnings(stamp: AuditStamp | null): string[] {
  return stamp === null ? [] : [...new Set(stamp.warnings)];
}

/** `text` with the audit warnings as extra lines. */
export function withAuditWarnings(text: string, stamp: AuditStamp | null): string {
  return [text, ...auditWarnings(stamp).map((w) => `  ${w}`)].join('\n');
}

/** `{warnings}` for JSON output, only when there are some (the output keeps its shape otherwise). */
export function warningsJson(stamp: AuditStamp | null): { warnings?: string[] } {
  const w = auditWarnings(stamp);
  return w.length === 0 ? {} : { warnings: w };
}
