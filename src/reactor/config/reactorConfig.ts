/**
 * The syslog reactor's one JSON config file, shared by `befw syslog` (the parser), `befw queue`
 * and `befw responder`. Validated in two steps: the JSON schema (reactorSchema.ts) for shape,
 * types and ranges, then here what a schema cannot say (addresses parse, regular expressions compile and carry their
 * subject group, actions name configured devices). Every error names the file and the JSON path
 * (`/parser/listeners/0/port`), and none falls back to a silent default.
 */
import { readFile } from 'node:fs/promises';
import { ConfigError } from '../../config/config.js';
import { assertNever } from '../../core/assertNever.js';
import { parseNet, printable } from '../../core/address.js';
import { type QueueAddress, parseQueueAddress } from '../queue/address.js';
import { NetSet, canonicalIp } from '../../core/netMatch.js';
import type { ThresholdRule } from '../syslog/thresholds.js';
import { PORT_SCAN_THRESHOLD } from '../syslog/portScan.js';
import { GRANTING_EVENTS } from '../syslog/leaseTriggers.js';
import { OBSERVED_TTL_SEC } from '../../core/observe.js';
import { type ActionKind, type RawAction, type RawParser, type RawReactorConfig, type RawResponder, checkShape } from './reactorSchema.js';
import {
  BUILTIN_TRIGGERS,
  DEFAULT_BUILTIN_GROUPS,
  type SubjectKind,
  type Trigger,
  type TriggerSpec,
  TriggerSet,
  compileTrigger,
} from '../syslog/triggers.js';

export const DEFAULT_REACTOR_CONFIG = '/etc/befw/reactor.json';

export type LogLevel = NonNullable<RawReactorConfig['logLevel']>;

export interface ListenerConfig {
  readonly protocol: RawParser['listeners'][number]['protocol'];
  readonly address: string;
  readonly port: number;
  readonly proxyProtocol: boolean;
  /** `tcp:0.0.0.0:5140`, for logs and counters. */
  readonly name: string;
}

/** What a device (or a group of them, by address) may do with the lines it sends. */
export interface DevicePolicy {
  readonly name: string;
  /** When set, the HOSTNAME of every line must be one of these (lower-case); a line without one is refused. */
  readonly hostnames: ReadonlySet<string> | null;
  /** Action types that events seen over UDP (spoofable) may trigger; none by default. */
  readonly udpActions: readonly string[];
  /**
   * The events this device's lines may produce, or null (not listed): every event but those that
   * grant access (GRANTING_EVENTS), which come only from a device that lists them. Absent: null.
   */
  readonly events?: ReadonlySet<string> | null;
}

/**
 * The devices whose logs are read: groups of networks, each with its policy. An address belongs
 * to the group with the longest matching prefix (a /32 inside a /24 group is its own device).
 */
export class DeviceDirectory {
  private readonly entries: readonly { readonly nets: NetSet; readonly policy: DevicePolicy }[];
  private readonly memo = new Map<string, DevicePolicy | null>();
  /** Every network of every group. */
  readonly nets: NetSet;

  constructor(groups: readonly { readonly nets: NetSet; readonly policy: DevicePolicy }[]) {
    this.entries = groups;
    this.nets = new NetSet(groups.flatMap((g) => g.nets.cidrs));
  }

  get size(): number {
    return this.entries.length;
  }

  lookup(address: string): DevicePolicy | null {
    const hit = this.memo.get(address);
    if (hit !== undefined) return hit;
    let best: DevicePolicy | null = null;
    let bestPrefix = -1;
    for (const e of this.entries) {
      const cidr = e.nets.find(address);
      if (cidr === null) continue;
      const prefix = Number(cidr.slice(cidr.indexOf('/') + 1));
      if (prefix > bestPrefix) {
        best = e.policy;
        bestPrefix = prefix;
      }
    }
    if (this.memo.size >= 65536) this.memo.clear();
    this.memo.set(address, best);
    return best;
  }
}

