/**
 * The audit trail: who wrote an entry, why, when and from where, kept beside the entry in Consul.
 *
 * Layout: the entry `befw/<path>` has its record at `befw-audit/<path>` (same path, another root),
 * a JSON object {v, op, by, reason, at, from, tool, value, evidence?}. Why that root:
 *   - befw's agent reads only under `befw/` (snapshot, scoped watches), and BEFW reads only
 *     `befw/$service$/…`, `befw/$ipset$/…` and `befw/$alias$/…`: neither ever sees a record;
 *   - befw-sync's cleaner lists the prefix `befw` (no slash, so it does get these keys) but
 *     deletes only keys matching `^befw/\S+/<addr>$` (puppetdbsync/cleaner.go, static.go:29):
 *     `befw-audit/…` never matches. A record under `befw/.audit/…` would match that regex and
 *     be wiped hourly as "not an integer", and `befw/` keys cost every agent a re-read: hence a
 *     root of its own, like befw-protect/.
 * The writer puts the record and the entry in one Consul transaction, so neither lands alone.
 * Removing an entry leaves a tombstone (op "rm", with who and why, and the value it had) in the
 * same transaction: "who revoked it" is as much a question as "who granted it". The next grant
 * of the same key overwrites the tombstone.
 *
 * Records are read only by the CLI's `ls` commands, never by an agent, and are hostile input:
 * bounded in size, parsed defensively, every text field made printable and capped.
 */
import { printable } from './address.js';
import { KV_ROOT } from './kvLayout.js';
import { expiryOf, logicalOf } from './planSets.js';
import { diffSorted } from './sortedDiff.js';
import type { KvPair, Plan, PlanSet } from './types.js';

export const AUDIT_ROOT = 'befw-audit/';
/** A record longer than this is not parsed (a hostile writer could put megabytes there). */
export const MAX_AUDIT_CHARS = 8192;
export const MAX_REASON = 500;
export const MAX_BY = 64;
const MAX_SAMPLE = 300;
const MAX_WORD = 128;

/** What the reactor saw: the trigger, how often, over which span, and one line of it. */
export interface AuditEvidence {
  readonly event: string;
  readonly trigger: string;
  readonly count: number;
  /** Unix ms of the first and last occurrence that counted. */
  readonly firstSeenMs: number;
  readonly lastSeenMs: number;
  /** The sending device (name or address) and how the lines came (tcp, udp). */
  readonly device: string;
  readonly transport: string;
  /** One of the lines, printable and capped: attacker-controlled text. */
  readonly sample: string;
  readonly spoofable: boolean;
}

export interface AuditRecord {
  readonly v: 1;
  /** `add` (written or overwritten) or `rm` (a tombstone: the entry was removed). */
  readonly op: 'add' | 'rm';
  /** Operator identity, or `reactor`. */
  readonly by: string;
  readonly reason: string | null;
  /** ISO 8601 time of the write. */
  readonly at: string;
  /** Host the write came from. */
  readonly from: string;
  /** `befw 0.1.0 client add`, `befw-reactor ban`. */
  readonly tool: string;
  /** The entry's value as written (its expiry), or as it was before removal. */
  readonly value: string | null;
  readonly evidence?: AuditEvidence;
}

/** `befw/<path>` -> `befw-audit/<path>`; null for a key outside befw/. */
export function auditKeyFor(entryKey: string): string | null {
  return entryKey.startsWith(KV_ROOT) ? `${AUDIT_ROOT}${entryKey.slice(KV_ROOT.length)}` : null;
}

/** `befw-audit/<path>` -> `befw/<path>`. */
export function entryKeyFor(auditKey: string): string | null {
  return auditKey.startsWith(AUDIT_ROOT) ? `${KV_ROOT}${auditKey.slice(AUDIT_ROOT.length)}` : null;
}

/** Free text made safe to store and print: control characters escaped, length capped. */
export function cleanText(text: string, max: number): string {
  return printable(text, max);
}

const BY = /^[A-Za-z0-9._@+-]{1,64}$/;

/** An identity as given by `--by` or the config: refused unless plain, so a log reader is never misled. */
export function checkIdentity(text: string): string | null {
  return BY.test(text) ? text : null;
}

/**
 * Who is writing: `--by`, else the config's `audit_by`, else the environment (SUDO_USER, the
 * person behind sudo, before USER and LOGNAME, which would say root). Unknown is said so.
 * Values from the environment are cleaned (not refused): an odd login name must not block a grant.
 */
export function operatorIdentity(
  flag: string | null,
  configured: string | null,
  env: Readonly<Record<string, string | undefined>>,
): string {
  if (flag !== null) return flag;
  if (configured !== null) return configured;
  for (const name of ['SUDO_USER', 'USER', 'LOGNAME']) {
    const v = env[name];
    if (v !== undefined && v !== '') return v.replace(/[^A-Za-z0-9._@+-]/g, '?').slice(0, MAX_BY);
  }
  return 'unknown';
}

