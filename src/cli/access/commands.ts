/**
 * The three operations every access command group offers (add, rm, ls), with their output.
 * The groups (client, alias, allow/deny) parse their arguments, say which kind and set they
 * work on and how to word the result. Every argument and option is checked before Consul is
 * contacted, so bad input never gets as far as a connection; then an add is checked against the
 * catalog (checks.ts) before anything is written. `--dry-run` runs every check and read and
 * prints what would be written or deleted, writing nothing.
 *
 * Each operation is a function of an AccessContext returning its output (text and JSON), so
 * tests run it against a fake Consul; the command wrappers build the context and print.
 */
import { RULES_ALLOW, RULES_DENY } from '../../core/compile.js';
import { type Kind, KV_ROOT } from '../../core/kvLayout.js';
import { type ExpiryOptions, rejectExpiry, resolveExpiry } from '../duration.js';
import { formatTime } from '../format.js';
import {
  CatalogView,
  type GuardOpts,
  type Reach,
  checkAddressArg,
  checkAgainstCatalog,
  checkWorldWidth,
  protectedNets,
  protectedWarnings,
  reachOf,
} from './checks.js';
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
import { type AuditOpts, auditStamp, auditWarnings, readAudits, toolName, warningsJson, withAuditWarnings } from './audit.js';
import { checkScopeOptions, scopeWithNodeDc } from './nodeScope.js';
import { checkAddressOption, entriesHolding } from '../explain.js';
import { ALIAS_KIND, type AddrArg, IPSET_KIND, type ScopeSel, addrText, classify, sameScope, scopeText, targetPrefix } from './layout.js';

export interface ScopeOpts {
  readonly dc?: string;
  readonly node?: string;
}

export interface DryRunOpts {
  readonly dryRun?: boolean;
}

export type AddOpts = CommonOpts & ExpiryOptions & ScopeOpts & GuardOpts & DryRunOpts & AuditOpts;
export type RmOpts = CommonOpts & ExpiryOptions & ScopeOpts & DryRunOpts & AuditOpts;
export type LsOpts = CommonOpts & ScopeOpts & { readonly address?: string };

/** Wording of one command group's results. */
export interface Wording {
  /** `198.51.100.7 may reach web_tcp_8080` */
  readonly added: (addr: string, target: string) => string;
  /** `198.51.100.7 no longer reaches web_tcp_8080` */
  readonly removed: (addr: string, target: string) => string;
}

/** Extra checks a group makes with Consul before writing (alias cycles). */
export type PreWrite = (ctx: AccessContext, spec: EntrySpec) => Promise<void>;

/** What a command prints: `text`, or `json` with --json. */
export interface Output {
  readonly text: string;
  readonly json: unknown;
}

function emit(ctx: AccessContext, out: Output): void {
  if (ctx.json) printJson(out.json);
  else print(out.text);
}

export interface AddRequest {
  readonly kind: Kind;
  readonly target: string;
  readonly addr: AddrArg;
  readonly scope: ScopeSel;
  readonly opts: AddOpts;
  readonly words: Wording;
  readonly preWrite?: PreWrite;
}

/**
 * Checks and writes one entry: the world-scope width limit, the catalog (set, datacenter,
 * node), the group's own check, then a check-and-set write (none on a dry run). An allow or
 * deny also says how many nodes it reaches and warns when its address is protected.
 */
export async function runAdd(ctx: AccessContext, r: AddRequest): Promise<Output> {
  const { kind, target, addr, scope, opts } = r;
  const dryRun = opts.dryRun === true;
  checkAddressArg(addr, opts.yes === true);
  checkWorldWidth(addr, scope, ctx.config, opts.yes === true);
  const expiry = resolveExpiry(opts, ctx.nowMs);
  const view = new CatalogView(ctx.consul);
  const { warnings } = await checkAgainstCatalog(view, kind, target, scope, ctx.config, opts.force === true);
  const spec: EntrySpec = { kind, scope, target, addr };
  if (r.preWrite !== undefined) await r.preWrite(ctx, spec);
  const emergency = kind === IPSET_KIND && (target === RULES_ALLOW || target === RULES_DENY);
  let reach: Reach | null = null;
  const told: string[] = [];
  if (emergency) {
    const counted = await reachOf(view, scope);
    reach = counted.reach;
    const prot = await protectedNets(ctx.config, ctx.consul);
    told.push(...protectedWarnings(target, addr, prot.nets));
    for (const w of [counted.warning, prot.warning]) if (w !== null) told.push(w);
  }
  const stamp = auditStamp(opts, ctx.config, toolName(kind, target, 'add'), ctx.nowMs);
  const w = await writeEntry(ctx, spec, expiry, dryRun, stamp);
  const all = [...warnings, ...told, ...auditWarnings(stamp)];
  const lines = [formatWritten(r.words.added(addrText(addr), target), scope, w, ctx.nowMs, dryRun)];
  if (reach !== null) lines.push(`  ${reach.text}`);
  for (const x of all) lines.push(`  ${x}`);
  const expiresAt = w.expiresAt === null ? null : formatTime(w.expiresAt);
  return {
    text: lines.join('\n'),
    json: {
      dryRun,
      written: [
        { key: w.key, value: w.value, previous: w.previous, kind, target, scope: scopeJson(scope), address: addrText(addr), expiresAt },
      ],
      equivalents: w.equivalents,
      ...(emergency ? { reach: reach === null ? null : { datacenters: reach.datacenters, nodes: reach.nodes } } : {}),
      warnings: all,
    },
  };
}