export interface ParserConfig {
  readonly listeners: readonly ListenerConfig[];
  readonly trustedProxies: NetSet;
  readonly devices: DeviceDirectory;
  readonly maxMessageBytes: number;
  readonly maxLineBytes: number;
  readonly maxConnections: number;
  readonly maxConnectionsPerDevice: number;
  /** "message repeated N times" counts at most this many occurrences. */
  readonly maxRepeat: number;
  readonly idleTimeoutMs: number;
  readonly proxyHeaderTimeoutMs: number;
  readonly maxTracked: number;
  readonly maxPendingJobs: number;
  readonly triggers: TriggerSet;
  readonly thresholds: ReadonlyMap<string, ThresholdRule>;
  readonly dedupMs: number;
  readonly statsIntervalMs: number;
}

export interface QueueConfig {
  readonly servers: readonly QueueAddress[];
  readonly tubePrefix: string;
  readonly ttrSec: number;
  readonly maxAttempts: number;
  readonly retryDelaySec: number;
  readonly retryDelayMaxSec: number;
  readonly connectTimeoutMs: number;
  /** Keys that sign and verify jobs (mode 0600, shared by parsers and responders); null: not configured. */
  readonly hmacKeyFile: string | null;
}

export type BanScope = NonNullable<Extract<RawAction, { type: 'ban' }>['scope']>;

export interface BanAction {
  readonly type: 'ban';
  readonly set: string;
  readonly scope: BanScope;
  /** For scope dc/node; null: the local Consul agent's datacenter. */
  readonly dc: string | null;
  readonly node: string | null;
  readonly bantimeSec: number;
  readonly factor: number;
  readonly maxBantimeSec: number;
  /** A previous ban older than this no longer makes an address a repeat offender. */
  readonly forgetAfterSec: number;
  /** Width of the ban: 32 / 128 (the attacker's address alone) unless configured wider. */
  readonly prefixV4: number;
  readonly prefixV6: number;
}

export type DeviceTarget =
  { readonly kind: 'source' } | { readonly kind: 'all' } | { readonly kind: 'named'; readonly names: readonly string[] };

export interface VyosAddressGroupAction {
  readonly type: 'vyos-address-group';
  readonly devices: DeviceTarget;
  readonly group: string;
  readonly ipv6Group: string;
  readonly save: boolean;
  /** How long an entry stays when no ban ran before it in the same job (its expiry is the ban's otherwise). */
  readonly bantimeSec: number;
}

export interface VyosDisableInterfaceAction {
  readonly type: 'vyos-disable-interface';
  readonly save: boolean;
}

/** Users from leases (responder/userLease.ts): joins RADIUS logins and DHCP leases into `$user.NAME$`. */
export interface UserLeaseAction {
  readonly type: 'user-lease';
  /** Lease length for DHCP lines that carry none (dnsmasq): the dhcp-range's lease time. */
  readonly leaseSec: number;
  /** How long a RADIUS login binds its user to the MAC (and a framed address lasts without a Disconnect). */
  readonly loginSec: number;
  /** Upper bound for a lease time a line states (Kea, dhcpd). */
  readonly maxLeaseSec: number;
  /** The DHCP pools and framed ranges: an address outside them is refused, never granted. */
  readonly networks: NetSet;
}

/** Observe mode (responder/observeAction.ts): who tried a service in mode observe, kept for ttlSec after last seen. */
export interface ObserveAction {
  readonly type: 'observe';
  readonly ttlSec: number;
}

/** One configured action, defaults filled in; its `type` is a responder action kind (responder/registry.ts). */
export type ActionConfig = BanAction | VyosAddressGroupAction | VyosDisableInterfaceAction | UserLeaseAction | ObserveAction;
export type ActionType = ActionConfig['type'];

