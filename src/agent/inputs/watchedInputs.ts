/**
 * The agent's live view of its inputs, fed by watchers instead of polls:
 *
 *   - KV: one blocking query per prefix that concerns this node (scopedKv.ts; which prefixes and
 *     why: core/watchScope.ts), started once the node's identity and services are known and
 *     changed with them, so a write wakes only the nodes it concerns; `kv_watch=tree` keeps one
 *     query on all of `befw/`.
 *   - Consul's peers: the local agent's members every 10 s, the protected paths' input.
 *   - services: a blocking query on the node's catalog entry tells when the node's services
 *     change (the agent's own list cannot block); the data is then read from the local agent,
 *     which stays the source of truth.
 *   - files: fs.watch on the services and ipsets directories marks them for a re-read.
 * Each source keeps its last good answer: when Consul is unreachable the agent keeps enforcing
 * what it last saw (expiry still honoured by the compiler), and never an empty list.
 */
import { type FSWatcher, watch } from 'node:fs';
import type { Config } from '../../config/config.js';
import { BlockingWatch, DEFAULT_WATCH_OPTIONS, type WatchOptions } from '../../consul/blockingWatch.js';
import type { ConsulApi } from '../../consul/client.js';
import type { ConsulPeers } from '../../core/protect.js';
import { type LocalDir, ipsetDir, serviceDir } from './localFiles.js';
import { BUILTIN_SETS } from '../../core/compile.js';
import { collectServices } from '../../core/services.js';
import type { WatchedSet } from '../../core/watchScope.js';
import { ScopedKv } from './scopedKv.js';
import type { AgentService, Diagnostic, FileService, IpsetFile, KvPair, NodeIdentity, Snapshot } from '../../core/types.js';
import type { Logger } from '../../log/logger.js';
import { shortNodeName } from '../../core/kvLayout.js';
import { mirrorsFile } from '../../core/services.js';

export class InputsNotReadyError extends Error {
  constructor(what: string) {
    super(`no answer yet for ${what}`);
    this.name = 'InputsNotReadyError';
  }
}

export type ChangeReason = 'kv' | 'services' | 'files' | 'peers';

/** For observers beside the loop: metrics, and the service registrar. */
export interface WatchHooks {
  onError?(watch: string): void;
  onKvAnswer?(lastContactMs: number | null): void;
  /** Every KV answer, and whether its data changed (an unchanged one only moved the index). */
  onKvPrefixAnswer?(changed: boolean): void;
  /** The node's services changed in the catalog, `local` ones included. */
  onNodeServicesChange?(): void;
}

export interface ConsulHealth {
  readonly reachable: boolean;
  readonly lastAnswerAt: number | null;
  readonly lastError: string | null;
  /** X-Consul-LastContact of the last KV answer (ms): how stale a stale read was. */
  readonly lastContactMs: number | null;
}

const IDENTITY_RETRY_MS = 2000;
/** How long a pass waits for newly watched prefixes to answer before it gives up (and keeps the last plan). */
const KV_READY_MS = 5000;

/** The sets whose KV entries concern this node: its services' and its static sets. */
export function watchedSets(agent: readonly AgentService[], files: readonly FileService[], config: Config): WatchedSet[] {
  const out: WatchedSet[] = collectServices(agent, files, config.setNaming).services.map((s) => ({ kind: '$service$', name: s.set }));
  for (const s of [...BUILTIN_SETS, ...config.customSets]) out.push({ kind: '$ipset$', name: s.name });
  return out;
}
/** Consul's members are read from the local agent (no server load): a new server is protected within this. */
export const PEERS_INTERVAL_MS = 10_000;
const DIR_RETRY_MS = 2000;

interface LocalFiles {
  services: FileService[];
  diagnostics: Diagnostic[];
  ipsets: IpsetFile[];
}

