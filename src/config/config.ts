/**
 * `befw.conf`: BEFW's `key=value` format, `#` comments. Each line is checked against a JSON
 * schema (ajv) and then turned into a typed Config; every problem names the file, the line and
 * the key, and none of them falls back to a silent default.
 */
import type { ErrorObject } from 'ajv';
import { lazyValidator } from './lazyValidator.js';
import type { FromSchema } from './schemaType.js';
import { parseNet, printable } from '../core/address.js';
import { SET_NAME } from '../core/kvLayout.js';
import type { Net } from '../core/address.js';
import type { StaticSetConfig, Target } from '../core/types.js';
import { BUILTIN_SETS, RULES_ALLOW } from '../core/compile.js';
import { BASE_NAME_MAX } from '../core/setNames.js';

export interface Config {
  readonly file: string;
  /** Consul agent HTTP address. */
  readonly consul: { readonly host: string; readonly port: number; readonly secure: boolean };
  /** Datacenter whose KV holds befw/ (null: the agent's own). */
  readonly dc: string | null;
  /** Inline token (BEFW compatibility); prefer token_file. Never logged. */
  readonly token: string | null;
  readonly tokenFile: string | null;
  readonly nodeName: string | null;
  readonly nodeDc: string | null;
  readonly servicesDir: string;
  readonly ipsetsDir: string;
  /** Service rule template; null: the built-in one. */
  readonly rulesTemplate: string | null;
  /** Base ruleset template installed at start; null: leave the base alone, only ensure the jump. */
  readonly firewallTemplate: string | null;
  readonly customSets: readonly StaticSetConfig[];
  readonly managementNets: readonly Net[];
  /** `protect=`: networks no deny or ban may touch, accepted ahead of every deny. */
  readonly protect: readonly Net[];
  readonly statePath: string;
  /** Seconds between full resyncs (re-read everything, rebuild every set); jittered by 10%. */
  readonly resyncInterval: number;
  /** Seconds a blocking query waits in Consul (below its 10-minute cap). */
  readonly consulWait: number;
  /** Largest acceptable staleness of a stale read, in seconds, before re-reading consistently. */
  readonly maxStale: number;
  /** Seconds before a Consul request is abandoned. */
  readonly consulTimeout: number;
  readonly logLevel: LogLevel;
  /** Blast-radius guard: percent of a set's members, and the smallest set it applies to. */
  readonly guardShare: number;
  readonly guardMin: number;
  /** Seconds a loosening change must stay the same before it is applied (0: at once). */
  readonly guardHold: number;
  /** Integrity check periods in seconds: headers and chain, and full set contents. */
  readonly integrityInterval: number;
  readonly integrityFullInterval: number;
  /** Control socket for `befw status|reload|check`. */
  readonly socketPath: string;
  /** Metrics and health endpoint (loopback only), or null when off. */
  readonly metrics: { readonly host: string; readonly port: number } | null;
  /** iptables backend: follow the host (`iptables --version`) or force one. */
  readonly iptablesBackend: IptablesBackend;
  /** KV watching: `scoped` (only this node's prefixes) or `tree` (all of befw/, one query). */
  readonly kvWatch: 'scoped' | 'tree';
  /** `.ipset` files: their own set `<name>.ipset` (BEFW's meaning) or members of the set `<name>`. */
  readonly ipsetFiles: 'befw' | 'members';
  /** Service set names as the fleet's BEFW release makes them (core/services.ts SetNaming). */
  readonly setNaming: 'name-port' | 'id-first-tag';
  /**
   * The CLI's sanity limit for world-scope entries: an IPv4 network with a shorter prefix than
   * this (wider), or an IPv6 network shorter than `cliWorldPrefix6`, needs `--yes` (a /0 needs it
   * at every scope).
   */
  readonly cliWorldPrefix: number;
  readonly cliWorldPrefix6: number;
}

/** The file's keys and values as written (every value still text), typed from SCHEMA below. */
export type RawConfig = FromSchema<typeof SCHEMA>;
export type LogLevel = NonNullable<RawConfig['log_level']>;
export type IptablesBackend = NonNullable<RawConfig['iptables_backend']>;

export const DEFAULT_CONFIG_PATH = '/etc/befw.conf';
export const DEFAULT_SOCKET_PATH = '/run/befw/befw.sock';

export class ConfigError extends Error {
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly key: string | null,
    readonly reason: string,
  ) {
    super(`${file}${line === null ? '' : `:${line}`}${key === null ? '' : ` (${key})`}: ${reason}`);
    this.name = 'ConfigError';
  }
}

