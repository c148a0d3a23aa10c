/**
 * `befw explain ADDR [PORT[/PROTO]] [--node N] [--at TIME] [--json]`: why an address is accepted or
 * refused, from the plan the agent compiles (core/explain.ts walks it).
 *
 * For this node the snapshot is read exactly as `befw plan` reads it (local agent services,
 * service and .ipset files, KV, Consul peers). For `--node N` the services come from the catalog
 * (`/v1/catalog/node/N`, where the agent also registers its service files, tagged `local`), the
 * management networks from what N publishes under befw-protect/ (else this config's), and N's
 * own .ipset files cannot be seen from here: the output says so.
 */
import type { Command } from 'commander';
import { readIdentity, readSnapshot } from '../agent/inputs/snapshot.js';
import { askAgent } from '../agent/control.js';
import { isControlFailure } from '../agent/controlProtocol.js';
import { compileOptions } from '../agent/reconciler.js';
import type { Config } from '../config/config.js';
import { resolveToken } from '../config/load.js';
import { CONFIG_OPTION_HELP, loadCliConfig } from './configSource.js';
import { parseTime } from './duration.js';
import { type ConsulApi, createConsulApi } from '../consul/client.js';
import { type Net, parseNet, printable } from '../core/address.js';
import { compile } from '../core/compile.js';
import { type Explanation, type MemberMatch, type Probe, addressIn, explain } from '../core/explain.js';
import { canonicalIp } from '../core/netMatch.js';
import { isLive, parseKv, shortNodeName } from '../core/kvLayout.js';
import { ALIAS_KIND, type Entry } from './access/layout.js';
import { UsageError, quoted } from './access/errors.js';
import { protectKvKey } from '../core/protect.js';
import { LOCAL_TAG } from '../core/services.js';
import type { CompileOptions, NodeIdentity, Plan, Proto, Snapshot } from '../core/types.js';
import { formatTime, formatWhen } from '../core/timeText.js';

interface ExplainOpts {
  readonly config?: string;
  readonly json?: boolean;
  readonly at?: number;
  readonly node?: string;
  readonly dc?: string;
}

/** `8080`, `8080/tcp`, `53/udp`. */
export function parsePortArg(text: string): { port: number; proto: Proto } {
  const m = /^([0-9]{1,5})(?:\/(tcp|udp))?$/.exec(text);
  const port = Number(m?.[1] ?? '0');
  if (m === null || port < 1 || port > 65535)
    throw new UsageError(quoted('port', text), 'expected PORT or PORT/PROTO with PORT 1-65535 and PROTO tcp or udp, e.g. 8080 or 53/udp');
  return { port, proto: m[2] === 'udp' ? 'udp' : 'tcp' };
}

/** `--at`: now, +2h, -30m, Unix seconds or ISO 8601, as `plan` and `show` take it. */
function parseAt(value: string): number {
  return parseTime(value, '--at', Date.now());
}

interface Compiled {
  readonly plan: Plan;
  readonly snapshot: Snapshot;
  readonly caveats: string[];
}

/** The management networks node N publishes (befw-protect/<dc>/<node>), or null. */
async function publishedProtect(consul: ConsulApi, config: Config, node: NodeIdentity): Promise<Net[] | null> {
  const text = await consul.kvGet(protectKvKey(node.dc, node.name), config.dc).catch(() => null);
  if (text === null || text.length > 1_000_000) return null;
  try {
    const v = JSON.parse(text) as { nets?: unknown };
    if (!Array.isArray(v.nets)) return null;
    return v.nets.flatMap((n) => {
      const r = typeof n === 'string' ? parseNet(n) : null;
      return r?.ok === true ? [{ family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix }] : [];
    });
  } catch {
    return null;
  }
}

