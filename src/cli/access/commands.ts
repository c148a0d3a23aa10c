/**
 * The three operations every access command group offers (add, rm, ls), with their output.
 * The groups (client, alias, allow/deny) parse their arguments, say which kind and set they
 * work on and how to word the result. Every argument and option is checked before Consul is
 * contacted, so bad input never gets as far as a connection.
 */
import { type Kind, KV_ROOT } from '../../core/kvLayout.js';
import { type ExpiryOptions, rejectExpiry, resolveExpiry } from '../duration.js';
import { type AccessContext, type CommonOpts, print, printJson, withContext } from './context.js';
import {
  type EntrySpec,
  type Listing,
  deleteAll,
  formatListing,
  formatRemoved,
  formatWritten,
  inFilter,
  listingJson,
  removeEntry,
  scopeJson,
  writeEntry,
} from './entries.js';
import { UsageError } from './errors.js';
import { type AddrArg, type ScopeSel, addrText, classify, sameScope, scopeFromOptions, scopeText, targetPrefix } from './layout.js';

export interface ScopeOpts {
  readonly dc?: string;
  readonly node?: string;
}

export type AddOpts = CommonOpts & ExpiryOptions & ScopeOpts;
export type RmOpts = CommonOpts & ExpiryOptions & ScopeOpts;
export type LsOpts = CommonOpts & ScopeOpts;

/** Wording of one command group's results. */
export interface Wording {
  /** `198.51.100.7 may reach web_tcp_8080` */
  readonly added: (addr: string, target: string) => string;
  /** `198.51.100.7 no longer reaches web_tcp_8080` */
  readonly removed: (addr: string, target: string) => string;
}

/** Extra checks a group makes with Consul before writing (alias cycles). */
export type PreWrite = (ctx: AccessContext, spec: EntrySpec) => Promise<void>;

export async function addCommand(
  kind: Kind,
  target: string,
  addr: AddrArg,
  opts: AddOpts,
  words: Wording,
  preWrite?: PreWrite,
): Promise<void> {
  const scope = scopeFromOptions(opts);
  resolveExpiry(opts, Date.now()); // only to validate: the value is taken again with the context's clock
  await withContext(opts, async (ctx) => {
    const spec: EntrySpec = { kind, scope, target, addr };
    if (preWrite !== undefined) await preWrite(ctx, spec);
    const w = await writeEntry(ctx, spec, resolveExpiry(opts, ctx.nowMs));
    const summary = words.added(addrText(addr), target);
    if (!ctx.json) return print(formatWritten(summary, scope, w, ctx.nowMs));
    const expiresAt = w.expiresAt === null ? null : new Date(w.expiresAt).toISOString();
    printJson({
      written: [
        { key: w.key, value: w.value, previous: w.previous, kind, target, scope: scopeJson(scope), address: addrText(addr), expiresAt },
      ],
      equivalents: w.equivalents,
    });
  });
}

export async function rmCommand(kind: Kind, target: string, addr: AddrArg, opts: RmOpts, words: Wording): Promise<void> {
  rejectExpiry(opts, 'removal');
  const scope = scopeFromOptions(opts);
  await withContext(opts, async (ctx) => {
    const removed = await removeEntry(ctx, { kind, scope, target, addr });
    if (ctx.json) printJson({ deleted: removed });
    else print(formatRemoved(`${words.removed(addrText(addr), target)} at ${scopeText(scope)} scope`, removed));
  });
}

/** Removes every entry of `target` at one scope (a whole alias). */
export async function rmAllCommand(kind: Kind, target: string, opts: RmOpts, summary: string): Promise<void> {
  rejectExpiry(opts, 'removal');
  const scope = scopeFromOptions(opts);
  await withContext(opts, async (ctx) => {
    const prefix = targetPrefix(kind, scope, target);
    const items = await ctx.consul.list(prefix);
    const parsed = classify(items);
    const keep = new Set(
      parsed.entries.filter((e) => e.target === target && e.kind === kind && sameScope(e.scope, scope)).map((e) => e.key),
    );
    // A key right under the target whose value is a typo belongs to it too (one segment, or
    // two for a network); anything deeper is some other shape and is left alone.
    for (const i of parsed.invalid) if (i.key.slice(prefix.length).split('/').length <= 2) keep.add(i.key);
    const victims = items.filter((i) => keep.has(i.key));
    if (victims.length === 0) throw new UsageError(target, `has no entries at ${scopeText(scope)} scope; nothing removed`);
    const removed = await deleteAll(ctx, victims);
    if (ctx.json) printJson({ deleted: removed });
    else print(formatRemoved(`${summary} at ${scopeText(scope)} scope`, removed));
  });
}

/**
 * Lists entries of `kind` (for one target, or all), narrowed to what nodes in --dc (and --node)
 * read when those are given. Entries that no node enforces are listed separately.
 */
export async function lsCommand(kind: Kind, target: string | null, opts: LsOpts, targetTitle: string, empty: string): Promise<void> {
  const filter: ScopeSel = scopeFromOptions(opts);
  await withContext(opts, async (ctx) => {
    const items = await ctx.consul.list(`${KV_ROOT}${kind}/`);
    const all = classify(items);
    const listing: Listing = {
      entries: all.entries.filter((e) => e.kind === kind && (target === null || e.target === target) && inFilter(e.scope, filter)),
      invalid: all.invalid.filter((i) => target === null || i.key.split('/').includes(target)),
    };
    if (ctx.json) printJson(listingJson(listing, ctx.nowMs));
    else print(formatListing(listing, ctx.nowMs, targetTitle, empty));
  });
}
