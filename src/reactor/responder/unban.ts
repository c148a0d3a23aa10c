/**
 * `befw reactor unban ADDR [--forget]`: undoes what the reactor did to an address, everywhere:
 *   - the deny in Consul, for every configured ban action (its set and scope; the address's key
 *     and, for an action with a wider prefix, the network's);
 *   - its entries in VyOS address groups (the recorded ones, and the configured groups on every
 *     configured router), and the record that would expire them;
 *   - the offence record is marked cleared now: a job for a line read before this moment (still
 *     queued, or replayed) changes nothing. With --forget its history goes too, so the next ban
 *     is a first one (without, a repeat offender stays one);
 *   - the parsers' counters and de-duplication of the address, through their control tubes
 *     (queue/control.ts), so an attacker back after the unban is reported at once.
 * Each step is reported; one failing does not stop the others.
 */
import type { ReactorConfig, ResponderConfig } from '../config/reactorConfig.js';
import type { JobKeys } from '../queue/jobAuth.js';
import { broadcastForget } from '../queue/control.js';
import { banKey, offenceKey, parseOffence } from './banPolicy.js';
import type { ReactorKv, TxnOp } from './consulKv.js';
import { operatorIdentity } from '../../core/audit.js';
import { VERSION } from '../../core/version.js';
import { asNet } from './protection.js';
import { auditOp, txnAudited } from './reactorAudit.js';
import type { VyosFleet } from './vyosActions.js';
import { type GroupEntry, groupRecordKey, parseGroupRecord, removeEntries } from './vyosGroups.js';

export interface UnbanStep {
  readonly step: string;
  readonly ok: boolean;
  readonly detail: string;
}

export async function unban(
  config: ReactorConfig,
  kv: ReactorKv,
  fleet: VyosFleet,
  keys: JobKeys,
  address: string,
  forget: boolean,
  now: () => number = Date.now,
): Promise<UnbanStep[]> {
  const rc = config.responder as ResponderConfig;
  const steps: UnbanStep[] = [];
  const attempt = async (step: string, fn: () => Promise<string>): Promise<void> => {
    try {
      steps.push({ step, ok: true, detail: await fn() });
    } catch (err) {
      steps.push({ step, ok: false, detail: (err as Error).message });
    }
  };
  const family = address.includes(':') ? 6 : 4;

  await attempt('consul: deny', async () => {
    let localDc: string | null = null;
    const keysToDelete = new Set<string>();
    for (const list of rc.actions.values()) {
      for (const a of list) {
        if (a.type !== 'ban') continue;
        const dc = a.dc ?? (localDc ??= (await kv.self()).datacenter);
        keysToDelete.add(banKey(a, dc, address));
        const prefix = family === 4 ? a.prefixV4 : a.prefixV6;
        const net = asNet(`${address}/${prefix}`);
        if (net !== null && prefix !== (family === 4 ? 32 : 128)) keysToDelete.add(banKey(a, dc, net.cidr));
      }
    }
    const present: string[] = [];
    const was = new Map<string, string | null>();
    for (const k of keysToDelete) {
      const cur = await kv.get(k);
      if (cur === null) continue;
      present.push(k);
      was.set(k, cur.value);
    }
    if (present.length > 0) {
      const deletes: TxnOp[] = present.map((key) => ({ verb: 'delete' as const, key }));
      // Tombstones (who unbanned, when) in the same transaction; a token without write on
      // befw-audit/ must not keep a ban in place, so then the bans go without them.
      const tombstones = present.flatMap((key) => unbanTombstone(key, was.get(key) ?? null, now()));
      const r = await txnAudited(kv, deletes, tombstones);
      if (!r.ok) throw new Error(r.errors.join('; '));
    }
    return present.length === 0 ? 'no ban in place' : `deleted ${present.join(', ')}`;
  });

  await attempt('consul: offence record', async () => {
    const key = offenceKey(rc.stateKvPrefix, address);
    for (let i = 0; i < 5; i++) {
      const cur = await kv.get(key);
      const rec = parseOffence(cur?.value ?? null);
      const nowMs = now();
      const next = {
        count: forget ? 0 : (rec?.count ?? 0),
        lastBanMs: rec?.lastBanMs ?? 0,
        lastExpiry: Math.min(rec?.lastExpiry ?? 0, Math.floor(nowMs / 1000)),
        lastBantimeSec: rec?.lastBantimeSec ?? 0,
        jobs: rec?.jobs ?? [],
        event: rec?.event ?? '',
        device: rec?.device ?? { address: '', hostname: null },
        clearedMs: nowMs,
      };
      const r = await kv.txn([{ verb: 'cas', key, value: JSON.stringify(next), index: cur?.modifyIndex ?? 0 }]);
      if (r.ok)
        return forget
          ? 'history forgotten: the next ban is a first one'
          : `kept ${next.count} earlier ban(s) (--forget resets them); jobs for lines before now change nothing`;
    }
    throw new Error(`lost 5 check-and-set races on ${key}`);
  });

  await attempt('vyos: address groups', async () => {
    const recKey = groupRecordKey(rc.stateKvPrefix, address);
    const cur = await kv.get(recKey);
    const entries: GroupEntry[] = [...(parseGroupRecord(cur?.value ?? null)?.entries ?? [])];
    for (const list of rc.actions.values()) {
      for (const a of list) {
        if (a.type !== 'vyos-address-group') continue;
        const kind = family === 4 ? 'address-group' : 'ipv6-address-group';
        const group = family === 4 ? a.group : a.ipv6Group;
        const names = a.devices.kind === 'named' ? a.devices.names : [...rc.devices.keys()];
        for (const device of names)
          if (!entries.some((e) => e.device === device && e.kind === kind && e.group === group)) entries.push({ device, kind, group });
      }
    }
    if (entries.length === 0) return 'no address-group actions configured';
    const done = await removeEntries(fleet, address, entries);
    if (cur !== null) await kv.txn([{ verb: 'delete', key: recKey }]);
    return Object.entries(done)
      .map(([k, v]) => `${k}: ${v}`)
      .join('; ');
  });

  await attempt('parsers: de-duplication', async () => {
    const results = await broadcastForget(config.queue.servers, config.queue.tubePrefix, keys, address, config.queue.connectTimeoutMs);
    const failed = results.filter((r) => r.error !== null);
    const told = results.reduce((n, r) => n + r.parsers, 0);
    if (failed.length > 0) throw new Error(failed.map((r) => `${r.server}: ${r.error}`).join('; '));
    return `told ${told} parser control tube(s) on ${results.length} queue server(s)`;
  });
  return steps;
}

/** The audit tombstone of a ban an operator lifted: who (from the environment), when, what it was. */
function unbanTombstone(key: string, was: string | null, nowMs: number): TxnOp[] {
  const by = operatorIdentity(null, null, process.env);
  return auditOp(key, { op: 'rm', by, reason: 'befw reactor unban', tool: `befw ${VERSION} reactor unban`, value: was }, nowMs);
}
