/**
 * The KV part of the agent's inputs: one blocking query per prefix that concerns this node (see
 * core/watchScope.ts for which and why), added and removed at run time as the node's sets and the
 * aliases its entries reference change. The union of the prefixes' last answers is what the
 * compiler sees.
 *
 *   - An answer whose index moved but whose data did not (Consul wakes an empty prefix on every
 *     write under its nearest existing ancestor) is no change: no reconcile.
 *   - Each watch keeps the index rules of BlockingWatch on its own (reset when an index goes
 *     backwards, never below 1, the query after an error does not block).
 *   - A re-read is a separate, non-blocking read of each prefix beside its parked query.
 *   - `tree` mode watches all of `befw/` with one query, as befw did before (and as the fan-out
 *     benchmark compares against).
 */
import { BlockingWatch, type BlockingAnswer, type BlockingQuery, type WatchOptions } from '../../consul/blockingWatch.js';
import { KV_ROOT } from '../../core/kvLayout.js';
import type { KvPair, NodeIdentity } from '../../core/types.js';
import { type KvPrefix, type WatchedSet, kvPrefixes, referencedAliases } from '../../core/watchScope.js';

export type KvWatchMode = 'scoped' | 'tree';

export interface ScopedKvDeps {
  readonly mode: KvWatchMode;
  readonly fetch: (prefix: string, q: BlockingQuery) => Promise<BlockingAnswer<KvPair[]>>;
  readonly options: WatchOptions;
  /** Data changed in some prefix (not called for an answer that only moved the index). */
  readonly onChange: (prefix: string) => void;
  readonly onAnswer?: (meta: { prefix: string; changed: boolean; lastContactMs: number | null }) => void;
  readonly onError: (prefix: string, err: Error, meta: { attempt: number; retryInMs: number }) => void;
  readonly onIndexReset?: (prefix: string, meta: { sent: number; got: number; next: number }) => void;
  /** Most parked queries this node may hold; past it the whole tree is watched with one (see below). */
  readonly maxWatches?: number;
  /** Scoped watching gave way to the whole tree (or came back): for the log. */
  readonly onFallback?: (wanted: number, tree: boolean) => void;
}

/**
 * Every parked query holds one connection to the local Consul agent, which allows 200 per client
 * address by default (`http_max_conns_per_client`), shared with everything else on the node. A
 * node with so many sets that its prefixes would pass this many watches the whole tree instead:
 * correct, and one connection, at the cost of reading more.
 */
export const MAX_WATCHES = 64;

interface Entry {
  readonly watch: BlockingWatch<KvPair[]>;
  readonly role: KvPrefix['role'] | 'tree';
  data: KvPair[] | null;
}

function sameData(a: readonly KvPair[], b: readonly KvPair[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as KvPair;
    const y = b[i] as KvPair;
    if (x.key !== y.key || x.value !== y.value) return false;
  }
  return true;
}

export class ScopedKv {
  private readonly entries = new Map<string, Entry>();
  private node: NodeIdentity | null = null;
  private sets: readonly WatchedSet[] = [];
  private spellings: readonly string[] = [];
  private merged: KvPair[] | null = null;
  private stopped = false;
  private readyWaiters: (() => void)[] = [];

  constructor(private readonly deps: ScopedKvDeps) {}

  /** Prefixes watched now, for status and tests. */
  get prefixes(): string[] {
    return [...this.entries.keys()];
  }

  /** Every watch has answered once: the union is complete. */
  get ready(): boolean {
    if (this.entries.size === 0) return false;
    for (const e of this.entries.values()) if (e.data === null) return false;
    return true;
  }

  /** The union of the last answers, sorted by key; null until ready. */
  pairs(): KvPair[] | null {
    if (!this.ready) return null;
    if (this.merged === null) {
      const seen = new Map<string, KvPair>();
      for (const e of this.entries.values()) for (const p of e.data ?? []) seen.set(p.key, p);
      this.merged = [...seen.values()].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    }
    return this.merged;
  }