function cleanEvidence(e: AuditEvidence): AuditEvidence {
  const num = (n: number): number => (Number.isFinite(n) && n >= 0 ? Math.floor(n) : 0);
  return {
    event: cleanText(e.event, MAX_WORD),
    trigger: cleanText(e.trigger, MAX_WORD),
    count: num(e.count),
    firstSeenMs: num(e.firstSeenMs),
    lastSeenMs: num(e.lastSeenMs),
    device: cleanText(e.device, MAX_WORD),
    transport: cleanText(e.transport, 16),
    sample: cleanText(e.sample, MAX_SAMPLE),
    spoofable: e.spoofable === true,
  };
}

/** The stored text of a record, every field cleaned and capped (well under MAX_AUDIT_CHARS). */
export function encodeAudit(r: AuditRecord): string {
  const out: AuditRecord = {
    v: 1,
    op: r.op,
    by: cleanText(r.by, MAX_BY),
    reason: r.reason === null ? null : cleanText(r.reason, MAX_REASON),
    at: cleanText(r.at, 40),
    from: cleanText(r.from, MAX_WORD),
    tool: cleanText(r.tool, MAX_WORD),
    value: r.value === null ? null : cleanText(r.value, 40),
    ...(r.evidence === undefined ? {} : { evidence: cleanEvidence(r.evidence) }),
  };
  return JSON.stringify(out);
}

export type AuditRead = { readonly ok: true; readonly record: AuditRecord } | { readonly ok: false; readonly error: string };

function str(o: Record<string, unknown>, k: string, max: number): string | null {
  const v = o[k];
  return typeof v === 'string' ? cleanText(v, max) : null;
}

function numberOf(o: Record<string, unknown>, k: string): number {
  const v = o[k];
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

function readEvidence(v: unknown): AuditEvidence | undefined {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return undefined;
  const o = v as Record<string, unknown>;
  return {
    event: str(o, 'event', MAX_WORD) ?? '',
    trigger: str(o, 'trigger', MAX_WORD) ?? '',
    count: numberOf(o, 'count'),
    firstSeenMs: numberOf(o, 'firstSeenMs'),
    lastSeenMs: numberOf(o, 'lastSeenMs'),
    device: str(o, 'device', MAX_WORD) ?? '',
    transport: str(o, 'transport', 16) ?? '',
    sample: str(o, 'sample', MAX_SAMPLE) ?? '',
    spoofable: o.spoofable === true,
  };
}

/** Reads a stored record; anything too big, not JSON or without the required fields is an error, never a throw. */
export function decodeAudit(text: string | null): AuditRead {
  if (text === null) return { ok: false, error: 'empty audit record' };
  if (text.length > MAX_AUDIT_CHARS)
    return { ok: false, error: `audit record of ${text.length} characters ignored (limit ${MAX_AUDIT_CHARS})` };
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, error: 'audit record is not JSON' };
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) return { ok: false, error: 'audit record is not an object' };
  const o = parsed as Record<string, unknown>;
  const by = str(o, 'by', MAX_BY);
  const at = str(o, 'at', 40);
  if (o.v !== 1 || by === null || at === null) return { ok: false, error: 'audit record lacks v=1, by or at' };
  const evidence = readEvidence(o.evidence);
  return {
    ok: true,
    record: {
      v: 1,
      op: o.op === 'rm' ? 'rm' : 'add',
      by,
      reason: str(o, 'reason', MAX_REASON),
      at,
      from: str(o, 'from', MAX_WORD) ?? '',
      tool: str(o, 'tool', MAX_WORD) ?? '',
      value: str(o, 'value', 40),
      ...(evidence === undefined ? {} : { evidence }),
    },
  };
}

/** What `ls` shows for an entry: the record when it describes the entry's current value, else why not. */
export type AuditView =
  | { readonly state: 'ok'; readonly record: AuditRecord }
  | { readonly state: 'none' }
  | { readonly state: 'stale'; readonly record: AuditRecord }
  | { readonly state: 'bad'; readonly error: string };

/**
 * The record of an entry whose current value is `value`. A record for another value was overtaken
 * by a writer that keeps none. `indexes`: the ModifyIndex of the record and of the entry; a record
 * and its entry written in one transaction share it, so a record from another write (a permanent
 * grant's value is always -1) is stale even when the value matches.
 */
export function auditView(
  text: string | null | undefined,
  value: string | null,
  indexes?: { readonly record: number; readonly entry: number },
): AuditView {
  if (text === undefined) return { state: 'none' };
  const r = decodeAudit(text);
  if (!r.ok) return { state: 'bad', error: r.error };
  if (r.record.op !== 'add' || r.record.value !== value) return { state: 'stale', record: r.record };
  if (indexes !== undefined && indexes.record !== indexes.entry) return { state: 'stale', record: r.record };
  return { state: 'ok', record: r.record };
}

/** One member of one plan set that changed between two applies. Expiries: Unix seconds, null never. */
export interface MemberChange {
  /** The plan's set name (`web_tcp_8080`, `rules_deny_v6`). */
  readonly set: string;
  readonly member: string;
  readonly change: 'added' | 'removed' | 'expired' | 'renewed';
  readonly oldExpiry: number | null | undefined;
  readonly newExpiry: number | null | undefined;
}