export interface DeviceConfig {
  readonly name: string;
  readonly url: URL;
  readonly keyFile: string;
  readonly caFile: string | null;
  /** Addresses the device sends syslog from: how a job's device is matched to this entry. */
  readonly addresses: NetSet;
  readonly timeoutMs: number;
  /** Interfaces vyos-disable-interface may disable on this device (none by default). */
  readonly interfaces: readonly string[];
}

export interface ResponderConfig {
  readonly consul: {
    readonly host: string;
    readonly port: number;
    readonly secure: boolean;
    readonly tokenFile: string | null;
    readonly dc: string | null;
    readonly timeoutMs: number;
  };
  /** Bans (and address-group entries) a responder may make per minute before it stops acting and buries. */
  readonly banBudgetPerMinute: number;
  readonly protectedListRefreshMs: number;
  readonly vyosSweepMs: number;
  readonly stateKvPrefix: string;
  readonly concurrency: number;
  readonly actions: ReadonlyMap<string, readonly ActionConfig[]>;
  readonly devices: ReadonlyMap<string, DeviceConfig>;
}

export interface ReactorConfig {
  readonly file: string;
  readonly logLevel: LogLevel;
  /** Networks no reaction may target: `protect`, plus the deprecated `ignore` and `responder.managementNets`. */
  readonly protect: NetSet;
  readonly queue: QueueConfig;
  readonly parser: ParserConfig | null;
  readonly responder: ResponderConfig | null;
  /** Things that work but are probably not meant (deprecated keys, a ban shorter than dedupSec). */
  readonly warnings: readonly string[];
}

const DAY = 86400;

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A device's `events`: each one some trigger produces (a typo would silently drop its lines). */
function deviceEvents(file: string, i: number, list: readonly string[] | undefined, triggers: TriggerSet): ReadonlySet<string> | null {
  if (list === undefined) return null;
  list.forEach((event, j) => {
    if (!triggers.events.includes(event))
      throw new ConfigError(
        file,
        null,
        `/parser/devices/${i}/events/${j}`,
        `no trigger produces event "${event}" (events: ${triggers.events.join(', ') || 'none'})`,
      );
  });
  return new Set(list);
}

function nets(file: string, path: string, list: readonly string[] | undefined): NetSet {
  const texts = list ?? [];
  return new NetSet(
    texts.map((t, i) => {
      const r = parseNet(t);
      if (!r.ok) throw new ConfigError(file, null, `${path}/${i}`, `"${printable(t)}": ${r.error}`);
      return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
    }),
  );
}

const DEFAULT_THRESHOLDS: Readonly<Record<string, ThresholdRule>> = {
  'ssh-auth-failure': { maxRetry: 5, findTimeMs: 600_000 },
  'iface-down': { maxRetry: 1, findTimeMs: 60_000 },
  'port-scan': PORT_SCAN_THRESHOLD,
};

/**
 * Actions of the built-in events that have them by default (a responder config that names the
 * event replaces them; a parser config whose builtinTriggers leaves the trigger out makes no such
 * events): a port scan is banned fleet-wide (protected addresses never), observed non-clients are
 * recorded. A scan's source may be forged (one SYN per trap port), so its default ban is short
 * and does not grow on repeats (factor 1): a forged victim is cut off for an hour, not for days.
 */
export const DEFAULT_EVENT_ACTIONS: Readonly<Record<string, readonly RawAction[]>> = {
  'port-scan': [{ type: 'ban', set: 'rules_deny', scope: 'world', bantimeSec: 3600, factor: 1 }],
  observed: [{ type: 'observe' }],
};
const FALLBACK_THRESHOLD: ThresholdRule = { maxRetry: 1, findTimeMs: 60_000 };

export function thresholdFor(parser: ParserConfig, event: string): ThresholdRule {
  return parser.thresholds.get(event) ?? FALLBACK_THRESHOLD;
}