  /** The node and its sets (and other spellings of its name): starts and stops watches to match. */
  setScope(node: NodeIdentity, sets: readonly WatchedSet[], spellings: readonly string[] = []): void {
    this.node = node;
    this.sets = sets;
    this.spellings = spellings;
    this.sync();
  }

  /** Resolves once every watch has answered, or after `ms`; says which. */
  whenReady(ms: number): Promise<boolean> {
    if (this.ready) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.readyWaiters = this.readyWaiters.filter((w) => w !== done);
        resolve(this.ready);
      }, ms);
      const done = (): void => {
        clearTimeout(timer);
        resolve(true);
      };
      this.readyWaiters.push(done);
    });
  }

  /** A second, independent read of every prefix, beside the parked queries; changes are announced. */
  async reread(): Promise<void> {
    await Promise.all(
      [...this.entries.entries()].map(async ([prefix, e]) => {
        try {
          this.deliver(prefix, e, await e.watch.readNow(), null);
        } catch {
          // The watch's own loop reports Consul errors; a failed extra read changes nothing.
        }
      }),
    );
  }

  async stop(): Promise<void> {
    this.stopped = true;
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.all(all.map((e) => e.watch.stop()));
  }

  private fellBack = false;

  private wanted(): Map<string, Entry['role']> {
    const tree = new Map<string, Entry['role']>([[KV_ROOT, 'tree']]);
    if (this.deps.mode === 'tree') return tree;
    if (this.node === null) return new Map();
    const aliases = referencedAliases(this.allData());
    const scoped = kvPrefixes(this.node, this.sets, [...aliases].sort(), this.spellings);
    const over = scoped.length > (this.deps.maxWatches ?? MAX_WATCHES);
    if (over !== this.fellBack) this.deps.onFallback?.(scoped.length, over);
    this.fellBack = over;
    return over ? tree : new Map(scoped.map((p) => [p.prefix, p.role]));
  }

  private *allData(): Iterable<KvPair> {
    for (const e of this.entries.values()) if (e.data !== null) yield* e.data;
  }

  /** Starts watches for new prefixes, stops those no longer wanted (their data leaves the union). */
  private sync(): void {
    if (this.stopped) return;
    const want = this.wanted();
    for (const [prefix, e] of this.entries) {
      if (want.has(prefix)) continue;
      this.entries.delete(prefix);
      this.merged = null;
      void e.watch.stop();
    }
    for (const [prefix, role] of want) {
      if (this.entries.has(prefix)) continue;
      const entry: Entry = { role, data: null, watch: this.watchFor(prefix) };
      this.entries.set(prefix, entry);
      entry.watch.start();
    }
  }

  private watchFor(prefix: string): BlockingWatch<KvPair[]> {
    return new BlockingWatch<KvPair[]>(
      `kv ${prefix}`,
      (q) => this.deps.fetch(prefix, q),
      {
        onData: (data, meta) => {
          const e = this.entries.get(prefix);
          return e === undefined ? false : this.deliver(prefix, e, data, meta.lastContactMs);
        },
        onError: (err, meta) => this.deps.onError(prefix, err, meta),
        onIndexReset: (meta) => this.deps.onIndexReset?.(prefix, meta),
      },
      this.deps.options,
    );
  }

  /** Takes an answer; says whether its data changed. */
  private deliver(prefix: string, e: Entry, data: KvPair[], lastContactMs: number | null): boolean {
    const changed = e.data === null || !sameData(e.data, data);
    this.deps.onAnswer?.({ prefix, changed, lastContactMs });
    if (!changed) return false;
    const wasReady = this.ready;
    e.data = data;
    this.merged = null;
    // New alias references (or ones gone) change what is watched.
    if (e.role !== 'tree') this.sync();
    if (this.ready) {
      const waiters = this.readyWaiters;
      this.readyWaiters = [];
      for (const w of waiters) w();
    }
    if (wasReady || this.ready) this.deps.onChange(prefix);
    return true;
  }
}
