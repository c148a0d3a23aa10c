/**
 * Users from DHCP and RADIUS leases, the pure part: which user names may become an alias, the
 * canonical form of a MAC address, and what one lease event does to the record kept per MAC.
 *
 * A record joins what two servers say about one device: RADIUS says which user logged in from a
 * MAC (`Login OK`, or accounting `Connect` with the address it framed), DHCP says which address
 * that MAC holds and until when. When both are known and unexpired, the user's alias holds the
 * address: `befw/$alias$/$user.NAME$/ADDR = <lease end>`. The record also remembers the key it
 * granted, so a lease that moves deletes the old address and a stop deletes the grant.
 *
 * A RADIUS user name is chosen by whoever types it at a login prompt: only a short, safe charset
 * becomes a path segment, everything else is refused (never rewritten into something that might
 * collide with another user's name).
 */
import { NEVER_TARGETED, canonicalIp } from './netMatch.js';

/** Alias names are `$[A-Za-z0-9._-]{1,64}$`; `user.` takes 5 of those 64. */
export const MAX_USER_NAME = 59;
const USER_NAME = /^[a-z0-9][a-z0-9._-]{0,58}$/;

export type UserNameCheck = { readonly ok: true; readonly name: string } | { readonly ok: false; readonly error: string };

/**
 * A user name that may become an alias, as logged: already lower-case (never folded: `ALICE` may
 * be another account in a case-sensitive directory, and must not land in alice's alias), at most
 * 59 characters of letters, digits, ".", "_" and "-", starting with a letter or digit, without
 * "..". A realm (`alice@example.org`) is refused: strip it in the RADIUS server. An anonymous name is
 * refused too (`anon…`, what FreeRADIUS's filter_inner_identity takes for anonymous): the outer identity of
 * PEAP/TTLS, chosen by the client, never a user.
 */
export function checkUserName(name: string): UserNameCheck {
  if (name.length === 0) return { ok: false, error: 'empty user name' };
  if (name.length > MAX_USER_NAME) return { ok: false, error: `user name longer than ${MAX_USER_NAME} characters` };
  if (name !== name.toLowerCase())
    return { ok: false, error: 'user name has upper-case letters (not folded: it may be another account); log names in lower case' };
  if (!USER_NAME.test(name))
    return { ok: false, error: 'user name must be letters, digits, ".", "_" and "-", starting with a letter or digit' };
  if (name.includes('..')) return { ok: false, error: 'user name must not contain ".."' };
  // FreeRADIUS's filter_inner_identity lets any outer name starting "anon" differ from the inner one.
  if (name.startsWith('anon'))
    return { ok: false, error: 'user name "anon…" is an anonymous PEAP/TTLS outer identity, chosen by the client: log the inner one' };
  return { ok: true, name };
}

export function userAlias(name: string): string {
  return `$user.${name}$`;
}

/** The KV key that puts `addr` into the user's alias (world scope). */
export function userGrantKey(name: string, addr: string): string {
  return `befw/$alias$/${userAlias(name)}/${addr}`;
}

