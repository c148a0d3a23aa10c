/**
 * `befw doctor`: can this host run the agent, and is its Consul token right-sized?
 *
 * It says which firewall backend runs and why (`firewall=` as BEFW meant it), checks that
 * backend's tools and kernel modules, and warns about what the other backend (or BEFW) left in the
 * kernel: the agent removes that at its first apply from Consul or state.bin.
 *
 * Everything here only looks. Tools are run with read-only arguments (`--version`, `ipset list`,
 * `*-save`), kernel modules are judged from /proc, /sys and /lib/modules plus what is already in
 * use, and Consul is asked questions whose answers do not change it (see kvWritable in
 * consul/kvWriter.ts for how "may this token write?" is asked without writing). Each finding is
 * one OK, WARN or FAIL line; any FAIL makes the command exit non-zero.
 */
import { randomBytes } from 'node:crypto';
import { access, readFile } from 'node:fs/promises';
import { release } from 'node:os';
import type { Command } from 'commander';
import { type Config, ConfigError, DEFAULT_CONFIG_PATH } from '../config/config.js';
import { TOKEN_ENV, loadConfig } from '../config/load.js';
import type { OperatorConsul } from '../consul/kvWriter.js';
import { type CommandResult, type CommandRunner, processRunner } from '../dataplane/exec.js';
import { type Flavour as Backend, detectBackend } from '../dataplane/iptables/iptables.js';
import { CHAIN } from '../dataplane/iptables/render.js';
import { TABLE_REF } from '../dataplane/nft/naming.js';
import { readServiceFiles } from '../agent/inputs/localFiles.js';
import { BEFW_TAG } from '../core/services.js';
import { openConsul, print, printJson } from './access/context.js';

export type Status = 'OK' | 'WARN' | 'FAIL';

export interface Check {
  readonly area: string;
  readonly status: Status;
  readonly message: string;
}

export class DoctorFailed extends Error {
  constructor(readonly failures: number) {
    super(`doctor found ${failures} failing check(s); see the FAIL lines`);
    this.name = 'DoctorFailed';
  }
}

/** What the checks read from the host; a test replaces it with canned answers. */
export interface HostView {
  run(cmd: string, args: readonly string[]): Promise<CommandResult>;
  /** File text, or null when it cannot be read. */
  readText(path: string): Promise<string | null>;
  exists(path: string): Promise<boolean>;
  readonly kernelRelease: string;
}

export const realHost = (runner: CommandRunner = processRunner): HostView => ({
  run: (cmd, args) => runner.run(cmd, args, { timeoutMs: 10_000 }),
  readText: (path) => readFile(path, 'utf8').catch(() => null),
  exists: (path) =>
    access(path).then(
      () => true,
      () => false,
    ),
  kernelRelease: release(),
});

const firstLine = (r: CommandResult): string => (r.stdout.trim() || r.stderr.trim()).split('\n')[0] ?? '';
const reason = (r: CommandResult): string => r.stderr.trim().split('\n')[0] || `exit ${r.code}`;

/** Rules (`-A` lines) in an iptables-save dump, and whether it holds the BEFW chain. */
export function summarizeSave(text: string): { rules: number; hasChain: boolean; usesSets: boolean } {
  const lines = text.split('\n');
  return {
    rules: lines.filter((l) => l.startsWith('-A ')).length,
    hasChain: lines.some((l) => l === `:${CHAIN}` || l.startsWith(`:${CHAIN} `)),
    usesSets: lines.some((l) => l.includes('--match-set')),
  };
}

/** Where a kernel module is seen: loaded, built in, loadable, or not at all (null). */
export function moduleState(
  name: string,
  files: { procModules: string | null; builtin: string | null; dep: string | null; sysModule: boolean },
): string | null {
  if (files.procModules?.split('\n').some((l) => l.split(' ')[0] === name)) return 'loaded';
  // Module files use "-" or "_" interchangeably in names; the kernel reports "_".
  const pattern = new RegExp(`/${name.replace(/_/g, '[_-]')}\\.ko(\\.[a-z]+)?(:|$)`, 'm');
  if (files.builtin !== null && pattern.test(files.builtin)) return 'built in';
  if (files.sysModule) return 'present';
  if (files.dep !== null && pattern.test(files.dep)) return 'loadable';
  return null;
}

