/**
 * ACL tokens with the operator commands and `befw doctor`, against a Consul dev agent with ACLs
 * enabled (default deny) in the sandbox, using the sample policies in docs/acl/ (both the 1.4+
 * system and legacy tokens): where the token comes from, what each role can and cannot do, that
 * a refused write leaves nothing behind, and that no token ever shows up in any output.
 */
import assert from 'node:assert/strict';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ACL_HTTP_PORT, type AclConsul, startAclConsul } from '../helpers/aclConsul.js';
import { Cli } from '../helpers/cli.js';
import { ROOT, Sandbox } from '../helpers/sandbox.js';

const doc = (name: string): string => readFileSync(join(ROOT, 'docs/acl', name), 'utf8');
const KEY = 'befw/$service$/web_tcp_8080/198.51.100.7';

describe('ACL tokens with the operator commands and doctor', () => {
  let sb: Sandbox;
  let acl: AclConsul;
  let cli: Cli;
  const tokens: Record<string, string> = {};
  const conf: Record<string, string> = {};

  /** A config for the ACL agent; the token, if any, in a token_file of mode 0600. */
  function config(name: string, token: string | null): string {
    const lines = [`address=127.0.0.1:${ACL_HTTP_PORT}`, `services=${sb.dir}/services`, 'consul_timeout_sec=5'];
    if (token !== null) {
      const file = sb.writeFile(`${name}.token`, `${token}\n`);
      chmodSync(file, 0o600);
      lines.push(`token_file=${file}`);
    }
    return sb.writeFile(`${name}.conf`, lines.join('\n'));
  }

  before(async () => {
    sb = await Sandbox.create();
    acl = await startAclConsul(sb, 'f0f0f0f0-1111-4222-8333-a4a4a4a4a4a4');
    await acl.policy('befw-agent', doc('agent-node.hcl'));
    await acl.policy('befw-agent-node1', doc('agent-node-services.hcl'));
    await acl.policy('befw-engineer', doc('engineer.hcl'));
    await acl.policy('befw-anonymous', doc('anonymous.hcl'));
    await acl.policy('agent-read-only', 'agent_prefix "" { policy = "read" }');
    await acl.anonymous(['befw-anonymous']);
    tokens.agent = await acl.token('befw agent node1', ['befw-agent', 'befw-agent-node1']);
    tokens.engineer = await acl.token('befw engineer', ['befw-engineer']);
    tokens.noread = await acl.token('agent read only', ['agent-read-only']);
    tokens.legacyAgent = await acl.legacyToken('legacy befw agent', doc('legacy/agent-node.hcl'));
    tokens.legacyEngineer = await acl.legacyToken('legacy befw engineer', doc('legacy/engineer.hcl'));
    await acl.policy('befw-kv-only', 'key_prefix "befw/" { policy = "write" }');
    tokens.kvOnly = await acl.token('befw kv only', ['befw-kv-only']);
    for (const [name, token] of Object.entries(tokens)) conf[name] = config(name, token);
    // A node of the fleet that runs web (8080/tcp), in the catalog only: grants to web_tcp_8080
    // pass the CLI's catalog check for every token that may read services.
    const fixture = { Node: 'web-01', Address: '192.0.2.11', Service: { ID: 'web', Service: 'web', Port: 8080, Tags: ['befw'] } };
    const reg = await acl.call('PUT', '/v1/catalog/register', JSON.stringify(fixture), acl.master);
    assert.equal(reg.status, 200, reg.body);
    conf.master = config('master', acl.master);
    conf.none = config('none', null);
    cli = await Cli.start(sb, conf.none);
  });

  after(async () => {
    if (sb !== undefined) await sb.destroy();
  });

  it('an engineer token (token_file) writes befw/; a node token reads it but cannot write', async () => {
    await cli.ok(['client', 'add', 'web_tcp_8080', '198.51.100.7', '--forever'], {}, conf.engineer);
    await cli.ok(['deny', '198.51.100.66', '--ttl', '1h'], {}, conf.engineer);
    assert.equal((await acl.kv('befw/'))[KEY], '-1');

    const before = await acl.kv('befw/');
    await cli.fails(
      ['client', 'add', 'web_tcp_8080', '198.51.100.8', '--forever'],
      /^befw: error: consul kv put befw\/\$service\$\/web_tcp_8080\/198\.51\.100\.8 failed \(HTTP 403\): permission denied: the ACL token lacks key write on befw\/\$service\$\/web_tcp_8080\/198\.51\.100\.8$/,
      {},
      conf.agent,
    );
    await cli.fails(
      ['client', 'rm', 'web_tcp_8080', '198.51.100.7'],
      /HTTP 403\): permission denied: the ACL token lacks key write/,
      {},
      conf.agent,
    );
    assert.deepEqual(await acl.kv('befw/'), before, 'nothing written or deleted');

    const expired = 'befw/$service$/web_tcp_8080/198.51.100.50';
    const put = await acl.call('PUT', `/v1/kv/${expired}`, String(Math.floor(Date.now() / 1000) - 60), acl.master);
    assert.equal(put.status, 200);
    await cli.fails(
      ['purge-expired'],
      /consul kv delete befw\/\$service\$\/web_tcp_8080\/198\.51\.100\.50 failed \(HTTP 403\): permission denied/,
      {},
      conf.agent,
    );
    assert.ok((await acl.kv('befw/'))[expired] !== undefined, 'still there');
    assert.match(await cli.ok(['purge-expired'], {}, conf.engineer), /^deleted 1 expired entry\n/);
    assert.equal((await acl.kv('befw/'))[expired], undefined);
    assert.match(await cli.ok(['client', 'ls'], {}, conf.agent), /^web_tcp_8080\s+198\.51\.100\.7\s+world\s+never expires$/m);
  });

  it('the anonymous token reads for dashboards and cannot write', async () => {
    assert.match(await cli.ok(['deny', 'ls'], {}, conf.none), /^rules_deny\s+198\.51\.100\.66\s+world/m);
    await cli.fails(
      ['allow', '203.0.113.5', '--forever'],
      /HTTP 403\): permission denied: the ACL token lacks key write on befw\/\$ipset\$\/rules_allow\/203\.0\.113\.5/,
      {},
      conf.none,
    );
    assert.equal((await acl.kv('befw/'))['befw/$ipset$/rules_allow/203.0.113.5'], undefined);
  });

  it('takes the token from the environment when the config names none', async () => {
    await cli.ok(['allow', '203.0.113.5', '--ttl', '1h'], { BEFW_CONSUL_TOKEN: tokens.engineer! }, conf.none);
    await cli.ok(['allow', '203.0.113.6', '--ttl', '1h'], { CONSUL_HTTP_TOKEN: tokens.engineer! }, conf.none);
    const tree = await acl.kv('befw/$ipset$/');
    assert.ok(tree['befw/$ipset$/rules_allow/203.0.113.5'] !== undefined && tree['befw/$ipset$/rules_allow/203.0.113.6'] !== undefined);
  });

  it('a token that cannot read the catalog gets a refusal that says so, not a silent pass; --force writes', async () => {
    const before = await acl.kv('befw/');
    await cli.fails(
      ['client', 'add', 'web_tcp_8080', '198.51.100.11', '--forever'],
      /^befw: error: no service has set web_tcp_8080 \(catalog of dc1\); the catalog shows no befw service at all: does the token have service read\? nothing written \(--force writes it anyway\)$/,
      {},
      conf.kvOnly,
    );
    await cli.fails(
      ['deny', '198.51.100.11', '--forever', '--dc', 'dc1', '--node', 'node1'],
      /no node node1 in the catalog of dc1; the catalog shows no node at all there: does the token have node read\? nothing written/,
      {},
      conf.kvOnly,
    );
    assert.deepEqual(await acl.kv('befw/'), before, 'nothing written');
    const forced = await cli.ok(['client', 'add', 'web_tcp_8080', '198.51.100.11', '--forever', '--force'], {}, conf.kvOnly);
    assert.match(forced, /warning: no service has set web_tcp_8080 .*written anyway \(--force\)/);
    assert.equal((await acl.kv('befw/'))['befw/$service$/web_tcp_8080/198.51.100.11'], '-1');
  });

  it('refuses a token_file others can read, before sending anything', async () => {
    const loose = config('loose', tokens.engineer!);
    chmodSync(join(sb.dir, 'loose.token'), 0o644);
    const before = await acl.kv('befw/');
    await cli.fails(
      ['deny', '198.51.100.99', '--forever'],
      /^befw: config error: .*loose\.conf \(token_file\): .*loose\.token is readable by group or others; chmod 600 it$/,
      {},
      loose,
    );
    assert.deepEqual(await acl.kv('befw/'), before);
  });

  it('the node policy registers its own services only', async () => {
    assert.match(await cli.ok(['service', 'register', 'web', '8080', '--enforcing'], {}, conf.agent), /^registered: service web/);
    await cli.fails(
      ['service', 'register', 'other', '80'],
      /failed \(HTTP 403\): permission denied: the ACL token lacks service write on "other"/,
      {},
      conf.agent,
    );
    await cli.ok(['service', 'deregister', 'web'], {}, conf.agent);
  });

  it('legacy tokens from docs/acl/legacy: the engineer writes, the node reads, registers its services, writes nothing else', async () => {
    await cli.ok(['client', 'add', 'web:8080', '198.51.100.9', '--ttl', '2h'], {}, conf.legacyEngineer);
    assert.ok((await acl.kv('befw/'))['befw/$service$/web_tcp_8080/198.51.100.9'] !== undefined);
    await cli.fails(['client', 'add', 'web:8080', '198.51.100.10', '--ttl', '2h'], /HTTP 403\): permission denied/, {}, conf.legacyAgent);
    assert.match(await cli.ok(['client', 'ls', 'web_tcp_8080'], {}, conf.legacyAgent), /198\.51\.100\.9/);
    await cli.ok(['service', 'register', 'web', '8080'], {}, conf.legacyAgent);
    await cli.fails(['service', 'register', 'db', '5432'], /lacks service write on "db"/, {}, conf.legacyAgent);
    await cli.ok(['service', 'deregister', 'web'], {}, conf.legacyAgent);
  });

  it('doctor: the node policy passes without warnings about Consul', async () => {
    const r = await cli.run(['doctor', '--json'], {}, conf.agent);
    const checks = (JSON.parse(r.stdout) as { ok: boolean; checks: { area: string; status: string; message: string }[] }).checks;
    const byArea = (area: string): string[] => checks.filter((c) => c.area === area).map((c) => `${c.status} ${c.message}`);
    assert.equal(r.code, 0, r.stderr);
    assert.match(byArea('consul').join(), /^OK reachable at 127\.0\.0\.1:18500: node node1, datacenter dc1, Consul /);
    assert.deepEqual(byArea('acl'), ['OK token "befw agent node1" with policies befw-agent, befw-agent-node1']);
    assert.match(byArea('kv-read').join(), /^OK can read befw\//);
    assert.match(byArea('catalog').join(), /^OK node node1 visible/);
    assert.deepEqual(byArea('least-priv'), ['OK the token cannot write KV or read ACL tokens, as a node token should not']);
    assert.ok(!checks.some((c) => c.status === 'FAIL'), JSON.stringify(checks));
  });

  it('doctor: warns when a token can write more than a node needs', async () => {
    const engineer = await cli.run(['doctor'], {}, conf.engineer);
    assert.equal(engineer.code, 0, engineer.stderr);
    assert.match(
      engineer.stdout,
      /^WARN {2}least-priv {2}the token can write befw\/ \(a compromised node could open every node; only engineers need this\); fine for an engineer's token/m,
    );
    const master = await cli.run(['doctor'], {}, conf.master);
    assert.match(master.stdout, /^WARN {2}least-priv {2}the token can write befw\/ .*; and write KV outside befw\/; and read ACL tokens/m);
  });

  it('doctor: fails, and exits non-zero, when the token cannot read what the agent needs', async () => {
    const r = await cli.run(['doctor'], {}, conf.noread);
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^FAIL {2}kv-read {5}the token may not read befw\/: the agent could only enforce state\.bin/m);
    assert.match(r.stdout, /^FAIL {2}catalog {5}node node1 not visible in the catalog/m);
    assert.match(r.stdout, /^OK {4}least-priv/m);
    assert.equal(r.stderr, 'befw: error: doctor found 2 failing check(s); see the FAIL lines\n');
    const anon = await cli.run(['doctor'], {}, conf.none);
    assert.match(anon.stdout, /^WARN {2}acl {9}no token configured: requests run as the anonymous token$/m);
  });

  it('doctor: a Consul without ACLs is a warning', async () => {
    const open = sb.writeFile('open.conf', `services=${sb.dir}/services\n`);
    const r = await cli.run(['doctor'], {}, open);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /^WARN {2}acl {9}ACLs are disabled on this Consul/m);
  });

  it('no token ever appears in any output', () => {
    assert.ok(cli.transcript.length > 20);
    const secrets = [...Object.values(tokens), acl.master];
    for (const run of cli.transcript) {
      for (const s of secrets) {
        assert.ok(!run.stdout.includes(s) && !run.stderr.includes(s), `a token leaked in befw ${run.args.join(' ')}`);
        assert.ok(!run.args.some((a) => a.includes(s)), 'tokens are never arguments');
      }
    }
  });
});
