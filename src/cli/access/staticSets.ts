/**
 * `befw allow` and `befw deny`: the emergency sets `rules_allow` (accepted on every port, before
 * anything else) and `rules_deny` (rejected on every port, after rules_allow), which every node
 * applies within a second (`befw/$ipset$/<scope…>/rules_allow|rules_deny/<addr>`).
 */
import type { Command } from 'commander';
import { RULES_ALLOW, RULES_DENY } from '../../core/compile.js';
import { rejectExpiry } from '../duration.js';
import { type AddOpts, type Wording, addCommand, lsCommand, rmCommand } from './commands.js';
import { UsageError } from './errors.js';
import { addCommonOptions, addDryRunOption, addExpiryOptions, addGuardOptions, addScopeOptions } from './context.js';
import { IPSET_KIND, parseAddrArg } from './layout.js';

interface StaticOpts extends AddOpts {
  readonly rm?: boolean;
}

/** Options that mean nothing for `ls` or `--rm`, refused there rather than silently ignored. */
function rejectOptions(opts: StaticOpts, names: readonly ('yes' | 'force' | 'dryRun')[], doing: string): void {
  const flag = { yes: '--yes', force: '--force', dryRun: '--dry-run' } as const;
  for (const n of names) if (opts[n] === true) throw new UsageError(flag[n], `has no meaning with ${doing}`);
}

function register(program: Command, name: 'allow' | 'deny', set: string, words: Wording, what: string): void {
  addDryRunOption(addGuardOptions(addScopeOptions(addExpiryOptions(addCommonOptions(program.command(name))))))
    .description(
      `${what}; prints how many nodes it reaches and warns when ADDR is protected; --rm removes the entry; "befw ${name} ls" lists the entries with scope and time left`,
    )
    .usage(
      'ADDR (--ttl D | --until TIME | --forever) [--dc DC [--node NODE]] [--yes] [--force] [--dry-run] | ADDR --rm [--dc DC [--node NODE]] [--dry-run] | ls [--dc DC [--node NODE]] [options]',
    )
    .argument('<addr>', "IPv4/IPv6 address, network (198.51.100.0/24) or alias ('$name$', single-quoted); or ls to list")
    .option('--rm', `remove ADDR from ${set} at the given scope instead of adding it`)
    .action((addr: string, opts: StaticOpts) => {
      // `ls` is a word here, not a subcommand: a subcommand would lose -c/--json given after it
      // to this command's own options of the same names.
      if (addr === 'ls') {
        rejectExpiry(opts, 'ls');
        if (opts.rm === true) throw new UsageError('--rm', 'has no meaning with ls');
        rejectOptions(opts, ['yes', 'force', 'dryRun'], 'ls');
        return lsCommand(IPSET_KIND, set, opts, 'SET', `No ${set} entries.`);
      }
      const parsed = parseAddrArg(addr);
      if (opts.rm !== true) return addCommand(IPSET_KIND, set, parsed, opts, words);
      rejectOptions(opts, ['yes', 'force'], '--rm');
      return rmCommand(IPSET_KIND, set, parsed, opts, words);
    });
}

export function registerStaticSetCommands(program: Command): void {
  register(
    program,
    'allow',
    RULES_ALLOW,
    {
      added: (a) => `allowed: ${a} is accepted on every port (${RULES_ALLOW})`,
      removed: (a) => `removed: ${a} is no longer in ${RULES_ALLOW}`,
    },
    `add ADDR to ${RULES_ALLOW}: accepted on every port of every node in scope, before any other rule`,
  );
  register(
    program,
    'deny',
    RULES_DENY,
    {
      added: (a) => `denied: ${a} is rejected on every port (${RULES_DENY})`,
      removed: (a) => `removed: ${a} is no longer in ${RULES_DENY}`,
    },
    `add ADDR to ${RULES_DENY}: rejected on every port of every node in scope (${RULES_ALLOW} still wins)`,
  );
}
