/**
 * What every Consul client of befw shares (the agent's watcher client, the operator commands'
 * writer, the responder's ban writer): one way to build the `consul` package's client (local
 * agent, token in the X-Consul-Token header through the package's defaults, never in a URL, an
 * argument or a log line), one error type naming the operation and HTTP status, and the parsing
 * of answers they all read (agent identity, agent services, KV items with their ModifyIndex).
 */
import Consul from 'consul';
import type { AgentService } from '../core/types.js';

export interface ConsulConnectionOptions {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly token: string | null;
  /** Consul's HTTP API on a unix socket instead of host:port (Consul's `addresses.http`). */
  readonly socketPath?: string;
}

export class ConsulError extends Error {
  constructor(
    readonly operation: string,
    readonly statusCode: number | null,
    cause: unknown,
  ) {
    super(
      `consul ${operation} failed${statusCode === null ? '' : ` (HTTP ${statusCode})`}: ${cause instanceof Error ? cause.message : String(cause)}`,
      { cause },
    );
    this.name = 'ConsulError';
  }
}

export function connectConsul(opts: ConsulConnectionOptions): Consul {
  return new Consul({
    host: opts.host,
    port: opts.port,
    secure: opts.secure,
    ...(opts.socketPath === undefined ? {} : { socketPath: opts.socketPath }),
    ...(opts.token === null ? {} : { defaults: { token: opts.token } }),
  }); // socketPath reaches papi at runtime but is missing from the typings
}

/** The HTTP status of a failed request as the package reports it, if any. */
export function statusOf(err: unknown): number | null {
  const s = (err as { statusCode?: unknown } | null)?.statusCode;
  return typeof s === 'number' ? s : null;
}

/** Runs one request, turning any failure into a ConsulError naming `operation`. */
export async function consulCall<T>(operation: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new ConsulError(operation, statusOf(err), err);
  }
}

/** Reads /v1/agent/self: the local agent's node name, datacenter and version. */
export async function readAgentIdentity(client: Consul, timeoutMs: number): Promise<AgentIdentity> {
  // The package's typings omit the per-request timeout its runtime honours.
  return agentIdentity(await consulCall('agent/self', () => client.agent.self({ timeout: timeoutMs } as never)));
}

export interface AgentIdentity {
  readonly nodeName: string;
  readonly datacenter: string;
  readonly version: string | null;
}

/** The node name, datacenter and version in an /v1/agent/self answer. */
export function agentIdentity(res: unknown): AgentIdentity {
  const cfg = (res as { Config?: { NodeName?: unknown; Datacenter?: unknown; Version?: unknown } } | null)?.Config;
  if (typeof cfg?.NodeName !== 'string' || typeof cfg.Datacenter !== 'string') {
    throw new ConsulError('agent/self', null, 'answer lacks Config.NodeName or Config.Datacenter');
  }
  return { nodeName: cfg.NodeName, datacenter: cfg.Datacenter, version: typeof cfg.Version === 'string' ? cfg.Version : null };
}

interface RawAgentService {
  ID?: unknown;
  Service?: unknown;
  Port?: unknown;
  Tags?: unknown;
}

/** Services in an /v1/agent/services answer (or a catalog node's `Services`). */
export function agentServices(raw: unknown): AgentService[] {
  const out: AgentService[] = [];
  for (const s of Object.values((raw ?? {}) as Record<string, RawAgentService>)) {
    if (typeof s.ID !== 'string' || typeof s.Service !== 'string') continue;
    const tags = Array.isArray(s.Tags) ? s.Tags.filter((t): t is string => typeof t === 'string') : [];
    out.push({ id: s.ID, name: s.Service, port: typeof s.Port === 'number' ? s.Port : 0, tags });
  }
  return out;
}

export interface KvEntry {
  readonly key: string;
  /** Decoded value; null for a key without one (a folder made by the UI). */
  readonly value: string | null;
  readonly modifyIndex: number;
}

interface RawKvItem {
  Key?: unknown;
  Value?: unknown;
  ModifyIndex?: unknown;
}

/** KV items of a get (one item, a list, or nothing for a 404). */
export function kvEntries(res: unknown): KvEntry[] {
  if (res === undefined || res === null) return [];
  const items = (Array.isArray(res) ? res : [res]) as RawKvItem[];
  return items.flatMap((i) =>
    typeof i.Key === 'string'
      ? [
          {
            key: i.Key,
            value: typeof i.Value === 'string' ? i.Value : null,
            modifyIndex: typeof i.ModifyIndex === 'number' ? i.ModifyIndex : 0,
          },
        ]
      : [],
  );
}