function parseParser(file: string, raw: RawParser): ParserConfig {
  const limits: NonNullable<RawParser['limits']> = raw.limits ?? {};
  const seen = new Set<string>();
  const listeners = raw.listeners.map((l, i): ListenerConfig => {
    const protocol = l.protocol;
    const address = l.address ?? '0.0.0.0';
    const ip = parseNet(address);
    if (!ip.ok || address.includes('/'))
      throw new ConfigError(file, null, `/parser/listeners/${i}/address`, `"${printable(address)}" is not an IP address`);
    const port = l.port;
    const name = `${protocol}:${address.includes(':') ? `[${address}]` : address}:${port}`;
    if (seen.has(name)) throw new ConfigError(file, null, `/parser/listeners/${i}`, `${name} is listed twice`);
    seen.add(name);
    return { protocol, address, port, proxyProtocol: l.proxyProtocol === true, name };
  });
  const trustedProxies = nets(file, '/parser/trustedProxies', raw.trustedProxies);
  listeners.forEach((l, i) => {
    if (l.proxyProtocol && trustedProxies.size === 0) {
      throw new ConfigError(
        file,
        null,
        `/parser/listeners/${i}/proxyProtocol`,
        'PROXY protocol needs /parser/trustedProxies: otherwise anyone could claim to be any device',
      );
    }
  });
  const builtins = raw.builtinTriggers ?? DEFAULT_BUILTIN_GROUPS;
  const triggers: Trigger[] = [];
  for (const g of builtins) for (const spec of BUILTIN_TRIGGERS[g] ?? []) triggers.push(compileTrigger(spec));
  const names = new Set(triggers.map((t) => t.name));
  (raw.triggers ?? []).forEach((t, i) => {
    const subject = t.subject ?? 'attacker';
    const subjectKind = t.subjectKind ?? (subject === 'attacker' ? 'ip' : 'name');
    const spec: TriggerSpec = {
      name: t.name,
      event: t.event,
      programs: t.programs ?? [],
      pattern: t.pattern,
      subject,
      subjectKind,
      perDevice: t.perDevice ?? subjectKind === 'name',
    };
    if (names.has(spec.name))
      throw new ConfigError(
        file,
        null,
        `/parser/triggers/${i}/name`,
        `trigger "${spec.name}" is defined twice (built-in names: ${[...names].join(', ')})`,
      );
    names.add(spec.name);
    try {
      triggers.push(compileTrigger(spec));
    } catch (err) {
      throw new ConfigError(file, null, `/parser/triggers/${i}/pattern`, messageOf(err));
    }
  });
  const thresholds = new Map<string, ThresholdRule>(Object.entries(DEFAULT_THRESHOLDS));
  for (const [event, t] of Object.entries(raw.thresholds ?? {})) {
    thresholds.set(event, { maxRetry: t.maxRetry, findTimeMs: t.findTimeSec * 1000 });
  }
  const triggerSet = new TriggerSet(triggers);
  for (const event of Object.keys(raw.thresholds ?? {})) {
    if (!triggerSet.events.includes(event))
      throw new ConfigError(
        file,
        null,
        `/parser/thresholds/${event}`,
        `no trigger produces event "${event}" (events: ${triggerSet.events.join(', ') || 'none'})`,
      );
  }
  const groups: { nets: NetSet; policy: DevicePolicy }[] = [];
  if (raw.allowedDevices !== undefined && raw.allowedDevices.length > 0)
    groups.push({
      nets: nets(file, '/parser/allowedDevices', raw.allowedDevices),
      policy: { name: 'allowed', hostnames: null, udpActions: [], events: null },
    });
  const deviceNames = new Set<string>();
  (raw.devices ?? []).forEach((d, i) => {
    if (deviceNames.has(d.name)) throw new ConfigError(file, null, `/parser/devices/${i}/name`, `device "${d.name}" is listed twice`);
    deviceNames.add(d.name);
    const udp = d.udpActions ?? [];
    if (udp.includes('vyos-disable-interface'))
      throw new ConfigError(
        file,
        null,
        `/parser/devices/${i}/udpActions`,
        'vyos-disable-interface cannot be triggered over UDP (anyone can forge a datagram): it needs TCP from the device or a trusted proxy',
      );
    groups.push({
      nets: nets(file, `/parser/devices/${i}/addresses`, d.addresses),
      policy: {
        name: d.name,
        hostnames: d.hostnames === undefined ? null : new Set(d.hostnames.map((h) => h.toLowerCase())),
        udpActions: udp,
        events: deviceEvents(file, i, d.events, triggerSet),
      },
    });
  });
  if (groups.length === 0)
    throw new ConfigError(
      file,
      null,
      '/parser/devices',
      'no devices: list the devices whose logs may be read (parser.devices, or parser.allowedDevices); nothing is read from anyone until then',
    );
  const maxConnections = limits.maxConnections ?? 512;
  const maxConnectionsPerDevice = limits.maxConnectionsPerDevice ?? Math.min(16, maxConnections);
  if (maxConnectionsPerDevice > maxConnections)
    throw new ConfigError(file, null, '/parser/limits/maxConnectionsPerDevice', `must be at most maxConnections (${maxConnections})`);
  return {
    listeners,
    trustedProxies,
    devices: new DeviceDirectory(groups),
    maxMessageBytes: limits.maxMessageBytes ?? 8192,
    maxLineBytes: limits.maxLineBytes ?? 8192,
    maxConnections,
    maxConnectionsPerDevice,
    maxRepeat: limits.maxRepeat ?? 10,
    idleTimeoutMs: (limits.idleTimeoutSec ?? 600) * 1000,
    proxyHeaderTimeoutMs: (limits.proxyHeaderTimeoutSec ?? 5) * 1000,
    maxTracked: limits.maxTracked ?? 100_000,
    maxPendingJobs: limits.maxPendingJobs ?? 10_000,
    triggers: triggerSet,
    thresholds,
    dedupMs: (raw.dedupSec ?? 600) * 1000,
    statsIntervalMs: (raw.statsIntervalSec ?? 60) * 1000,
  };
}