/** Another node's plan: its catalog services, the shared KV, its published protected networks. */
async function compileOther(consul: ConsulApi, config: Config, opts: ExplainOpts, nowMs: number): Promise<Compiled> {
  const name = opts.node as string;
  const dc = opts.dc ?? config.nodeDc ?? (await readIdentity(consul, config)).dc;
  const node: NodeIdentity = { name: shortNodeName(name), dc };
  const base = await readSnapshot(consul, config, node);
  const ac = new AbortController();
  const answer = await consul.nodeServicesBlocking(name, { index: 0, waitMs: 1000, stale: false, signal: ac.signal });
  // The node's agent registered its service files tagged `local`; read from afar, they count.
  const agentServices = answer.data.map((s) => ({ ...s, tags: s.tags.filter((t) => t !== LOCAL_TAG) }));
  const caveats = [`services of ${name} read from the catalog; its .ipset files cannot be seen from here and are not included`];
  if (agentServices.length === 0)
    caveats.push(`the catalog shows no services for node ${name}: unknown node, or the token lacks node/service read`);
  const published = await publishedProtect(consul, config, node);
  let options: CompileOptions = compileOptions(config);
  if (published !== null) options = { ...options, managementNets: published, protect: [] };
  else caveats.push(`node ${name} publishes no protected networks (befw-protect/); this config's management networks are assumed`);
  const snapshot: Snapshot = { ...base, agentServices, fileServices: [], ipsetFiles: [] };
  return { plan: compile(snapshot, options, nowMs), snapshot, caveats };
}

async function compileFor(config: Config, opts: ExplainOpts, nowMs: number): Promise<Compiled> {
  const token = await resolveToken(config);
  const consul = createConsulApi({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000 });
  if (opts.node !== undefined) return compileOther(consul, config, opts, nowMs);
  const snapshot = await readSnapshot(consul, config);
  return { plan: compile(snapshot, compileOptions(config), nowMs), snapshot, caveats: await localCaveats(config) };
}

/**
 * Where this node's kernel can differ from the plan explained: a `rules=` template shapes the
 * service rules (and BEFW's JSON ones add rules around them), and a guard hold keeps removals
 * out of the kernel. The running agent is asked; no agent, no hold to report.
 */
async function localCaveats(config: Config): Promise<string[]> {
  const out: string[] = [];
  if (config.rulesTemplate !== null && config.firewall.backend === 'iptables')
    out.push(
      `rules=${config.rulesTemplate} shapes the service rules and may add rules around them; this explanation follows befw's own service rules (clients accepted, the rest dropped when enforcing) and leaves the template's other rules out: compare with befw plan`,
    );
  try {
    const s = await askAgent(config.socketPath, 'status', 2000);
    const hold = isControlFailure(s) ? null : s.guard.holding;
    if (hold !== null)
      out.push(
        `the agent's guard is holding a change${hold.until === null ? '' : ` until ${formatTime(hold.until)}`}: until then the kernel keeps what the held change removes (befw guard status)`,
      );
  } catch {
    // No agent on this socket: nothing is held.
  }
  return out;
}

function when(ms: number | null, nowMs: number): string {
  return ms === null ? 'never expires' : `until ${formatWhen(ms, nowMs)}`;
}

function verdictText(p: Probe, nowMs: number): string {
  const until = p.until === null ? '' : `, ${when(p.until, nowMs)}`;
  switch (p.verdict) {
    case 'ACCEPT':
      return `ACCEPTED${until}`;
    case 'REJECT':
      return `REFUSED (REJECT)${until}`;
    case 'DROP':
      return `REFUSED (DROP)${until}`;
    case 'INPUT':
      return 'not decided by befw: falls through to the rest of INPUT (the base template decides)';
    default:
      return `decided by chain ${p.verdict.slice('chain:'.length)}${until}`;
  }
}

function memberLines(m: MemberMatch, nowMs: number): string[] {
  const out = [`        ${m.cidr}  ${when(m.expiresAt, nowMs)}  via ${m.via.join(', ') || '-'}`];
  for (const chain of m.chains)
    chain.forEach((l, i) => out.push(`          ${i === 0 ? '' : '> '}${printable(l.key, 200)}  (${when(l.expiresAt, nowMs)})`));
  return out;
}

