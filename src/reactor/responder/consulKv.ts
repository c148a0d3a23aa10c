/**
 * The responder's Consul KV access, on the `consul` package: reads with their ModifyIndex, and
 * transactions (/v1/txn) so a ban and its offence record are written together, or not at all,
 * and only if nobody changed them since they were read (check-and-set). This is what keeps the
 * ban action idempotent with several responders and at-least-once delivery.
 *
 * The ACL token comes from a token file (mode 0600) or the environment, and travels only in the
 * X-Consul-Token header (the package's defaults); it is never in argv, a URL or a log line.
 */
import { TOKEN_ENV } from '../../config/load.js';
import { SecretFileError, readSecretFile } from '../secretFile.js';
import { ConsulError, type KvEntry, connectConsul, consulCall, kvEntries, readAgentIdentity, statusOf } from '../../consul/connection.js';

export type { KvEntry };

export type TxnOp =
  | { readonly verb: 'set'; readonly key: string; readonly value: string }
  /** index 0: the key must not exist yet. */
  | { readonly verb: 'cas'; readonly key: string; readonly value: string; readonly index: number }
  | { readonly verb: 'delete-cas'; readonly key: string; readonly index: number }
  | { readonly verb: 'delete'; readonly key: string };

/** A Consul agent as /v1/agent/members reports it. */
export interface ConsulMember {
  readonly name: string;
  readonly addr: string;
  /** "consul" for servers, "node" for clients. */
  readonly role: string;
}

export type TxnResult = { readonly ok: true } | { readonly ok: false; readonly errors: readonly string[] };

export interface ReactorKv {
  /** The local agent's datacenter and node name. */
  self(): Promise<{ datacenter: string; nodeName: string }>;
  get(key: string): Promise<KvEntry | null>;
  /** Every key under `prefix` (recursive); an absent prefix is an empty list. */
  list(prefix: string): Promise<KvEntry[]>;
  /** Applies all operations atomically; a failed check-and-set is `ok: false`, not an exception. */
  txn(ops: readonly TxnOp[]): Promise<TxnResult>;
  /** The agents the local agent knows: its datacenter's (LAN), or every datacenter's servers (WAN). */
  members(wan: boolean): Promise<ConsulMember[]>;
}

export { SecretFileError, readSecretFile };

export async function resolveConsulToken(tokenFile: string | null, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  if (tokenFile !== null) return readSecretFile(tokenFile, 'Consul ACL token', /^[A-Za-z0-9._-]{1,256}$/);
  for (const name of TOKEN_ENV) {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
  }
  return null;
}

export interface ReactorKvOptions {
  readonly host: string;
  readonly port: number;
  readonly secure: boolean;
  readonly token: string | null;
  readonly timeoutMs: number;
}

export function createReactorKv(opts: ReactorKvOptions): ReactorKv {
  const client = connectConsul(opts);
  const timeout = opts.timeoutMs;
  const call = consulCall;

  return {
    async self() {
      const id = await readAgentIdentity(client, timeout);
      return { datacenter: id.datacenter, nodeName: id.nodeName };
    },

    async get(key) {
      return kvEntries(await call(`kv get ${key}`, () => client.kv.get({ key, timeout } as never)))[0] ?? null;
    },

    async list(prefix) {
      return kvEntries(await call(`kv list ${prefix}`, () => client.kv.get({ key: prefix, recurse: true, timeout } as never)));
    },

    async members(wan) {
      const res = await call(`agent/members${wan ? '?wan=1' : ''}`, () => client.agent.members({ wan, timeout } as never));
      if (!Array.isArray(res)) throw new ConsulError('agent/members', null, 'answer is not a list');
      return (res as { Name?: unknown; Addr?: unknown; Tags?: { role?: unknown } }[]).flatMap((m) =>
        typeof m.Addr === 'string' && m.Addr !== ''
          ? [{ name: typeof m.Name === 'string' ? m.Name : '', addr: m.Addr, role: typeof m.Tags?.role === 'string' ? m.Tags.role : '' }]
          : [],
      );
    },

    async txn(ops) {
      const body = ops.map((o) => {
        const value = 'value' in o ? Buffer.from(o.value).toString('base64') : undefined;
        if (o.verb === 'set') return { KV: { Verb: 'set', Key: o.key, Value: value } };
        if (o.verb === 'cas') return { KV: { Verb: 'cas', Key: o.key, Value: value, Index: o.index } };
        if (o.verb === 'delete') return { KV: { Verb: 'delete', Key: o.key } };
        return { KV: { Verb: 'delete-cas', Key: o.key, Index: o.index } };
      });
      try {
        await client.transaction.create(body as never, { timeout } as never);
        return { ok: true };
      } catch (err) {
        const e = err as { statusCode?: unknown; response?: { body?: unknown } };
        // 409: the transaction was rolled back (a check-and-set lost a race); the body says why.
        if (e.statusCode === 409) {
          const errors = ((e.response?.body as { Errors?: { What?: unknown }[] } | undefined)?.Errors ?? []).map((x) =>
            typeof x.What === 'string' ? x.What : 'rolled back',
          );
          return { ok: false, errors: errors.length > 0 ? errors : ['rolled back'] };
        }
        throw new ConsulError('txn', statusOf(err), err);
      }
    },
  };
}
