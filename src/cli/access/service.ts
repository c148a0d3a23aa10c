/**
 * `befw service register|deregister|ls`: services on the local Consul agent tagged `befw`, as the
 * agent reads them (SPEC §1 "Services"). Registered services carry `befw`, `udp` for a UDP
 * primary port, `enforcing`, and a `PORT/PROTO` tag per extra port; never `local`, which marks
 * the agent's own mirrors of service files (it deregisters those when their file goes).
 */
import type { Command } from 'commander';
import { printable } from '../../core/address.js';
import {
  BEFW_TAG,
  ENFORCING_TAG,
  LOCAL_TAG,
  UDP_TAG,
  collectServices,
  parsePortSpec,
  portText,
  serviceSetName,
} from '../../core/services.js';
import type { AgentService, PortRange, Proto } from '../../core/types.js';
import { type CommonOpts, addCommonOptions, addDryRunOption, print, printJson, withContext } from './context.js';
import { RefusedError, UsageError, quoted } from './errors.js';
import { DRY_RUN_HEADER, table } from './entries.js';

const SERVICE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const PRIMARY = /^([0-9]{1,5})(?:\/(tcp|udp))?$/;

export interface Registration {
  readonly id: string;
  readonly name: string;
  readonly port: number;
  readonly proto: Proto;
  readonly tags: readonly string[];
  readonly set: string;
  readonly ports: readonly PortRange[];
  readonly mode: 'default' | 'enforcing';
}

export interface RegisterOpts extends CommonOpts {
  readonly port?: string[];
  readonly enforcing?: boolean;
  readonly id?: string;
  readonly dryRun?: boolean;
  readonly force?: boolean;
}

interface DeregisterOpts extends CommonOpts {
  readonly dryRun?: boolean;
}

function checkName(text: string, subject: string): string {
  if (!SERVICE_NAME.test(text))
    throw new UsageError(quoted(subject, text), 'expected 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit');
  return text;
}

/** Validates the arguments of `service register` into the registration to send. */
export function buildRegistration(name: string, primary: string, opts: Pick<RegisterOpts, 'port' | 'enforcing' | 'id'>): Registration {
  checkName(name, 'service name');
  const id = checkName(opts.id ?? name, '--id');
  const m = PRIMARY.exec(primary);
  const port = Number(m?.[1] ?? '0');
  if (m === null || port < 1 || port > 65535)
    throw new UsageError(
      quoted('port', primary),
      'expected PORT or PORT/PROTO with PORT 1-65535 and PROTO tcp or udp, e.g. 8080 or 53/udp',
    );
  const proto: Proto = m[2] === 'udp' ? 'udp' : 'tcp';
  const tags = [BEFW_TAG];
  if (proto === 'udp') tags.push(UDP_TAG);
  if (opts.enforcing === true) tags.push(ENFORCING_TAG);
  const ports: PortRange[] = [{ proto, from: port, to: port }];
  for (const spec of opts.port ?? []) {
    const p = parsePortSpec(spec);
    if (p === null || !p.ok)
      throw new UsageError(
        quoted('--port', spec),
        `${p === null ? 'not a port' : p.error}: expected PORT/PROTO or FROM:TO/PROTO, e.g. 8443/tcp or 30000:30100/udp`,
      );
    const tag = `${portText(p.range)}/${p.range.proto}`;
    if (!tags.includes(tag)) tags.push(tag);
    ports.push(p.range);
  }
  return {
    id,
    name,
    port,
    proto,
    tags,
    set: serviceSetName(name, proto, port),
    ports,
    mode: opts.enforcing === true ? 'enforcing' : 'default',
  };
}

function portList(ports: readonly PortRange[]): string[] {
  return [...new Set(ports.map((p) => `${portText(p)}/${p.proto}`))];
}

function portsText(ports: readonly PortRange[]): string {
  return portList(ports).join(', ');
}

/** A service someone else registered (or the agent's mirror of a service file) is not ours to replace or remove. */
function refuseForeign(existing: AgentService, doing: string): void {
  if (!existing.tags.includes(BEFW_TAG)) {
    throw new UsageError(
      `service id "${printable(existing.id)}"`,
      `is registered without the befw tag by someone else; refusing to ${doing} it (use --id for a separate befw registration)`,
    );
  }
  if (existing.tags.includes(LOCAL_TAG)) {
    throw new UsageError(
      `service id "${printable(existing.id)}"`,
      `mirrors a service file (tag local) and is managed by the agent; edit or remove the file in the services directory instead of trying to ${doing} it`,
    );
  }
}

/**
 * A re-registration that flips the mode changes who reaches the service without anyone touching
 * a grant: enforcing -> default lets every non-client fall through to the rest of INPUT (often
 * open), default -> enforcing drops every non-client. Either needs --force, and says which.
 */
export function checkModeChange(existing: AgentService, reg: Registration, force: boolean): string | null {
  const was = existing.tags.includes(ENFORCING_TAG) ? 'enforcing' : 'default';
  if (was === reg.mode) return null;
  const effect =
    reg.mode === 'default'
      ? 'non-clients would no longer be dropped: they fall through to the rest of INPUT, where the base rules decide (often: open to everyone)'
      : 'every address that is not a client would be dropped (only granted clients reach it)';
  const change = `changes ${printable(existing.id)} from ${was} to ${reg.mode} mode: ${effect}`;
  if (!force)
    throw new RefusedError(
      `service id "${printable(existing.id)}" is registered in ${was} mode; this ${change}; ${was === 'enforcing' ? 'add --enforcing to keep it, or' : 'drop --enforcing to keep it, or'} --force to change it; nothing registered`,
    );
  return `mode changed: ${change}`;
}

