/**
 * `befw.conf`: BEFW's `key=value` format, `#` comments. Each line is checked against a JSON
 * schema (ajv) and then turned into a typed Config; every problem names the file, the line and
 * the key, and none of them falls back to a silent default.
 */
import { dirname, isAbsolute, join } from 'node:path';
import type { ErrorObject } from 'ajv';
import { lazyValidator } from './lazyValidator.js';
import type { FromSchema } from './schemaType.js';
import { parseNet, printable } from '../core/address.js';
import { SET_NAME } from '../core/kvLayout.js';
import type { Net } from '../core/address.js';
import { type StaticSetConfig, type Target, userChainOf } from '../core/types.js';
import { BUILTIN_SETS, RULES_ALLOW } from '../core/compile.js';
import { closest } from '../core/suggest.js';
import { DEFAULT_TRAP_SPEC, type TrapSpec, parseTrapSpec } from '../core/trap.js';

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
  /** Service rule template (iptables backend); null: the built-in one. */
  readonly rulesTemplate: string | null;
  /** `base_rules=`: base ruleset template the iptables backend installs at start; null: leave the base alone, only ensure the jump. */
  readonly baseRules: string | null;
  /** `firewall=`: the firewall backend, as BEFW meant the key, and why it was chosen. */
  readonly firewall: FirewallChoice;
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
  /**
   * `audit=`: the CLI writes an audit record (befw-audit/, core/audit.ts) with every entry: `true`
   * (default; a token that may not write the record gets the entry alone, with a warning),
   * `required` (then nothing is written), or `false` (no records).
   */
  readonly audit: 'true' | 'required' | 'false';
  /** `audit_require_reason=true`: adds and removals refuse to run without --reason. */
  readonly auditRequireReason: boolean;
  /** `audit_by=`: the operator identity recorded when --by is not given (else SUDO_USER, USER, LOGNAME). */
  readonly auditBy: string | null;
  /** BEFW's API socket (`befw_api=`; text lines helo, help, reload, clear_missing), or null when off. */
  readonly befwApi: string | null;
  /** `nids=` (BEFW's trap ports, core/trap.ts): log TCP packets to a few unused ports for the reactor's `port-scan` trigger. */
  readonly nids: boolean;
  /** `nids_ports=`: how many trap ports to pick (default 15, as BEFW) or which. */
  readonly nidsPorts: TrapSpec;
  /** `observe_default=`: default-mode services log non-clients as mode observe does (BEFW logged them to NFLOG 402). */
  readonly observeDefault: boolean;
  /** What the file asks for that befw accepts but does not do (yet): logged at start. */
  readonly warnings: readonly string[];
}

export type FirewallBackend = 'iptables' | 'nft';

export interface FirewallChoice {
  readonly backend: FirewallBackend;
  /** Why: the key as written, or the default. */
  readonly why: string;
  /** Something the operator should see at start (nftc7, an unknown value); null when none. */
  readonly warning: string | null;
}

/**
 * Custom set names stay as written in the kernel in every backend (a NOOP set is there for other
 * tools to find by name): at most what an ipset name holds with its `_v6` twin.
 */
export const CUSTOM_SET_NAME_MAX = 28;

/** The file's keys and values as written (every value still text), typed from SCHEMA below. */
export type RawConfig = FromSchema<typeof SCHEMA>;
export type LogLevel = NonNullable<RawConfig['log_level']>;
export type IptablesBackend = NonNullable<RawConfig['iptables_backend']>;

/** `BEFW_CONFIG` in the environment, else /etc/befw.conf: what every command reads without -c. */
export const DEFAULT_CONFIG_PATH = process.env.BEFW_CONFIG ?? '/etc/befw.conf';
export const DEFAULT_SOCKET_PATH = '/run/befw/befw.sock';
/** Where BEFW served its API (befw/const.go:81), and so where its befw-cli and scripts look. */
export const DEFAULT_BEFW_API_PATH = '/var/run/befw/api.sock';

/** One thing wrong in a config file: where (line, key) and why. */
export interface ConfigProblem {
  readonly file: string;
  readonly line: number | null;
  readonly key: string | null;
  readonly reason: string;
}

