/**
 * The responder's Consul KV access, on the `consul` package: reads with their ModifyIndex, and
 * transactions (/v1/txn) so a ban and its offence record are written together, or not at all,
 * and only if nobody changed them since they were read (check-and-set). This is what keeps the
 * ban action idempotent with several responders and at-least-once delivery.
 *
 * The ACL token comes from a token file (mode 0600) or the environment, and travels only in the
 * X-Consul-Token header (the package's defaults); it is never in argv, a URL or a log line.
 */
import { readFile, stat } from 'node:fs/promises';
import { TOKEN_ENV } from '../../config/load.js';
import { ConsulError, type KvEntry, connectConsul, consulCall, kvEntries, readAgentIdentity, statusOf } from '../../consul/connection.js';

export type { KvEntry };

export type TxnOp =
  | { readonly verb: 'set'; readonly key: string; readonly value: string }
  /** index 0: the key must not exist yet. */
  | { readonly verb: 'cas'; readonly key: string; readonly value: string; readonly index: number }
  | { readonly verb: 'delete-cas'; readonly key: string; readonly index: number };

export type TxnResult = { readonly ok: true } | { readonly ok: false; readonly errors: readonly string[] };

export interface ReactorKv {
  /** The local agent's datacenter and node name. */
  self(): Promise<{ datacenter: string; nodeName: string }>;
  get(key: string): Promise<KvEntry | null>;
  /** Every key under `prefix` (recursive); an absent prefix is an empty list. */
  list(prefix: string): Promise<KvEntry[]>;
  /** Applies all operations atomically; a failed check-and-set is `ok: false`, not an exception. */
  txn(ops: readonly TxnOp[]): Promise<TxnResult>;
}

/** A secret's file (Consul token, VyOS key) is missing, too open or malformed: a config problem. */
export class SecretFileError extends Error {
  constructor(
    readonly what: string,
    readonly path: string,
    reason: string,
  ) {
    super(`${what} file ${path}: ${reason}`);
    this.name = 'SecretFileError';
  }
}

/** Reads a secret from a file that only its owner may read; the error never holds the secret. */
export async function readSecretFile(path: string, what: string, valid: RegExp): Promise<string> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new SecretFileError(what, path, `cannot read: ${(err as Error).message}`);
  }
  if ((st.mode & 0o077) !== 0) throw new SecretFileError(what, path, 'readable by group or others; chmod 600 it');
  const text = (await readFile(path, 'utf8')).trim();
  if (!valid.test(text)) throw new SecretFileError(what, path, `does not hold a valid ${what}`);
  return text;
}

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

    async txn(ops) {
      const body = ops.map((o) => {
        const value = 'value' in o ? Buffer.from(o.value).toString('base64') : undefined;
        if (o.verb === 'set') return { KV: { Verb: 'set', Key: o.key, Value: value } };
        if (o.verb === 'cas') return { KV: { Verb: 'cas', Key: o.key, Value: value, Index: o.index } };
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
