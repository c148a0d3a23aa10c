/**
 * `befw client add|rm|ls`: who may reach a service (`befw/$service$/<scope…>/<set>/<addr>`).
 */
import type { Command } from 'commander';
import { type AddOpts, type LsOpts, type RmOpts, type Wording, addCommand, lsCommand, rmCommand } from './commands.js';
import { addCommonOptions, addDryRunOption, addExpiryOptions, addGuardOptions, addScopeOptions } from './context.js';
import { SERVICE_KIND, parseAddrArg, parseServiceArg } from './layout.js';

const WORDS: Wording = {
  added: (addr, set) => `granted: ${addr} may reach ${set}`,
  removed: (addr, set) => `revoked: ${addr} no longer reaches ${set}`,
};

const SERVICE_HELP = 'service set, e.g. web_tcp_8080, or NAME:PORT[/PROTO], e.g. web:8080';
const ADDR_HELP = "IPv4/IPv6 address, network (198.51.100.0/24) or alias ('$name$', single-quoted)";

export function registerClientCommands(program: Command): void {
  const client = program.command('client').description('grant and revoke access to a service (befw/$service$/…)');

  addDryRunOption(addGuardOptions(addScopeOptions(addExpiryOptions(addCommonOptions(client.command('add'))))))
    .description(
      'grant ADDR access to SERVICE until the given expiry (overwrites an existing entry at the same scope); SERVICE, --dc and --node must be known to the catalog unless --force',
    )
    .argument('<service>', SERVICE_HELP)
    .argument('<addr>', ADDR_HELP)
    .action((service: string, addr: string, opts: AddOpts) =>
      addCommand(SERVICE_KIND, parseServiceArg(service), parseAddrArg(addr), opts, WORDS),
    );

  addDryRunOption(addScopeOptions(addCommonOptions(client.command('rm'))))
    .description("revoke ADDR's entry for SERVICE at one scope (every key the agent reads as that address)")
    .argument('<service>', SERVICE_HELP)
    .argument('<addr>', ADDR_HELP)
    .action((service: string, addr: string, opts: RmOpts) =>
      rmCommand(SERVICE_KIND, parseServiceArg(service), parseAddrArg(addr), opts, WORDS),
    );

  addScopeOptions(addCommonOptions(client.command('ls')))
    .description('list client entries with scope and time left (expired ones marked); --dc/--node narrow to what such a node reads')
    .argument('[service]', SERVICE_HELP)
    .action((service: string | undefined, opts: LsOpts) =>
      lsCommand(SERVICE_KIND, service === undefined ? null : parseServiceArg(service), opts, 'SERVICE', 'No client entries.'),
    );
}