/** `befw.conf:3 (dc): reason`; within a list about `file` itself, `line 3 (dc): reason`. */
function problemText(p: ConfigProblem, inFile: string | null = null): string {
  const where = p.file === inFile ? (p.line === null ? 'file' : `line ${p.line}`) : `${p.file}${p.line === null ? '' : `:${p.line}`}`;
  return `${where}${p.key === null ? '' : ` (${p.key})`}: ${p.reason}`;
}

/**
 * A config that cannot be used. It names the first problem in its own fields (file, line, key,
 * reason) and lists every problem found in `problems`, so one run shows all that needs fixing.
 */
export class ConfigError extends Error {
  readonly problems: readonly ConfigProblem[];
  constructor(
    readonly file: string,
    readonly line: number | null,
    readonly key: string | null,
    readonly reason: string,
    more: readonly ConfigProblem[] = [],
  ) {
    const problems = [{ file, line, key, reason }, ...more];
    super(
      problems.length === 1
        ? problemText({ file, line, key, reason })
        : `${file}: ${problems.length} problems: ${problems.map((p, i) => `(${i + 1}) ${problemText(p, file)}`).join(' ')}`,
    );
    this.problems = problems;
    this.name = 'ConfigError';
  }

  /** One error for every problem collected (at least one). */
  static of(problems: readonly ConfigProblem[]): ConfigError {
    const [first, ...rest] = problems;
    if (first === undefined) throw new Error('ConfigError.of: no problems');
    return new ConfigError(first.file, first.line, first.key, first.reason, rest);
  }
}

const PATH = { type: 'string', pattern: '^/[^\\u0000-\\u001f]*$' } as const;
/** A file BEFW also reads: a relative path is read from the config file's directory. */
const FILE = { type: 'string', pattern: '^[^\\u0000-\\u001f]{1,4096}$' } as const;
/** Go's strconv.ParseBool, which BEFW reads `nids=` with. */
const GO_BOOL = ['1', 't', 'T', 'TRUE', 'true', 'True', '0', 'f', 'F', 'FALSE', 'false', 'False'] as const;
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
    token_file: FILE,
    nodename: NAME,
    nodedc: NAME,
    services: FILE,
    ipsets: FILE,
    rules: FILE,
    firewall: { type: 'string', pattern: '^[^\\u0000-\\u001f]{0,256}$' },
    base_rules: PATH,
    state: FILE,
    socket: FILE,
    metrics: { type: 'string', pattern: '^(127\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}|localhost|\\[::1\\]):[0-9]{1,5}$' },
    resync_interval: SECONDS,
    consulwatch_timeout_sec: SECONDS,
    nids: { type: 'string', enum: GO_BOOL },
    nids_ports: { type: 'string', pattern: '^[0-9, ]{1,400}$' },
    observe_default: { type: 'string', enum: GO_BOOL },
    befw_api: FILE,
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
    audit: { type: 'string', enum: ['true', 'required', 'false'] },
    audit_require_reason: { type: 'string', enum: ['true', 'false'] },
    audit_by: { type: 'string', pattern: '^[A-Za-z0-9._@+-]{1,64}$' },
    [`set.${RULES_ALLOW}`]: { type: 'string', pattern: '^[0-9A-Fa-f.:/; ]*$' },
  },
  patternProperties: {
    // BEFW: `[PRIORITY;]TARGET`, any integer, any -j target (befw/config.go:125-141).
    '^set\\.(?!rules_allow$)[a-z0-9._-]+$': { type: 'string', pattern: '^([+-]?[0-9]{1,9};)?[A-Za-z0-9_-]{1,28}$' },
  },
} as const;

const validator = lazyValidator<RawConfig>(SCHEMA, { allErrors: true });

const HINTS: Record<string, string> = {
  address: 'expected host:port, e.g. 127.0.0.1:8500',
  resync_interval: 'expected whole seconds, 1 or more',
  consulwatch_timeout_sec: 'expected whole seconds, 1 or more',
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
  firewall: 'expected the firewall backend as in BEFW: nft, nftc7 or iptables',
  nids_ports: 'expected a count of trap ports (5..64) or a comma-separated list of TCP ports',
  audit_by: 'expected an operator name of 1-64 letters, digits, ".", "_", "@", "+" or "-"',
};