const PATH = { type: 'string', pattern: '^/[^\\u0000-\\u001f]*$' } as const;
const NAME = { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' } as const;
const SECONDS = { type: 'string', pattern: '^[1-9][0-9]{0,5}$' } as const;

/** Schema of the raw key=value map: each value is still text, as written. */
const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    address: { type: 'string', pattern: '^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$' },
    dc: NAME,
    token: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,256}$' },
    token_file: PATH,
    nodename: NAME,
    nodedc: NAME,
    services: PATH,
    ipsets: PATH,
    rules: PATH,
    firewall: PATH,
    state: PATH,
    socket: PATH,
    metrics: { type: 'string', pattern: '^(127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|localhost|\\[::1\\]):[0-9]{1,5}$' },
    resync_interval: SECONDS,
    consul_wait: { type: 'string', pattern: '^([1-9]|[1-9][0-9]|[1-5][0-9][0-9])$' },
    max_stale: SECONDS,
    consul_timeout_sec: SECONDS,
    log_level: { type: 'string', enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] },
    iptables_backend: { type: 'string', enum: ['auto', 'nft', 'legacy'] },
    kv_watch: { type: 'string', enum: ['scoped', 'tree'] },
    ipset_files: { type: 'string', enum: ['befw', 'members'] },
    set_naming: { type: 'string', enum: ['name-port', 'id-first-tag'] },
    guard_share: { type: 'string', pattern: '^([1-9]|[1-9][0-9]|100)$' },
    guard_min: { type: 'string', pattern: '^[1-9][0-9]{0,6}$' },
    guard_hold: { type: 'string', pattern: '^(0|[1-9][0-9]{0,5})$' },
    protect: { type: 'string', pattern: '^[0-9A-Fa-f.:/; ]*$' },
    integrity_interval: SECONDS,
    integrity_full_interval: SECONDS,
    cli_world_prefix: { type: 'string', pattern: '^([0-9]|[12][0-9]|3[0-2])$' },
    cli_world_prefix6: { type: 'string', pattern: '^([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])$' },
    [`set.${RULES_ALLOW}`]: { type: 'string', pattern: '^[0-9A-Fa-f.:/; ]*$' },
  },
  patternProperties: {
    '^set\\.(?!rules_allow$)[a-z0-9._-]+$': { type: 'string', pattern: '^(-?[0-9]{1,6};)?(ACCEPT|DROP|REJECT|NOOP)$' },
  },
} as const;

const validator = lazyValidator<RawConfig>(SCHEMA, { allErrors: true });

const HINTS: Record<string, string> = {
  address: 'expected host:port, e.g. 127.0.0.1:8500',
  resync_interval: 'expected whole seconds, 1 or more',
  consul_wait: 'expected whole seconds from 1 to 599 (Consul caps waits at 10 minutes)',
  max_stale: 'expected whole seconds, 1 or more',
  guard_share: 'expected a percentage from 1 to 100',
  guard_min: 'expected a whole number of members, 1 or more',
  guard_hold: 'expected whole seconds, 0 or more (0 applies loosening changes at once)',
  protect: 'expected networks separated by ";"',
  integrity_interval: 'expected whole seconds, 1 or more',
  integrity_full_interval: 'expected whole seconds, 1 or more',
  consul_timeout_sec: 'expected whole seconds, 1 or more',
  cli_world_prefix: 'expected an IPv4 prefix length from 0 to 32 (world-scope networks wider than it need --yes)',
  cli_world_prefix6: 'expected an IPv6 prefix length from 0 to 128 (world-scope networks wider than it need --yes)',
  token: 'expected a Consul ACL token (letters, digits, ".", "_", "-")',
  metrics: 'expected a loopback address and port, e.g. 127.0.0.1:9187 or [::1]:9187 (metrics are never exposed beyond the host)',
};

function explain(e: ErrorObject, key: string): string {
  if (e.keyword === 'additionalProperties') return 'unknown key';
  if (e.keyword === 'enum') return `expected one of ${(e.params as { allowedValues: string[] }).allowedValues.join(', ')}`;
  if (key.startsWith('set.') && key !== `set.${RULES_ALLOW}`) return 'expected PRIORITY;TARGET with TARGET ACCEPT, DROP, REJECT or NOOP';
  if (key === `set.${RULES_ALLOW}`) return 'expected networks separated by ";"';
  if (HINTS[key] !== undefined) return HINTS[key];
  if (SCHEMA.properties[key as keyof typeof SCHEMA.properties] === PATH) return 'expected an absolute path';
  return 'expected a name of letters, digits, ".", "_" or "-"';
}

