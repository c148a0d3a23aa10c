/**
 * Pure parts of the ban action: where a ban lives in Consul (BEFW's KV layout, SPEC §1), how
 * long it lasts (bantime × factor^n for the n-th repeat, capped), and the offence record kept
 * beside it so repeats can be counted and a redelivered job recognised.
 */
import type { BanAction } from '../config/reactorConfig.js';
import { assertNever } from '../../core/assertNever.js';

/** The KV key of a ban of `address` (an address, or a network: two path segments, SPEC §1). */
export function banKey(action: BanAction, dc: string, address: string): string {
  switch (action.scope) {
    case 'world':
      return `befw/$ipset$/${action.set}/${address}`;
    case 'dc':
      return `befw/$ipset$/${dc}/${action.set}/${address}`;
    case 'node':
      return `befw/$ipset$/${dc}/${action.node ?? ''}/${action.set}/${address}`;
    default:
      return assertNever(action.scope, 'ban scope');
  }
}

export function offenceKey(prefix: string, address: string): string {
  return `${prefix}/offences/${address}`;
}

/** Seconds for the ban after `previous` earlier bans that still count. */
export function bantimeFor(action: BanAction, previous: number): number {
  const raw = action.bantimeSec * action.factor ** Math.max(0, previous);
  return Math.min(action.maxBantimeSec, Math.max(1, Math.round(Number.isFinite(raw) ? raw : action.maxBantimeSec)));
}

export interface OffenceRecord {
  /** Bans so far (that still count toward the next one). */
  readonly count: number;
  readonly lastBanMs: number;
  readonly lastExpiry: number;
  readonly lastBantimeSec: number;
  /** Ids of the last jobs applied: a redelivered job is recognised and not applied twice. */
  readonly jobs: readonly string[];
  readonly event: string;
  readonly device: { readonly address: string; readonly hostname: string | null };
  /** When an operator last unbanned the address: jobs for lines read before then change nothing. */
  readonly clearedMs: number | null;
  /** What the last ban named: the address, or a wider network. */
  readonly target?: string;
}

export const JOBS_REMEMBERED = 32;

/** Reads a stored record; anything unreadable counts as no record (it is overwritten by CAS). */
export function parseOffence(value: string | null): OffenceRecord | null {
  if (value === null) return null;
  try {
    const r = JSON.parse(value) as Partial<OffenceRecord>;
    if (typeof r.count !== 'number' || typeof r.lastBanMs !== 'number' || !Array.isArray(r.jobs)) return null;
    return {
      count: r.count,
      lastBanMs: r.lastBanMs,
      lastExpiry: typeof r.lastExpiry === 'number' ? r.lastExpiry : 0,
      lastBantimeSec: typeof r.lastBantimeSec === 'number' ? r.lastBantimeSec : 0,
      jobs: r.jobs.filter((j): j is string => typeof j === 'string'),
      event: typeof r.event === 'string' ? r.event : '',
      device: { address: String(r.device?.address ?? ''), hostname: typeof r.device?.hostname === 'string' ? r.device.hostname : null },
      clearedMs: typeof r.clearedMs === 'number' ? r.clearedMs : null,
      ...(typeof r.target === 'string' ? { target: r.target } : {}),
    };
  } catch {
    return null;
  }
}

/**
 * Earlier bans that make this one a repeat: all of them, unless the last one ended more than
 * forgetAfter ago (counted from its end, so a long ban is not forgotten the moment it expires).
 */
export function previousBans(record: OffenceRecord | null, action: BanAction, nowMs: number): number {
  if (record === null) return 0;
  const lastEnd = Math.max(record.lastBanMs, record.lastExpiry * 1000);
  if (nowMs - lastEnd >= action.forgetAfterSec * 1000) return 0;
  return record.count;
}