/** `firewall=` with BEFW's meaning: nft (and nftc7, with a warning) is nftables, anything else iptables. */
function firewallChoice(value: string | undefined, file: string, line: number | null): FirewallChoice {
  if (value === undefined) return { backend: 'iptables', why: 'default (no firewall= in the config)', warning: null };
  if (value.includes('/'))
    throw new ConfigError(
      file,
      line,
      'firewall',
      `"${printable(value)}" is a path: firewall= names the firewall backend as in BEFW (nft, nftc7 or iptables); the base ruleset file moved to its own key, base_rules=${printable(value)}`,
    );
  if (value === 'nft') return { backend: 'nft', why: 'firewall=nft', warning: null };
  if (value === 'nftc7')
    return {
      backend: 'nft',
      why: 'firewall=nftc7',
      warning: "firewall=nftc7 (BEFW's provider for CentOS 7's nftables 0.8) runs as firewall=nft: table inet befw, the same rules",
    };
  if (value === 'iptables' || value === '') return { backend: 'iptables', why: `firewall=${value}`, warning: null };
  return {
    backend: 'iptables',
    why: `firewall=${printable(value)}`,
    warning: `firewall=${printable(value)} is neither nft nor nftc7: iptables, as BEFW read it`,
  };
}

function explain(e: ErrorObject, key: string): string {
  if (e.keyword === 'additionalProperties') {
    if (key === 'fail') return "BEFW's marker of a config nobody has edited yet: edit the file, then remove this line";
    const near = closest(key, Object.keys(SCHEMA.properties));
    return near === null ? 'unknown key' : `unknown key; did you mean ${near}?`;
  }
  if (e.keyword === 'enum') return `expected one of ${(e.params as { allowedValues: string[] }).allowedValues.join(', ')}`;
  if (key.startsWith('set.') && key !== `set.${RULES_ALLOW}`)
    return 'expected [PRIORITY;]TARGET: an integer priority and ACCEPT, DROP, REJECT, NOOP, LOG, NFLOG, RETURN or a user chain (1-28 of [A-Za-z0-9_-])';
  if (key === `set.${RULES_ALLOW}`) return 'expected networks separated by ";"';
  if (HINTS[key] !== undefined) return HINTS[key];
  if (SCHEMA.properties[key as keyof typeof SCHEMA.properties] === PATH) return 'expected an absolute path';
  if (SCHEMA.properties[key as keyof typeof SCHEMA.properties] === FILE)
    return "expected a path (a relative one is read from the config file's directory)";
  return 'expected a name of letters, digits, ".", "_" or "-"';
}

const TARGET_WORDS = ['ACCEPT', 'DROP', 'REJECT', 'NOOP', 'LOG', 'NFLOG', 'RETURN'] as const;
/** Chains a static set may not jump to: its own (a loop) and the built-in ones (iptables refuses). */
const NOT_A_USER_CHAIN = ['BEFW', 'INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING'];

/** A `set.NAME` target: one of BEFW's words, else a user chain (befw/fwiptables.go:220-223 writes it after -j). */
function parseTarget(word: string, file: string, line: number | null, key: string): Target {
  if ((TARGET_WORDS as readonly string[]).includes(word)) return word as Target;
  const upper = word.toUpperCase();
  if ((TARGET_WORDS as readonly string[]).includes(upper))
    throw new ConfigError(
      file,
      line,
      key,
      `target "${word}": targets are upper case (${upper}); a user chain of that name would be too easy to mistake for it`,
    );
  if (NOT_A_USER_CHAIN.includes(upper))
    throw new ConfigError(
      file,
      line,
      key,
      `target "${word}": a static set may not jump to ${upper === 'BEFW' ? 'the BEFW chain itself (a loop)' : `the built-in chain ${upper}`}`,
    );
  return `chain:${word}`;
}

/** Problems listed in one ConfigError at most; the rest are counted. */
const MAX_PROBLEMS = 20;

/**
 * Reads the whole file before giving up: every problem (a malformed line, an unknown key with the
 * closest known one, a bad value, keys that conflict) is collected and thrown as one ConfigError,
 * ordered by line, so one run shows everything to fix.
 */
