/**
 * Address-group entries on VyOS routers expire with the ban. VyOS's groups have no expiry of
 * their own, so the responder keeps a record per address in Consul,
 * `<stateKvPrefix>/vyos/<addr>` = `{"expiry": <Unix s, -1 never>, "entries": [{device, kind, group}]}`,
 * written (check-and-set) before the routers are changed, so a crash between the two leaves a
 * record and never an entry nobody knows of. Every responder sweeps the records now and then:
 * an expired one is taken out of its routers' groups, then deleted; at a responder's start, the
 * live ones are put back where a router lost them (a router restored from an old config). The
 * operator's unban removes them at once (removeEntries).
 */
import type { Logger } from 'pino';
import type { ReactorKv } from './consulKv.js';
import type { VyosFleet } from './vyosActions.js';

export interface GroupEntry {
  readonly device: string;
  readonly kind: 'address-group' | 'ipv6-address-group';
  readonly group: string;
}

export interface GroupRecord {
  /** Unix seconds; -1: never expires (the ban never does). */
  readonly expiry: number;
  readonly entries: readonly GroupEntry[];
}

export function groupRecordKey(prefix: string, address: string): string {
  return `${prefix}/vyos/${address}`;
}

export function parseGroupRecord(value: string | null): GroupRecord | null {
  if (value === null) return null;
  try {
    const r = JSON.parse(value) as { expiry?: unknown; entries?: unknown };
    if (typeof r.expiry !== 'number' || !Array.isArray(r.entries)) return null;
    const entries = (r.entries as Partial<GroupEntry>[]).filter(
      (e): e is GroupEntry =>
        typeof e.device === 'string' && typeof e.group === 'string' && (e.kind === 'address-group' || e.kind === 'ipv6-address-group'),
    );
    return { expiry: r.expiry, entries };
  } catch {
    return null;
  }
}

const sameEntry = (a: GroupEntry, b: GroupEntry): boolean => a.device === b.device && a.kind === b.kind && a.group === b.group;

/** The later of two expiries (-1 is the latest). */
export function laterExpiry(a: number, b: number): number {
  return a < 0 || b < 0 ? -1 : Math.max(a, b);
}

/** Records entries before they are made (check-and-set; a few tries against other responders). */
export async function recordEntries(
  kv: ReactorKv,
  prefix: string,
  address: string,
  expiry: number,
  add: readonly GroupEntry[],
): Promise<void> {
  const key = groupRecordKey(prefix, address);
  for (let i = 0; i < 5; i++) {
    const cur = await kv.get(key);
    const old = parseGroupRecord(cur?.value ?? null);
    const entries = [...(old?.entries ?? [])];
    for (const e of add) if (!entries.some((x) => sameEntry(x, e))) entries.push(e);
    const next: GroupRecord = { expiry: old === null ? expiry : laterExpiry(old.expiry, expiry), entries };
    const r = await kv.txn([{ verb: 'cas', key, value: JSON.stringify(next), index: cur?.modifyIndex ?? 0 }]);
    if (r.ok) return;
  }
  throw new Error(`lost 5 check-and-set races on ${key}`);
}

function path(e: GroupEntry, address: string): string[] {
  return ['firewall', 'group', e.kind, e.group, 'address', address];
}

/** Takes `address` out of the entries' groups (only where present); what was done per device. */
export async function removeEntries(fleet: VyosFleet, address: string, entries: readonly GroupEntry[]): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const where = `${e.device} ${e.kind} ${e.group}`;
    if (!fleet.devices.has(e.device)) {
      out[where] = 'device no longer configured';
      continue;
    }
    const client = await fleet.client(e.device);
    const present = await client.post('/retrieve', { op: 'returnValues', path: path(e, address).slice(0, -1) });
    if (!Array.isArray(present) || !present.includes(address)) {
      out[where] = 'not present';
      continue;
    }
    await client.post('/configure', { op: 'delete', path: path(e, address) });
    await client.post('/config-file', { op: 'save' });
    out[where] = 'removed';
  }
  return out;
}

async function ensureEntries(fleet: VyosFleet, address: string, entries: readonly GroupEntry[]): Promise<number> {
  let added = 0;
  for (const e of entries) {
    if (!fleet.devices.has(e.device)) continue;
    const client = await fleet.client(e.device);
    const present = await client.post('/retrieve', { op: 'returnValues', path: path(e, address).slice(0, -1) });
    if (Array.isArray(present) && present.includes(address)) continue;
    await client.post('/configure', { op: 'set', path: path(e, address) });
    await client.post('/config-file', { op: 'save' });
    added++;
  }
  return added;
}

/** The sweeper: expired entries out, and (on its first run) live ones back in. */
export class GroupKeeper {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private first = true;

  constructor(
    private readonly kv: ReactorKv,
    private readonly fleet: VyosFleet,
    private readonly prefix: string,
    private readonly everyMs: number,
    private readonly log: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  start(): void {
    if (this.fleet.devices.size === 0) return;
    const tick = (): void => {
      this.running ??= this.sweep().finally(() => (this.running = null));
    };
    tick();
    this.timer = setInterval(tick, this.everyMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.running;
  }

  async sweep(): Promise<void> {
    let records;
    try {
      records = await this.kv.list(`${this.prefix}/vyos/`);
    } catch (err) {
      this.log.warn({ event: 'vyos-sweep-failed', err: (err as Error).message }, 'address-group records not read');
      return;
    }
    const reassert = this.first;
    this.first = false;
    const nowSec = Math.floor(this.now() / 1000);
    for (const r of records) {
      const address = r.key.slice(`${this.prefix}/vyos/`.length);
      const rec = parseGroupRecord(r.value);
      if (rec === null) continue;
      try {
        if (rec.expiry >= 0 && rec.expiry <= nowSec) {
          const done = await removeEntries(this.fleet, address, rec.entries);
          await this.kv.txn([{ verb: 'delete-cas', key: r.key, index: r.modifyIndex }]);
          this.log.info({ event: 'vyos-entry-expired', address, expiry: rec.expiry, devices: done }, 'address-group entry expired');
        } else if (reassert) {
          const added = await ensureEntries(this.fleet, address, rec.entries);
          if (added > 0) this.log.info({ event: 'vyos-entry-reasserted', address, added }, 'address-group entry put back');
        }
      } catch (err) {
        this.log.warn({ event: 'vyos-sweep-failed', address, err: (err as Error).message }, 'address-group entry not swept');
      }
    }
  }
}
