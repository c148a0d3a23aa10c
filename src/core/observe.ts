/**
 * Observe mode: a service in mode `observe` admits everyone as `default` does, and the kernel logs
 * each non-client's packet (rate-limited) with a per-service prefix. The reactor reads those
 * lines and keeps, per service set, who tried without a grant (`befw observed SET`), so an
 * operator can see who would be cut off before switching the service to `enforcing` (BEFW logged
 * the same packets to NFLOG group 402: befw/const.go:34, demo/rules.json).
 *
 * Pure: the prefix and the Consul layout of what was observed, shared by the agent (rules), the
 * reactor (parser and responder) and the CLI.
 */
import { hash53 } from './hash.js';

/** Prefix word of an observe log line; the set's tag follows, then a space. */
export const OBSERVE_LOG_WORD = 'befw-obs:';
/** Kernel rate limit per observed service port. */
export const OBSERVE_LOG_RATE = { perSecond: 10, burst: 50 } as const;
/**
 * Whether a protocol's non-clients are logged in observe mode. Only TCP: a sighting is logged
 * after the handshake completed (a forged source cannot complete it), once per connection. A UDP
 * packet proves nothing about its source, so UDP ports in observe mode are admitted, not logged.
 */
export function observeLogs(proto: string): boolean {
  return proto === 'tcp';
}
/** nft's once-per-connection mark of an observe sighting: a conntrack label bit (not the ct mark others use). */
export const OBSERVE_CT_LABEL = 127;
/** iptables' --log-prefix holds 29 characters: the word, the tag and the space must fit. */
const PREFIX_MAX = 29;
const TAG_MAX = PREFIX_MAX - OBSERVE_LOG_WORD.length - 1;
/** What a tag may hold: set-name characters plus `~` of a shortened one. */
export const OBSERVE_TAG = /^[a-z0-9._~-]{1,19}$/;

/**
 * The set's tag in log lines and Consul keys: the set name when it fits, else a stable, shortened
 * form (first 12 characters, `~`, 6 hex digits of a hash of the whole name), so two long names
 * never share a tag by accident and the CLI finds the tag from the set name.
 */
export function observeTag(set: string): string {
  if (set.length <= TAG_MAX) return set;
  return `${set.slice(0, TAG_MAX - 7)}~${hash53(set).slice(-6)}`;
}

/** The kernel log prefix for a set: `befw-obs:<tag> ` (at most 29 characters). */
export function observeLogPrefix(set: string): string {
  return `${OBSERVE_LOG_WORD}${observeTag(set)} `;
}

/** Consul KV root of observations: outside `befw/`, so BEFW agents (which read befw/$service$, $ipset$, $alias$) never see it. */
export const OBSERVED_ROOT = 'befw-observed';

/** Key of one observed address; `addr` is canonical (IPv6 `:` are fine in a key segment). */
export function observedKey(tag: string, addr: string): string {
  return `${OBSERVED_ROOT}/${tag}/${addr}`;
}

export function observedPrefix(tag: string): string {
  return `${OBSERVED_ROOT}/${tag}/`;
}

/** How many addresses one set keeps; past it, the lowest counts make room for higher ones. */
export const OBSERVED_MAX_PER_SET = 1000;
/** How many node names one record keeps. */
export const OBSERVED_MAX_NODES = 32;
/** A record not seen again for this long is expired (readers ignore it; the responder prunes it). */
export const OBSERVED_TTL_SEC = 7 * 86400;

export interface ObservedRecord {
  readonly count: number;
  /** Unix seconds. */
  readonly first: number;
  readonly last: number;
  /** Unix seconds after which readers ignore the record. */
  readonly expires: number;
  readonly nodes: readonly string[];
}

const NODE_NAME = /^[A-Za-z0-9._-]{1,64}$/;

function nonNegInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

/** The last second of year 9999 (UTC): later times are not dates a reader can print. */
export const OBSERVED_MAX_TIME_SEC = 253_402_300_799;

function unixTime(x: unknown): x is number {
  return nonNegInt(x) && x <= OBSERVED_MAX_TIME_SEC;
}

/** A record from Consul, or null when the value is not one (hostile values are ignored, not trusted). */
export function parseObservedRecord(value: string | null): ObservedRecord | null {
  if (value === null || value.length > 8192) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    return null;
  }
  const r = raw as Partial<Record<keyof ObservedRecord, unknown>> | null;
  if (typeof r !== 'object' || r === null) return null;
  if (!nonNegInt(r.count) || !unixTime(r.first) || !unixTime(r.last) || !unixTime(r.expires)) return null;
  if (!Array.isArray(r.nodes)) return null;
  const nodes = (r.nodes as unknown[]).filter((n): n is string => typeof n === 'string' && NODE_NAME.test(n)).slice(0, OBSERVED_MAX_NODES);
  return { count: r.count, first: r.first, last: r.last, expires: r.expires, nodes };
}

/** The record after `count` more sightings from `node` at `nowSec`. */
export function mergeObserved(
  prev: ObservedRecord | null,
  count: number,
  node: string | null,
  nowSec: number,
  ttlSec = OBSERVED_TTL_SEC,
): ObservedRecord {
  const nodes = [...(prev?.nodes ?? [])];
  if (node !== null && NODE_NAME.test(node) && !nodes.includes(node) && nodes.length < OBSERVED_MAX_NODES) nodes.push(node);
  nodes.sort();
  return {
    count: (prev?.count ?? 0) + count,
    first: prev === null ? nowSec : Math.min(prev.first, nowSec),
    last: Math.max(prev?.last ?? 0, nowSec),
    expires: nowSec + ttlSec,
    nodes,
  };
}

export function isObservedLive(r: ObservedRecord, nowSec: number): boolean {
  return r.expires > nowSec;
}