export function parseConfig(text: string, file: string): Config {
  // No prototype: `__proto__=x` must become a key the schema rejects as unknown, not a silent
  // no-op assignment to the object's prototype.
  const fields = Object.create(null) as Record<string, string>;
  const lineOf = new Map<string, number>();
  text.split('\n').forEach((rawLine, i) => {
    const n = i + 1;
    const line = rawLine.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) throw new ConfigError(file, n, null, `expected key=value, found "${printable(line)}"`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (lineOf.has(key)) throw new ConfigError(file, n, key, `duplicate key (first set on line ${lineOf.get(key)})`);
    fields[key] = value;
    lineOf.set(key, n);
  });

  const validate = validator();
  if (!validate(fields)) {
    const e = validate.errors?.[0];
    if (e === undefined) throw new ConfigError(file, null, null, 'invalid'); // ajv always says why
    const key =
      e.keyword === 'additionalProperties'
        ? (e.params as { additionalProperty: string }).additionalProperty
        : e.instancePath.replace(/^\//, '').replaceAll('~1', '/').replaceAll('~0', '~');
    throw new ConfigError(file, lineOf.get(key) ?? null, printable(key), explain(e, key));
  }
  const raw: RawConfig = fields;

  const at = (key: string): number | null => lineOf.get(key) ?? null;
  const netList = (key: string, value: string): Net[] =>
    value
      .split(';')
      .map((s) => s.trim())
      .filter((s) => s !== '')
      .map((s) => {
        const net = parseNet(s);
        if (!net.ok) throw new ConfigError(file, at(key), key, `"${printable(s)}": ${net.error}`);
        return { family: net.value.family, cidr: net.value.cidr, prefix: net.value.prefix };
      });
  const customSets: StaticSetConfig[] = [];
  let managementNets: Net[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (!key.startsWith('set.')) continue;
    const name = key.slice(4);
    if (name === RULES_ALLOW) {
      managementNets = netList(key, value);
      continue;
    }
    if (BUILTIN_SETS.some((b) => b.name === name))
      throw new ConfigError(file, at(key), key, `${name} is built in (priority 2, REJECT) and cannot be redefined`);
    if (!SET_NAME.test(name) || name.length > BASE_NAME_MAX || name.endsWith('_v6')) {
      throw new ConfigError(file, at(key), key, `set name must be 1-${BASE_NAME_MAX} of [a-z0-9._-] and not end in _v6`);
    }
    const parts = value.split(';');
    const target = parts[parts.length - 1] as Target;
    // BEFW gave sets without a priority the next number after the built-ins, in file order.
    const priority = parts.length === 2 ? Number(parts[0]) : 3 + customSets.length;
    if (priority < 3)
      throw new ConfigError(file, at(key), key, 'custom sets come after rules_allow (1) and rules_deny (2): priority must be 3 or more');
    customSets.push({ name, priority, target });
  }
  if (raw.token !== undefined && raw.token_file !== undefined) {
    throw new ConfigError(file, at('token_file'), 'token_file', 'set token or token_file, not both');
  }

  const address = raw.address ?? '127.0.0.1:8500';
  const m = /^(https?:\/\/)?([^:/]+)(?::([0-9]+))?\/?$/.exec(address);
  const port = Number(m?.[3] ?? '8500');
  if (m === null || port < 1 || port > 65535) throw new ConfigError(file, at('address'), 'address', HINTS.address ?? '');

  let metrics: Config['metrics'] = null;
  if (raw.metrics !== undefined) {
    const colon = raw.metrics.lastIndexOf(':');
    const port = Number(raw.metrics.slice(colon + 1));
    if (port < 1 || port > 65535) throw new ConfigError(file, at('metrics'), 'metrics', HINTS.metrics ?? '');
    metrics = { host: raw.metrics.slice(0, colon).replace(/^\[|\]$/g, ''), port };
  }

  return {
    file,
    socketPath: raw.socket ?? DEFAULT_SOCKET_PATH,
    metrics,
    consul: { host: m[2] ?? '127.0.0.1', port, secure: m[1] === 'https://' },
    dc: raw.dc ?? null,
    token: raw.token ?? null,
    tokenFile: raw.token_file ?? null,
    nodeName: raw.nodename ?? null,
    nodeDc: raw.nodedc ?? null,
    servicesDir: raw.services ?? '/etc/befw.service.d',
    ipsetsDir: raw.ipsets ?? '/etc/befw.ipset.d',
    rulesTemplate: raw.rules ?? null,
    firewallTemplate: raw.firewall ?? null,
    customSets,
    managementNets,
    protect: raw.protect === undefined ? [] : netList('protect', raw.protect),
    statePath: raw.state ?? '/var/lib/befw/state.bin',
    resyncInterval: Number(raw.resync_interval ?? '300'),
    consulWait: Number(raw.consul_wait ?? '300'),
    maxStale: Number(raw.max_stale ?? '5'),
    consulTimeout: Number(raw.consul_timeout_sec ?? '10'),
    logLevel: raw.log_level ?? 'info',
    iptablesBackend: raw.iptables_backend ?? 'auto',
    kvWatch: raw.kv_watch ?? 'scoped',
    ipsetFiles: raw.ipset_files ?? 'befw',
    setNaming: raw.set_naming ?? 'name-port',
    guardShare: Number(raw.guard_share ?? '50'),
    guardMin: Number(raw.guard_min ?? '10'),
    guardHold: Number(raw.guard_hold ?? '60'),
    integrityInterval: Number(raw.integrity_interval ?? '3'),
    integrityFullInterval: Number(raw.integrity_full_interval ?? '300'),
    cliWorldPrefix: Number(raw.cli_world_prefix ?? '16'),
    cliWorldPrefix6: Number(raw.cli_world_prefix6 ?? '48'),
  };
}