const MAC_FORMS = [
  /^([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})[:-]([0-9a-f]{2})$/,
  /^([0-9a-f]{2})([0-9a-f]{2})\.([0-9a-f]{2})([0-9a-f]{2})\.([0-9a-f]{2})([0-9a-f]{2})$/,
  /^([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/,
];

/**
 * `3a:95:af:d6:5b:7f` from the forms the servers print: dnsmasq and dhcpd (`3a:95:…`), RADIUS
 * Calling-Station-Id (`3A-95-…`, RFC 3580), Cisco (`3a95.afd6.5b7f`) and bare hex; else null.
 * Separators must agree (`3a:95-af…` is refused).
 */
export function canonicalMac(raw: string): string | null {
  const t = raw.toLowerCase();
  if (t.length > 17) return null;
  if (/[:]/.test(t) && /-/.test(t)) return null;
  for (const re of MAC_FORMS) {
    const m = re.exec(t);
    if (m !== null) return m.slice(1, 7).join(':');
  }
  return null;
}

/**
 * An IPv4 or IPv6 host address in canonical form, or null: a network is not a lease, and neither
 * is "this host", loopback, link-local, multicast or broadcast (no DHCP server hands those out).
 */
export function leaseAddress(raw: string): string | null {
  const addr = canonicalIp(raw);
  return addr === null || NEVER_TARGETED.has(addr) ? null : addr;
}

/** What is kept per MAC (JSON in Consul), Unix seconds. */
export interface MacRecord {
  readonly user: string | null;
  readonly userUntil: number;
  readonly addr: string | null;
  readonly leaseUntil: number;
  /** The address came from RADIUS accounting (Framed-IP-Address), not DHCP: it ends with the session. */
  readonly framed: boolean;
  /** The KV key this record granted last (deleted when the grant moves or ends). */
  readonly granted: string | null;
  /**
   * When the lines behind each half were received (ms): a job redelivered or retried after a
   * newer line (an ACK after its RELEASE) changes nothing.
   */
  readonly userSeenMs: number;
  readonly leaseSeenMs: number;
}

export const EMPTY_RECORD: MacRecord = {
  user: null,
  userUntil: 0,
  addr: null,
  leaseUntil: 0,
  framed: false,
  granted: null,
  userSeenMs: 0,
  leaseSeenMs: 0,
};

export type LeaseEvent =
  /** RADIUS Login OK (user <-> MAC) or accounting Connect (with the framed address, when there is one). */
  | { readonly kind: 'login'; readonly user: string; readonly until: number; readonly addr: string | null }
  /** RADIUS accounting Disconnect. */
  | { readonly kind: 'logout'; readonly user: string; readonly addr: string | null }
  /** A DHCP server acknowledged `addr` until `until`. */
  | { readonly kind: 'lease'; readonly addr: string; readonly until: number }
  /** A DHCP client released `addr`. */
  | { readonly kind: 'release'; readonly addr: string };

export interface Decision {
  /** The event is older than what the record already holds: nothing changes. */
  readonly stale: boolean;
  readonly record: MacRecord;
  /** The key and value to write, or null: nothing granted. */
  readonly grant: { readonly key: string; readonly expiry: number } | null;
  /** A key to delete (the previous grant, when it moved or ended). */
  readonly revoke: string | null;
}

function applyEvent(r: MacRecord, e: LeaseEvent, ms: number): MacRecord {
  switch (e.kind) {
    case 'login': {
      const user = { ...r, user: e.user, userUntil: e.until, userSeenMs: ms };
      // A framed address DHCP already leases keeps the lease's end; else it lasts the session.
      if (e.addr === null || (e.addr === r.addr && !r.framed)) return user;
      return { ...user, addr: e.addr, leaseUntil: e.until, framed: true, leaseSeenMs: ms };
    }
    case 'logout': {
      if (r.user !== e.user) return r;
      const out = { ...r, user: null, userUntil: 0, userSeenMs: ms };
      return r.framed ? { ...out, addr: null, leaseUntil: 0, framed: false, leaseSeenMs: ms } : out;
    }
    case 'lease':
      return { ...r, addr: e.addr, leaseUntil: e.until, framed: false, leaseSeenMs: ms };
    case 'release':
      return r.addr === e.addr ? { ...r, addr: null, leaseUntil: 0, framed: false, leaseSeenMs: ms } : r;
  }
}

function isStale(r: MacRecord, e: LeaseEvent, ms: number): boolean {
  const user = e.kind === 'login' || e.kind === 'logout';
  const lease = e.kind === 'lease' || e.kind === 'release' || (e.kind !== 'logout' && e.addr !== null);
  return (user && ms < r.userSeenMs) || (lease && ms < r.leaseSeenMs);
}

/**
 * One event (its line received at `lineMs`) applied to a MAC's record at `nowSec`. The grant
 * lasts until the earlier of the lease end and the login's end: either one ending ends access.
 */
export function decideLease(prev: MacRecord, e: LeaseEvent, lineMs: number, nowSec: number): Decision {
  if (isStale(prev, e, lineMs)) return { stale: true, record: prev, grant: null, revoke: null };
  const next = applyEvent(prev, e, lineMs);
  const { user, addr } = next;
  const live = user !== null && addr !== null && next.userUntil > nowSec && next.leaseUntil > nowSec;
  const grant = live ? { key: userGrantKey(user, addr), expiry: Math.min(next.userUntil, next.leaseUntil) } : null;
  const granted = grant?.key ?? null;
  const revoke = prev.granted !== null && prev.granted !== granted ? prev.granted : null;
  return { stale: false, record: { ...next, granted }, grant, revoke };
}

/** A record read back from Consul; anything malformed counts as empty (and is overwritten). */
export function parseMacRecord(text: string | null): MacRecord {
  if (text === null) return EMPTY_RECORD;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return EMPTY_RECORD;
  }
  if (typeof raw !== 'object' || raw === null) return EMPTY_RECORD;
  const o = raw as Record<string, unknown>;
  const str = (v: unknown): string | null => (typeof v === 'string' && v.length <= 200 ? v : null);
  const num = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) ? v : 0);
  const user = str(o.user);
  const addr = str(o.addr);
  const granted = str(o.granted);
  return {
    user: user !== null && checkUserName(user).ok ? user : null,
    userUntil: num(o.userUntil),
    addr: addr !== null && leaseAddress(addr) === addr ? addr : null,
    leaseUntil: num(o.leaseUntil),
    framed: o.framed === true,
    granted: granted !== null && granted.startsWith('befw/$alias$/$user.') ? granted : null,
    userSeenMs: num(o.userSeenMs),
    leaseSeenMs: num(o.leaseSeenMs),
  };
}