function parseDeviceTarget(v: Extract<RawAction, { type: 'vyos-address-group' }>['devices']): DeviceTarget {
  if (v === 'source') return { kind: 'source' };
  if (v === 'all') return { kind: 'all' };
  return { kind: 'named', names: v };
}

/** What each action type acts on: an attacker's address, or an interface name. */
const ACTION_SUBJECT: Readonly<Record<ActionKind, SubjectKind>> = {
  ban: 'ip',
  'vyos-address-group': 'ip',
  'vyos-disable-interface': 'name',
  'user-lease': 'name',
  observe: 'ip',
};

function parseAction(file: string, where: string, a: RawAction, devices: ReadonlyMap<string, DeviceConfig>): ActionConfig {
  switch (a.type) {
    case 'ban': {
      const scope = a.scope ?? 'world';
      const set = a.set ?? 'rules_deny';
      if (set === 'rules_allow' || set.endsWith('_v6')) throw new ConfigError(file, null, `${where}/set`, `a ban cannot go into ${set}`);
      if (scope === 'node' && a.node === undefined) throw new ConfigError(file, null, `${where}/node`, 'scope "node" needs the node name');
      if (scope === 'world' && (a.dc !== undefined || a.node !== undefined))
        throw new ConfigError(file, null, where, 'dc and node only go with scope "dc" or "node"');
      if (scope === 'dc' && a.node !== undefined) throw new ConfigError(file, null, `${where}/node`, 'node only goes with scope "node"');
      const bantimeSec = a.bantimeSec ?? 3600;
      const maxBantimeSec = a.maxBantimeSec ?? Math.max(bantimeSec, 7 * DAY);
      if (maxBantimeSec < bantimeSec)
        throw new ConfigError(file, null, `${where}/maxBantimeSec`, `must be at least bantimeSec (${bantimeSec})`);
      return {
        type: 'ban',
        set,
        scope,
        dc: a.dc ?? null,
        node: a.node === undefined ? null : a.node.toLowerCase(),
        bantimeSec,
        factor: a.factor ?? 2,
        maxBantimeSec,
        forgetAfterSec: a.forgetAfterSec ?? 7 * DAY,
        prefixV4: a.prefixV4 ?? 32,
        prefixV6: a.prefixV6 ?? 128,
      };
    }
    case 'vyos-address-group': {
      const target = parseDeviceTarget(a.devices);
      if (target.kind === 'named') {
        target.names.forEach((n, j) => {
          if (!devices.has(n)) throw new ConfigError(file, null, `${where}/devices/${j}`, `no device "${n}" in /responder/devices`);
        });
      } else if (devices.size === 0) {
        throw new ConfigError(file, null, `${where}/devices`, 'no devices configured in /responder/devices');
      }
      return {
        type: 'vyos-address-group',
        devices: target,
        group: a.group,
        ipv6Group: a.ipv6Group,
        save: a.save ?? true,
        bantimeSec: a.bantimeSec ?? 3600,
      };
    }
    case 'vyos-disable-interface':
      if (devices.size === 0) throw new ConfigError(file, null, where, 'vyos-disable-interface needs devices in /responder/devices');
      return { type: 'vyos-disable-interface', save: a.save ?? true };
    case 'user-lease': {
      const leaseSec = a.leaseSec ?? 3600;
      const maxLeaseSec = a.maxLeaseSec ?? 7 * DAY;
      if (maxLeaseSec < leaseSec) throw new ConfigError(file, null, `${where}/maxLeaseSec`, `must be at least leaseSec (${leaseSec})`);
      return {
        type: 'user-lease',
        leaseSec,
        loginSec: a.loginSec ?? DAY,
        maxLeaseSec,
        networks: nets(file, `${where}/networks`, a.networks),
      };
    }
    case 'observe':
      return { type: 'observe', ttlSec: a.ttlSec ?? OBSERVED_TTL_SEC };
    default:
      return assertNever(a, 'action type');
  }
}

