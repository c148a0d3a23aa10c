/**
 * A second Consul dev agent with ACLs enabled (default deny), started inside a sandbox's node
 * namespace next to the sandbox's own Consul: its own ports there, and a unix socket in the
 * sandbox directory for the test process. Only the sandbox's namespace and directory are used.
 */
import { request } from 'node:http';
import { join } from 'node:path';
import { DC, NODE_NAME, type Sandbox, consulBinary, sleep } from './sandbox.js';

/** HTTP port of the ACL agent inside the node namespace (the sandbox's own Consul has 8500). */
export const ACL_HTTP_PORT = 18500;

export interface AclConsul {
  readonly master: string;
  call(method: string, path: string, body: string | undefined, token: string | null): Promise<{ status: number; body: string }>;
  /** A new-system policy from HCL rules; returns its name. */
  policy(name: string, rules: string): Promise<string>;
  /** A new-system token with these policies; returns its SecretID. */
  token(description: string, policies: readonly string[]): Promise<string>;
  /** A legacy-system client token with these rules; returns its ID (the secret). */
  legacyToken(name: string, rules: string): Promise<string>;
  /** Attaches policies to the anonymous token. */
  anonymous(policies: readonly string[]): Promise<void>;
  /** Decoded KV pairs under a prefix, read with the master token. */
  kv(prefix: string): Promise<Record<string, string>>;
}

export async function startAclConsul(sb: Sandbox, master: string): Promise<AclConsul> {
  const sock = join(sb.dir, 'consul-acl.sock');
  sb.spawnIn(
    sb.nodeNs,
    consulBinary(),
    [
      'agent',
      '-dev',
      '-node',
      NODE_NAME,
      '-datacenter',
      DC,
      '-bind',
      '127.0.0.1',
      '-client',
      '127.0.0.1',
      '-http-port',
      String(ACL_HTTP_PORT),
      '-dns-port',
      '-1',
      '-grpc-port',
      '-1',
      '-server-port',
      '18300',
      '-serf-lan-port',
      '18301',
      '-serf-wan-port',
      '18302',
      '-hcl',
      `addresses { http = "127.0.0.1 unix://${sock}" }`,
      '-hcl',
      `acl { enabled = true, default_policy = "deny", tokens { master = "${master}" } }`,
    ],
    'consul-acl.log',
  );

  const call: AclConsul['call'] = (method, path, body, token) =>
    new Promise((resolve, reject) => {
      const headers: Record<string, string> = { host: 'consul', ...(token === null ? {} : { 'x-consul-token': token }) };
      const req = request({ socketPath: sock, method, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (d: Buffer) => chunks.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error(`consul ${method} ${path} timed out`)));
      req.end(body);
    });

  const must = async (method: string, path: string, body: unknown): Promise<Record<string, unknown>> => {
    const r = await call(method, path, JSON.stringify(body), master);
    if (r.status !== 200) throw new Error(`${method} ${path}: ${r.status} ${r.body}`);
    return JSON.parse(r.body) as Record<string, unknown>;
  };

  // Ready once the master token is accepted (leader elected and ACLs bootstrapped).
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await call('GET', '/v1/acl/token/self', undefined, master).catch(() => null);
    if (r?.status === 200) break;
    if (Date.now() > deadline) throw new Error(`ACL consul did not start: ${sb.log('consul-acl.log').slice(-2000)}`);
    await sleep(100);
  }

  return {
    master,
    call,
    policy: async (name, rules) => (await must('PUT', '/v1/acl/policy', { Name: name, Rules: rules })).Name as string,
    token: async (description, policies) =>
      (await must('PUT', '/v1/acl/token', { Description: description, Policies: policies.map((Name) => ({ Name })) })).SecretID as string,
    legacyToken: async (name, rules) => (await must('PUT', '/v1/acl/create', { Name: name, Type: 'client', Rules: rules })).ID as string,
    anonymous: async (policies) => {
      await must('PUT', '/v1/acl/token/00000000-0000-0000-0000-000000000002', {
        Description: 'Anonymous Token',
        Policies: policies.map((Name) => ({ Name })),
      });
    },
    kv: async (prefix) => {
      const r = await call('GET', `/v1/kv/${prefix}?recurse`, undefined, master);
      if (r.status === 404) return {};
      const items = JSON.parse(r.body) as { Key: string; Value: string | null }[];
      return Object.fromEntries(items.map((i) => [i.Key, i.Value === null ? '' : Buffer.from(i.Value, 'base64').toString()]));
    },
  };
}
