/**
 * The agent's live view of its inputs, fed by watchers instead of polls:
 *
 *   - KV: one blocking query on `befw/` (recursive). Clients, aliases and static sets at every
 *     scope live under it, and one query means one index and one consistent moment for all three
 *     kinds. Narrower queries cannot do better within BEFW's layout: datacenter- and node-scope
 *     keys (`befw/<kind>/<dc>/...`) sit under the same prefixes as world keys, and one query per
 *     set and scope would be 3 x (sets) long polls per node for the same data.
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
import { readIpsetFiles, readServiceFiles } from './localFiles.js';
import { KV_ROOT } from '../../core/kvLayout.js';
import type { AgentService, Diagnostic, FileService, IpsetFile, KvPair, NodeIdentity, Snapshot } from '../../core/types.js';
import type { Logger } from '../../log/logger.js';
import { shortNodeName } from '../../core/kvLayout.js';

export class InputsNotReadyError extends Error {
  constructor(what: string) {
    super(`no answer yet for ${what}`);
    this.name = 'InputsNotReadyError';
  }
}

export type ChangeReason = 'kv' | 'services' | 'files';

/** For metrics: failed requests per watch, and the staleness of each KV answer. */
export interface WatchHooks {
  onError?(watch: string): void;
  onKvAnswer?(lastContactMs: number | null): void;
}

export interface ConsulHealth {
  readonly reachable: boolean;
  readonly lastAnswerAt: number | null;
  readonly lastError: string | null;
  /** X-Consul-LastContact of the last KV answer (ms): how stale a stale read was. */
  readonly lastContactMs: number | null;
}

const IDENTITY_RETRY_MS = 2000;
const DIR_RETRY_MS = 2000;

export class WatchedInputs {
  private kv: KvPair[] | null = null;
  private services: AgentService[] | null = null;
  private files: { services: FileService[]; diagnostics: Diagnostic[]; ipsets: IpsetFile[] } | null = null;
  private node: NodeIdentity | null = null;
  private watches: BlockingWatch<unknown>[] = [];
  private kvWatch: BlockingWatch<KvPair[]> | null = null;
  /** The node's services as the catalog last listed them, to tell real changes from index moves. */
  private catalogSeen = '';
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
  ) {}

  /** Keys in the last KV answer. */
  get kvSize(): number {
    return this.kv?.length ?? 0;
  }

  get consulHealth(): ConsulHealth {
    return { ...this.health };
  }

  start(): void {
    const kvWatch = new BlockingWatch(
      'kv',
      (q) => this.consul.kvTreeBlocking(KV_ROOT, this.config.dc, q),
      {
        onData: (data, meta) => {
          this.answered();
          this.health.lastContactMs = meta.lastContactMs;
          this.hooks.onKvAnswer?.(meta.lastContactMs);
          this.kv = data;
          this.log.debug(
            { event: 'kv-changed', index: meta.index, keys: data.length, stale: meta.stale, lastContactMs: meta.lastContactMs },
            'KV changed',
          );
          this.onChange('kv');
        },
        onError: (err, meta) => this.failed('kv', err, meta),
        onIndexReset: (meta) =>
          this.log.info({ event: 'index-reset', watch: 'kv', ...meta }, 'Consul index went backwards or below 1; restarting from it'),
      },
      this.watchOptions,
    );
    this.watches.push(kvWatch);
    this.kvWatch = kvWatch;
    kvWatch.start();
    void this.startServicesWatch();
    this.watchDir(this.config.servicesDir);
    this.watchDir(this.config.ipsetsDir);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.identityTimer !== null) clearTimeout(this.identityTimer);
    for (const w of this.fsWatchers) w.close();
    for (const t of this.dirTimers) clearTimeout(t);
    await Promise.all(this.watches.map((w) => w.stop()));
  }

  /** Everything the compiler needs, from the last answers; re-reads files marked as changed. */
  async snapshot(): Promise<Snapshot> {
    if (this.kv === null) throw new InputsNotReadyError('the befw/ KV tree');
    if (this.node === null) throw new InputsNotReadyError('the agent identity');
    if (this.services === null) await this.refreshServices();
    if (this.files === null) await this.refreshFiles();
    const files = this.files;
    if (files === null || this.services === null) throw new InputsNotReadyError('services');
    return {
      node: this.node,
      agentServices: this.services,
      fileServices: files.services,
      kv: this.kv,
      ipsetFiles: files.ipsets,
      inputDiagnostics: files.diagnostics,
    };
  }

  /** Full resync: re-read what has no blocking query behind it (agent services, files). */
  invalidate(): void {
    this.services = null;
    this.files = null;
  }

  /** A second, independent read of everything: KV from index 0, services and files again. */
  reread(): void {
    this.invalidate();
    this.kvWatch?.refresh();
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

  private async refreshServices(): Promise<void> {
    this.services = await this.consul.services();
  }

  private async refreshFiles(): Promise<void> {
    const [svc, ipsets] = await Promise.all([readServiceFiles(this.config.servicesDir), readIpsetFiles(this.config.ipsetsDir)]);
    this.files = { services: svc.services, diagnostics: svc.diagnostics, ipsets };
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
    this.log.info({ event: 'identity', node: this.node.name, dc: this.node.dc }, 'node identity');
    const w = new BlockingWatch(
      'services',
      (q) => this.consul.nodeServicesBlocking(self.nodeName, q),
      {
        onData: (data) => {
          this.answered();
          // The catalog's index moves with every catalog write in the datacenter (health
          // checks included), so most answers are for other nodes: only a different list of
          // this node's services is a change.
          const seen = JSON.stringify([...data].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
          if (seen === this.catalogSeen) return;
          this.catalogSeen = seen;
          this.services = null; // re-read from the agent at the next snapshot
          this.onChange('services');
        },
        onError: (err, meta) => this.failed('services', err, meta),
      },
      this.watchOptions,
    );
    this.watches.push(w);
    w.start();
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
    this.files = null;
    this.onChange('files');
  }
}
