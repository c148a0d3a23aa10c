/**
 * `befw client add|rm|ls`: who may reach a service (`befw/$service$/<scope…>/<set>/<addr>`).
 */
import type { Command } from 'commander';
import { type LsOpts, type RmOpts, type Wording, addCommand, lsCommand, rmCommand } from './commands.js';
import { addCommonOptions, addDryRunOption, addExpiryOptions, addGuardOptions, addScopeOptions } from './context.js';
import { addAuditOptions } from './audit.js';
import { UsageError } from './errors.js';
import { type FromObservedOpts, addFromObserved, parseMinCount } from '../observed.js';
import { SERVICE_KIND, parseAddrArg, parseServiceArg } from './layout.js';

const WORDS: Wording = {
  added: (addr, set) => `granted: ${addr} may reach ${set}`,
  removed: (addr, set) => `revoked: ${addr} no longer reaches ${set}`,
};

const SERVICE_HELP = 'service set, e.g. web_tcp_8080, or NAME:PORT[/PROTO], e.g. web:8080';
const ADDR_HELP = "IPv4/IPv6 address, network (198.51.100.0/24) or alias ('$name$', single-quoted)";

export function registerClientCommands(program: Command): void {
  const client = program.command('client').description('grant and revoke access to a service (befw/$service$/…)');

  addAuditOptions(addDryRunOption(addGuardOptions(addScopeOptions(addExpiryOptions(addCommonOptions(client.command('add')))))))
    .description(
      'grant ADDR access to SERVICE until the given expiry (overwrites an existing entry at the same scope); SERVICE, --dc and --node must be known to the catalog unless --force',
    )
    .argument('<service>', SERVICE_HELP)
    .argument('[addr]', `${ADDR_HELP}; omitted with --from-observed`)
    .option(
      '--from-observed',
      'grant every address `befw observed SERVICE` lists (the audit reason says "from observed"); anyone who can complete a TCP connection can get listed: review the list first; a set at its cap of 1000 records needs --yes',
    )
    .option(
      '--min-count <n>',
      'with --from-observed: only addresses seen at least N times (default 1: every listed address)',
      parseMinCount,
    )
    .action((service: string, addr: string | undefined, opts: FromObservedOpts) => {
      if (opts.fromObserved === true) {
        if (addr !== undefined) throw new UsageError(`address ${addr}`, 'give an address or --from-observed, not both');
        return addFromObserved(parseServiceArg(service), opts, WORDS);
      }
      if (addr === undefined) throw new UsageError('address', 'missing: give an address, or --from-observed');
      return addCommand(SERVICE_KIND, parseServiceArg(service), parseAddrArg(addr), opts, WORDS);
    });

  addAuditOptions(addDryRunOption(addScopeOptions(addCommonOptions(client.command('rm')))))
    .description("revoke ADDR's entry for SERVICE at one scope (every key the agent reads as that address)")
    .argument('<service>', SERVICE_HELP)
    .argument('<addr>', ADDR_HELP)
    .action((service: string, addr: string, opts: RmOpts) =>
      rmCommand(SERVICE_KIND, parseServiceArg(service), parseAddrArg(addr), opts, WORDS),
    );

  addScopeOptions(addCommonOptions(client.command('ls')))
    .description('list client entries with scope and time left (expired ones marked); --dc/--node narrow to what such a node reads')
    .argument('[service]', SERVICE_HELP)
    .option('--address <addr>', 'only entries that hold this address: the host, a network containing it, or an alias with such a member')
    .action((service: string | undefined, opts: LsOpts) =>
      lsCommand(SERVICE_KIND, service === undefined ? null : parseServiceArg(service), opts, 'SERVICE', 'No client entries.'),
    );
}