export interface MemberChanges {
  /** The first `limit` changes, in set then member order. */
  readonly changes: readonly MemberChange[];
  readonly added: number;
  readonly removed: number;
  readonly renewed: number;
}

function expiryIn(set: PlanSet | undefined, member: string): number | null {
  return set === undefined ? null : expiryOf(set, member);
}

function hasMember(set: PlanSet, member: string): boolean {
  let lo = 0;
  let hi = set.members.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = set.members[mid] as string;
    if (m === member) return true;
    if (m < member) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/** Members whose expiry changed while they stayed: a merge of the two sorted expiring lists. */
function renewals(a: PlanSet, b: PlanSet, each: (member: string, was: number | null, now: number | null) => void): void {
  const x = a.expiring ?? { members: [], at: [] };
  const y = b.expiring ?? { members: [], at: [] };
  let i = 0;
  let j = 0;
  while (i < x.members.length || j < y.members.length) {
    const m = x.members[i];
    const n = y.members[j];
    if (m !== undefined && m === n) {
      if (x.at[i] !== y.at[j]) each(m, x.at[i] ?? null, y.at[j] ?? null);
      i++;
      j++;
    } else if (n === undefined || (m !== undefined && m < n)) {
      // Expired before, never expires now (if it stayed).
      if (hasMember(b, m as string)) each(m as string, x.at[i] ?? null, null);
      i++;
    } else {
      if (hasMember(a, n)) each(n, null, y.at[j] ?? null);
      j++;
    }
  }
}

/**
 * What changed in the sets between the plan in force and the next one: added and removed members
 * (a removal at or after its expiry is `expired`), and members whose expiry moved. Only the
 * first `limit` are returned as lines; the counts cover all. Linear in the members.
 */
export function memberChanges(prev: Plan, next: Plan, nowMs: number, limit: number): MemberChanges {
  const before = new Map(prev.sets.map((s) => [s.name, s]));
  const after = new Map(next.sets.map((s) => [s.name, s]));
  const names = [...new Set([...before.keys(), ...after.keys()])].sort();
  const changes: MemberChange[] = [];
  let added = 0;
  let removed = 0;
  let renewed = 0;
  const push = (c: MemberChange): void => {
    if (changes.length < limit) changes.push(c);
  };
  for (const name of names) {
    const a = before.get(name);
    const b = after.get(name);
    diffSorted(
      a?.members ?? [],
      b?.members ?? [],
      (m) => {
        added++;
        push({ set: name, member: m, change: 'added', oldExpiry: undefined, newExpiry: expiryIn(b, m) });
      },
      (m) => {
        removed++;
        const was = expiryIn(a, m);
        const change = was !== null && was * 1000 <= nowMs ? 'expired' : 'removed';
        push({ set: name, member: m, change, oldExpiry: was, newExpiry: undefined });
      },
    );
    if (a !== undefined && b !== undefined && (a.expiring !== undefined || b.expiring !== undefined)) {
      renewals(a, b, (m, was, now) => {
        renewed++;
        push({ set: name, member: m, change: 'renewed', oldExpiry: was, newExpiry: now });
      });
    }
  }
  return { changes, added, removed, renewed };
}

/** The key text a member is written as: a host bare, a network as two segments. */
function tailOf(member: string): string {
  return member.endsWith('/32') || member.endsWith('/128') ? member.slice(0, member.lastIndexOf('/')) : member;
}

/**
 * The KV keys that name each changed member directly (`…/<set>/<addr>`), at most `perMember`
 * each; members that came through an alias, a file or a clipped deny have none. One pass over
 * the keys, and only the last one or two segments of each are looked at.
 */
export function keysNaming(kv: readonly KvPair[], changes: readonly MemberChange[], perMember = 3): Map<string, string[]> {
  const wanted = new Map<string, string[]>();
  for (const c of changes)
    wanted.set(tailOf(c.member), [
      ...(wanted.get(tailOf(c.member)) ?? []),
      logicalOf({ name: c.set, family: c.member.includes(':') ? 'inet6' : 'inet' }),
    ]);
  const out = new Map<string, string[]>();
  if (wanted.size === 0) return out;
  for (const { key } of kv) {
    const last = key.lastIndexOf('/');
    if (last < 0) continue;
    const one = key.slice(last + 1);
    let tail = one;
    let head = key.slice(0, last);
    if (/^[0-9]{1,3}$/.test(one)) {
      const prev = head.lastIndexOf('/');
      tail = `${head.slice(prev + 1)}/${one}`;
      head = head.slice(0, prev);
    }
    const sets = wanted.get(tail);
    if (sets === undefined) continue;
    const set = head.slice(head.lastIndexOf('/') + 1);
    if (!sets.includes(set)) continue;
    const id = `${set}\u0000${tail}`;
    const list = out.get(id) ?? [];
    if (list.length < perMember) list.push(key);
    out.set(id, list);
  }
  return out;
}

/** The lookup key of keysNaming's answer for a change. */
export function namingId(c: MemberChange): string {
  return `${logicalOf({ name: c.set, family: c.member.includes(':') ? 'inet6' : 'inet' })}\u0000${tailOf(c.member)}`;
}