export function formatExplanation(e: Explanation, caveats: readonly string[]): string {
  const out = [`${e.address} on node ${e.node.name} (${e.node.dc}) at ${formatTime(e.at)}:`];
  for (const p of e.probes) {
    out.push('', `  ${p.label}: ${verdictText(p, e.at)}`);
    for (const s of p.steps) {
      out.push(`    #${s.index + 1} ${s.rule}: ${s.why}`);
      for (const m of s.members) out.push(...memberLines(m, e.at));
    }
  }
  if (e.notes.length > 0) out.push('', 'Entries that name it but are not enforced:', ...e.notes.map((n) => `  ${printable(n, 400)}`));
  if (caveats.length > 0) out.push('', ...caveats.map((c) => `note: ${c}`));
  return out.join('\n');
}

export function registerExplainCommand(program: Command): void {
  program
    .command('explain')
    .description(
      "why ADDR is accepted or refused on this node (or --node N): each BEFW rule on its path in the chain's order, the set members that match, their KV keys and alias chains with expiry",
    )
    .argument('<addr>', 'one IPv4 or IPv6 address')
    .argument('[port]', 'PORT or PORT/PROTO (tcp by default); without it, every port a service names plus any other port')
    .option('-c, --config <file>', CONFIG_OPTION_HELP)
    .option('--node <node>', "explain for another node: its services from the catalog, the fleet's KV")
    .option('--dc <dc>', "with --node: the node's datacenter (default: this node's)")
    .option('--at <time>', 'explain another moment, e.g. after an expiry: +2h, -30m, now, Unix seconds or ISO 8601', parseAt)
    .option('--json', 'print the explanation as JSON')
    .action(async (addr: string, portArg: string | undefined, opts: ExplainOpts) => {
      // Arguments first: a usage error (exit 2) before any config or Consul.
      if (canonicalIp(addr) === null)
        throw new UsageError(quoted('address', addr), 'expected one IPv4 or IPv6 address (explain takes an address, not a network)');
      const port = portArg === undefined ? null : parsePortArg(portArg);
      if (opts.dc !== undefined && opts.node === undefined) throw new UsageError('--dc', 'has a meaning only with --node');
      const config = await loadCliConfig(opts.config);
      const nowMs = opts.at ?? Date.now();
      const { plan, snapshot, caveats } = await compileFor(config, opts, nowMs);
      const grants = parseKv(snapshot.kv, snapshot.node).grants;
      const e = explain(
        { plan, node: snapshot.node, nowMs, grants },
        { address: addr, port: port?.port ?? null, proto: port?.proto ?? 'tcp' },
      );
      if (opts.json === true) process.stdout.write(`${JSON.stringify({ ...e, caveats }, null, 2)}\n`);
      else process.stdout.write(`${formatExplanation(e, caveats)}\n`);
    });
}

/**
 * `ls --address ADDR`: the entries whose address holds ADDR, directly (a host or a network
 * containing it) or through an alias whose live members, followed through nested aliases at any
 * scope, do. Cycles are cut by the visited set.
 */
export function entriesHolding(entries: readonly Entry[], aliases: readonly Entry[], address: string, nowMs: number): Entry[] {
  const members = new Map<string, Entry[]>();
  for (const a of aliases) {
    if (a.kind !== ALIAS_KIND || !isLive(a.expiry, nowMs)) continue;
    members.set(a.target, [...(members.get(a.target) ?? []), a]);
  }
  const memo = new Map<string, boolean>();
  const aliasHolds = (name: string, seen: Set<string>): boolean => {
    const known = memo.get(name);
    if (known !== undefined) return known;
    if (seen.has(name)) return false;
    seen.add(name);
    const yes = (members.get(name) ?? []).some((m) =>
      m.addr.type === 'net' ? addressIn(m.addr.net.cidr, address) : aliasHolds(m.addr.name, seen),
    );
    memo.set(name, yes);
    return yes;
  };
  return entries.filter((e) => (e.addr.type === 'net' ? addressIn(e.addr.net.cidr, address) : aliasHolds(e.addr.name, new Set())));
}

/** Checks `--address` before Consul is contacted. */
export function checkAddressOption(text: string): string {
  if (canonicalIp(text) === null) throw new UsageError(quoted('--address', text), 'expected one IPv4 or IPv6 address');
  return text;
}