interface ServiceRow {
  readonly id: string;
  readonly name: string;
  readonly set: string | null;
  readonly ports: readonly string[];
  readonly mode: string;
  readonly source: 'consul' | 'service file';
  readonly problems: readonly string[];
}

/** Each befw service as the agent reads it, one at a time so a bad one does not hide the rest. */
export function serviceRows(services: readonly AgentService[]): ServiceRow[] {
  return services
    .filter((s) => s.tags.includes(BEFW_TAG))
    .map((s) => {
      const local = s.tags.includes(LOCAL_TAG);
      // The agent skips `local` services (it reads their files instead); for display they are
      // read like any other so their set and ports show.
      const r = collectServices([{ ...s, tags: s.tags.filter((t) => t !== LOCAL_TAG) }], []);
      const def = r.services[0];
      return {
        id: s.id,
        name: s.name,
        set: def?.set ?? null,
        ports: def === undefined ? [] : portList(def.ports),
        mode: def?.mode ?? 'not enforced',
        source: local ? 'service file' : 'consul',
        problems: r.diagnostics.map((d) => d.message),
      };
    });
}

export function registerServiceCommands(program: Command): void {
  const service = program.command('service').description('register, deregister and list befw services on the local Consul agent');

  addDryRunOption(addCommonOptions(service.command('register')), 'register')
    .description('register NAME on the local Consul agent with the befw tag; clients are then granted on its set NAME_PROTO_PORT')
    .argument('<name>', 'service name (letters, digits, ".", "_", "-")')
    .argument('<port>', 'primary port: PORT or PORT/PROTO (tcp by default), e.g. 8080 or 53/udp')
    .option('--port <spec>', 'extra port PORT/PROTO or FROM:TO/PROTO (repeatable)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--enforcing', 'drop non-clients in the BEFW chain (default: they fall through to the rest of INPUT)')
    .option('--id <id>', 'service ID (default: NAME)')
    .option('--force', 're-register even when it changes the mode (enforcing <-> default), which changes who reaches the service')
    .action(async (name: string, port: string, opts: RegisterOpts) => {
      const reg = buildRegistration(name, port, opts);
      await withContext(opts, async (ctx) => {
        const dryRun = opts.dryRun === true;
        const existing = (await ctx.consul.services()).find((s) => s.id === reg.id);
        if (existing !== undefined) refuseForeign(existing, 'replace');
        const modeChange = existing === undefined ? null : checkModeChange(existing, reg, opts.force === true);
        if (!dryRun) await ctx.consul.register({ id: reg.id, name: reg.name, port: reg.port, tags: reg.tags });
        if (ctx.json) printJson({ dryRun, registered: { ...reg, replaced: existing !== undefined }, modeChange });
        else
          print(
            [
              ...(dryRun ? [DRY_RUN_HEADER] : []),
              `${existing === undefined ? 'registered' : 're-registered'}: service ${reg.name} (id ${reg.id}) ports ${portsText(reg.ports)}, mode ${reg.mode}, set ${reg.set}`,
              `  tags ${reg.tags.join(', ')}`,
              ...(modeChange === null ? [] : [`  ${modeChange}`]),
              `  grant clients with: befw client add ${reg.set} ADDR --ttl 2h`,
            ].join('\n'),
          );
      });
    });

  addDryRunOption(addCommonOptions(service.command('deregister')), 'deregister')
    .description('remove a befw service registered with "befw service register" from the local Consul agent')
    .argument('<id>', 'service ID (the NAME, unless registered with --id)')
    .action(async (id: string, opts: DeregisterOpts) => {
      checkName(id, 'service id');
      await withContext(opts, async (ctx) => {
        const existing = (await ctx.consul.services()).find((s) => s.id === id);
        if (existing === undefined)
          throw new UsageError(`service id "${id}"`, 'is not registered on the local Consul agent; nothing removed (see befw service ls)');
        refuseForeign(existing, 'deregister');
        const dryRun = opts.dryRun === true;
        if (!dryRun) await ctx.consul.deregister(id);
        if (ctx.json) printJson({ dryRun, deregistered: { id, name: existing.name, tags: existing.tags } });
        else
          print(
            `${dryRun ? `${DRY_RUN_HEADER}\n` : ''}deregistered: service ${existing.name} (id ${id}); its KV entries stay until removed`,
          );
      });
    });

  addCommonOptions(service.command('ls'))
    .description('list the befw services on the local Consul agent with their set, ports and mode')
    .action(async (opts: CommonOpts) => {
      await withContext(opts, async (ctx) => {
        const rows = serviceRows(await ctx.consul.services());
        if (ctx.json) return printJson({ services: rows });
        if (rows.length === 0) return print('No befw services on the local Consul agent.');
        const lines = [
          table([
            ['ID', 'NAME', 'SET', 'PORTS', 'MODE', 'SOURCE'],
            ...rows.map((r) => [r.id, r.name, r.set ?? '-', r.ports.join(', ') || '-', r.mode, r.source]),
          ]),
        ];
        for (const r of rows) for (const p of r.problems) lines.push(`  ${r.id}: ${p}`);
        print(lines.join('\n'));
      });
    });
}
