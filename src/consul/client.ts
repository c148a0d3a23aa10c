/**
 * The only place that speaks HTTP to Consul, and only to the local agent. `ConsulApi` is the seam
 * that tests replace with a recording fake; `createConsulApi` builds the real one on the `consul`
 * package. The ACL token travels in the X-Consul-Token header (the package's default), never in a
 * URL, an argv or a log line.
 */
import { EventEmitter } from 'node:events';
import type { IncomingHttpHeaders } from 'node:http';
import type { ConsulPeers } from '../core/protect.js';
import type { AgentService, KvPair } from '../core/types.js';
import { isServer, parsePeers } from './peers.js';
import type { BlockingAnswer, BlockingQuery } from './blockingWatch.js';
import { ConsulError, agentServices, connectConsul, consulCall, kvEntries, readAgentIdentity } from './connection.js';

export interface AgentIdentity {
  readonly nodeName: string;
  readonly datacenter: string;
}

export interface ServiceRegistration {
  readonly id: string;
  readonly name: string;
  readonly port: number;
  readonly tags: readonly string[];
}

export interface ConsulApi {
  self(): Promise<AgentIdentity>;
  /** Services registered with the local agent. */
  services(): Promise<AgentService[]>;
  /** Every key under `prefix`; an absent prefix is an empty list, any failure an error. */
  kvTree(prefix: string, dc: string | null): Promise<KvPair[]>;
  /** Consul's own peers (LAN members, servers; WAN members on a server) and their ports. */
  peers(): Promise<ConsulPeers>;
  /** Reads one key's value (null: absent). */
  kvGet(key: string, dc: string | null): Promise<string | null>;
  kvPut(key: string, value: string, dc: string | null): Promise<void>;
  register(service: ServiceRegistration): Promise<void>;
  deregister(id: string): Promise<void>;
  /** Blocking read of a KV prefix (recursive). */
  kvTreeBlocking(prefix: string, dc: string | null, q: BlockingQuery): Promise<BlockingAnswer<KvPair[]>>;
  /**
   * Blocking read of the node's services in the catalog. The agent's own service list cannot
   * block, so the catalog tells when to look; the agent's list stays the data.
   */
  nodeServicesBlocking(node: string, q: BlockingQuery): Promise<BlockingAnswer<AgentService[]>>;
}

export { ConsulError };

export interface ConsulApiOptions {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly token: string | null;
  readonly timeoutMs: number;
}

function toKvPairs(res: unknown): KvPair[] {
  return kvEntries(res).map((e) => ({ key: e.key, value: e.value }));
}

/** A request context that makes the package return [response, body] and cancels on abort. */
function blockingCtx(signal: AbortSignal): EventEmitter & { includeResponse: true } {
  const ctx = Object.assign(new EventEmitter(), { includeResponse: true as const });
  signal.addEventListener('abort', () => ctx.emit('cancel'), { once: true });
  return ctx;
}

function answerMeta(headers: IncomingHttpHeaders): { index: number; lastContactMs: number | null; knownLeader: boolean | null } {
  const one = (h: string | string[] | undefined): string | undefined => (Array.isArray(h) ? h[0] : h);
  const index = Number(one(headers['x-consul-index']) ?? NaN);
  const lc = one(headers['x-consul-lastcontact']);
  const kl = one(headers['x-consul-knownleader']);
  return { index, lastContactMs: lc === undefined ? null : Number(lc), knownLeader: kl === undefined ? null : kl === 'true' };
}

/** Client-side timeout: Consul adds up to wait/16 of jitter to the wait. */
function blockingTimeout(waitMs: number, base: number): number {
  return waitMs + Math.ceil(waitMs / 16) + base;
}

export function createConsulApi(opts: ConsulApiOptions): ConsulApi {
  const client = connectConsul(opts);
  const timeout = opts.timeoutMs;
  // The package's typings omit the per-request `timeout` (and `dc` on some calls) that its
  // runtime honours, hence the `as never` on the option objects below.

  const call = consulCall;

  return {
    async self() {
      const id = await readAgentIdentity(client, timeout);
      return { nodeName: id.nodeName, datacenter: id.datacenter };
    },

    async services() {
      const res = await call('agent/services', () => client.agent.service.list({ timeout } as never));
      if (typeof res !== 'object' || res === null) throw new ConsulError('agent/services', null, 'answer is not an object');
      return agentServices(res);
    },

    async kvTree(prefix, dc) {
      const res = await call(`kv ${prefix}`, () =>
        client.kv.get({ key: prefix, recurse: true, timeout, ...(dc === null ? {} : { dc }) } as never),
      );
      return toKvPairs(res);
    },

    async kvTreeBlocking(prefix, dc, q) {
      const res = (await call(`kv ${prefix} (blocking)`, () =>
        client.kv.get({
          key: prefix,
          recurse: true,
          index: String(q.index),
          wait: `${Math.ceil(q.waitMs / 1000)}s`,
          ...(q.stale ? { stale: true } : {}),
          ...(dc === null ? {} : { dc }),
          ctx: blockingCtx(q.signal),
          timeout: blockingTimeout(q.waitMs, timeout),
        } as never),
      )) as unknown as [{ headers: IncomingHttpHeaders }, unknown];
      return { ...answerMeta(res[0].headers), data: toKvPairs(res[1]) };
    },

    async nodeServicesBlocking(node, q) {
      const res = (await call(`catalog node ${node} (blocking)`, () =>
        client.catalog.node.services({
          node,
          index: String(q.index),
          wait: `${Math.ceil(q.waitMs / 1000)}s`,
          ...(q.stale ? { stale: true } : {}),
          ctx: blockingCtx(q.signal),
          timeout: blockingTimeout(q.waitMs, timeout),
        } as never),
      )) as unknown as [{ headers: IncomingHttpHeaders }, { Services?: unknown } | undefined];
      return { ...answerMeta(res[0].headers), data: agentServices(res[1]?.Services) };
    },

    async peers() {
      const self: unknown = await call('agent/self', () => client.agent.self({ timeout } as never));
      const lan = await call('agent/members', () => client.agent.members({ timeout } as never));
      const wan = isServer(self) ? await call('agent/members?wan', () => client.agent.members({ wan: true, timeout } as never)) : [];
      return parsePeers([lan, wan], self);
    },

    async kvGet(key, dc) {
      const res = await call(`kv ${key}`, () => client.kv.get({ key, timeout, ...(dc === null ? {} : { dc }) } as never));
      return kvEntries(res)[0]?.value ?? null;
    },

    async kvPut(key, value, dc) {
      const ok = await call(`kv put ${key}`, () => client.kv.set({ key, value, timeout, ...(dc === null ? {} : { dc }) } as never));
      if (ok !== true) throw new ConsulError(`kv put ${key}`, null, 'Consul did not accept the write');
    },

    async register(s) {
      await call(`register ${s.id}`, () =>
        client.agent.service.register({ id: s.id, name: s.name, port: s.port, tags: [...s.tags], timeout } as never),
      );
    },

    async deregister(id) {
      await call(`deregister ${id}`, () => client.agent.service.deregister({ id, timeout } as never));
    },
  };
}
