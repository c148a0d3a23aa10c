/**
 * `befw observed SET`: who tried SET (a service in mode `observe`) without a grant, as the
 * reactor recorded it (`befw-observed/<tag>/<addr>`, core/observe.ts): address, count, first and
 * last seen, which nodes. Expired records are not shown (`--purge` deletes them).
 * `befw client add SET --from-observed [--min-count N]` grants them in one step (client.ts).
 *
 * Records are hostile input (anyone with KV write on befw-observed/ could put anything there):
 * parsed defensively, the address taken from the key and checked, every field bounded.
 */
import type { Command } from 'commander';
import { printable } from '../core/address.js';
import { canonicalIp } from '../core/netMatch.js';
import {
  OBSERVED_MAX_PER_SET,
  type ObservedRecord,
  isObservedLive,
  observeTag,
  observedPrefix,
  parseObservedRecord,
} from '../core/observe.js';
import type { KvEntry } from '../consul/kvWriter.js';
import { type AccessContext, type CommonOpts, addCommonOptions, print, printJson, withContext } from './access/context.js';
import { UsageError } from './access/errors.js';
import { SERVICE_KIND, parseAddrArg, parseServiceArg } from './access/layout.js';
import { type AddOpts, type Output, type Wording, runAdd } from './access/commands.js';
import { checkScopeOptions, scopeWithNodeDc } from './access/nodeScope.js';
import { resolveExpiry } from './duration.js';
import { table } from './access/entries.js';
import { formatTime } from '../core/timeText.js';

export interface Observed extends ObservedRecord {
  readonly address: string;
}

export interface ObservedList {
  readonly set: string;
  readonly tag: string;
  readonly live: readonly Observed[];
  /** Keys of expired or unreadable records. */
  readonly stale: readonly KvEntry[];
}

