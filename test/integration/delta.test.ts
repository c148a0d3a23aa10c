/**
 * Live propagation against the real kernel: a membership change is applied as a delta that
 * leaves the BEFW chain (and its counters) and every other set untouched, and expiry acts at
 * its second with no other change.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, NODE_V4, Sandbox, clientV4, nowSec, sleep } from '../helpers/sandbox.js';
import { KernelOps, type TestBackend, backendConfig, testBackends } from '../helpers/backend.js';

const WEB = 8080;
const API = 8081;

function suite(backend: TestBackend): void {
  describe(`delta apply and exact expiry in a namespace (${backend})`, () => {
    let sb: Sandbox;
    let agent: AgentProcess;
    let kernel: KernelOps;

    before(async () => {
      sb = await Sandbox.create();
      kernel = new KernelOps(sb, backend);
      await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
      await sb.registerService({ name: 'api', port: API, tags: ['befw', 'enforcing'] });
      await sb.listen([WEB, API]);
      for (let i = 0; i < 200; i++) await sb.kvPut(`befw/$service$/api_tcp_${API}/198.18.${i >> 8}.${i & 255}`, '-1');
      await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(3)}`, '-1');
      const config = sb.writeFile(
        'befw.conf',
        [
          `services=${sb.dir}/services`,
          `ipsets=${sb.dir}/ipsets`,
          `state=${sb.dir}/state.bin`,
          'log_level=debug',
          ...backendConfig(backend),
        ].join('\n'),
      );
      agent = sb.startAgent(config);
      const deadline = Date.now() + 15_000;
      while (!agent.events().some((e) => e.event === 'applied' && e.source === 'consul' && Number(e.members) >= 201)) {
        if (Date.now() > deadline) throw new Error(`agent never applied:\n${sb.log('agent.log')}`);
        await sleep(20);
      }
      await sb.waitFor('open', clientV4(3), NODE_V4, WEB, 5000);
      assert.notEqual(await sb.probe(clientV4(2), NODE_V4, WEB), 'open');
    });

    after(async () => {
      await agent?.stop();
      await sb?.destroy();
    });

    it('applies a new grant as a delta: chain counters and other sets untouched', async (t) => {
      // Traffic through the chain so that its counters are non-zero.
      await sb.probe(clientV4(3), NODE_V4, WEB);
      await sb.probe(clientV4(2), NODE_V4, API);
      const before = kernel.chainIdentity();
      if (backend === 'iptables')
        assert.ok(
          before.some((c) => c > 0),
          `counters moved: ${before.join(',')}`,
        );
      const setsBefore = kernel.setIdentities();
      const apiMembers = kernel.listing(`api_tcp_${API}`);
      const appliedBefore = agent.events().filter((e) => e.event === 'applied').length;

      const t0 = Date.now();
      await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(2)}`, '-1');
      await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5000);
      t.diagnostic(`grant -> real TCP connection accepted in ${Date.now() - t0} ms`);

      assert.deepEqual(kernel.setIdentities(), setsBefore, 'no set was re-created or swapped');
      assert.equal(kernel.listing(`api_tcp_${API}`), apiMembers);
      const afterCounters = kernel.chainIdentity();
      assert.equal(afterCounters.length, before.length);
      afterCounters.forEach((c, i) => assert.ok(c >= (before[i] ?? 0), `rule ${i} kept (${before[i]} -> ${c})`));
      if (backend === 'nft') assert.deepEqual(afterCounters, before, 'the rules were not rewritten');
      const applied = agent
        .events()
        .filter((e) => e.event === 'applied')
        .slice(appliedBefore);
      assert.equal(applied.length, 1, 'one reconcile for one change');
      assert.equal(applied[0]?.mode, 'delta');
      assert.equal(applied[0]?.added, 1);
      assert.equal(applied[0]?.deleted, 0);
      assert.equal(applied[0]?.chainWritten, false);
    });

    it('coalesces a burst of writes into few reconciles and converges', async () => {
      const appliedBefore = agent.events().filter((e) => e.event === 'applied').length;
      const writes = [];
      for (let i = 0; i < 50; i++) writes.push(sb.kvPut(`befw/$service$/api_tcp_${API}/198.18.9.${i}`, '-1'));
      await Promise.all(writes);
      const deadline = Date.now() + 5000;
      while (!kernel.has(`api_tcp_${API}`, '198.18.9.49')) {
        assert.ok(Date.now() < deadline, 'burst applied');
        await sleep(20);
      }
      await sleep(300);
      for (let i = 0; i < 50; i++) assert.ok(kernel.has(`api_tcp_${API}`, `198.18.9.${i}`), `198.18.9.${i} present`);
      const reconciles = agent.events().filter((e) => e.event === 'applied').length - appliedBefore;
      assert.ok(reconciles >= 1 && reconciles < 50, `${reconciles} reconciles for 50 writes`);
    });

    it('enforces a grant that lasts days (nft writes its timeout in its own units)', async () => {
      await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(6)}`, String(nowSec() + 30 * 86400));
      await sb.waitFor('open', clientV4(6), NODE_V4, WEB, 5000);
      await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(6)}`, String(nowSec() + 2 * 86400 + 3661));
      // A later change still applies: one refused timeout would fail every transaction after it.
      await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(7)}`, '-1');
      await sb.waitFor('open', clientV4(7), NODE_V4, WEB, 5000);
      assert.equal(await sb.probe(clientV4(6), NODE_V4, WEB), 'open');
    });

    it('removes an entry at its expiry second with no other change', async (t) => {
      const expiry = nowSec() + 2;
      await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(4)}`, String(expiry));
      await sb.waitFor('open', clientV4(4), NODE_V4, WEB, 5000);
      const appliedBefore = agent.events().filter((e) => e.event === 'applied').length;
      while (Date.now() < expiry * 1000) {
        assert.equal(await sb.probe(clientV4(4), NODE_V4, WEB), 'open', 'still granted before its expiry');
        await sleep(100);
      }
      const late = await sb.waitFor('blocked', clientV4(4), NODE_V4, WEB, 1000);
      t.diagnostic(`left the kernel ${Date.now() - expiry * 1000} ms after its expiry second (probe ${late} ms)`);
      const applied = agent
        .events()
        .filter((e) => e.event === 'applied')
        .slice(appliedBefore);
      assert.ok(applied.some((e) => e.deleted === 1 && e.mode === 'delta'));
    });
  });
}

for (const backend of testBackends()) suite(backend);
