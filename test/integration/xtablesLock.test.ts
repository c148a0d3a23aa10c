/**
 * The xtables lock held for 5 s while a change arrives, on the legacy backend (the one that takes
 * the lock; nft does not). The agent's iptables-restore waits (--wait) instead of failing, the
 * change lands once the lock is free, nobody refused gets in meanwhile, and every rule is in the
 * legacy ruleset with none in nft (never mixed). The lock file is the sandbox's own
 * (XTABLES_LOCKFILE), so the host's iptables never waits on this test.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, NODE_V4, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';

const WEB = 8080;
const API = 8081;

describe('xtables lock held while a change arrives (legacy backend)', () => {
  let sb: Sandbox;
  let agent: AgentProcess;
  let lockFile: string;

  before(async () => {
    sb = await Sandbox.create();
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
    await sb.listen([WEB, API]);
    await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(2)}`, '-1');
    await sb.kvPut(`befw/$ipset$/rules_deny/${clientV4(9)}`, '-1');
    lockFile = `${sb.dir}/xtables.lock`;
    const config = sb.writeFile(
      'befw.conf',
      [
        `services=${sb.dir}/services`,
        `ipsets=${sb.dir}/ipsets`,
        `state=${sb.dir}/state.bin`,
        'iptables_backend=legacy',
        'log_level=debug',
      ].join('\n'),
    );
    agent = sb.startAgent(config, 'agent.log', { XTABLES_LOCKFILE: lockFile });
    const end = Date.now() + 20_000;
    while (!agent.events().some((e) => e.event === 'applied' && e.source === 'consul')) {
      assert.ok(Date.now() < end, `agent never applied:\n${sb.log('agent.log')}`);
      await sleep(50);
    }
    await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5000);
  });

  after(async () => {
    await agent?.stop();
    await sb?.destroy();
  });

  it('waits for the lock, then applies; nobody refused gets in meanwhile', async (t) => {
    const holder = spawn('flock', [lockFile, 'sleep', '5'], { stdio: 'ignore' });
    await sleep(200); // the lock is taken
    const heldAt = Date.now();
    const denied = sb.watchRefused(clientV4(9), NODE_V4, API);
    const stranger = sb.watchRefused(clientV4(3), NODE_V4, WEB);
    // A new enforcing service: its rules need the chain rewritten, under the lock.
    await sb.registerService({ name: 'api', port: API, tags: ['befw', 'enforcing'] });
    await sb.kvPut(`befw/$service$/api_tcp_${API}/${clientV4(2)}`, '-1');
    await new Promise<void>((resolve) => holder.once('exit', () => resolve()));
    const releasedAt = Date.now();
    await sb.waitFor('open', clientV4(2), NODE_V4, API, 10_000);
    await sb.waitFor('blocked', clientV4(3), NODE_V4, API, 5000);
    const d = await denied.stop();
    const s = await stranger.stop();
    assert.equal(d.opened + s.opened, 0, `refused clients got in: denied ${d.opened}/${d.probes}, stranger ${s.opened}/${s.probes}`);
    const applied = agent.events().filter((e) => e.event === 'applied' && Date.parse(String(e.time)) >= heldAt);
    assert.ok(applied.length >= 1, 'the change was applied');
    const first = Date.parse(String(applied[0]?.time));
    assert.ok(first >= releasedAt - 50, `applied at ${first - heldAt} ms, lock released at ${releasedAt - heldAt} ms`);
    assert.ok(!agent.events().some((e) => e.event === 'apply-failed'), 'no apply failed while waiting');
    t.diagnostic(`lock held ${releasedAt - heldAt} ms; change applied ${first - releasedAt} ms after release`);

    const legacy = sb.inNode('iptables-legacy-save', ['-t', 'filter']);
    assert.match(legacy, /-A BEFW -p tcp -m tcp --dport 8081 -m set --match-set api_tcp_8081 src -j ACCEPT/);
    const nft = spawnSync('ip', ['netns', 'exec', sb.nodeNs, 'iptables-nft-save', '-t', 'filter'], { encoding: 'utf8' }).stdout;
    assert.ok(!nft.includes('BEFW'), 'nothing in the nft ruleset');
  });
});