/** The records of a set, live ones by count (highest first), then address. */
export async function readObserved(ctx: Pick<AccessContext, 'consul' | 'nowMs'>, set: string): Promise<ObservedList> {
  const tag = observeTag(set);
  const prefix = observedPrefix(tag);
  const nowSec = Math.floor(ctx.nowMs / 1000);
  const live: Observed[] = [];
  const stale: KvEntry[] = [];
  for (const e of await ctx.consul.list(prefix)) {
    const address = canonicalIp(e.key.slice(prefix.length));
    const rec = parseObservedRecord(e.value);
    // The address must be the whole rest of the key, canonical: a key with more segments is not ours.
    if (address === null || address !== e.key.slice(prefix.length) || rec === null || !isObservedLive(rec, nowSec)) {
      stale.push(e);
      continue;
    }
    live.push({ ...rec, address });
  }
  live.sort((a, b) => b.count - a.count || (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  return { set, tag, live, stale };
}

/** A record's time, or `?` when it cannot be printed: one bad record must not hide the others. */
function timeText(sec: number): string {
  try {
    return formatTime(sec * 1000);
  } catch {
    return '?';
  }
}

function formatObserved(list: ObservedList): string {
  if (list.live.length === 0) return `Nobody observed on ${list.set} (befw-observed/${list.tag}/).`;
  const rows = [
    ['ADDRESS', 'COUNT', 'FIRST SEEN', 'LAST SEEN', 'NODES'],
    ...list.live.map((o) => [o.address, String(o.count), timeText(o.first), timeText(o.last), o.nodes.join(',')]),
  ];
  return `${table(rows)}\n${list.live.length} address(es) tried ${list.set} without a grant${list.stale.length > 0 ? `; ${list.stale.length} expired (--purge deletes them)` : ''}`;
}

function observedJson(list: ObservedList): Record<string, unknown> {
  return {
    set: list.set,
    tag: list.tag,
    observed: list.live.map((o) => ({
      address: o.address,
      count: o.count,
      first: o.first,
      last: o.last,
      expires: o.expires,
      nodes: o.nodes,
    })),
    expired: list.stale.length,
  };
}

interface ObservedOpts extends CommonOpts {
  readonly purge?: boolean;
}

export function registerObservedCommand(program: Command): void {
  addCommonOptions(program.command('observed'))
    .description(
      'who tried SERVICE (mode observe) without a grant, as the reactor recorded it: address, count, first/last seen, nodes; grant them with `befw client add SERVICE --from-observed`',
    )
    .argument('<service>', 'service set, e.g. web_tcp_8080, or NAME:PORT[/PROTO]')
    .option('--purge', 'delete the expired records of SERVICE')
    .action(async (service: string, opts: ObservedOpts) => {
      const set = parseServiceArg(service);
      await withContext(opts, async (ctx) => {
        const list = await readObserved(ctx, set);
        let purged = 0;
        if (opts.purge === true) for (const e of list.stale) if (await ctx.consul.deleteCas(e.key, e.modifyIndex)) purged++;
        if (ctx.json) printJson({ ...observedJson(list), ...(opts.purge === true ? { purged } : {}) });
        else print(`${formatObserved(list)}${opts.purge === true ? `\npurged ${purged} expired record(s)` : ''}`);
      });
    });
}

/** `--min-count`: a whole number, 1 or more. */
export function parseMinCount(value: string): number {
  if (!/^[1-9][0-9]{0,9}$/.test(value)) throw new UsageError(`--min-count ${printable(value, 20)}`, 'expected a whole number, 1 or more');
  return Number(value);
}

/** The observed addresses of `set` that reach `minCount`, for `client add --from-observed`. */
export async function observedToGrant(ctx: Pick<AccessContext, 'consul' | 'nowMs'>, set: string, minCount: number): Promise<Observed[]> {
  return (await readObserved(ctx, set)).live.filter((o) => o.count >= minCount);
}

/**
 * Why a grant from observed needs `--yes`, or null. A set at its cap of records was filled to
 * the brim: by a crowd of real clients, or by someone making connections from many addresses to
 * get them listed (and granted). The operator looks before granting.
 */
export function fromObservedCapCheck(live: number, chosen: number, yes: boolean): string | null {
  if (live < OBSERVED_MAX_PER_SET || yes) return null;
  return `the set holds ${live} observed records, its cap (${OBSERVED_MAX_PER_SET}): older or rarer addresses may have been pushed out by a flood of connections; check \`befw observed\`, raise --min-count, and give --yes to grant these ${chosen} address(es)`;
}

export interface FromObservedOpts extends AddOpts {
  readonly fromObserved?: boolean;
  readonly minCount?: number;
}

/** The audit reason of a grant from observed: the operator's, marked, or "from observed". */
function observedReason(reason: string | undefined): string {
  return reason === undefined || reason.trim() === '' ? 'from observed' : `${reason.trim()} (from observed)`;
}

/**
 * `befw client add SET --from-observed [--min-count N]`: every live observed address of SET with
 * at least N sightings is granted, each through the ordinary add (its checks, its audit record),
 * with the reason saying where the list came from.
 */
export async function addFromObserved(target: string, opts: FromObservedOpts, words: Wording): Promise<void> {
  checkScopeOptions(opts);
  resolveExpiry(opts, Date.now()); // validate before Consul is contacted
  const minCount = opts.minCount ?? 1;
  const scope = await scopeWithNodeDc(opts);
  const addOpts: AddOpts = { ...opts, reason: observedReason(opts.reason) };
  await withContext(opts, async (ctx) => {
    const list = await readObserved(ctx, target);
    const chosen = list.live.filter((o) => o.count >= minCount);
    const capped = fromObservedCapCheck(list.live.length, chosen.length, opts.yes === true);
    if (capped !== null) throw new UsageError(`--from-observed ${target}`, capped);
    if (!ctx.json && chosen.length > 0)
      print(`granting ${chosen.length} of ${list.live.length} observed address(es) of ${target} (at least ${minCount} sighting(s))`);
    const outputs: Output[] = [];
    for (const o of chosen) {
      outputs.push(await runAdd(ctx, { kind: SERVICE_KIND, target, addr: parseAddrArg(o.address), scope, opts: addOpts, words }));
    }
    if (ctx.json) printJson({ fromObserved: target, minCount, granted: outputs.map((x) => x.json) });
    else
      print(
        chosen.length === 0
          ? `nobody observed on ${target} with at least ${minCount} sighting(s): nothing written`
          : [
              ...outputs.map((x) => x.text),
              `${chosen.length} observed address(es) granted on ${target} (reason: ${addOpts.reason ?? ''})`,
            ].join('\n'),
      );
  });
}