export async function addCommand(
  kind: Kind,
  target: string,
  addr: AddrArg,
  opts: AddOpts,
  words: Wording,
  preWrite?: PreWrite,
): Promise<void> {
  checkScopeOptions(opts);
  checkAddressArg(addr, opts.yes === true);
  resolveExpiry(opts, Date.now()); // only to validate: the value is taken again with the context's clock
  const scope = await scopeWithNodeDc(opts);
  await withContext(opts, async (ctx) =>
    emit(ctx, await runAdd(ctx, { kind, target, addr, scope, opts, words, ...(preWrite === undefined ? {} : { preWrite }) })),
  );
}

/** Removes every key read as `addr` at one scope (none on a dry run). */
export async function runRm(ctx: AccessContext, spec: EntrySpec, opts: DryRunOpts & AuditOpts, words: Wording): Promise<Output> {
  const dryRun = opts.dryRun === true;
  const stamp = auditStamp(opts, ctx.config, toolName(spec.kind, spec.target, 'rm'), ctx.nowMs);
  const removed = await removeEntry(ctx, spec, dryRun, stamp);
  const text = formatRemoved(`${words.removed(addrText(spec.addr), spec.target)} at ${scopeText(spec.scope)} scope`, removed, dryRun);
  return { text: withAuditWarnings(text, stamp), json: { dryRun, deleted: removed, ...warningsJson(stamp) } };
}

export async function rmCommand(kind: Kind, target: string, addr: AddrArg, opts: RmOpts, words: Wording): Promise<void> {
  rejectExpiry(opts, 'removal');
  const scope = await scopeWithNodeDc(opts);
  await withContext(opts, async (ctx) => emit(ctx, await runRm(ctx, { kind, scope, target, addr }, opts, words)));
}

/** Removes every entry of `target` at one scope (a whole alias); none on a dry run. */
export async function runRmAll(
  ctx: AccessContext,
  kind: Kind,
  target: string,
  scope: ScopeSel,
  opts: DryRunOpts & AuditOpts,
  summary: string,
): Promise<Output> {
  const dryRun = opts.dryRun === true;
  const stamp = auditStamp(opts, ctx.config, toolName(kind, target, 'rm'), ctx.nowMs);
  const prefix = targetPrefix(kind, scope, target);
  const items = await ctx.consul.list(prefix);
  const parsed = classify(items);
  const keep = new Set(parsed.entries.filter((e) => e.target === target && e.kind === kind && sameScope(e.scope, scope)).map((e) => e.key));
  // A key right under the target whose value is a typo belongs to it too (one segment, or
  // two for a network); anything deeper is some other shape and is left alone.
  for (const i of parsed.invalid) if (i.key.slice(prefix.length).split('/').length <= 2) keep.add(i.key);
  const victims = items.filter((i) => keep.has(i.key));
  if (victims.length === 0) throw new UsageError(target, `has no entries at ${scopeText(scope)} scope; nothing removed`);
  const removed = await deleteAll(ctx, victims, dryRun, stamp);
  const text = formatRemoved(`${summary} at ${scopeText(scope)} scope`, removed, dryRun);
  return { text: withAuditWarnings(text, stamp), json: { dryRun, deleted: removed, ...warningsJson(stamp) } };
}

export async function rmAllCommand(kind: Kind, target: string, opts: RmOpts, summary: string): Promise<void> {
  rejectExpiry(opts, 'removal');
  const scope = await scopeWithNodeDc(opts);
  await withContext(opts, async (ctx) => emit(ctx, await runRmAll(ctx, kind, target, scope, opts, summary)));
}

/**
 * Lists entries of `kind` (for one target, or all), narrowed to what nodes in --dc (and --node)
 * read when those are given. Entries that no node enforces are listed separately.
 */
export async function lsCommand(kind: Kind, target: string | null, opts: LsOpts, targetTitle: string, empty: string): Promise<void> {
  checkScopeOptions(opts);
  const address = opts.address === undefined ? null : checkAddressOption(opts.address);
  const filter: ScopeSel = await scopeWithNodeDc(opts);
  await withContext(opts, async (ctx) => {
    const items = await ctx.consul.list(`${KV_ROOT}${kind}/`);
    const all = classify(items);
    let entries = all.entries.filter((e) => e.kind === kind && (target === null || e.target === target) && inFilter(e.scope, filter));
    if (address !== null) {
      // Aliases are followed: a grant to $ops$ holds the address when one of its members does.
      const aliases = kind === ALIAS_KIND ? all.entries : classify(await ctx.consul.list(`${KV_ROOT}${ALIAS_KIND}/`)).entries;
      entries = entriesHolding(entries, aliases, address, ctx.nowMs);
    }
    const listing: Listing = {
      entries,
      invalid: all.invalid.filter((i) => target === null || i.key.split('/').includes(target)),
      // Who, why and from where: befw-audit/ beside the entries (access/audit.ts).
      ...(await readAudits(ctx.consul, `${KV_ROOT}${kind}/`).then((a) => ({ audits: a.byEntry, auditError: a.error }))),
    };
    if (ctx.json) printJson(listingJson(listing, ctx.nowMs));
    else print(formatListing(listing, ctx.nowMs, targetTitle, empty));
  });
}
