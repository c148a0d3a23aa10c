/**
 * The operator side of Consul: what the `befw` access commands and `befw doctor` need beyond the
 * agent's read-only client (client.ts). KV listing with ModifyIndex, check-and-set writes and
 * deletes, agent service registration, the catalog reads that check a grant before it is
 * written, and the permission probes of `befw doctor`.
 *
 * Same rules as client.ts: the local agent only, the token in the X-Consul-Token header (never in
 * a URL, an argument or a message), and every failure a ConsulError naming the operation. A 403
 * gets a hint saying which permission was missing, because "Permission denied" alone does not
 * tell an operator which policy to fix.
 */
import type { AgentService } from '../core/types.js';
import type { ServiceRegistration } from './client.js';
import { ConsulError, type KvEntry, agentIdentity, agentServices, connectConsul, kvEntries, statusOf } from './connection.js';

export type { KvEntry };

export interface KvWriter {
  /** Every key under `prefix`, sorted; an absent prefix is an empty list. */
  list(prefix: string): Promise<KvEntry[]>;
  /**
   * Writes `value` only if the key is still as read: `cas` 0 means "only if absent", N means
   * "only if its ModifyIndex is still N". Resolves false when Consul refused the swap.
   */
  putCas(key: string, value: string, cas: number): Promise<boolean>;
  /** Deletes the key only if its ModifyIndex is still `modifyIndex`; false when it changed. */
  deleteCas(key: string, modifyIndex: number): Promise<boolean>;
  /**
   * Applies every operation or none (Consul's /v1/txn): an entry and its audit record land
   * together. Resolves false when a check-and-set failed (rolled back). Optional: a writer
   * without it writes the entry alone.
   */
  txn?(ops: readonly KvTxnOp[]): Promise<boolean>;
}

export type KvTxnOp =
  | { readonly verb: 'set'; readonly key: string; readonly value: string }
  /** index 0: only if the key does not exist yet. */
  | { readonly verb: 'cas'; readonly key: string; readonly value: string; readonly index: number }
  | { readonly verb: 'delete-cas'; readonly key: string; readonly index: number }
  /** Deletes the key if it is there (an entry's audit record going with it). */
  | { readonly verb: 'delete'; readonly key: string };

export interface ServiceWriter {
  services(): Promise<AgentService[]>;
  register(service: ServiceRegistration): Promise<void>;
  deregister(id: string): Promise<void>;
}

export interface AgentInfo {
  readonly nodeName: string;
  readonly datacenter: string;
  readonly version: string | null;
}

export type AclSelf =
  | { readonly state: 'disabled' }
  | { readonly state: 'token'; readonly description: string; readonly policies: readonly string[] }
  | { readonly state: 'unknown-token' };

/** Questions `befw doctor` asks; none of them changes anything in Consul (see kvWritable). */
export interface PermissionProbes {
  self(): Promise<AgentInfo>;
  /** True if the token may read `key` (a single-key read answers 403 when it may not). */
  kvReadable(key: string): Promise<boolean>;
  /** True if the token may write `key`; `key` must not exist. */
  kvWritable(key: string): Promise<boolean>;
  aclSelf(): Promise<AclSelf>;
  /** True if the token may list ACL tokens (acl:read): more than any befw role needs. */
  aclTokensReadable(): Promise<boolean>;
  /** True if the node is visible in the catalog with this token (node:read). */
  catalogNodeVisible(node: string): Promise<boolean>;
}

/** A node as the catalog lists it. */
export interface CatalogNode {
  readonly name: string;
  readonly address: string;
}

/** One instance of a service in the catalog: the node it runs on, its port and its tags. */
export interface CatalogInstance {
  readonly node: string;
  /** The instance's service ID (later BEFW releases name its set after it). */
  readonly id: string;
  readonly port: number;
  readonly tags: readonly string[];
}

/** A LAN member of the local agent's cluster (`/v1/agent/members`). */
export interface ConsulMember {
  readonly name: string;
  readonly addr: string;
}

/**
 * What the access commands check a grant against before writing it: the datacenters, nodes and
 * services the catalog knows, and the local agent's members (the Consul peers nodes protect).
 * Catalog reads are stale reads (any server answers). A token without node or service read sees
 * a filtered (possibly empty) answer, not an error: Consul filters lists by ACL.
 */
export interface CatalogReader {
  datacenters(): Promise<string[]>;
  catalogNodes(dc: string): Promise<CatalogNode[]>;
  /** Service names in `dc` with their tags (the union over the instances). */
  catalogServices(dc: string): Promise<Map<string, string[]>>;
  catalogService(name: string, dc: string): Promise<CatalogInstance[]>;
  members(): Promise<ConsulMember[]>;
}

export interface OperatorConsul extends KvWriter, ServiceWriter, PermissionProbes, CatalogReader {
  close(): void;
}

