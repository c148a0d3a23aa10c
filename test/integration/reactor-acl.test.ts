/**
 * docs/acl/responder.hcl against a Consul with ACLs enabled (default deny): the responder's
 * token can read what protects addresses, write bans and its own state, and nothing that would
 * open a firewall (rules_allow, service grants).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AclConsul, startAclConsul } from '../helpers/aclConsul.js';
import { ROOT, Sandbox } from '../helpers/sandbox.js';

describe('the responder ACL policy (docs/acl/responder.hcl)', () => {
  let sb: Sandbox;
  let acl: AclConsul;
  let token = '';

  before(async () => {
    sb = await Sandbox.create();
    acl = await startAclConsul(sb, 'e0e0e0e0-1111-4222-8333-b5b5b5b5b5b5');
    await acl.policy('befw-responder', readFileSync(join(ROOT, 'docs/acl/responder.hcl'), 'utf8'));
    token = await acl.token('befw responder', ['befw-responder']);
    const seed = await acl.call('PUT', '/v1/kv/befw-protect/dc1/node1', '{"v":1,"nets":["198.51.100.1/32"]}', acl.master);
    assert.equal(seed.status, 200, seed.body);
  });

  after(async () => {
    if (sb !== undefined) await sb.destroy();
  });

  it('reads befw/, befw-protect/, the agent and its members; writes bans and befw-reactor/', async () => {
    const ok = async (method: string, path: string, body?: string): Promise<string> => {
      const r = await acl.call(method, path, body, token);
      assert.equal(r.status, 200, `${method} ${path}: ${r.status} ${r.body}`);
      return r.body;
    };
    await ok('PUT', '/v1/kv/befw/$ipset$/rules_deny/198.51.100.9', '1900000000');
    await ok('DELETE', '/v1/kv/befw/$ipset$/rules_deny/198.51.100.9');
    await ok('PUT', '/v1/kv/befw-reactor/offences/198.51.100.9', '{}');
    assert.match(await ok('GET', '/v1/kv/befw-protect/?recurse'), /befw-protect\/dc1\/node1/);
    await ok('GET', '/v1/agent/self');
    assert.ok((JSON.parse(await ok('GET', '/v1/agent/members')) as unknown[]).length >= 1, 'members are visible');
    assert.ok((JSON.parse(await ok('GET', '/v1/agent/members?wan=1')) as unknown[]).length >= 1, 'servers are visible');
  });

  it('cannot open anything: no write to rules_allow, service grants, aliases or the published lists', async () => {
    for (const key of [
      'befw/$ipset$/rules_allow/198.51.100.9',
      'befw/$service$/web_tcp_8080/198.51.100.9',
      'befw/$alias$/$ops$/198.51.100.9',
      'befw-protect/dc1/node1',
    ]) {
      const r = await acl.call('PUT', `/v1/kv/${key}`, '-1', token);
      assert.equal(r.status, 403, `${key}: ${r.status} ${r.body}`);
    }
  });
});
