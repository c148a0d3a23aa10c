/**
 * The one protected list of the whole system, as a responder sees it: what no reaction may
 * target. It is the union of
 *   - what the nodes publish: every befw agent writes its management networks and `protect=` list
 *     to `befw-protect/<dc>/<node>` as `{"v":1,"nets":[...]}`, so the reactor protects exactly
 *     what the nodes do;
 *   - the Consul agents the local agent reports: its datacenter's members (`/v1/agent/members`)
 *     and every datacenter's servers (`?wan=1`), so no ban cuts a node off from Consul;
 *   - what the reactor's config names (configuredProtection): its `protect` list, the trusted
 *     proxies, the routers, the queue servers.
 * Read every `refreshMs` (at the first need, then when older), never per job. When in doubt,
 * nobody is banned: a published value that does not parse keeps that node's last good value,
 * and without one the list is incomplete, which fails every ban (released, retried, buried with
 * the reason) until it is fixed; a failed read keeps the last list only while it is fresh.
 * Problems are logged once each and counted.
 */
import type { Logger } from 'pino';
import { type Net, parseNet, printable } from '../../core/address.js';
import { NetworkSet, PROTECT_KV_ROOT } from '../../core/protect.js';
import type { NetSet } from '../../core/netMatch.js';
import type { ReactorKv } from './consulKv.js';

/** `befw-protect/`: where each node publishes what it protects (the agent writes it, core/protect.ts names it). */
export const PUBLISHED_PREFIX = PROTECT_KV_ROOT;

interface Entry {
  readonly net: Net;
  readonly what: string;
}

export class ProtectedListError extends Error {
  constructor(message: string) {
    super(`protected list: ${message}`);
    this.name = 'ProtectedListError';
  }
}

export type Published = { readonly ok: true; readonly nets: Net[] } | { readonly ok: false; readonly error: string };

/** One node's published value. */
export function parsePublished(value: string | null): Published {
  if (value === null) return { ok: false, error: 'no value' };
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    return { ok: false, error: 'not JSON' };
  }
  const o = raw as { v?: unknown; nets?: unknown };
  if (typeof o !== 'object' || o === null || o.v !== 1) return { ok: false, error: 'expected {"v":1,"nets":[...]}' };
  if (!Array.isArray(o.nets) || o.nets.length > 100_000) return { ok: false, error: '"nets" must be a list' };
  const nets: Net[] = [];
  for (const t of o.nets) {
    if (typeof t !== 'string') return { ok: false, error: '"nets" must hold strings' };
    const r = parseNet(t);
    if (!r.ok) return { ok: false, error: `"${printable(t, 64)}": ${r.error}` };
    nets.push({ family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix });
  }
  return { ok: true, nets };
}

function netOf(text: string): Net | null {
  const r = parseNet(text);
  return r.ok ? { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix } : null;
}

export interface ProtectedListCounters {
  refreshes: number;
  refreshFailures: number;
  badPublished: number;
}

export class ProtectedList {
  private entries: readonly Entry[] = [];
  private set = new NetworkSet([]);
  private loadedAt = -Infinity;
  private incomplete: string | null = 'not read yet';
  private refreshing: Promise<void> | null = null;
  private readonly lastGood = new Map<string, Net[]>();
  private readonly reported = new Map<string, string>();
  readonly counters: ProtectedListCounters = { refreshes: 0, refreshFailures: 0, badPublished: 0 };

  constructor(
    private readonly kv: ReactorKv,
    private readonly configured: readonly { readonly what: string; readonly nets: NetSet }[],
    private readonly refreshMs: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** How long a list stays usable when Consul cannot be read. */
  private get maxStaleMs(): number {
    return Math.max(60_000, 6 * this.refreshMs);
  }

  /** Why `net` (an address or a network) touches something protected, or null. Throws when the list cannot be trusted. */
  async reason(net: Net): Promise<string | null> {
    await this.fresh();
    if (this.incomplete !== null) throw new ProtectedListError(this.incomplete);
    const hit = this.set.clip(net).hit[0];
    if (hit === undefined) return null;
    const e = this.entries.find((x) => x.net.cidr === hit.cidr);
    return `${e?.what ?? 'protected'} (${hit.cidr})`;
  }

  /** Every protected network with why, fresh (for `befw reactor protected` and tests). */
  async list(): Promise<readonly Entry[]> {
    await this.fresh();
    if (this.incomplete !== null) throw new ProtectedListError(this.incomplete);
    return this.entries;
  }

  private async fresh(): Promise<void> {
    const age = this.now() - this.loadedAt;
    if (age < this.refreshMs && this.incomplete === null) return;
    this.refreshing ??= this.refresh().finally(() => (this.refreshing = null));
    try {
      await this.refreshing;
    } catch (err) {
      // Keep what was read while it is fresh enough; otherwise nobody is banned.
      if (this.now() - this.loadedAt > this.maxStaleMs || this.incomplete !== null)
        throw new ProtectedListError(`cannot be read: ${(err as Error).message}`);
    }
  }

  private report(key: string, error: string | null): void {
    if (error === null) {
      if (this.reported.delete(key)) this.log.info({ event: 'protected-list-fixed', key }, 'published protected list readable again');
      return;
    }
    if (this.reported.get(key) === error) return;
    this.reported.set(key, error);
    this.counters.badPublished++;
    this.log.error(
      {
        event: 'protected-list-bad-value',
        key,
        error,
        kept: this.lastGood.has(key) ? 'last good value' : 'nothing: bans fail until fixed',
      },
      'a published protected list does not parse',
    );
  }

  private async refresh(): Promise<void> {
    this.counters.refreshes++;
    let published, lan, wan;
    try {
      [published, lan, wan] = await Promise.all([this.kv.list(PUBLISHED_PREFIX), this.kv.members(false), this.kv.members(true)]);
    } catch (err) {
      this.counters.refreshFailures++;
      this.log.warn({ event: 'protected-list-read-failed', err: (err as Error).message }, 'protected list not refreshed');
      throw err;
    }
    const entries: Entry[] = [];
    for (const c of this.configured) for (const net of c.nets.cidrs) entries.push({ net, what: c.what });
    let incomplete: string | null = null;
    const seen = new Set<string>();
    for (const e of published) {
      if (e.key.endsWith('/')) continue; // a folder made by the UI
      seen.add(e.key);
      const p = parsePublished(e.value);
      const node = e.key.slice(PUBLISHED_PREFIX.length);
      if (p.ok) {
        this.lastGood.set(e.key, p.nets);
        this.report(e.key, null);
      } else {
        this.report(e.key, p.error);
      }
      const nets = this.lastGood.get(e.key);
      if (nets === undefined) {
        incomplete ??= `${e.key} does not parse (${p.ok ? '' : p.error}) and no earlier value is known`;
        continue;
      }
      for (const net of nets) entries.push({ net, what: `published by node ${node}` });
    }
    for (const k of [...this.lastGood.keys()]) if (!seen.has(k)) this.lastGood.delete(k);
    for (const m of lan) {
      const net = netOf(m.addr);
      if (net !== null) entries.push({ net, what: `Consul ${m.role === 'consul' ? 'server' : 'member'} ${m.name}` });
    }
    for (const m of wan) {
      const net = netOf(m.addr);
      if (net !== null) entries.push({ net, what: `Consul server ${m.name}` });
    }
    this.entries = entries;
    this.set = new NetworkSet(entries.map((e) => e.net));
    this.incomplete = incomplete;
    this.loadedAt = this.now();
  }
}
