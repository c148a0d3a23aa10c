/**
 * Writing, removing and listing entries: the part `client`, `alias`, `allow` and `deny` share.
 *
 * Every change is a check-and-set against what was just read, so two engineers (or an engineer
 * and `purge-expired`) changing the same key never overwrite each other silently: the loser gets
 * an error and nothing is written. Removal finds every key at the scope that the agent reads as
 * the same address (a hand-written `2001:DB8::7` as well as `2001:db8::7`), so "removed" means
 * no longer granted at that scope.
 */
import { printable } from '../../core/address.js';
import { type Kind, isLive } from '../../core/kvLayout.js';
import type { KvEntry } from '../../consul/kvWriter.js';
import type { Expiry } from '../duration.js';
import { formatDuration, formatTime } from '../format.js';
import { type AuditStamp, type StoredAudit, auditJson, auditLine, deleteAudited, putAudited, viewOf } from './audit.js';
import type { AccessContext } from './context.js';
import { AccessError, UsageError } from './errors.js';
import {
  type AddrArg,
  type Entry,
  type Invalid,
  type ScopeSel,
  addrText,
  checkedKey,
  classify,
  sameAddr,
  sameScope,
  scopeText,
  targetPrefix,
} from './layout.js';

export interface EntrySpec {
  readonly kind: Kind;
  readonly scope: ScopeSel;
  readonly target: string;
  readonly addr: AddrArg;
}

export interface Written {
  readonly key: string;
  readonly value: string;
  /** Value the key had before, null when it was created. */
  readonly previous: string | null;
  readonly expiresAt: number | null;
  /** Other keys at the same scope that the agent reads as the same address (left as they are). */
  readonly equivalents: readonly string[];
}

function matches(spec: EntrySpec, e: Entry): boolean {
  return e.kind === spec.kind && e.target === spec.target && sameScope(e.scope, spec.scope) && sameAddr(e.addr, spec.addr);
}

/** Writes the entry (check-and-set on what was just read); with `dryRun`, reads and checks the same but writes nothing. */
export async function writeEntry(
  ctx: AccessContext,
  spec: EntrySpec,
  expiry: Expiry,
  dryRun = false,
  audit: AuditStamp | null = null,
): Promise<Written> {
  const value = String(expiry.value);
  const key = checkedKey(spec.kind, spec.scope, spec.target, spec.addr, value);
  const items = await ctx.consul.list(targetPrefix(spec.kind, spec.scope, spec.target));
  const current = items.find((i) => i.key === key);
  const equivalents = classify(items)
    .entries.filter((e) => e.key !== key && matches(spec, e))
    .map((e) => e.key);
  // With an audit stamp, the entry and its record in one transaction (access/audit.ts).
  const ok = dryRun || (await putAudited(ctx.consul, key, value, current?.modifyIndex ?? 0, audit));
  if (!ok) throw new AccessError(key, 'changed by someone else between reading and writing; nothing written, run the command again');
  return { key, value, previous: current?.value ?? null, expiresAt: expiry.expiresAt, equivalents };
}

export interface Removed {
  readonly key: string;
  readonly value: string | null;
}

export async function removeEntry(
  ctx: AccessContext,
  spec: EntrySpec,
  dryRun = false,
  audit: AuditStamp | null = null,
): Promise<Removed[]> {
  const exact = checkedKey(spec.kind, spec.scope, spec.target, spec.addr, '-1');
  const items = await ctx.consul.list(targetPrefix(spec.kind, spec.scope, spec.target));
  const keys = new Set(
    classify(items)
      .entries.filter((e) => matches(spec, e))
      .map((e) => e.key),
  );
  // The exact key goes too when its value is a typo: it is still the entry the operator means.
  if (items.some((i) => i.key === exact)) keys.add(exact);
  const victims = items.filter((i) => keys.has(i.key));
  if (victims.length === 0) {
    throw new UsageError(
      addrText(spec.addr),
      `no entry for it in ${spec.target} at ${scopeText(spec.scope)} scope; nothing removed (see the ls command)`,
    );
  }
  return deleteAll(ctx, victims, dryRun, audit);
}

/**
 * Deletes each entry if unchanged since read; an entry changed meanwhile is an error after the
 * rest are done. With `dryRun`, deletes nothing and returns what would go.
 */
export async function deleteAll(
  ctx: AccessContext,
  victims: readonly KvEntry[],
  dryRun = false,
  audit: AuditStamp | null = null,
): Promise<Removed[]> {
  if (dryRun) return victims.map((v) => ({ key: v.key, value: v.value }));
  const removed: Removed[] = [];
  const raced: string[] = [];
  for (const v of victims) {
    if (await deleteAudited(ctx.consul, v.key, v.value, v.modifyIndex, audit)) removed.push({ key: v.key, value: v.value });
    else raced.push(v.key);
  }
  if (raced.length > 0) {
    const done = removed.length === 0 ? 'nothing removed' : `removed ${removed.map((r) => r.key).join(', ')}`;
    throw new AccessError(
      raced.join(', '),
      `changed by someone else after it was read, so it was kept; ${done}; check and run the command again`,
    );
  }
  return removed;
}

const iso = formatTime;

/** `never expires`, `until 2025-06-30T18:00:00Z (in 2h)`, `EXPIRED 2025-06-30T18:00:00Z (3m ago)`. */
export function expiryText(expiry: number | null, nowMs: number): string {
  if (expiry === null) return 'never expires';
  const ms = expiry * 1000;
  if (isLive(expiry, nowMs)) return `until ${iso(ms)} (in ${formatDuration(ms - nowMs)})`;
  return `EXPIRED ${iso(ms)} (${formatDuration(nowMs - ms + 1)} ago)`;
}