/**
 * DEFAULT_EVENT_ACTIONS for the events the config does not name: those its parser produces, or
 * all of them for a responder-only config (it cannot know which parsers feed it).
 */
function withDefaultActions(file: string, responder: ResponderConfig, parser: ParserConfig | null): ResponderConfig {
  const produced = parser === null ? null : new Set(parser.triggers.events);
  const actions = new Map(responder.actions);
  for (const [event, list] of Object.entries(DEFAULT_EVENT_ACTIONS)) {
    if (actions.has(event) || (produced !== null && !produced.has(event))) continue;
    actions.set(
      event,
      list.map((a, i) => parseAction(file, `(default actions of ${event})/${i}`, a, responder.devices)),
    );
  }
  return { ...responder, actions };
}

function parseResponder(file: string, raw: RawResponder): ResponderConfig {
  const c: NonNullable<RawResponder['consul']> = raw.consul ?? {};
  const address = c.address ?? '127.0.0.1:8500';
  const m = /^(https?:\/\/)?([^:/]+)(?::([0-9]+))?\/?$/.exec(address);
  const port = Number(m?.[3] ?? '8500');
  if (m === null || port < 1 || port > 65535)
    throw new ConfigError(file, null, '/responder/consul/address', 'expected host:port, e.g. 127.0.0.1:8500');

  const devices = new Map<string, DeviceConfig>();
  for (const [name, d] of Object.entries(raw.devices ?? {})) {
    let url: URL;
    try {
      url = new URL(d.url);
    } catch {
      throw new ConfigError(file, null, `/responder/devices/${name}/url`, 'not a valid URL');
    }
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      throw new ConfigError(
        file,
        null,
        `/responder/devices/${name}/url`,
        'expected scheme://host[:port][/path] without credentials, query or fragment (the key goes in keyFile)',
      );
    }
    devices.set(name, {
      name,
      url,
      keyFile: d.keyFile,
      caFile: d.caFile ?? null,
      addresses: nets(file, `/responder/devices/${name}/addresses`, d.addresses),
      timeoutMs: (d.timeoutSec ?? 10) * 1000,
      interfaces: d.interfaces ?? [],
    });
  }

  const actions = new Map<string, ActionConfig[]>();
  for (const [event, list] of Object.entries(raw.actions)) {
    actions.set(
      event,
      list.map((a, i) => parseAction(file, `/responder/actions/${event}/${i}`, a, devices)),
    );
  }

  return {
    consul: {
      host: m[2] ?? '127.0.0.1',
      port,
      secure: m[1] === 'https://',
      tokenFile: c.tokenFile ?? null,
      dc: c.dc ?? null,
      timeoutMs: (c.timeoutSec ?? 10) * 1000,
    },
    banBudgetPerMinute: raw.banBudgetPerMinute ?? 60,
    protectedListRefreshMs: (raw.protectedListRefreshSec ?? 5) * 1000,
    vyosSweepMs: (raw.vyosSweepSec ?? 30) * 1000,
    stateKvPrefix: raw.stateKvPrefix ?? 'befw-reactor',
    concurrency: raw.concurrency ?? 1,
    actions,
    devices,
  };
}