interface ToolFacts {
  readonly checks: Check[];
  readonly backend: Backend | null;
  /** Evidence that a module works because something already uses it. */
  readonly inUse: Map<string, string>;
}

async function checkTools(host: HostView, preference: 'auto' | Backend): Promise<ToolFacts> {
  const checks: Check[] = [];
  const inUse = new Map<string, string>();
  const ipsetV = await host.run('ipset', ['--version']);
  if (ipsetV.code !== 0)
    checks.push({ area: 'tools', status: 'FAIL', message: `ipset does not run: ${reason(ipsetV)} (install the ipset package)` });
  else {
    const list = await host.run('ipset', ['list', '-t']);
    if (list.code !== 0)
      checks.push({
        area: 'tools',
        status: 'FAIL',
        message: `${firstLine(ipsetV)} is installed but "ipset list" fails: ${reason(list)} (root or CAP_NET_ADMIN needed)`,
      });
    else {
      checks.push({ area: 'tools', status: 'OK', message: `${firstLine(ipsetV)}; "ipset list" works` });
      inUse.set('ip_set', 'ipset list works');
      if (/^Type: hash:net$/m.test(list.stdout)) inUse.set('ip_set_hash_net', 'a hash:net set exists');
    }
  }
  let backend: Backend | null = null;
  try {
    const b = await detectBackend({ run: (cmd, args) => host.run(cmd, args) }, preference);
    backend = b.backend;
    checks.push({ area: 'backend', status: 'OK', message: `iptables backend ${b.backend === 'nft' ? 'nf_tables' : 'legacy'} (${b.how})` });
  } catch (err) {
    checks.push({ area: 'backend', status: 'FAIL', message: (err as Error).message });
  }
  if (backend === null) return { checks, backend, inUse };
  const other: Backend = backend === 'nft' ? 'legacy' : 'nft';
  for (const [family, tool] of [
    ['IPv4', 'iptables'],
    ['IPv6', 'ip6tables'],
  ] as const) {
    const save = await host.run(`${tool}-${backend}-save`, ['-t', 'filter']);
    if (save.code !== 0) {
      checks.push({ area: 'tools', status: 'FAIL', message: `${tool}-${backend}-save does not work: ${reason(save)}` });
      continue;
    }
    const mine = summarizeSave(save.stdout);
    if (mine.usesSets) inUse.set('xt_set', `the ${tool} ruleset matches ipsets`);
    if (backend === 'nft') inUse.set('nf_tables', `${tool}-nft-save works`);
    checks.push({
      area: 'tools',
      status: 'OK',
      message: `${tool} (${family}) usable; filter table has ${mine.rules} rule(s)${mine.hasChain ? `, chain ${CHAIN} present` : `, no ${CHAIN} chain yet`}`,
    });
    const theirs = await host.run(`${tool}-${other}-save`, ['-t', 'filter']);
    if (theirs.code !== 0) continue; // other backend not installed or unusable: nothing can live there
    const t = summarizeSave(theirs.stdout);
    if (t.hasChain)
      checks.push({
        area: 'backend',
        status: 'WARN',
        message: `a ${CHAIN} chain exists in the ${other} backend (${tool}) too: left by another agent or an older install; packets traverse both rulesets`,
      });
    else if (t.rules > 0)
      checks.push({
        area: 'backend',
        status: 'WARN',
        message: `the ${other} backend also holds ${t.rules} ${tool} rule(s): packets traverse both rulesets, and befw only manages the ${backend} one`,
      });
  }
  return { checks, backend, inUse };
}

/** Whether `nft list tables` shows table inet befw; null when nft cannot list (not installed, not root). */
async function nftTable(host: HostView): Promise<{ present: boolean; listing: CommandResult } | null> {
  const r = await host.run('nft', ['list', 'tables']);
  if (r.code !== 0) return null;
  return { present: r.stdout.split('\n').some((l) => l.trim() === `table ${TABLE_REF}`), listing: r };
}

