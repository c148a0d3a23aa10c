/**
 * `befw explain` against the real thing: a Consul dev agent and the befw agent in a namespace,
 * real TCP connections from a second namespace. For each case the CLI's verdict (from the plan it
 * compiles) must be what a connection attempt actually meets in the kernel: ACCEPT and
 * "falls through to INPUT" (the sandbox's INPUT accepts) connect, REJECT is refused at once,
 * DROP times out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Explanation } from '../../src/core/explain.js';
import { Cli } from '../helpers/cli.js';
import {
  type AgentProcess,
  NODE_MGMT_V4,
  NODE_V4,
  NODE_V6,
  Sandbox,
  clientV4,
  clientV6,
  mgmtV4,
  nowSec,
  sleep,
} from '../helpers/sandbox.js';

const WEB = 8080; // enforcing
const BLOG = 8081; // default mode

describe('befw explain agrees with the kernel', () => {
  let sb: Sandbox;
  let cli: Cli;
  let agent: AgentProcess;

  before(async () => {
    sb = await Sandbox.create();
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
    await sb.registerService({ name: 'blog', port: BLOG, tags: ['befw'] });
    await sb.listen([WEB, BLOG]);
    const t = nowSec();
    await sb.kvPutMany([
      { key: `befw/$service$/web_tcp_${WEB}/${clientV4(2)}`, value: '-1' },
      { key: `befw/$service$/web_tcp_${WEB}/${clientV6(2)}`, value: String(t + 3600) },
      // A deny through an alias chain, with expiry on the alias link.
      { key: 'befw/$ipset$/rules_deny/$bad$', value: String(t + 7200) },
      { key: 'befw/$alias$/$bad$/$scanners$', value: String(t + 3600) },
      { key: 'befw/$alias$/$scanners$/198.51.100.4', value: '-1' },
      { key: `befw/$service$/web_tcp_${WEB}/${clientV4(4)}`, value: '-1' },
      // A deny on a management address: protected, so never enforced.
      { key: `befw/$ipset$/rules_deny/${mgmtV4(2)}`, value: '-1' },
    ]);
    // Another node, in the catalog only, for --node.
    const r = await sb.consul(
      'PUT',
      '/v1/catalog/register',
      JSON.stringify({
        Node: 'web-02',
        Address: '192.0.2.12',
        Service: { ID: 'api', Service: 'api', Port: 9000, Tags: ['befw', 'enforcing'] },
      }),
    );
    assert.equal(r.status, 200, r.body);
    const config = sb.writeFile(
      'befw.conf',
      [`services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, `state=${sb.dir}/state/state.bin`, 'set.rules_allow=203.0.113.0/28'].join(
        '\n',
      ),
    );
    agent = sb.startAgent(config);
    const deadline = Date.now() + 20_000;
    while (!agent.events().some((e) => e.event === 'applied')) {
      if (Date.now() > deadline) throw new Error(`agent never applied:\n${sb.log('agent.log')}`);
      await sleep(50);
    }
    cli = await Cli.start(sb, config);
  });

  after(async () => {
    if (agent !== undefined) await agent.stop();
    if (sb !== undefined) await sb.destroy();
  });

  async function explainJson(args: string[]): Promise<Explanation & { caveats: string[] }> {
    return JSON.parse(await cli.ok(['explain', ...args, '--json'])) as Explanation & { caveats: string[] };
  }

  /** The verdict for src -> dst:port, checked against a real connection. */
  async function agree(src: string, dst: string, port: number): Promise<string> {
    const e = await explainJson([src, `${port}/tcp`]);
    const verdict = e.probes[0]?.verdict ?? '';
    const open = verdict === 'ACCEPT' || verdict === 'INPUT';
    await sb.waitFor(open ? 'open' : 'blocked', src, dst, port, 5000);
    const seen = await sb.probe(src, dst, port, 400);
    if (verdict === 'REJECT') assert.equal(seen, 'refused', `${src}:${port} explained REJECT`);
    else if (verdict === 'DROP') assert.equal(seen, 'timeout', `${src}:${port} explained DROP`);
    else assert.equal(seen, 'open', `${src}:${port} explained ${verdict}`);
    return verdict;
  }

  it('a granted client is accepted, a stranger dropped by the enforcing service', async () => {
    assert.equal(await agree(clientV4(2), NODE_V4, WEB), 'ACCEPT');
    assert.equal(await agree(clientV4(3), NODE_V4, WEB), 'DROP');
  });

  it('a deny through an alias chain rejects although the client is granted; the keys are named', async () => {
    assert.equal(await agree(clientV4(4), NODE_V4, WEB), 'REJECT');
    const text = await cli.ok(['explain', clientV4(4), `${WEB}`]);
    assert.match(text, /REFUSED \(REJECT\), until /);
    for (const key of ['befw/$ipset$/rules_deny/$bad$', 'befw/$alias$/$bad$/$scanners$', 'befw/$alias$/$scanners$/198.51.100.4'])
      assert.ok(text.includes(key), `${key} missing from:\n${text}`);
  });

  it('a default-mode service falls through to INPUT, and a protected address with a deny on it is accepted', async () => {
    assert.equal(await agree(clientV4(5), NODE_V4, BLOG), 'INPUT');
    assert.equal(await agree(mgmtV4(2), NODE_MGMT_V4, WEB), 'ACCEPT');
    const e = await explainJson([mgmtV4(2), `${WEB}`]);
    assert.ok(
      e.notes.some((n) => n.includes(`rules_deny/${mgmtV4(2)}`)),
      e.notes.join('\n'),
    );
  });

  it('IPv6', async () => {
    assert.equal(await agree(clientV6(2), NODE_V6, WEB), 'ACCEPT');
    assert.equal(await agree(clientV6(3), NODE_V6, WEB), 'DROP');
  });

  it('show no longer calls a default-mode service without clients closed', async () => {
    const text = await cli.ok(['show']);
    assert.match(text, /blog_tcp_8081.*\n {2}\(no clients; mode default: not filtered by befw, open to everyone/);
  });

  it('--node explains for another node from the catalog, saying what it cannot see', async () => {
    const e = await explainJson([clientV4(2), '9000', '--node', 'web-02']);
    assert.equal(e.node.name, 'web-02');
    assert.equal(e.probes[0]?.verdict, 'DROP', 'api on web-02 is enforcing and has no clients');
    assert.ok(e.caveats.some((c) => /catalog/.test(c)));
    const none = await explainJson([clientV4(2), '--node', 'no-such-node']);
    assert.ok(e.caveats.length > 0 && none.caveats.some((c) => /no services/.test(c)), none.caveats.join('\n'));
  });

  it('client ls --address lists entries holding the address, through networks and aliases', async () => {
    await sb.kvPut('befw/$alias$/$ops$/198.51.100.0/24', '-1');
    await sb.kvPut(`befw/$service$/web_tcp_${WEB}/$ops$`, '-1');
    const out = await cli.ok(['client', 'ls', '--address', clientV4(2), '--json']);
    const keys = (JSON.parse(out) as { entries: { key: string }[] }).entries.map((x) => x.key).sort();
    assert.deepEqual(keys, [`befw/$service$/web_tcp_${WEB}/$ops$`, `befw/$service$/web_tcp_${WEB}/${clientV4(2)}`]);
    await cli.fails(['client', 'ls', '--address', '198.51.100.0/24'], /--address/);
    const bad = await cli.run(['explain', 'not-an-ip']);
    assert.equal(bad.code, 2, 'a usage error');
    assert.match(bad.stderr, /address "not-an-ip": expected one IPv4 or IPv6 address/);
  });
});