function sortedJson(services: readonly AgentService[]): string {
  return JSON.stringify([...services].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
}

export class WatchedInputs {
  private kv: KvPair[] | null = null;
  private services: AgentService[] | null = null;
  /** Bumped when the services are marked stale: a read that started before is not kept. */
  private servicesGeneration = 0;
  private servicesReading: { generation: number; promise: Promise<AgentService[]> } | null = null;
  private filesReading: { generation: number; promise: Promise<LocalFiles> } | null = null;
  private files: LocalFiles | null = null;
  private readonly serviceFiles: LocalDir<FileService>;
  private readonly ipsetFiles: LocalDir<IpsetFile>;
  /** Bumped by every change seen on disk: a read that started before it is not the latest. */
  private filesGeneration = 0;
  private settleTimer: NodeJS.Timeout | null = null;
  private node: NodeIdentity | null = null;
  /** The node's short name as Consul reports it, when that differs from the lower-case one. */
  private spellings: string[] = [];
  private peers: ConsulPeers | null = null;
  private lastIndexReset: number | null = null;
  private peersSeen = '';
  private peersTimer: NodeJS.Timeout | null = null;
  private peersFailing = false;
  private watches: BlockingWatch<unknown>[] = [];
  private readonly scoped: ScopedKv;
  /** The node's services as the catalog last listed them, to tell real changes from index moves. */
  private catalogSeen = '';
  /** The same without `local` services: only a change here can change the plan. */
  private planServicesSeen = '';
  private fsWatchers: FSWatcher[] = [];
  private readonly dirTimers = new Set<NodeJS.Timeout>();
  /** Directories that were missing: their appearance is a change. */
  private readonly missingDirs = new Set<string>();
  private stopped = false;
  private identityTimer: NodeJS.Timeout | null = null;
  private health: { reachable: boolean; lastAnswerAt: number | null; lastError: string | null; lastContactMs: number | null } = {
    reachable: false,
    lastAnswerAt: null,
    lastError: null,
    lastContactMs: null,
  };

  constructor(
    private readonly consul: ConsulApi,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly onChange: (reason: ChangeReason) => void,
    private readonly watchOptions: WatchOptions = DEFAULT_WATCH_OPTIONS,
    private readonly hooks: WatchHooks = {},
    private readonly peersIntervalMs = PEERS_INTERVAL_MS,
  ) {
    this.serviceFiles = serviceDir(config.servicesDir);
    this.ipsetFiles = ipsetDir(config.ipsetsDir);
    this.scoped = new ScopedKv({
      mode: config.kvWatch,
      fetch: (prefix, q) => this.consul.kvTreeBlocking(prefix, this.config.dc, q),
      options: watchOptions,
      onAnswer: ({ prefix, changed, lastContactMs }) => {
        this.answered();
        this.health.lastContactMs = lastContactMs;
        if (changed) this.hooks.onKvAnswer?.(lastContactMs);
        this.hooks.onKvPrefixAnswer?.(changed);
        if (changed) this.log.debug({ event: 'kv-changed', prefix, lastContactMs }, 'KV changed');
      },
      onChange: () => {
        this.kv = null;
        this.onChange('kv');
      },
      // One label for all KV watches: a label per prefix would grow with the node's sets.
      onError: (_prefix, err, meta) => this.failed('kv', err, meta),
      onFallback: (wanted, tree) =>
        tree
          ? this.log.warn(
              { event: 'kv-watch-fallback', prefixes: wanted },
              'too many KV prefixes for one node: watching the whole befw/ tree',
            )
          : this.log.info({ event: 'kv-watch-scoped', prefixes: wanted }, "watching only this node's KV prefixes again"),
      onIndexReset: (prefix, meta) => {
        this.lastIndexReset = Date.now();
        this.log.info(
          { event: 'index-reset', watch: `kv ${prefix}`, ...meta },
          'Consul index went backwards or below 1; restarting from it',
        );
      },
    });
  }

  /** KV prefixes watched now. */
  get kvPrefixes(): readonly string[] {
    return this.scoped.prefixes;
  }

  /** Keys in the last KV answers. */
  get kvSize(): number {
    return this.scoped.pairs()?.length ?? 0;
  }

  /** The node's name and datacenter, once the local agent has said them. */
  get identity(): NodeIdentity | null {
    return this.node;
  }

  /** Why the KV answers look suspect: the index went backwards within `windowMs`, or null. */
  suspect(windowMs: number): string | null {
    const at = this.lastIndexReset;
    if (at === null || Date.now() - at > windowMs) return null;
    return `the Consul KV index went backwards ${Math.round((Date.now() - at) / 1000)} s ago`;
  }

  get consulHealth(): ConsulHealth {
    return { ...this.health };
  }

  start(): void {
    // The whole tree needs no scope: it is watched from the start.
    if (this.config.kvWatch === 'tree') this.scoped.setScope({ name: '', dc: '' }, []);
    void this.startServicesWatch();
    this.watchDir(this.config.servicesDir);
    this.watchDir(this.config.ipsetsDir);
    void this.pollPeers();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.scoped.stop();
    if (this.identityTimer !== null) clearTimeout(this.identityTimer);
    for (const w of this.fsWatchers) w.close();
    for (const t of this.dirTimers) clearTimeout(t);
    if (this.settleTimer !== null) clearTimeout(this.settleTimer);
    if (this.peersTimer !== null) clearTimeout(this.peersTimer);
    await Promise.all(this.watches.map((w) => w.stop()));
  }

  /** Everything the compiler needs, from the last answers; re-reads files marked as changed. */
  async snapshot(): Promise<Snapshot> {
    if (this.node === null) throw new InputsNotReadyError('the agent identity');
    const node = this.node;
    // Use the values just read, not the fields again: a change that lands meanwhile resets a
    // field for the next pass (and announces itself), it must not fail this one.
    const [services, files] = await Promise.all([this.services ?? this.refreshServices(), this.files ?? this.refreshFiles()]);
    // The sets decide what KV to watch: a new service's prefixes are watched, and answered,
    // before this pass compiles.
    this.scoped.setScope(node, watchedSets(services, files.services, this.config), this.spellings);
    if (!(await this.scoped.whenReady(KV_READY_MS))) throw new InputsNotReadyError('the befw/ KV prefixes of this node');
    const kv = this.kv ?? this.scoped.pairs();
    if (kv === null) throw new InputsNotReadyError('the befw/ KV prefixes of this node');
    this.kv = kv;
    return {
      node,
      agentServices: services,
      fileServices: files.services,
      kv,
      ipsetFiles: files.ipsets,
      inputDiagnostics: files.diagnostics,
      // Unknown until the local agent first answers: the reconciler keeps the last known peers.
      ...(this.peers === null ? {} : { consulPeers: this.peers }),
    };
  }

  /** The service files as last read (read again once they changed): what the registrar registers. */
  async fileServices(): Promise<readonly FileService[]> {
    return (this.files ?? (await this.refreshFiles())).services;
  }

  /** Full resync: re-read what has no blocking query behind it (agent services, files). */
  invalidate(): void {
    this.services = null;
    this.servicesGeneration++;
    this.files = null;
  }

  /** A second, independent read of everything: each KV prefix beside its parked query, services and files again. */
  reread(): void {
    this.invalidate();
    void this.scoped.reread();
  }

  private answered(): void {
    if (!this.health.reachable) this.log.info({ event: 'consul-reachable' }, 'Consul answers');
    this.health = { ...this.health, reachable: true, lastAnswerAt: Date.now(), lastError: null };
  }

  private failed(watch: string, err: Error, meta: { attempt: number; retryInMs: number }): void {
    this.hooks.onError?.(watch);
    if (this.health.reachable || meta.attempt === 1) {
      this.log.warn(
        { event: 'watch-error', watch, err: err.message, attempt: meta.attempt, retryInMs: meta.retryInMs },
        'Consul read failed; keeping the last answer',
      );
    }
    this.health = { ...this.health, reachable: false, lastError: err.message };
  }

  /** Reads the agent's services; concurrent callers share one read of the same generation. */
  private refreshServices(): Promise<AgentService[]> {
    const generation = this.servicesGeneration;
    if (this.servicesReading !== null && this.servicesReading.generation === generation) return this.servicesReading.promise;
    const promise = this.consul.services().then((services) => {
      if (generation === this.servicesGeneration) this.services = services;
      return services;
    });
    const reading = { generation, promise };
    this.servicesReading = reading;
    const clear = (): void => {
      if (this.servicesReading === reading) this.servicesReading = null;
    };
    promise.then(clear, clear);
    return promise;
  }

  /**
   * Reads both directories. Never throws: each file fails alone and keeps its last good
   * version. A change seen while reading makes the result provisional (the next snapshot reads
   * again), and a file still being written is looked at again once it has settled.
   */
  /** Reads the files; concurrent callers share one read of the same generation. */
  private refreshFiles(): Promise<LocalFiles> {
    const generation = this.filesGeneration;
    if (this.filesReading !== null && this.filesReading.generation === generation) return this.filesReading.promise;
    const promise = this.readFiles(generation);
    const reading = { generation, promise };
    this.filesReading = reading;
    const clear = (): void => {
      if (this.filesReading === reading) this.filesReading = null;
    };
    promise.then(clear, clear);
    return promise;
  }

  private async readFiles(generation: number): Promise<LocalFiles> {
    const now = Date.now();
    const [svc, ipsets] = await Promise.all([this.serviceFiles.read(now), this.ipsetFiles.read(now)]);
    const files = { services: svc.items, diagnostics: [...svc.diagnostics, ...ipsets.diagnostics], ipsets: ipsets.items };
    if (generation === this.filesGeneration) this.files = files;
    const retry = svc.retryInMs ?? ipsets.retryInMs;
    if (retry !== null && this.settleTimer === null && !this.stopped) {
      this.settleTimer = setTimeout(() => {
        this.settleTimer = null;
        this.filesChanged();
      }, retry);
    }
    return files;
  }

  /** Starts the KV watches once the node's sets are known (its services and files read). */
  private async startKv(): Promise<void> {
    const node = this.node;
    if (node === null || this.stopped) return;
    try {
      const [services, files] = await Promise.all([this.services ?? this.refreshServices(), this.files ?? this.refreshFiles()]);
      this.scoped.setScope(node, watchedSets(services, files.services, this.config), this.spellings);
    } catch (err) {
      this.failed('agent/services', err as Error, { attempt: 1, retryInMs: IDENTITY_RETRY_MS });
      this.identityTimer = setTimeout(() => void this.startKv(), IDENTITY_RETRY_MS);
    }
  }

  /** Consul's peers, every PEERS_INTERVAL_MS; a change is a change of the protected paths. */
  private async pollPeers(): Promise<void> {
    if (this.stopped) return;
    try {
      const peers = await this.consul.peers();
      const seen = JSON.stringify(peers);
      if (this.peersFailing) this.log.info({ event: 'peers-read' }, 'Consul members readable again');
      this.peersFailing = false;
      if (seen !== this.peersSeen) {
        this.peersSeen = seen;
        this.peers = peers;
        this.log.info(
          { event: 'consul-peers', peers: peers.addrs.length, tcp: peers.tcpPorts, udp: peers.udpPorts },
          'Consul peers protected',
        );
        // The first answer too: a pass that ran before it compiled without Consul's peers.
        this.onChange('peers');
      }
    } catch (err) {
      if (!this.peersFailing) {
        this.log.warn(
          { event: 'peers-read-failed', err: (err as Error).message },
          'cannot read Consul members; keeping the last known peers protected',
        );
      }
      this.peersFailing = true;
      this.hooks.onError?.('agent/members');
    }
    if (!this.stopped) this.peersTimer = setTimeout(() => void this.pollPeers(), this.peersIntervalMs);
  }

  private async startServicesWatch(): Promise<void> {
    let self;
    try {
      self = await this.consul.self();
    } catch (err) {
      if (this.stopped) return;
      this.failed('agent/self', err as Error, { attempt: 1, retryInMs: IDENTITY_RETRY_MS });
      this.identityTimer = setTimeout(() => void this.startServicesWatch(), IDENTITY_RETRY_MS);
      return;
    }
    if (this.stopped) return;
    this.node = { name: shortNodeName(this.config.nodeName ?? self.nodeName), dc: this.config.nodeDc ?? self.datacenter };
    const reported = (this.config.nodeName ?? self.nodeName).split('.')[0] ?? '';
    this.spellings = reported !== '' && reported !== this.node.name ? [reported] : [];
    this.log.info({ event: 'identity', node: this.node.name, dc: this.node.dc }, 'node identity');
    let first = true;
    const w = new BlockingWatch(
      'services',
      (q) => this.consul.nodeServicesBlocking(self.nodeName, q),
      {
        onData: (data) => {
          this.nodeServicesAnswered(data);
          // The node's services decide which KV prefixes to watch: start them once they are known.
          if (first) void this.startKv();
          first = false;
        },
        onError: (err, meta) => this.failed('services', err, meta),
      },
      this.watchOptions,
    );
    this.watches.push(w);
    w.start();
  }

  private nodeServicesAnswered(data: readonly AgentService[]): void {
    this.answered();
    // The catalog's index moves with every catalog write in the datacenter (health checks
    // included), so most answers are for other nodes: only a different list of this node's
    // services is a change.
    const seen = sortedJson(data);
    if (seen === this.catalogSeen) return;
    this.catalogSeen = seen;
    this.hooks.onNodeServicesChange?.();
    // The registrar's own (de)registrations move only `local` services, which the compiler
    // ignores: they must not cost a second reconcile.
    const planSeen = sortedJson(data.filter((s) => !mirrorsFile(s)));
    if (planSeen === this.planServicesSeen) return;
    this.planServicesSeen = planSeen;
    this.services = null; // re-read from the agent at the next snapshot
    this.servicesGeneration++;
    this.onChange('services');
  }

  /**
   * fs.watch on a directory; a directory that does not exist yet (or goes away) is looked for
   * again every few seconds, and its appearance counts as a change.
   */
  private watchDir(dir: string): void {
    if (this.stopped) return;
    const retry = (): void => {
      const t = setTimeout(() => {
        this.dirTimers.delete(t);
        this.watchDir(dir);
      }, DIR_RETRY_MS);
      this.dirTimers.add(t);
    };
    let w: FSWatcher;
    try {
      w = watch(dir, { persistent: false }, () => this.filesChanged());
    } catch {
      this.missingDirs.add(dir);
      retry();
      return;
    }
    if (this.missingDirs.delete(dir)) this.filesChanged();
    w.on('error', (err) => {
      this.log.warn({ event: 'fs-watch-error', dir, err: err.message }, 'directory watch failed; watching again');
      w.close();
      this.missingDirs.add(dir);
      retry();
    });
    this.fsWatchers.push(w);
  }

  private filesChanged(): void {
    this.filesGeneration++;
    this.files = null;
    this.onChange('files');
  }
}
