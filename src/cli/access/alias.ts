/**
 * `befw alias add|rm|ls`: groups of addresses (`befw/$alias$/<scope…>/$name$/<addr>`) that client
 * and static-set entries name as `$name$`. A member may be another alias.
 */
import type { Command } from 'commander';
import { KV_ROOT, isLive } from '../../core/kvLayout.js';
import {
  type AddOpts,
  type LsOpts,
  type PreWrite,
  type RmOpts,
  type Wording,
  addCommand,
  lsCommand,
  rmAllCommand,
  rmCommand,
} from './commands.js';
import { addCommonOptions, addDryRunOption, addExpiryOptions, addGuardOptions, addScopeOptions } from './context.js';
import { addAuditOptions } from './audit.js';
import { UsageError } from './errors.js';
import { ALIAS_KIND, type Entry, classify, parseAddrArg, parseAliasName } from './layout.js';

const WORDS: Wording = {
  added: (addr, alias) => `added: ${addr} is a member of ${alias}`,
  removed: (addr, alias) => `removed: ${addr} is no longer a member of ${alias}`,
};

/**
 * The alias path from `from` to `to` through live alias members, or null. Scopes are merged: a
 * cycle that only closes on some nodes is still a cycle there, and the agent would drop it.
 */
export function aliasPath(entries: readonly Entry[], from: string, to: string, nowMs: number): string[] | null {
  const edges = new Map<string, string[]>();
  for (const e of entries) {
    if (e.kind !== ALIAS_KIND || e.addr.type !== 'alias' || !isLive(e.expiry, nowMs)) continue;
    edges.set(e.target, [...(edges.get(e.target) ?? []), e.addr.name]);
  }
  const prev = new Map<string, string | null>([[from, null]]);
  const queue = [from];
  for (let i = 0; i < queue.length; i++) {
    const at = queue[i] as string;
    if (at === to) {
      const path: string[] = [];
      for (let p: string | null | undefined = at; p !== null && p !== undefined; p = prev.get(p)) path.unshift(p);
      return path;
    }
    for (const next of edges.get(at) ?? []) {
      if (!prev.has(next)) {
        prev.set(next, at);
        queue.push(next);
      }
    }
  }
  return null;
}

const noCycle: PreWrite = async (ctx, spec) => {
  if (spec.addr.type !== 'alias') return;
  if (spec.addr.name === spec.target) throw new UsageError(spec.target, 'an alias cannot be a member of itself');
  const all = classify(await ctx.consul.list(`${KV_ROOT}${ALIAS_KIND}/`));
  const path = aliasPath(all.entries, spec.addr.name, spec.target, ctx.nowMs);
  if (path !== null)
    throw new UsageError(
      `${spec.addr.name} in ${spec.target}`,
      `would close a cycle ${[spec.target, ...path].join(' -> ')}; nothing written`,
    );
};

interface AliasRmOpts extends RmOpts {
  readonly all?: boolean;
}

export function registerAliasCommands(program: Command): void {
  const alias = program
    .command('alias')
    .description('manage aliases: named groups of addresses used as $name$ in entries (befw/$alias$/…)');
  const NAME_HELP = "alias name: ops or '$ops$'";
  const ADDR_HELP = "member: IPv4/IPv6 address, network (198.51.100.0/24) or another alias ('$name$')";

  addAuditOptions(addDryRunOption(addGuardOptions(addScopeOptions(addExpiryOptions(addCommonOptions(alias.command('add')))))))
    .description('add ADDR to alias NAME until the given expiry; a grant through an alias lasts while both entries are unexpired')
    .argument('<name>', NAME_HELP)
    .argument('<addr>', ADDR_HELP)
    .action((name: string, addr: string, opts: AddOpts) =>
      addCommand(ALIAS_KIND, parseAliasName(name), parseAddrArg(addr), opts, WORDS, noCycle),
    );

  addAuditOptions(addDryRunOption(addScopeOptions(addCommonOptions(alias.command('rm')))))
    .description('remove member ADDR from alias NAME at one scope; without ADDR and with --all, every member at that scope')
    .argument('<name>', NAME_HELP)
    .argument('[addr]', ADDR_HELP)
    .option('--all', 'remove every member of NAME at the given scope (required when ADDR is not given)')
    .action((name: string, addr: string | undefined, opts: AliasRmOpts) => {
      const target = parseAliasName(name);
      if (addr !== undefined) {
        if (opts.all === true) throw new UsageError('--all', 'give either a member ADDR or --all, not both');
        return rmCommand(ALIAS_KIND, target, parseAddrArg(addr), opts, WORDS);
      }
      if (opts.all !== true) throw new UsageError(target, 'say which member to remove, or add --all to remove every member at this scope');
      return rmAllCommand(ALIAS_KIND, target, opts, `removed alias ${target}`);
    });

  addScopeOptions(addCommonOptions(alias.command('ls')))
    .description('list alias members with scope and time left (expired ones marked)')
    .argument('[name]', NAME_HELP)
    .action((name: string | undefined, opts: LsOpts) =>
      lsCommand(ALIAS_KIND, name === undefined ? null : parseAliasName(name), opts, 'ALIAS', 'No alias members.'),
    );
}