export interface OperatorConsulOptions {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly token: string | null;
  readonly timeoutMs: number;
  /** Consul's HTTP API on a unix socket instead of host:port (Consul's `addresses.http`). */
  readonly socketPath?: string;
  /** Datacenter whose KV holds befw/ (the config's `dc`); null: the agent's own. */
  readonly dc: string | null;
}

/**
 * The package's request primitive. It has no call for /acl/token/self or /acl/tokens; its own
 * endpoints are thin wrappers over this same method, so the probes use it the same way.
 */
interface RawGet {
  _get(
    req: { name: string; path: string; query?: Record<string, string>; headers?: Record<string, string>; timeout?: number },
    next: unknown,
  ): Promise<unknown>;
}

function hint403(operation: string, need: string): (err: unknown) => never {
  return (err) => {
    const status = statusOf(err);
    if (status === 403) throw new ConsulError(operation, 403, new Error(`permission denied: the ACL token lacks ${need}`));
    throw new ConsulError(operation, status, err);
  };
}

export function createOperatorConsul(opts: OperatorConsulOptions): OperatorConsul {
  const client = connectConsul(opts);
  const timeout = opts.timeoutMs;
  const dc = opts.dc === null ? {} : { dc: opts.dc };
  // As in client.ts: the typings omit the per-request `timeout` (and `dc` on some calls) that
  // the runtime honours, hence `as never` on the option objects.

  const raw = client as unknown as RawGet;
  const rawGet = (name: string, path: string): Promise<unknown> =>
    raw._get(
      { name, path, timeout, ...(opts.token === null ? {} : { headers: { 'x-consul-token': opts.token } }) },
      (request: { err?: unknown; res?: { body?: unknown } }, next: (stop: boolean, err?: unknown, res?: unknown) => void) =>
        request.err === undefined ? next(false, undefined, request.res?.body) : next(false, request.err),
    );

  return {
    async list(prefix) {
      const res = await client.kv
        .get({ key: prefix, recurse: true, timeout, ...dc } as never)
        .catch(hint403(`kv list ${prefix}`, `key read on ${prefix}`));
      return kvEntries(res).sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },

    async putCas(key, value, cas) {
      const res = await client.kv.set({ key, value, cas, timeout, ...dc } as never).catch(hint403(`kv put ${key}`, `key write on ${key}`));
      // The package turns Consul's `false` body into undefined: only `true` is a completed swap.
      return res === true;
    },

    async deleteCas(key, modifyIndex) {
      const res = await client.kv
        .del({ key, cas: modifyIndex, timeout, ...dc } as never)
        .catch(hint403(`kv delete ${key}`, `key write on ${key}`));
      return res === true;
    },

    async txn(ops) {
      const body = ops.map((o) => {
        if (o.verb === 'delete-cas') return { KV: { Verb: 'delete-cas', Key: o.key, Index: o.index } };
        if (o.verb === 'delete') return { KV: { Verb: 'delete', Key: o.key } };
        const Value = Buffer.from(o.value).toString('base64');
        return o.verb === 'set' ? { KV: { Verb: 'set', Key: o.key, Value } } : { KV: { Verb: 'cas', Key: o.key, Value, Index: o.index } };
      });
      const keys = ops.map((o) => o.key).join(', ');
      try {
        await client.transaction.create(body as never, { timeout, ...dc } as never);
        return true;
      } catch (err) {
        if (statusOf(err) !== 409) return hint403(`kv txn ${keys}`, `key write on ${keys}`)(err);
        // 409: rolled back, nothing written. Consul reports a denied operation this way too
        // (per operation, not as a 403): that is a permission error on that key, not a race.
        const errors = (err as { response?: { body?: { Errors?: { OpIndex?: unknown; What?: unknown }[] } } }).response?.body?.Errors ?? [];
        const denied = errors.find((e) => typeof e.What === 'string' && /permission denied/i.test(e.What));
        if (denied === undefined) return false;
        const op = ops[typeof denied.OpIndex === 'number' ? denied.OpIndex : 0] ?? ops[0];
        const verb = op?.verb === 'delete-cas' || op?.verb === 'delete' ? 'delete' : 'put';
        throw new ConsulError(
          `kv ${verb} ${op?.key ?? keys}`,
          403,
          new Error(`permission denied: the ACL token lacks key write on ${op?.key ?? keys}`),
        );
      }
    },

    async services() {
      const res = await client.agent.service.list({ timeout } as never).catch(hint403('agent/services', 'service read'));
      if (typeof res !== 'object' || res === null) throw new ConsulError('agent/services', null, 'answer is not an object');
      return agentServices(res).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    },

    async register(s) {
      await client.agent.service
        .register({ id: s.id, name: s.name, port: s.port, tags: [...s.tags], timeout } as never)
        .catch(hint403(`register ${s.id}`, `service write on "${s.name}"`));
    },

    async deregister(id) {
      await client.agent.service.deregister({ id, timeout } as never).catch(hint403(`deregister ${id}`, `service write on "${id}"`));
    },

    async self() {
      return agentIdentity(await client.agent.self({ timeout } as never).catch(hint403('agent/self', 'agent read on this node')));
    },

    async kvReadable(key) {
      try {
        // A single-key read is checked against the key's ACL before the lookup (403 when
        // denied); a recursive listing would instead silently filter what it may not show.
        await client.kv.get({ key, timeout, ...dc } as never);
        return true;
      } catch (err) {
        if (statusOf(err) === 403) return false;
        throw new ConsulError(`kv get ${key}`, statusOf(err), err);
      }
    },

    async kvWritable(key) {
      try {
        // A check-and-set write with a non-zero index on a key that does not exist is refused by
        // the state store ("index does not match") without writing anything, but only after the
        // ACL check has passed: 403 means no write permission, a refused swap means permission.
        // The index is one no real key reaches, the key is a fresh random name, and it is one
        // the agent's parser rejects, so even a race could never produce an enforced entry.
        await client.kv.set({ key, value: 'befw doctor probe', cas: Number.MAX_SAFE_INTEGER, timeout, ...dc } as never);
        return true;
      } catch (err) {
        if (statusOf(err) === 403) return false;
        throw new ConsulError(`kv write probe ${key}`, statusOf(err), err);
      }
    },

    async aclSelf() {
      try {
        const res = (await rawGet('acl.token.self', '/acl/token/self')) as { Description?: unknown; Policies?: unknown } | undefined;
        // Only the description and policy names are kept: the answer also carries the SecretID.
        const policies = Array.isArray(res?.Policies)
          ? res.Policies.flatMap((p: { Name?: unknown }) => (typeof p?.Name === 'string' ? [p.Name] : []))
          : [];
        return { state: 'token', description: typeof res?.Description === 'string' ? res.Description : '', policies };
      } catch (err) {
        const status = statusOf(err);
        if (status === 401) return { state: 'disabled' };
        if (status === 403) return { state: 'unknown-token' };
        throw new ConsulError('acl/token/self', status, err);
      }
    },

    async aclTokensReadable() {
      try {
        await rawGet('acl.tokens', '/acl/tokens');
        return true;
      } catch (err) {
        const status = statusOf(err);
        if (status === 403 || status === 401) return false;
        throw new ConsulError('acl/tokens', status, err);
      }
    },

    async catalogNodeVisible(node) {
      const res: unknown = await client.catalog.node
        .services({ node, timeout } as never)
        .catch(hint403(`catalog node ${node}`, 'node read'));
      return res !== null && res !== undefined;
    },

    async datacenters() {
      const res: unknown = await client.catalog.datacenters({ timeout } as never).catch(hint403('catalog/datacenters', 'catalog access'));
      return Array.isArray(res) ? res.filter((d): d is string => typeof d === 'string') : [];
    },

    async catalogNodes(inDc) {
      const res: unknown = await client.catalog.node
        .list({ dc: inDc, stale: true, timeout } as never)
        .catch(hint403(`catalog/nodes?dc=${inDc}`, 'node read'));
      if (!Array.isArray(res)) return [];
      return res.flatMap((n: { Node?: unknown; Address?: unknown }) =>
        typeof n?.Node === 'string' ? [{ name: n.Node, address: typeof n.Address === 'string' ? n.Address : '' }] : [],
      );
    },

    async catalogServices(inDc) {
      const res: unknown = await client.catalog.service
        .list({ dc: inDc, stale: true, timeout } as never)
        .catch(hint403(`catalog/services?dc=${inDc}`, 'service read'));
      const out = new Map<string, string[]>();
      if (typeof res !== 'object' || res === null) return out;
      for (const [name, tags] of Object.entries(res as Record<string, unknown>)) {
        out.set(name, Array.isArray(tags) ? tags.filter((t): t is string => typeof t === 'string') : []);
      }
      return out;
    },

    async catalogService(name, inDc) {
      const res: unknown = await client.catalog.service
        .nodes({ service: name, dc: inDc, stale: true, timeout } as never)
        .catch(hint403(`catalog/service/${name}?dc=${inDc}`, `service read on "${name}"`));
      if (!Array.isArray(res)) return [];
      return res.flatMap((i: { Node?: unknown; ServiceID?: unknown; ServicePort?: unknown; ServiceTags?: unknown }) =>
        typeof i?.Node === 'string'
          ? [
              {
                node: i.Node,
                id: typeof i.ServiceID === 'string' ? i.ServiceID : name,
                port: typeof i.ServicePort === 'number' ? i.ServicePort : 0,
                tags: Array.isArray(i.ServiceTags) ? i.ServiceTags.filter((t): t is string => typeof t === 'string') : [],
              },
            ]
          : [],
      );
    },

    async members() {
      const res: unknown = await client.agent.members({ timeout } as never).catch(hint403('agent/members', 'node read'));
      if (!Array.isArray(res)) return [];
      return res.flatMap((m: { Name?: unknown; Addr?: unknown }) =>
        typeof m?.Name === 'string' && typeof m.Addr === 'string' ? [{ name: m.Name, addr: m.Addr }] : [],
      );
    },

    close() {
      client.destroy();
    },
  };
}
