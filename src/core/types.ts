/**
 * Data shared by the pure core: what a snapshot of the world looks like going in, and what a
 * plan looks like coming out. Nothing here knows about Consul's client, files or processes.
 */
import type { Family, Net } from './address.js';
import type { ConsulPeers } from './protect.js';

export type Scope = 'world' | 'dc' | 'node';
export type Proto = 'tcp' | 'udp';
/** `observe`: as `default`, and non-clients' packets are logged (rate-limited) for `befw observed` (observe.ts). */
export type Mode = 'default' | 'enforcing' | 'observe';
/**
 * What a static set's rule does to its members (`set.NAME=PRIORITY;TARGET`). BEFW passes the word
 * straight to `-j` (befw/config.go:125-141, befw/fwiptables.go:210-224): the verdicts, the
 * non-terminating LOG and NFLOG, RETURN (leave BEFW's chain), NOOP (no rule at all) or a user chain,
 * written here as `chain:NAME`.
 */
export type Target = 'ACCEPT' | 'DROP' | 'REJECT' | 'NOOP' | 'LOG' | 'NFLOG' | 'RETURN' | UserChainTarget;
export type UserChainTarget = `chain:${string}`;

/** The user chain a target jumps to, or null for the fixed targets. */
export function userChainOf(t: Target): string | null {
  return t.startsWith('chain:') ? t.slice('chain:'.length) : null;
}

/** A LOG rule's prefix, `befw NAME ` cut to the 29 characters iptables' --log-prefix holds. */
export function logPrefix(set: string): string {
  return `${`befw ${set}`.slice(0, 28)} `;
}

/** A target as BEFW's config writes it (a user chain by its bare name). */
export function targetText(t: Target): string {
  return userChainOf(t) ?? t;
}

export interface NodeIdentity {
  /** Short, lower-case node name, as used in node-scope keys. */
  readonly name: string;
  /** The node's own Consul datacenter, as used in datacenter-scope keys. */
  readonly dc: string;
}

export interface KvPair {
  readonly key: string;
  readonly value: string | null;
}

/** A service as the local Consul agent reports it (`/v1/agent/services`). */
export interface AgentService {
  readonly id: string;
  readonly name: string;
  readonly port: number;
  readonly tags: readonly string[];
}

export interface PortRange {
  readonly proto: Proto;
  readonly from: number;
  readonly to: number;
}

/** A service declared by a JSON file in the services directory, already schema-checked. */
export interface FileService {
  readonly file: string;
  readonly name: string;
  readonly port: number;
  readonly protocol: Proto;
  readonly mode: Mode;
  readonly ports: readonly PortRange[];
}

export interface IpsetFile {
  readonly file: string;
  /** The set the file adds to: its base name without `.ipset`. */
  readonly set: string;
  readonly text: string;
}

export type Severity = 'error' | 'warning';

export interface Diagnostic {
  readonly severity: Severity;
  /** Stable machine-readable reason, e.g. `bad-expiry`, `bad-address`, `alias-cycle`. */
  readonly code: string;
  /** Where: a KV key, `file:line`, or a service name. Already made printable. */
  readonly subject: string;
  readonly message: string;
}

/** Everything the compiler needs from the outside world, read at one moment. */
export interface Snapshot {
  readonly node: NodeIdentity;
  readonly agentServices: readonly AgentService[];
  readonly fileServices: readonly FileService[];
  readonly kv: readonly KvPair[];
  readonly ipsetFiles: readonly IpsetFile[];
  /** Problems found while reading inputs (bad service files, unreadable ipset files). */
  readonly inputDiagnostics: readonly Diagnostic[];
  /** Consul's peers as the local agent reports them; absent in a state.bin from before protection. */
  readonly consulPeers?: ConsulPeers;
  /** Trap ports (`nids=true`) the agent picked (trap.ts); absent in a state.bin from before trap ports. */
  readonly trapPorts?: readonly number[];
}

export interface StaticSetConfig {
  readonly name: string;
  readonly priority: number;
  readonly target: Target;
}