export function parseReactorConfig(text: string, file: string): ReactorConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(file, null, null, `not valid JSON: ${messageOf(err)}`);
  }
  const shape = checkShape(raw);
  if (!shape.ok) throw new ConfigError(file, null, printable(shape.path, 200), shape.reason);
  const r = shape.config;
  const q = r.queue;
  const servers = q.servers.map((s, i) => {
    const a = parseQueueAddress(s);
    if (typeof a === 'string') throw new ConfigError(file, null, `/queue/servers/${i}`, `"${printable(s)}": ${a}`);
    return a;
  });
  if (new Set(servers.map((s) => s.text)).size !== servers.length)
    throw new ConfigError(file, null, '/queue/servers', 'a server is listed twice');
  const queue: QueueConfig = {
    servers,
    tubePrefix: q.tubePrefix ?? 'befw-',
    ttrSec: q.ttrSec ?? 60,
    maxAttempts: q.maxAttempts ?? 5,
    retryDelaySec: q.retryDelaySec ?? 2,
    retryDelayMaxSec: q.retryDelayMaxSec ?? 600,
    connectTimeoutMs: (q.connectTimeoutSec ?? 5) * 1000,
    hmacKeyFile: q.hmacKeyFile ?? null,
  };
  if (queue.retryDelayMaxSec < queue.retryDelaySec)
    throw new ConfigError(file, null, '/queue/retryDelayMaxSec', 'must be at least retryDelaySec');
  const parser = r.parser === undefined ? null : parseParser(file, r.parser);
  const responder = r.responder === undefined ? null : withDefaultActions(file, parseResponder(file, r.responder), parser);
  const warnings: string[] = [];
  if ((parser !== null || responder !== null) && queue.hmacKeyFile === null)
    throw new ConfigError(
      file,
      null,
      '/queue/hmacKeyFile',
      'is required: parsers sign every job and responders act only on signed ones (a file of mode 0600 holding a random key, shared by both)',
    );
  const protectTexts = [...(r.protect ?? [])];
  if (r.ignore !== undefined) {
    protectTexts.push(...r.ignore);
    warnings.push('/ignore is deprecated: its networks are added to /protect (rename the key)');
  }
  if (r.responder?.managementNets !== undefined) {
    protectTexts.push(...r.responder.managementNets);
    warnings.push(
      '/responder/managementNets is deprecated: its networks are added to /protect; the nodes publish their management networks in Consul (befw-protect/), which every responder reads',
    );
  }
  nets(file, '/ignore', r.ignore);
  nets(file, '/responder/managementNets', r.responder?.managementNets);
  const protect = nets(file, '/protect', protectTexts);
  if (parser !== null && responder !== null) {
    for (const [event, list] of responder.actions) {
      for (const a of list) {
        const bantime = a.type === 'ban' || a.type === 'vyos-address-group' ? a.bantimeSec : null;
        if (bantime !== null && bantime * 1000 < parser.dedupMs)
          warnings.push(
            `/responder/actions/${event}: a ${a.type} of ${bantime} s is shorter than /parser/dedupSec (${parser.dedupMs / 1000} s): an attacker back after the ban is not reported again until dedupSec has passed`,
          );
      }
    }
  }
  if (responder !== null) {
    for (const d of responder.devices.values()) {
      // The key travels in a form body: over plain HTTP only to a device on loopback.
      if (d.url.protocol === 'http:' && !['127.0.0.1', '[::1]', 'localhost'].includes(d.url.hostname)) {
        throw new ConfigError(
          file,
          null,
          `/responder/devices/${d.name}/url`,
          'the API key would cross the network in clear text: use https (http is only for a device API on loopback)',
        );
      }
    }
  }
  if (parser !== null && responder !== null) {
    const kinds = new Map(parser.triggers.triggers.map((t) => [t.event, t.subjectKind]));
    for (const [event, list] of responder.actions) {
      const kind = kinds.get(event);
      if (kind === undefined)
        throw new ConfigError(
          file,
          null,
          `/responder/actions/${event}`,
          `no trigger produces event "${event}" (events: ${[...kinds.keys()].join(', ') || 'none'})`,
        );
      list.forEach((a, i) => {
        if (a.type === 'user-lease' && !GRANTING_EVENTS.includes(event))
          throw new ConfigError(
            file,
            null,
            `/responder/actions/${event}/${i}`,
            `user-lease grants access: only for events ${GRANTING_EVENTS.join(', ')} (a device sends them only when its "events" lists them)`,
          );
        const needs = ACTION_SUBJECT[a.type];
        if (needs !== kind)
          throw new ConfigError(
            file,
            null,
            `/responder/actions/${event}/${i}`,
            `${a.type} needs events about ${needs === 'ip' ? 'an address' : 'an interface name'}, and "${event}" is about ${kind === 'ip' ? 'an address' : 'a name'}`,
          );
      });
    }
  }
  return {
    file,
    logLevel: r.logLevel ?? 'info',
    protect,
    queue,
    parser,
    responder,
    warnings,
  };
}

