/**
 * Durations and times on the command line, one grammar everywhere: `--ttl 1h30m`, `--for 2d`,
 * `--until 2025-06-30T18:00:00Z` (or `+2h`, or Unix seconds), `--at -30m`. For access entries,
 * `--ttl`, `--until` or `--forever` become the value written to Consul (SPEC §1): absolute Unix
 * seconds, or -1 for never. Pure: the caller passes `now`, so a written expiry is reproducible.
 *
 * A grant always states its end: there is no default lifetime, because a forgotten `--ttl` that
 * silently meant "forever" would be a hole nobody decided to open.
 */
import { printable } from '../core/address.js';
import { UsageError, quoted } from './access/errors.js';
import { formatTime } from './format.js';

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 } as const;
type Unit = keyof typeof UNIT_SECONDS;

/** Longest --ttl accepted. Anything longer is almost certainly a typo; --forever says "never". */
export const MAX_TTL_SECONDS = 3650 * 86_400;

// One or more number-unit pairs, largest unit first, each unit once: 1h30m, 2d, 1w2d12h, 90s.
const PAIR = /([0-9]+)([^0-9]*)/y;
const UNIT_ORDER = 'wdhms';

/**
 * `30s`, `15m`, `1h30m`, `2d`, `1w` to seconds. Garbage is refused with the part that is wrong
 * named (`unknown unit "x"`), and the total is capped: anything past 3650d is almost certainly
 * a typo, and --forever says "never" in so many words.
 */
export function parseDuration(text: string, subject = '--ttl', shown = text): number {
  const bad = (why: string): UsageError => new UsageError(quoted(subject, shown), why);
  if (text === '') throw bad('empty; expected a duration such as 30s, 15m, 1h30m, 2d or 1w');
  if (!/^[0-9]/.test(text))
    throw bad('expected a duration such as 30s, 15m, 1h30m, 2d or 1w (a number first, then a unit s, m, h, d or w)');
  let seconds = 0;
  let last = -1;
  PAIR.lastIndex = 0;
  while (PAIR.lastIndex < text.length) {
    const m = PAIR.exec(text);
    if (m === null) throw bad('expected a duration such as 30s, 15m, 1h30m, 2d or 1w');
    const [, digits = '', unit = ''] = m;
    if (unit === '') throw bad(`"${digits}" has no unit; add s, m, h, d or w (e.g. ${digits}s)`);
    if (unit === '.' || unit === ',') throw bad('whole numbers only: write 1h30m, not 1.5h');
    if (!(unit in UNIT_SECONDS)) throw bad(`unknown unit "${printable(unit, 20)}"; units are s, m, h, d and w`);
    if (digits.length > 1 && digits.startsWith('0')) throw bad(`"${digits}${unit}": no leading zeros`);
    const at = UNIT_ORDER.indexOf(unit);
    if (at <= last) throw bad(`"${unit}" out of place: write each unit once, largest first (e.g. 1d12h, 1h30m)`);
    last = at;
    // Digits are bounded before Number() so a thousand-digit number is not a float's guess.
    if (digits.length > 10) throw bad('longer than 3650d; use --forever for an entry that never expires');
    seconds += Number(digits) * UNIT_SECONDS[unit as Unit];
  }
  if (seconds === 0) throw bad('is zero; an entry must last at least 1s');
  if (seconds > MAX_TTL_SECONDS) throw bad('longer than 3650d; use --forever for an entry that never expires');
  return seconds;
}

/** Latest Unix seconds accepted as a time (9999-12-31T23:59:59Z): past it is a typo, not a date. */
const MAX_UNIX_SECONDS = 253_402_300_799;

/**
 * A point in time for --until and --at, to Unix milliseconds: `now`, a time relative to now
 * (`+2h`, `-30m`, `+1h30m`), Unix seconds (`1767225600`), or ISO 8601 with a zone. Relative
 * times take the duration rules above (same units, same cap).
 */
export function parseTime(text: string, subject: string, nowMs: number): number {
  if (text === 'now') return nowMs;
  if (text.startsWith('+') || text.startsWith('-')) {
    const sign = text.startsWith('-') ? -1 : 1;
    const rest = text.slice(1);
    if (/^[0-9]+$/.test(rest) && sign === -1)
      throw new UsageError(quoted(subject, text), 'a negative Unix time; for a time relative to now add a unit (e.g. -30m)');
    return nowMs + sign * parseDuration(rest, subject, text) * 1000;
  }
  if (/^[0-9]+$/.test(text)) {
    if (text.length > 12 || Number(text) > MAX_UNIX_SECONDS)
      throw new UsageError(quoted(subject, text), 'is past the year 9999 as Unix seconds (milliseconds given by mistake?)');
    return Number(text) * 1000;
  }
  if (/^[0-9]{4}-/.test(text)) return parseIsoTime(text, subject);
  throw new UsageError(
    quoted(subject, text),
    'expected now, +DURATION or -DURATION (e.g. +2h, -30m), Unix seconds, or ISO 8601 with a zone (e.g. 2025-06-30T18:00:00Z)',
  );
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
  const untilMs = parseTime(opts.until as string, '--until', nowMs);
  const value = Math.floor(untilMs / 1000);
  if (value <= nowSec)
    throw new UsageError(quoted('--until', opts.until as string), `is not in the future (now is ${formatTime(nowSec * 1000)})`);
  return { value, expiresAt: value * 1000 };
}

/** For commands that remove or list: an expiry option there is a mistake, not something to ignore. */
export function rejectExpiry(opts: ExpiryOptions, what: string): void {
  const given = chosen(opts);
  if (given.length > 0) throw new UsageError(given.join(' and '), `has no meaning with ${what}`);
}