export function parseConfig(text: string, file: string): Config {
  const problems: ConfigProblem[] = [];
  const problem = (line: number | null, key: string | null, reason: string): void => {
    problems.push({ file, line, key, reason });
  };
  // One check: a ConfigError it throws is noted and `fallback` stands in, so the checks after it still run.
  const attempt = <T>(fn: () => T, fallback: T): T => {
    try {
      return fn();
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      problems.push(...err.problems);
      return fallback;
    }
  };
  // No prototype: `__proto__=x` must become a key the schema rejects as unknown, not a silent
  // no-op assignment to the object's prototype.
  const fields = Object.create(null) as Record<string, string>;
  const lineOf = new Map<string, number>();
  text.split('\n').forEach((rawLine, i) => {
    const n = i + 1;
    const line = rawLine.replace(/\r$/, '').trim();
    if (line === '' || line.startsWith('#')) return;
    const eq = line.indexOf('=');
    if (eq <= 0) return problem(n, null, `expected key=value, found "${printable(line)}"`);
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim();
    if (lineOf.has(key)) return problem(n, printable(key), `duplicate key (first set on line ${lineOf.get(key)})`);
    fields[key] = value;
    lineOf.set(key, n);
  });

  const validate = validator();
  if (!validate(fields)) {
    const errors = validate.errors ?? [];
    if (errors.length === 0) problem(null, null, 'invalid'); // ajv always says why
    // One problem per key (a value can fail more than one rule); the key is then left out, so
    // the checks below see only values that passed.
    const reported = new Set<string>();
    for (const e of errors) {
      const key =
        e.keyword === 'additionalProperties'
          ? (e.params as { additionalProperty: string }).additionalProperty
          : e.instancePath.replace(/^\//, '').replaceAll('~1', '/').replaceAll('~0', '~');
      if (reported.has(key)) continue;
      reported.add(key);
      problem(lineOf.get(key) ?? null, printable(key), explain(e, key));
      delete fields[key];
    }
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
  const setWarnings: string[] = [];
  let managementNets: Net[] = [];
  for (const [key, value] of Object.entries(raw)) {
    if (!key.startsWith('set.')) continue;
    const name = key.slice(4);
    if (name === RULES_ALLOW) {
      managementNets = attempt(() => netList(key, value), []);
      continue;
    }
    if (BUILTIN_SETS.some((b) => b.name === name)) {
      problem(at(key), key, `${name} is built in (priority 2, REJECT) and cannot be redefined`);
      continue;
    }
    if (!SET_NAME.test(name) || name.length > CUSTOM_SET_NAME_MAX || name.endsWith('_v6')) {
      problem(at(key), key, `set name must be 1-${CUSTOM_SET_NAME_MAX} of [a-z0-9._-] and not end in _v6`);
      continue;
    }
    const parts = value.split(';');
    const target = attempt<Target>(() => parseTarget(parts[parts.length - 1] ?? '', file, at(key), key), 'NOOP');
    // BEFW gave sets without a priority the next number after the built-ins (befw/config.go:124-133).
    const priority = parts.length === 2 ? Number(parts[0]) : 3 + customSets.length;
    if (priority < 3)
      setWarnings.push(
        `${key}=${printable(value)}: priority ${priority} comes after rules_allow (1) and rules_deny (2) in befw; BEFW inserted it at position ${priority} of its chain (${priority < 1 ? 'which iptables-restore refuses' : 'ahead of the built-in sets'})`,
      );
    customSets.push({ name, priority, target });
  }
  // Relative paths as BEFW's demo writes them (services=services): next to the config file.
  const fileOf = (value: string | undefined): string | null =>
    value === undefined ? null : isAbsolute(value) ? value : join(dirname(file), value);
  const nids = raw.nids !== undefined && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw.nids);
  let nidsPorts: TrapSpec = DEFAULT_TRAP_SPEC;
  if (raw.nids_ports !== undefined) {
    const t = parseTrapSpec(raw.nids_ports);
    if (t.ok) nidsPorts = t.spec;
    else problem(at('nids_ports'), 'nids_ports', t.error);
  }
  if (raw.resync_interval !== undefined && raw.consulwatch_timeout_sec !== undefined) {
    const later = (at('resync_interval') ?? 0) > (at('consulwatch_timeout_sec') ?? 0) ? 'resync_interval' : 'consulwatch_timeout_sec';
    problem(at(later), later, 'set resync_interval or consulwatch_timeout_sec (its BEFW name), not both');
  }
  if (raw.token !== undefined && raw.token_file !== undefined) {
    problem(at('token_file'), 'token_file', 'set token or token_file, not both');
  }

  const address = raw.address ?? '127.0.0.1:8500';
  const m = /^(https?:\/\/)?([^:/]+)(?::([0-9]+))?\/?$/.exec(address);
  const port = Number(m?.[3] ?? '8500');
  if (m === null || port < 1 || port > 65535) problem(at('address'), 'address', HINTS.address ?? '');

  const firewall = attempt(() => firewallChoice(raw.firewall, file, at('firewall')), firewallChoice(undefined, file, null));
  if (firewall.backend === 'nft' && raw.base_rules !== undefined)
    problem(
      at('base_rules'),
      'base_rules',
      `base_rules= is an iptables-restore base ruleset and ${firewall.why} runs nftables: the agent manages only table inet befw there; keep the base ruleset in nftables' own configuration (/etc/nftables.conf)`,
    );

  if (firewall.backend === 'nft')
    for (const s of customSets) {
      const chain = userChainOf(s.target);
      if (chain !== null)
        problem(
          at(`set.${s.name}`),
          `set.${s.name}`,
          `target ${chain} is a user chain and ${firewall.why} runs nftables: table inet befw is the agent's own and holds no chain ${chain}; use ACCEPT, DROP, REJECT, LOG, NFLOG, RETURN or NOOP, or firewall=iptables`,
        );
    }

  let metrics: Config['metrics'] = null;
  if (raw.metrics !== undefined) {
    const colon = raw.metrics.lastIndexOf(':');
    const port = Number(raw.metrics.slice(colon + 1));
    if (port < 1 || port > 65535) problem(at('metrics'), 'metrics', HINTS.metrics ?? '');
    metrics = { host: raw.metrics.slice(0, colon).replace(/^\[|\]$/g, ''), port };
  }
  const protect = raw.protect === undefined ? [] : attempt(() => netList('protect', raw.protect ?? ''), []);

  if (problems.length > 0) {
    // By line; problems without a line (the file as a whole) last. sort() is stable. A hostile
    // or binary file could have a problem per line: the first MAX_PROBLEMS say enough.
    const sorted = [...problems].sort((a, b) => (a.line ?? Infinity) - (b.line ?? Infinity));
    const shown = sorted.slice(0, MAX_PROBLEMS);
    if (sorted.length > MAX_PROBLEMS)
      shown.push({ file, line: null, key: null, reason: `and ${sorted.length - MAX_PROBLEMS} more problems` });
    throw ConfigError.of(shown);
  }

  return {
    file,
    socketPath: fileOf(raw.socket) ?? DEFAULT_SOCKET_PATH,
    metrics,
    consul: { host: m?.[2] ?? '127.0.0.1', port, secure: m?.[1] === 'https://' },
    dc: raw.dc ?? null,
    token: raw.token ?? null,
    tokenFile: fileOf(raw.token_file),
    nodeName: raw.nodename ?? null,
    nodeDc: raw.nodedc ?? null,
    servicesDir: fileOf(raw.services) ?? '/etc/befw.service.d',
    ipsetsDir: fileOf(raw.ipsets) ?? '/etc/befw.ipset.d',
    rulesTemplate: fileOf(raw.rules),
    baseRules: raw.base_rules ?? null,
    firewall,
    customSets,
    managementNets,
    protect,
    statePath: fileOf(raw.state) ?? '/var/lib/befw/state.bin',
    // BEFW's consulwatch_timeout_sec: the longest it went without a full refresh (befw/watcher.go:164).
    resyncInterval: Number(raw.resync_interval ?? raw.consulwatch_timeout_sec ?? '300'),
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
    audit: raw.audit ?? 'true',
    auditRequireReason: raw.audit_require_reason === 'true',
    auditBy: raw.audit_by ?? null,
    befwApi: raw.befw_api === 'off' ? null : (fileOf(raw.befw_api) ?? DEFAULT_BEFW_API_PATH),
    nids,
    nidsPorts,
    observeDefault: raw.observe_default !== undefined && ['1', 't', 'T', 'TRUE', 'true', 'True'].includes(raw.observe_default),
    warnings: [...setWarnings],
  };
}
