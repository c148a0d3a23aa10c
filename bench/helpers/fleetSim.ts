/**
 * Simulated agents for the fan-out benchmark: each is the agent's own KV watch code
 * (`ScopedKv` on `BlockingWatch`, prefixes from `core/watchScope.ts`) over its own instance of
 * the agent's Consul client (`createConsulApi(...).kvTreeBlocking`, with its own keep-alive
 * connection pool, as a separate node would have), and nothing else: no compile, no apply.
 *
 * What Consul sent each agent is counted on the agent's sockets (`bytesRead`: the HTTP responses,
 * headers and chunk framing included, TCP/IP headers not). A socket is attributed to an agent
 * through its connection pool: each client's first request is a probe made while that agent is
 * being created, which ties the pool (`request.agent`) to it; every later request on that pool
 * names its socket through node's `http.client.request.start` diagnostics channel.
 */
import { subscribe } from 'node:diagnostics_channel';
import type { Agent, ClientRequest } from 'node:http';
import type { Socket } from 'node:net';
import { ScopedKv } from '../../src/agent/inputs/scopedKv.js';
import { DEFAULT_WATCH_OPTIONS, type WatchOptions } from '../../src/consul/blockingWatch.js';
import { createConsulApi } from '../../src/consul/client.js';
import type { NodeIdentity } from '../../src/core/types.js';
import type { WatchedSet } from '../../src/core/watchScope.js';

export type WatchMode = 'scoped' | 'tree';

interface Counted {
  readonly sockets: Set<Socket>;
}

const owners = new WeakMap<Agent, Counted>();
let claiming: Counted | null = null;
let subscribed = false;

function track(): void {
  if (subscribed) return;
  subscribed = true;
  subscribe('http.client.request.start', (message) => {
    const req = (message as { request: ClientRequest }).request;
    const pool = (req as unknown as { agent?: Agent }).agent;
    if (pool === undefined) return;
    let owner = owners.get(pool);
    if (owner === undefined && claiming !== null) {
      owner = claiming;
      owners.set(pool, owner);
    }
    if (owner === undefined) return;
    const o = owner;
    if (req.socket !== null) o.sockets.add(req.socket);
    else req.once('socket', (s: Socket) => o.sockets.add(s));
  });
}

export interface SimCounters {
  /** Requests sent (blocking and otherwise), answers received, answers whose data changed. */
  requests: number;
  answers: number;
  changed: number;
  errors: number;
  indexResets: number;
  /** Time (ms, performance.timeOrigin-based) of the first changed answer since `mark()`. */
  firstChangeAt: number | null;
  /** Answers whose data did not change, by the role of the prefix that gave them. */
  readonly unchangedByRole: Record<PrefixRole, number>;
}

export type PrefixRole = 'world' | 'dc' | 'node' | 'alias' | 'tree';
export const PREFIX_ROLES: readonly PrefixRole[] = ['world', 'dc', 'node', 'alias', 'tree'];

/** What a watched prefix is for (the role core/watchScope.ts gives it, without the alias scopes). */
export function roleOf(prefix: string, node: NodeIdentity): PrefixRole {
  const seg = prefix.split('/').filter((x) => x !== '');
  if (seg.length <= 1) return 'tree';
  if (seg[1] === '$alias$' && (seg[seg.length - 1] ?? '').startsWith('$')) return 'alias';
  if (seg.length === 3) return 'world';
  return seg[3] === node.name ? 'node' : 'dc';
}

export const nowMs = (): number => performance.timeOrigin + performance.now();

export class SimAgent {
  readonly counters: SimCounters = {
    requests: 0,
    answers: 0,
    changed: 0,
    errors: 0,
    indexResets: 0,
    firstChangeAt: null,
    unchangedByRole: { world: 0, dc: 0, node: 0, alias: 0, tree: 0 },
  };
  private readonly counted: Counted = { sockets: new Set() };
  private kv: ScopedKv | null = null;
  /** Last answer of any kind (for the bench's quiet-period detection). */
  static lastAnswerAt = 0;

  private constructor(
    readonly index: number,
    readonly node: NodeIdentity,
    private readonly sets: readonly WatchedSet[],
  ) {}

  /** Creates the agent's Consul client and ties its connections to it; watches nothing yet. */
  static async create(
    index: number,
    node: NodeIdentity,
    sets: readonly WatchedSet[],
    mode: WatchMode,
    consul: { host: string; port: number },
    waitMs: number,
  ): Promise<SimAgent> {
    track();
    const sim = new SimAgent(index, node, sets);
    const api = createConsulApi({ host: consul.host, port: consul.port, secure: false, token: null, timeoutMs: 10_000 });
    claiming = sim.counted;
    try {
      await api.kvGet('befw-fleet-bench/probe', null);
    } finally {
      claiming = null;
    }
    if (sim.counted.sockets.size === 0) throw new Error('fleet bench: cannot attribute the Consul client connections to an agent');
    const options: WatchOptions = { ...DEFAULT_WATCH_OPTIONS, waitMs };
    const c = sim.counters;
    sim.kv = new ScopedKv({
      mode,
      options,
      fetch: async (prefix, q) => {
        c.requests++;
        return api.kvTreeBlocking(prefix, null, q);
      },
      onAnswer: ({ prefix, changed }) => {
        const t = nowMs();
        c.answers++;
        SimAgent.lastAnswerAt = t;
        if (!changed) {
          c.unchangedByRole[roleOf(prefix, node)]++;
          return;
        }
        c.changed++;
        c.firstChangeAt ??= t;
      },
      onChange: () => {},
      onError: (prefix, err) => {
        c.errors++;
        if (c.errors <= 3) process.stderr.write(`fleet: ${node.name} ${prefix}: ${err.message}\n`);
      },
      onIndexReset: () => {
        c.indexResets++;
      },
    });
    return sim;
  }

  start(): void {
    this.kv?.setScope(this.node, this.sets);
  }

  whenReady(ms: number): Promise<boolean> {
    return this.kv?.whenReady(ms) ?? Promise.resolve(false);
  }

  get prefixes(): number {
    return this.kv?.prefixes.length ?? 0;
  }

  /** Bytes Consul has sent this agent so far. */
  get bytes(): number {
    let total = 0;
    for (const s of this.counted.sockets) total += s.bytesRead;
    return total;
  }

  /** Forget the first-change time: the next write is timed from here. */
  mark(): void {
    this.counters.firstChangeAt = null;
  }

  async stop(): Promise<void> {
    await this.kv?.stop();
    this.kv = null;
    for (const s of this.counted.sockets) s.destroy();
  }
}