/** First line of every dry run's output. */
export const DRY_RUN_HEADER = 'dry run, nothing written; without --dry-run:';

export function formatWritten(summary: string, scope: ScopeSel, w: Written, nowMs: number, dryRun = false): string {
  const lines = dryRun ? [DRY_RUN_HEADER] : [];
  lines.push(`${summary}, ${scopeText(scope)} scope, ${expiryText(w.expiresAt === null ? null : w.expiresAt / 1000, nowMs)}`);
  const was = w.previous === null ? '' : ` (was ${JSON.stringify(w.previous)})`;
  lines.push(`  ${dryRun ? 'would write ' : ''}${w.key} = ${w.value}${was}`);
  for (const k of w.equivalents) lines.push(`  note: ${k} names the same address and stays as it is`);
  return lines.join('\n');
}

export function formatRemoved(summary: string, removed: readonly Removed[], dryRun = false): string {
  // A removed key may be one with a typo'd value or odd characters: quote it safely.
  const verb = dryRun ? 'would delete' : 'deleted';
  return [
    ...(dryRun ? [DRY_RUN_HEADER] : []),
    summary,
    ...removed.map((r) => `  ${verb} ${printable(r.key, 200)} (was ${JSON.stringify(r.value)})`),
  ].join('\n');
}

export function scopeJson(s: ScopeSel): { level: string; dc: string | null; node: string | null } {
  return { level: s.level, dc: s.dc, node: s.node };
}

export function entryJson(e: Entry, nowMs: number): Record<string, unknown> {
  return {
    key: e.key,
    value: e.value,
    kind: e.kind,
    target: e.target,
    scope: scopeJson(e.scope),
    address: addrText(e.addr),
    expiry: e.expiry,
    expiresAt: e.expiry === null ? null : iso(e.expiry * 1000),
    secondsLeft: e.expiry === null ? null : Math.max(0, Math.ceil((e.expiry * 1000 - nowMs) / 1000)),
    expired: !isLive(e.expiry, nowMs),
  };
}

/** Columns padded to the widest cell; the last column is not padded. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

const LEVEL_ORDER = { world: 0, dc: 1, node: 2 } as const;
// Numeric collation puts 198.51.100.7 before 198.51.100.23, as people read addresses.
const collator = new Intl.Collator('en', { numeric: true });

/** By set or alias, then world, dc, node, then address. */
export function sortEntries(entries: readonly Entry[]): Entry[] {
  const cmp = (a: Entry, b: Entry): number =>
    collator.compare(a.target, b.target) ||
    LEVEL_ORDER[a.scope.level] - LEVEL_ORDER[b.scope.level] ||
    collator.compare(a.scope.dc ?? '', b.scope.dc ?? '') ||
    collator.compare(a.scope.node ?? '', b.scope.node ?? '') ||
    collator.compare(addrText(a.addr), addrText(b.addr));
  return [...entries].sort(cmp);
}

/**
 * What a node in `filter`'s datacenter (and with its name, at node level) reads: world entries,
 * that datacenter's, and that node's (or every node's in it when no node is named).
 */
export function inFilter(scope: ScopeSel, filter: ScopeSel): boolean {
  if (filter.level === 'world' || scope.level === 'world') return true;
  if (scope.dc !== filter.dc) return false;
  return scope.level === 'dc' || filter.node === null || scope.node === filter.node;
}

export interface Listing {
  readonly entries: readonly Entry[];
  readonly invalid: readonly Invalid[];
  /** Audit records by entry key (befw-audit/), when read; `auditError` says why they could not be. */
  readonly audits?: ReadonlyMap<string, StoredAudit>;
  readonly auditError?: string | null;
}

export function formatListing(listing: Listing, nowMs: number, targetTitle: string, empty: string): string {
  const out: string[] = [];
  if (listing.entries.length === 0) out.push(empty);
  else {
    const sorted = sortEntries(listing.entries);
    const rows = sorted.map((e) => [e.target, addrText(e.addr), scopeText(e.scope), expiryText(e.expiry, nowMs)]);
    const lines = table([[targetTitle, 'ADDRESS', 'SCOPE', 'EXPIRY'], ...rows]).split('\n');
    out.push(lines[0] ?? '');
    sorted.forEach((e, i) => {
      out.push(lines[i + 1] ?? '');
      // Who, from where and why, under the entry (access/audit.ts).
      const audit = listing.audits === undefined ? null : auditLine(viewOf(listing.audits, e));
      if (audit !== null) out.push(`    ${audit}`);
    });
  }
  if (listing.auditError !== undefined && listing.auditError !== null) out.push(`note: ${listing.auditError}`);
  if (listing.invalid.length > 0) {
    out.push('', `Not enforced (${listing.invalid.length}): fix or delete these keys`);
    for (const i of listing.invalid) out.push(`  ${printable(i.key, 200)} = ${JSON.stringify(i.value)}: ${i.reason}`);
  }
  return out.join('\n');
}

export function listingJson(listing: Listing, nowMs: number): Record<string, unknown> {
  const audits = listing.audits;
  return {
    entries: sortEntries(listing.entries).map((e) => ({
      ...entryJson(e, nowMs),
      ...(audits === undefined ? {} : { audit: auditJson(viewOf(audits, e)) }),
    })),
    invalid: listing.invalid,
    ...(listing.auditError === undefined || listing.auditError === null ? {} : { auditError: listing.auditError }),
  };
}