/** The nftables backend's tools: nft itself, the table, and the monitor the integrity check uses. */
async function checkNft(host: HostView, config: Config | null): Promise<ToolFacts> {
  const checks: Check[] = [];
  const inUse = new Map<string, string>();
  const v = await host.run('nft', ['--version']);
  if (v.code !== 0) {
    checks.push({ area: 'tools', status: 'FAIL', message: `nft does not run: ${reason(v)} (install the nftables package)` });
    return { checks, backend: null, inUse };
  }
  const t = await nftTable(host);
  if (t === null) {
    checks.push({
      area: 'tools',
      status: 'FAIL',
      message: `${firstLine(v)} is installed but "nft list tables" fails (root or CAP_NET_ADMIN needed)`,
    });
  } else {
    inUse.set('nf_tables', 'nft list tables works');
    if (t.present) inUse.set('nft_reject_inet', `table ${TABLE_REF} is in place`);
    checks.push({
      area: 'tools',
      status: 'OK',
      message: `${firstLine(v)}; ${t.present ? `table ${TABLE_REF} present (the agent's, BEFW's, or an earlier run's: replaced in one transaction at the first apply)` : `no table ${TABLE_REF} yet`}`,
    });
  }
  const xm = await host.run('xtables-monitor', ['-h']);
  const sb = await host.run('stdbuf', ['--version']);
  if (sb.code === 0 && (xm.code === 0 || /xtables-monitor/.test(xm.stdout + xm.stderr)))
    checks.push({
      area: 'integrity',
      status: 'OK',
      message: 'ruleset generations watched with xtables-monitor: a change by anyone else is seen at once',
    });
  else if (sb.code === 0)
    checks.push({
      area: 'integrity',
      status: 'WARN',
      message:
        'no xtables-monitor (iptables package): generations are watched with "nft monitor", which keeps a copy of the ruleset (~500 bytes per element)',
    });
  else
    checks.push({
      area: 'integrity',
      status: 'WARN',
      message: 'no stdbuf (coreutils): no generation watch; the quick check reads set headers and chains, elements only at the full check',
    });
  if (config?.rulesTemplate !== null && config?.rulesTemplate !== undefined)
    checks.push({
      area: 'config',
      status: 'WARN',
      message: `rules=${config.rulesTemplate} is an iptables template: the nftables backend does not use it`,
    });
  // What the iptables backend (befw's or BEFW's) left: removed at the first apply.
  for (const flavour of ['nft', 'legacy'] as const) {
    for (const tool of ['iptables', 'ip6tables'] as const) {
      const save = await host.run(`${tool}-${flavour}-save`, ['-t', 'filter']);
      if (save.code !== 0) continue;
      if (summarizeSave(save.stdout).hasChain)
        checks.push({
          area: 'backend',
          status: 'WARN',
          message: `a ${CHAIN} chain is in ${tool}-${flavour}: left by the iptables backend (befw or BEFW); the agent removes it, its jumps and its ipsets once its first real plan is in`,
        });
    }
  }
  return { checks, backend: null, inUse };
}

async function checkModules(
  host: HostView,
  backend: Backend | null,
  inUse: ReadonlyMap<string, string>,
  modules?: readonly string[],
): Promise<Check[]> {
  const base = `/lib/modules/${host.kernelRelease}`;
  const [procModules, builtin, dep] = await Promise.all([
    host.readText('/proc/modules'),
    host.readText(`${base}/modules.builtin`),
    host.readText(`${base}/modules.dep`),
  ]);
  const wanted = modules ?? [
    'ip_set',
    'ip_set_hash_net',
    'xt_set',
    ...(backend === 'legacy' ? ['ip_tables', 'ip6_tables'] : ['nf_tables', 'nft_compat']),
  ];
  const checks: Check[] = [];
  for (const name of wanted) {
    const used = inUse.get(name);
    const state =
      used === undefined
        ? moduleState(name, { procModules, builtin, dep, sysModule: await host.exists(`/sys/module/${name}`) })
        : `in use: ${used}`;
    checks.push(
      state === null
        ? {
            area: 'kernel',
            status: 'WARN',
            message: `${name}: not seen loaded, built in or loadable (no trace in /proc/modules, /sys/module or ${base}); fine if built into this kernel, else the first apply fails`,
          }
        : { area: 'kernel', status: 'OK', message: `${name}: ${state}` },
    );
  }
  return checks;
}

function tokenSource(config: Config, env: NodeJS.ProcessEnv): string {
  if (config.token !== null) return 'token= in the config (prefer token_file, mode 0600)';
  if (config.tokenFile !== null) return `token_file ${config.tokenFile}`;
  const name = TOKEN_ENV.find((n) => (env[n] ?? '') !== '');
  return name === undefined ? 'none: requests run as the anonymous token' : `environment variable ${name}`;
}

const AGENT_NEEDS = 'see docs/acl/ for the agent policy';

async function checkConsul(config: Config, consul: OperatorConsul, env: NodeJS.ProcessEnv): Promise<Check[]> {
  const checks: Check[] = [];
  const where = `${config.consul.host}:${config.consul.port}`;
  let nodeName: string;
  try {
    const self = await consul.self();
    nodeName = self.nodeName;
    checks.push({
      area: 'consul',
      status: 'OK',
      message: `reachable at ${where}: node ${self.nodeName}, datacenter ${self.datacenter}${self.version === null ? '' : `, Consul ${self.version}`}`,
    });
  } catch (err) {
    const status = (err as { statusCode?: unknown }).statusCode;
    if (status !== 403) return [{ area: 'consul', status: 'FAIL', message: `cannot reach Consul at ${where}: ${(err as Error).message}` }];
    checks.push({
      area: 'consul',
      status: 'FAIL',
      message: `reachable at ${where}, but the token may not read agent/self (agent read): the agent needs its node name and datacenter; ${AGENT_NEEDS}`,
    });
    nodeName = config.nodeName ?? '';
  }

  const acl = await consul.aclSelf();
  if (acl.state === 'disabled')
    checks.push({
      area: 'acl',
      status: 'WARN',
      message: "ACLs are disabled on this Consul: anyone who reaches its HTTP API can change befw/ and so every node's firewall",
    });
  else if (acl.state === 'unknown-token') {
    const none = config.token === null && config.tokenFile === null && TOKEN_ENV.every((n) => (env[n] ?? '') === '');
    checks.push({
      area: 'acl',
      status: none ? 'WARN' : 'FAIL',
      message: none
        ? 'no token configured: requests run as the anonymous token'
        : 'Consul does not know the configured token (revoked, or from another cluster)',
    });
  } else {
    checks.push({
      area: 'acl',
      status: 'OK',
      message: `token "${acl.description}"${acl.policies.length === 0 ? '' : ` with policies ${acl.policies.join(', ')}`}`,
    });
  }

  const readable = await consul.kvReadable('befw/');
  if (readable) {
    const n = (await consul.list('befw/')).length;
    checks.push({
      area: 'kv-read',
      status: 'OK',
      message: `can read befw/${config.dc === null ? '' : ` in datacenter ${config.dc}`} (${n} key(s) visible)`,
    });
  } else {
    checks.push({
      area: 'kv-read',
      status: 'FAIL',
      message: `the token may not read befw/: the agent could only enforce state.bin; it needs key_prefix "befw/" read; ${AGENT_NEEDS}`,
    });
  }

  try {
    const services = await consul.services();
    const befw = services.filter((s) => s.tags.includes(BEFW_TAG));
    checks.push(
      befw.length > 0
        ? { area: 'services', status: 'OK', message: `${befw.length} befw service(s) among ${services.length} visible on the local agent` }
        : {
            area: 'services',
            status: 'WARN',
            message: `no befw services visible (the local agent shows ${services.length} service(s) in all): none registered yet, or the token lacks service read on them`,
          },
    );
    const files = await readServiceFiles(config.servicesDir).catch(() => null);
    for (const f of files?.services ?? []) {
      if (!services.some((s) => s.id === f.name)) {
        checks.push({
          area: 'services',
          status: 'WARN',
          message: `service file ${f.file} (${f.name}) is not registered: the agent is not running, or its token lacks service write on "${f.name}"`,
        });
      }
    }
  } catch (err) {
    checks.push({ area: 'services', status: 'FAIL', message: (err as Error).message });
  }

  if (nodeName !== '') {
    const visible = await consul.catalogNodeVisible(nodeName).catch(() => false);
    checks.push(
      visible
        ? { area: 'catalog', status: 'OK', message: `node ${nodeName} visible in the catalog (the agent watches its services there)` }
        : {
            area: 'catalog',
            status: 'FAIL',
            message: `node ${nodeName} not visible in the catalog: the token lacks node read, and the agent would not notice service changes; ${AGENT_NEEDS}`,
          },
    );
  }

  const probe = randomBytes(6).toString('hex');
  // The probe keys fail the agent's address parser, so even a write that somehow landed could
  // never become an enforced entry.
  const writesBefw = await consul.kvWritable(`befw/$ipset$/rules_allow/befw-doctor-probe-${probe}`);
  const writesOther = await consul.kvWritable(`befw-doctor-probe-${probe}`);
  const tooMuch: string[] = [];
  if (writesBefw) tooMuch.push('write befw/ (a compromised node could open every node; only engineers need this)');
  if (writesOther) tooMuch.push('write KV outside befw/');
  if (acl.state !== 'disabled' && (await consul.aclTokensReadable()))
    tooMuch.push('read ACL tokens (acl read/write: a management-level token)');
  checks.push(
    tooMuch.length === 0
      ? { area: 'least-priv', status: 'OK', message: 'the token cannot write KV or read ACL tokens, as a node token should not' }
      : {
          area: 'least-priv',
          status: 'WARN',
          message: `the token can ${tooMuch.join('; and ')}; fine for an engineer's token, too much for a node's (docs/acl/)`,
        },
  );
  return checks;
}

export async function runDoctor(configPath: string, host: HostView, env: NodeJS.ProcessEnv = process.env): Promise<Check[]> {
  let config: Config | null = null;
  const checks: Check[] = [];
  try {
    config = await loadConfig(configPath);
    checks.push({ area: 'config', status: 'OK', message: `${configPath} is valid; token from ${tokenSource(config, env)}` });
  } catch (err) {
    checks.push({
      area: 'config',
      status: 'FAIL',
      message: err instanceof ConfigError ? err.message : `${configPath}: ${(err as Error).message}`,
    });
  }
  const firewall = config?.firewall ?? { backend: 'iptables' as const, why: 'no usable config: the default', warning: null };
  checks.push({
    area: 'backend',
    status: firewall.warning === null ? 'OK' : 'WARN',
    message: `firewall backend ${firewall.backend === 'nft' ? 'nftables (table inet befw)' : 'iptables + ipset (chain BEFW)'}: ${firewall.why}${firewall.warning === null ? '' : `; ${firewall.warning}`}`,
  });
  if (firewall.backend === 'nft') {
    const tools = await checkNft(host, config);
    checks.push(
      ...tools.checks,
      ...(await checkModules(host, null, tools.inUse, ['nf_tables', 'nft_reject_inet', 'nf_reject_ipv4', 'nf_reject_ipv6'])),
    );
  } else {
    const tools = await checkTools(host, config?.iptablesBackend ?? 'auto');
    checks.push(...tools.checks, ...(await checkModules(host, tools.backend, tools.inUse)));
    const t = await nftTable(host);
    if (t?.present === true)
      checks.push({
        area: 'backend',
        status: 'WARN',
        message: `table ${TABLE_REF} exists (BEFW's nft provider, or an earlier firewall=nft run): packets pass it too; the agent deletes it once its first real plan is in`,
      });
  }
  if (config === null) {
    checks.push({ area: 'consul', status: 'FAIL', message: 'not checked: no usable config' });
    return checks;
  }
  let consul: OperatorConsul;
  try {
    consul = await openConsul(config);
  } catch (err) {
    checks.push({ area: 'consul', status: 'FAIL', message: `not checked: ${(err as Error).message}` });
    return checks;
  }
  try {
    checks.push(...(await checkConsul(config, consul, env)));
  } catch (err) {
    checks.push({ area: 'consul', status: 'FAIL', message: (err as Error).message });
  } finally {
    consul.close();
  }
  return checks;
}

export function formatChecks(checks: readonly Check[]): string {
  const lines = checks.map((c) => `${c.status.padEnd(4)}  ${c.area.padEnd(10)}  ${c.message}`);
  const count = (s: Status): number => checks.filter((c) => c.status === s).length;
  lines.push('', `${count('OK')} OK, ${count('WARN')} WARN, ${count('FAIL')} FAIL`);
  return lines.join('\n');
}

export function registerDoctorCommand(program: Command): void {
  program
    .command('doctor')
    .description(
      'check this host and its Consul token for the agent: which firewall backend runs and why, its tools and kernel modules, leftovers of the other backend, Consul reachability and permissions (changes nothing)',
    )
    .option('-c, --config <file>', 'befw.conf to use', DEFAULT_CONFIG_PATH)
    .option('--json', 'print the checks as JSON')
    .action(async (opts: { config: string; json?: boolean }) => {
      const checks = await runDoctor(opts.config, realHost());
      const failures = checks.filter((c) => c.status === 'FAIL').length;
      if (opts.json === true) printJson({ ok: failures === 0, checks });
      else print(formatChecks(checks));
      if (failures > 0) throw new DoctorFailed(failures);
    });
}
