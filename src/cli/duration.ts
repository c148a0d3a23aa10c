/**
 * How long an access entry lasts: `--ttl 2h`, `--until 2025-06-30T18:00:00Z` or `--forever`,
 * turned into the value written to Consul (SPEC §1): absolute Unix seconds, or -1 for never.
 * Pure: the caller passes `now`, so a written expiry is reproducible in tests.
 *
 * A grant always states its end: there is no default lifetime, because a forgotten `--ttl` that
 * silently meant "forever" would be a hole nobody decided to open.
 */
import { UsageError, quoted } from './access/errors.js';

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 } as const;
type Unit = keyof typeof UNIT_SECONDS;

/** Longest --ttl accepted. Anything longer is almost certainly a typo; --forever says "never". */
export const MAX_TTL_SECONDS = 3650 * 86_400;

const DURATION = /^([1-9][0-9]{0,9})([smhdw])$/;

/** `30s`, `15m`, `2h`, `7d`, `2w` to seconds. One number, one unit: `1h30m` is `90m`. */
export function parseDuration(text: string, subject = '--ttl'): number {
  const m = DURATION.exec(text);
  if (m === null)
    throw new UsageError(quoted(subject, text), 'expected a whole number and a unit s, m, h, d or w (e.g. 30s, 15m, 2h, 7d, 2w)');
  const seconds = Number(m[1]) * UNIT_SECONDS[m[2] as Unit];
  if (seconds > MAX_TTL_SECONDS)
    throw new UsageError(quoted(subject, text), 'longer than 3650d; use --forever for an entry that never expires');
  return seconds;
}

// Date and time are required, and so is the zone: "18:00" on a laptop in another zone than the
// fleet would move a grant's end by hours.
const ISO_8601 =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:[.,]([0-9]{1,9}))?)?(Z|z|[+-][0-9]{2}(?::?[0-9]{2})?)$/;

/** An ISO 8601 date-time with a zone to Unix milliseconds. Impossible dates are errors, not rolled over. */
export function parseIsoTime(text: string, subject = '--until'): number {
  const m = ISO_8601.exec(text);
  if (m === null)
    throw new UsageError(
      quoted(subject, text),
      'expected an ISO 8601 time with a zone, e.g. 2025-06-30T18:00:00Z or 2025-06-30T20:00+02:00',
    );
  const [year, month, day, hour, minute] = [m[1], m[2], m[3], m[4], m[5]].map(Number) as [number, number, number, number, number];
  const second = Number(m[6] ?? '0');
  const fraction = m[7] === undefined ? 0 : Number(`0.${m[7]}`);
  const utc = Date.UTC(year, month - 1, day, hour, minute, second);
  const back = new Date(utc);
  if (
    back.getUTCFullYear() !== year ||
    back.getUTCMonth() !== month - 1 ||
    back.getUTCDate() !== day ||
    back.getUTCHours() !== hour ||
    back.getUTCMinutes() !== minute ||
    back.getUTCSeconds() !== second
  ) {
    throw new UsageError(quoted(subject, text), 'not a real date and time');
  }
  const zone = m[8] as string;
  let offsetMin = 0;
  if (zone !== 'Z' && zone !== 'z') {
    const sign = zone.startsWith('-') ? -1 : 1;
    const digits = zone.slice(1).replace(':', '');
    const oh = Number(digits.slice(0, 2));
    const om = Number(digits.slice(2) || '0');
    if (oh > 23 || om > 59) throw new UsageError(quoted(subject, text), `bad zone offset "${zone}"`);
    offsetMin = sign * (oh * 60 + om);
  }
  return utc - offsetMin * 60_000 + Math.floor(fraction * 1000);
}

export interface ExpiryOptions {
  readonly ttl?: string;
  readonly until?: string;
  readonly forever?: boolean;
}

export interface Expiry {
  /** What is written to Consul: Unix seconds, or -1 for never. */
  readonly value: number;
  /** Unix ms the entry leaves the kernel, or null for never. */
  readonly expiresAt: number | null;
}

function chosen(opts: ExpiryOptions): string[] {
  const out: string[] = [];
  if (opts.ttl !== undefined) out.push('--ttl');
  if (opts.until !== undefined) out.push('--until');
  if (opts.forever === true) out.push('--forever');
  return out;
}

/** Exactly one of --ttl, --until, --forever, as the value to write. */
export function resolveExpiry(opts: ExpiryOptions, nowMs: number): Expiry {
  const given = chosen(opts);
  if (given.length === 0)
    throw new UsageError('expiry', 'say how long the entry lasts: --ttl DURATION (e.g. 2h), --until TIME (ISO 8601) or --forever');
  if (given.length > 1) throw new UsageError(given.join(' and '), 'choose one of --ttl, --until and --forever');
  if (opts.forever === true) return { value: -1, expiresAt: null };
  // Whole seconds, rounded down: an entry never outlives what was asked for.
  const nowSec = Math.floor(nowMs / 1000);
  if (opts.ttl !== undefined) {
    const value = nowSec + parseDuration(opts.ttl);
    return { value, expiresAt: value * 1000 };
  }
  const untilMs = parseIsoTime(opts.until as string);
  const value = Math.floor(untilMs / 1000);
  if (value <= nowSec)
    throw new UsageError(
      quoted('--until', opts.until as string),
      `is not in the future (now is ${new Date(nowSec * 1000).toISOString().replace('.000Z', 'Z')})`,
    );
  return { value, expiresAt: value * 1000 };
}

/** For commands that remove or list: an expiry option there is a mistake, not something to ignore. */
export function rejectExpiry(opts: ExpiryOptions, what: string): void {
  const given = chosen(opts);
  if (given.length > 0) throw new UsageError(given.join(' and '), `has no meaning with ${what}`);
}