export async function loadReactorConfig(path: string): Promise<ReactorConfig> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, null, null, `cannot read: ${messageOf(err)}`);
  }
  return parseReactorConfig(text, path);
}

/**
 * What the config itself says no reaction may target, with why: the protect list, the trusted
 * proxies, the routers (the addresses they log from and their API addresses) and the queue
 * servers. The responder adds what Consul says (responder/protectedList.ts).
 */
export function configuredProtection(config: ReactorConfig): { readonly what: string; readonly nets: NetSet }[] {
  const out: { what: string; nets: NetSet }[] = [{ what: 'the protect list', nets: config.protect }];
  if (config.parser !== null) out.push({ what: 'a trusted proxy', nets: config.parser.trustedProxies });
  const hostNet = (host: string): string[] => {
    const ip = canonicalIp(host.replace(/^\[|\]$/g, ''));
    return ip === null ? [] : [ip.includes(':') ? `${ip}/128` : `${ip}/32`];
  };
  for (const d of config.responder?.devices.values() ?? []) {
    out.push({ what: `router ${d.name}`, nets: new NetSet([...d.addresses.cidrs, ...NetSet.parse(hostNet(d.url.hostname)).cidrs]) });
  }
  const queueHosts = config.queue.servers.flatMap((s) => (s.kind === 'tcp' ? hostNet(s.host) : []));
  out.push({ what: 'a queue server', nets: NetSet.parse(queueHosts) });
  return out;
}