export interface CompileOptions {
  /** Custom sets from `set.NAME=PRIORITY;TARGET`; rules_allow and rules_deny are built in. */
  readonly customSets: readonly StaticSetConfig[];
  /** Management networks (`set.rules_allow=`): permanent members of rules_allow. */
  readonly managementNets: readonly Net[];
  /** `protect=`: networks no deny may touch (besides loopback, management and Consul peers). */
  readonly protect?: readonly Net[];
  /** `.ipset` files: a set of their own named `<name>.ipset` (BEFW, default), or members of `<name>`. */
  readonly ipsetFiles?: 'befw' | 'members';
  /** How service sets are named (services.ts SetNaming); default name-port. */
  readonly setNaming?: 'name-port' | 'id-first-tag';
  /** `nids=true`: log the snapshot's trap ports (trap.ts). */
  readonly nids?: boolean;
  /** `observe_default=true`: default-mode services log non-clients as mode observe does (BEFW's NFLOG 402 line). */
  readonly observeDefault?: boolean;
}

export type SetFamily = 'inet' | 'inet6';

/**
 * One family's half of a logical set, as the plan wants it enforced. Backend-neutral: the backend
 * renders it (ipset or nftables), names it in the kernel and splits what its sets cannot hold.
 */
export interface PlanSet {
  /** Unique in the plan: the logical name, `<logical>_v6` for the IPv6 half (see planSets.ts). */
  readonly name: string;
  readonly family: SetFamily;
  /** Canonical CIDRs, sorted (code-unit order), unique; networks may overlap, a /0 stays /0. */
  readonly members: readonly string[];
  /** Room the set is sized for (ipset's maxelem; nftables sets are unbounded and ignore it). */
  readonly maxelem: number;
  /**
   * The members that leave at a set time: a subset of `members` in the same order, and at the
   * same index the Unix second each leaves (the kernel drops it then, agent or no agent, where
   * the backend can). Absent when no member expires.
   */
  readonly expiring?: { readonly members: readonly string[]; readonly at: readonly number[] };
}

export type ChainRule =
  /** Protected path: everything on the loopback interface. */
  | { readonly kind: 'loopback' }
  /** Protected path: Consul's own traffic with its peers, on Consul's ports only. Sets are logical names. */
  | { readonly kind: 'peers'; readonly set: string; readonly proto: Proto; readonly ports: readonly number[] }
  | { readonly kind: 'static'; readonly set: string; readonly target: Exclude<Target, 'NOOP'> }
  /** Trap ports (nids): TCP packets to them are logged with TRAP_LOG_PREFIX, rate-limited; nothing is blocked. */
  | { readonly kind: 'trap'; readonly ports: readonly number[] }
  | {
      readonly kind: 'service';
      readonly service: string;
      readonly set: string;
      readonly proto: Proto;
      /** `8080` or `30000:30100`, as iptables' --dport takes it. */
      readonly port: string;
      readonly mode: Mode;
    };

/** An enforced member with where it came from, for `befw show` and status. */
export interface EffectiveMember {
  readonly cidr: string;
  readonly family: Family;
  /** Unix ms when it leaves the kernel, or null for never. */
  readonly expiresAt: number | null;
  /** Human-readable origins: `world`, `dc`, `node`, `alias $x$`, `file f.ipset`, `config`. */
  readonly via: readonly string[];
  /** A deny member with no effect: the allow network (rules_allow, management) that comes first. */
  readonly shadowedBy?: string;
}

export interface SetView {
  /** Logical name as written in Consul keys (`web_tcp_8080`, `rules_allow`). */
  readonly logical: string;
  /** Not set by the compiler: kernel names are the backend's (to be dropped from the protected views too). */
  readonly kernel?: string;
  readonly kind: 'service' | 'static' | 'protected';
  readonly members: readonly EffectiveMember[];
}

export interface ServiceView {
  readonly name: string;
  readonly set: string;
  readonly mode: Mode;
  readonly ports: readonly PortRange[];
  readonly origins: readonly string[];
}

export interface Plan {
  readonly sets: readonly PlanSet[];
  readonly rules: readonly ChainRule[];
  /** Hash of sets and rules: equal fingerprints mean the kernel would not change. */
  readonly fingerprint: string;
  /** Unix ms of the earliest expiry among enforced members, or null. */
  readonly nextExpiry: number | null;
  readonly services: readonly ServiceView[];
  readonly setViews: readonly SetView[];
  readonly diagnostics: readonly Diagnostic[];
}
