/**
 * The only place that speaks HTTP to Consul, and only to the local agent. `ConsulApi` is the seam
 * that tests replace with a recording fake; `createConsulApi` builds the real one on the `consul`
 * package. The ACL token travels in the X-Consul-Token header (the package's default), never in a
 * URL, an argv or a log line.
 */
import Consul from 'consul';
import type { AgentService, KvPair } from '../rules/types.js';

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
  register(service: ServiceRegistration): Promise<void>;
  deregister(id: string): Promise<void>;
}

export class ConsulError extends Error {
  constructor(
    readonly operation: string,
    readonly statusCode: number | null,
    cause: unknown,
  ) {
    super(`consul ${operation} failed${statusCode === null ? '' : ` (HTTP ${statusCode})`}: ${describe(cause)}`, { cause });
    this.name = 'ConsulError';
  }
}

function describe(cause: unknown): string {
  if (cause instanceof Error) return cause.message;
  return String(cause);
}

export interface ConsulApiOptions {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly token: string | null;
  readonly timeoutMs: number;
}

interface RawAgentService {
  ID?: unknown;
  Service?: unknown;
  Port?: unknown;
  Tags?: unknown;
}

interface RawKvItem {
  Key?: unknown;
  Value?: unknown;
}

export function createConsulApi(opts: ConsulApiOptions): ConsulApi {
  const client = new Consul({
    host: opts.host,
    port: opts.port,
    secure: opts.secure,
    ...(opts.token === null ? {} : { defaults: { token: opts.token } }),
  });
  const timeout = opts.timeoutMs;
  // The package's typings omit the per-request `timeout` (and `dc` on some calls) that its
  // runtime honours, hence the `as never` on the option objects below.

  async function call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const status = (err as { statusCode?: unknown }).statusCode;
      throw new ConsulError(operation, typeof status === 'number' ? status : null, err);
    }
  }

  return {
    async self() {
      const res = await call('agent/self', () => client.agent.self({ timeout } as never));
      const cfg = (res as { Config?: { NodeName?: unknown; Datacenter?: unknown } }).Config;
      if (typeof cfg?.NodeName !== 'string' || typeof cfg.Datacenter !== 'string') {
        throw new ConsulError('agent/self', null, 'answer lacks Config.NodeName or Config.Datacenter');
      }
      return { nodeName: cfg.NodeName, datacenter: cfg.Datacenter };
    },

    async services() {
      const res = await call('agent/services', () => client.agent.service.list({ timeout } as never));
      if (typeof res !== 'object' || res === null) throw new ConsulError('agent/services', null, 'answer is not an object');
      const out: AgentService[] = [];
      for (const raw of Object.values(res as Record<string, RawAgentService>)) {
        if (typeof raw.ID !== 'string' || typeof raw.Service !== 'string') continue;
        const tags = Array.isArray(raw.Tags) ? raw.Tags.filter((t): t is string => typeof t === 'string') : [];
        out.push({ id: raw.ID, name: raw.Service, port: typeof raw.Port === 'number' ? raw.Port : 0, tags });
      }
      return out;
    },

    async kvTree(prefix, dc) {
      const res = await call(`kv ${prefix}`, () =>
        client.kv.get({ key: prefix, recurse: true, timeout, ...(dc === null ? {} : { dc }) } as never),
      );
      if (res === undefined || res === null) return []; // 404: nothing under the prefix
      const items = (Array.isArray(res) ? res : [res]) as RawKvItem[];
      return items.flatMap((i) =>
        typeof i.Key === 'string' ? [{ key: i.Key, value: typeof i.Value === 'string' ? i.Value : null }] : [],
      );
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
