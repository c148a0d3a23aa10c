/**
 * `befw allow` and `befw deny`: the emergency sets `rules_allow` (accepted on every port, before
 * anything else) and `rules_deny` (rejected on every port, after rules_allow), which every node
 * applies within a second (`befw/$ipset$/<scope…>/rules_allow|rules_deny/<addr>`). Both take
 * add|rm|ls like `client`.
 */
import type { Command } from 'commander';
import { RULES_ALLOW, RULES_DENY } from '../../core/compile.js';
import { type AddOpts, type LsOpts, type RmOpts, type Wording, addCommand, lsCommand, rmCommand } from './commands.js';
import { addCommonOptions, addDryRunOption, addExpiryOptions, addGuardOptions, addScopeOptions } from './context.js';
import { addAuditOptions } from './audit.js';
import { IPSET_KIND, parseAddrArg } from './layout.js';

const ADDR_HELP = "IPv4/IPv6 address, network (198.51.100.0/24) or alias ('$name$', single-quoted)";

/**
 * `allow add|rm|ls` and `deny add|rm|ls`, with the flags and scopes of `client`. The group has
 * no options of its own: commander gives a parent's options precedence anywhere on the line,
 * so `-c` or `--json` after `add` would otherwise be taken from the subcommand.
 */
function register(program: Command, name: 'allow' | 'deny', set: string, words: Wording, what: string): void {
  const group = program.command(name).description(`${what}; "befw ${name} ADDR …" and "befw ${name} ADDR --rm" still mean add and rm`);

  addAuditOptions(addDryRunOption(addGuardOptions(addScopeOptions(addExpiryOptions(addCommonOptions(group.command('add')))))))
    .description(`add ADDR to ${set} until the given expiry; prints how many nodes it reaches and warns when ADDR is protected`)
    .argument('<addr>', ADDR_HELP)
    .action((addr: string, opts: AddOpts) => addCommand(IPSET_KIND, set, parseAddrArg(addr), opts, words));

  addAuditOptions(addDryRunOption(addScopeOptions(addCommonOptions(group.command('rm')))))
    .description(`remove ADDR from ${set} at one scope (every key the agent reads as that address)`)
    .argument('<addr>', ADDR_HELP)
    .action((addr: string, opts: RmOpts) => rmCommand(IPSET_KIND, set, parseAddrArg(addr), opts, words));

  addScopeOptions(addCommonOptions(group.command('ls')))
    .description(`list ${set} entries with scope and time left (expired ones marked); --dc/--node narrow to what such a node reads`)
    .option('--address <addr>', 'only entries that hold this address: the host, a network containing it, or an alias with such a member')
    .action((opts: LsOpts) => lsCommand(IPSET_KIND, set, opts, 'SET', `No ${set} entries.`));
}

/** Options of the old spelling that take a value: their value is not the address. */
const VALUE_OPTIONS = new Set(['--ttl', '--until', '--dc', '--node', '-c', '--config', '--reason', '--by']);
const SUBCOMMANDS = new Set(['add', 'rm', 'ls', 'help']);

/**
 * The old spelling, `befw deny ADDR --ttl 2h` and `befw deny ADDR --rm`, as `deny add …` and
 * `deny rm …`, so scripts written for it keep working. `argv` is process.argv-shaped (after
 * main's -c hoisting); anything else is returned as it is.
 */
export function legacyStaticSetArgs(argv: readonly string[]): string[] {
  const out = [...argv];
  const cmd = out[2];
  if (cmd !== 'allow' && cmd !== 'deny') return out;
  const end = out.indexOf('--') < 0 ? out.length : out.indexOf('--');
  for (let i = 3; i < end; i++) {
    const a = out[i] as string;
    if (VALUE_OPTIONS.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    if (SUBCOMMANDS.has(a)) return out;
    // The first operand is an address: the old form.
    const rm = out.slice(3, end).includes('--rm');
    const rest = out.slice(3).filter((x, j) => !(rm && x === '--rm' && j + 3 < end));
    return [...out.slice(0, 3), rm ? 'rm' : 'add', ...rest];
  }
  return out;
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