/**
 * Who holds an address now (the index kept per address beside the per-MAC records): the MAC and
 * when the line that gave it the address was received (ms). A newer lease of the address to
 * another MAC takes it from this one, whatever this one's lease end said.
 */
export interface AddrOwner {
  readonly mac: string;
  readonly seenMs: number;
}

export function encodeAddrOwner(o: AddrOwner): string {
  return JSON.stringify({ mac: o.mac, seenMs: o.seenMs });
}

/** An index entry read back from Consul; anything malformed counts as no owner (and is overwritten). */
export function parseAddrOwner(text: string | null): AddrOwner | null {
  if (text === null) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof raw !== 'object' || raw === null) return null;
  const o = raw as Record<string, unknown>;
  const mac = typeof o.mac === 'string' ? canonicalMac(o.mac) : null;
  if (mac === null || typeof o.seenMs !== 'number' || !Number.isSafeInteger(o.seenMs)) return null;
  return { mac, seenMs: o.seenMs };
}

/**
 * A record that no longer holds `addr` (another MAC leased it since, by a line received at
 * `ms`), with the grant to delete; null when the record does not hold `addr` (nothing to do).
 */
export function evictAddress(r: MacRecord, addr: string, ms: number): { record: MacRecord; revoke: string | null } | null {
  if (r.addr !== addr) return null;
  return {
    record: { ...r, addr: null, leaseUntil: 0, framed: false, granted: null, leaseSeenMs: Math.max(r.leaseSeenMs, ms) },
    revoke: r.granted,
  };
}

/**
 * The decision for a MAC whose new address another MAC was given by a newer line: it keeps its
 * user but not the address, grants nothing, and deletes what it granted before.
 */
export function withoutAddress(prev: MacRecord, d: Decision): Decision {
  const record: MacRecord = { ...d.record, addr: null, leaseUntil: 0, framed: false, granted: null };
  return { stale: false, record, grant: null, revoke: prev.granted };
}
