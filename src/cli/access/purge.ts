/**
 * `befw purge-expired`: deletes entries whose expiry has passed (BEFW needed a separate tool).
 *
 * Expired entries are already out of the kernel; deleting them only keeps the tree readable.
 * Each delete is a check-and-set on the ModifyIndex read a moment before, so an entry that
 * someone renewed in between is kept, not lost. Entries with a value that is not an expiry are
 * never touched: they are typos to fix, and the agent reports them.
 */
import type { Command } from 'commander';
import { KV_ROOT, isLive } from '../../core/kvLayout.js';
import { ConsulError } from '../../consul/connection.js';
import type { OperatorConsul } from '../../consul/kvWriter.js';
import { auditKeyFor } from '../../core/audit.js';
import { type CommonOpts, addCommonOptions, print, printJson, withContext } from './context.js';
import { type Entry, classify } from './layout.js';
import { entryJson, expiryText, sortEntries, table } from './entries.js';
import { addrText, scopeText } from './layout.js';

export interface PurgeResult {
  readonly dryRun: boolean;
  /** Deleted (or, on a dry run, to be deleted). */
  readonly deleted: readonly Entry[];
  /** Changed after they were read (renewed, most likely): kept. */
  readonly kept: readonly Entry[];
  /** Keys under befw/ that are not valid entries: left alone. */
  readonly invalid: number;
}

/**
 * Deletes an expired entry if unchanged, and its audit record with it in one transaction: a
 * record outliving its entry is noise that grows without bound (the reactor writes one per ban).
 * A token that may not delete the record still purges the entry.
 */
async function purgeOne(consul: Pick<OperatorConsul, 'deleteCas' | 'txn'>, e: Entry): Promise<boolean> {
  const record = auditKeyFor(e.key);
  if (consul.txn !== undefined && record !== null) {
    try {
      return await consul.txn([
        { verb: 'delete-cas', key: e.key, index: e.modifyIndex },
        { verb: 'delete', key: record },
      ]);
    } catch (err) {
      if (!(err instanceof ConsulError)) throw err;
    }
  }
  return consul.deleteCas(e.key, e.modifyIndex);
}

export async function purgeExpired(
  consul: Pick<OperatorConsul, 'list' | 'deleteCas' | 'txn'>,
  nowMs: number,
  dryRun: boolean,
): Promise<PurgeResult> {
  const { entries, invalid } = classify(await consul.list(KV_ROOT));
  const expired = entries.filter((e) => !isLive(e.expiry, nowMs));
  if (dryRun) return { dryRun, deleted: expired, kept: [], invalid: invalid.length };
  const deleted: Entry[] = [];
  const kept: Entry[] = [];
  for (const e of expired) ((await purgeOne(consul, e)) ? deleted : kept).push(e);
  return { dryRun, deleted, kept, invalid: invalid.length };
}

function formatPurge(r: PurgeResult, nowMs: number): string {
  const rows = (list: readonly Entry[]): string[][] =>
    list.map((e) => [e.kind, e.target, addrText(e.addr), scopeText(e.scope), expiryText(e.expiry, nowMs)]);
  const out: string[] = [];
  const verb = r.dryRun ? 'would delete' : 'deleted';
  out.push(`${verb} ${r.deleted.length} expired entr${r.deleted.length === 1 ? 'y' : 'ies'}`);
  if (r.deleted.length > 0)
    out.push(table([['KIND', 'TARGET', 'ADDRESS', 'SCOPE', 'EXPIRY'], ...rows(sortEntries(r.deleted))].map((row) => ['', ...row])));
  if (r.kept.length > 0) {
    out.push(`kept ${r.kept.length} entr${r.kept.length === 1 ? 'y' : 'ies'} changed since read (renewed meanwhile?):`);
    for (const e of r.kept) out.push(`  ${e.key}`);
  }
  if (r.invalid > 0) out.push(`left ${r.invalid} invalid key(s) alone: they are typos to fix, not expired entries (see befw plan)`);
  return out.join('\n');
}

export function registerPurgeCommand(program: Command): void {
  addCommonOptions(program.command('purge-expired'))
    .description('delete expired entries from Consul (each only if unchanged since read); invalid keys are left alone')
    .option('--dry-run', 'make every check and list what would be deleted; delete nothing')
    .action(async (opts: CommonOpts & { dryRun?: boolean }) => {
      await withContext(opts, async (ctx) => {
        const r = await purgeExpired(ctx.consul, ctx.nowMs, opts.dryRun === true);
        if (ctx.json) {
          printJson({
            dryRun: r.dryRun,
            deleted: r.deleted.map((e) => entryJson(e, ctx.nowMs)),
            kept: r.kept.map((e) => entryJson(e, ctx.nowMs)),
            invalid: r.invalid,
          });
        } else print(formatPurge(r, ctx.nowMs));
      });
    });
}
