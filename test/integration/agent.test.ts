/**
 * End to end: a real Consul dev agent and the real befw agent in a network namespace, real
 * ipset/iptables or nftables (the suite runs on both backends, see helpers/backend.ts), and real
 * TCP connections (IPv4 and IPv6) from a second namespace.
 */
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  type AgentProcess,
  DC,
  NODE_MGMT_V4,
  NODE_NAME,
  NODE_V4,
  NODE_V6,
  Sandbox,
  clientV4,
  clientV6,
  mgmtV4,
  nowSec,
  sleep,
} from '../helpers/sandbox.js';
import { KernelOps, type TestBackend, backendConfig, testBackends } from '../helpers/backend.js';

const WEB = 8080; // enforcing service "Web"
const DB = 5432; // enforcing service "db"
const OPEN = 9000; // default-mode service "metrics"
const WEB_SET = 'web_tcp_8080';
const SOON_MS = 5000; // "within seconds"
const TOKEN = '5d7c1e3a-befw-4000-8000-0000000000aa';

function suite(backend: TestBackend): void {
  describe(`agent in a namespace against a real Consul (${backend})`, () => {
    let sb: Sandbox;
    let agent: AgentProcess;
    let kernel: KernelOps;

    before(async () => {
      sb = await Sandbox.create();
      kernel = new KernelOps(sb, backend);
      await sb.registerService({ name: 'Web', port: WEB, tags: ['befw', 'enforcing'] });
      await sb.registerService({ name: 'db', port: DB, tags: ['befw', 'enforcing'] });
      await sb.registerService({ name: 'metrics', port: OPEN, tags: ['befw'] });
      await sb.registerService({ name: 'unrelated', port: 7000, tags: ['web'] });
      await sb.listen([WEB, DB, OPEN, 7000, 8443]);
      chmodSync(sb.writeFile('token', `${TOKEN}\n`), 0o600);
      const config = sb.writeFile(
        'befw.conf',
        [
          '# integration test config',
          `services=${sb.dir}/services`,
          `ipsets=${sb.dir}/ipsets`,
          `state=${sb.dir}/state/state.bin`,
          'set.rules_allow=203.0.113.0/28',
          `token_file=${sb.dir}/token`,
          // A service file removed opens its port: a loosening, held this long (short for the suite).
          'guard_hold=1',
          'log_level=debug',
          ...backendConfig(backend),
        ].join('\n'),
      );
      agent = sb.startAgent(config);
      const deadline = Date.now() + 15_000;
      while (!agent.events().some((e) => e.event === 'applied' && e.source === 'consul')) {
        if (Date.now() > deadline) throw new Error(`agent never applied:\n${sb.log('agent.log')}`);
        await sleep(50);
      }
    });

    after(async () => {
      if (agent !== undefined) await agent.stop();
      if (sb !== undefined) await sb.destroy();
    });

    it('refuses a client that has no KV entry, on IPv4 and IPv6', async () => {
      assert.notEqual(await sb.probe(clientV4(2), NODE_V4, WEB), 'open');
      assert.notEqual(await sb.probe(clientV6(2), NODE_V6, WEB), 'open');
      // A port no befw service uses is not the agent's business.
      assert.equal(await sb.probe(clientV4(2), NODE_V4, 7000), 'open');
    });

    it('keeps management networks reachable on enforcing services', async () => {
      assert.equal(await sb.probe(mgmtV4(2), NODE_MGMT_V4, WEB), 'open');
    });

    it('accepts a client within seconds of its KV entry, then refuses it again after expiry', async () => {
      const expiry = nowSec() + 4;
      await sb.kvPut(`befw/$service$/${WEB_SET}/${clientV4(2)}`, String(expiry));
      const took = await sb.waitFor('open', clientV4(2), NODE_V4, WEB, SOON_MS);
      assert.ok(took < SOON_MS);
      // Another client and another service stay closed.
      assert.notEqual(await sb.probe(clientV4(3), NODE_V4, WEB), 'open');
      assert.notEqual(await sb.probe(clientV4(2), NODE_V4, DB), 'open');
      // The entry leaves the kernel at its second without any other change.
      const waitMs = expiry * 1000 - Date.now();
      if (waitMs > 0) await sleep(waitMs);
      const late = await sb.waitFor('blocked', clientV4(2), NODE_V4, WEB, 1500);
      assert.ok(late < 1500, `left ${late} ms after expiry`);
      assert.ok(agent.events().some((e) => e.event === 'applied' && e.source === 'consul'));
    });

    it('grants IPv6 clients and networks written as two segments', async () => {
      await sb.kvPut(`befw/$service$/${WEB_SET}/${clientV6(4)}`, '-1');
      await sb.kvPut(`befw/$service$/${WEB_SET}/198.51.100.8/29`, '-1');
      await sb.waitFor('open', clientV6(4), NODE_V6, WEB, SOON_MS);
      await sb.waitFor('open', clientV4(9), NODE_V4, WEB, SOON_MS);
      assert.notEqual(await sb.probe(clientV6(5), NODE_V6, WEB), 'open');
      assert.notEqual(await sb.probe(clientV4(7), NODE_V4, WEB), 'open');
      await sb.kvDelete(`befw/$service$/${WEB_SET}/${clientV6(4)}`);
      await sb.kvDelete(`befw/$service$/${WEB_SET}/198.51.100.8/29`);
      await sb.waitFor('blocked', clientV6(4), NODE_V6, WEB, SOON_MS);
      await sb.waitFor('blocked', clientV4(9), NODE_V4, WEB, SOON_MS);
    });

    it('grants the members of an alias, nested, and honours member expiry', async () => {
      await sb.kvPut('befw/$alias$/$ops$/' + clientV4(3), '-1');
      await sb.kvPut('befw/$alias$/$ops$/$oncall$', '-1');
      await sb.kvPut('befw/$alias$/$oncall$/' + clientV6(3), '-1');
      await sb.kvPut('befw/$alias$/$oncall$/' + clientV4(6), String(nowSec() - 10)); // expired member
      await sb.kvPut(`befw/$service$/${WEB_SET}/$ops$`, '-1');
      await sb.waitFor('open', clientV4(3), NODE_V4, WEB, SOON_MS);
      await sb.waitFor('open', clientV6(3), NODE_V6, WEB, SOON_MS);
      assert.notEqual(await sb.probe(clientV4(6), NODE_V4, WEB), 'open');
    });

    it('lets rules_deny beat a grant', async () => {
      await sb.kvPut(`befw/$ipset$/rules_deny/${clientV4(3)}`, '-1');
      const took = await sb.waitFor('blocked', clientV4(3), NODE_V4, WEB, SOON_MS);
      assert.ok(took < SOON_MS);
      // REJECT, not DROP: the client is told at once.
      assert.equal(await sb.probe(clientV4(3), NODE_V4, WEB), 'refused');
      assert.equal(await sb.probe(clientV6(3), NODE_V6, WEB), 'open');
      // ...and on ports no service uses too: deny covers every port.
      assert.equal(await sb.probe(clientV4(3), NODE_V4, 7000), 'refused');
      await sb.kvDelete(`befw/$ipset$/rules_deny/${clientV4(3)}`);
      await sb.waitFor('open', clientV4(3), NODE_V4, WEB, SOON_MS);
    });

    it('lets rules_allow open every port', async () => {
      assert.notEqual(await sb.probe(clientV4(5), NODE_V4, DB), 'open');
      await sb.kvPut(`befw/$ipset$/rules_allow/${clientV4(5)}`, '-1');
      await sb.waitFor('open', clientV4(5), NODE_V4, DB, SOON_MS);
      assert.equal(await sb.probe(clientV4(5), NODE_V4, WEB), 'open');
      await sb.kvDelete(`befw/$ipset$/rules_allow/${clientV4(5)}`);
      await sb.waitFor('blocked', clientV4(5), NODE_V4, DB, SOON_MS);
    });

    it("ignores another node's and another datacenter's entries, and honours its own scopes", async () => {
      await sb.kvPut(`befw/$service$/${DC}/othernode/${WEB_SET}/${clientV4(7)}`, '-1');
      await sb.kvPut(`befw/$service$/dc2/${WEB_SET}/${clientV4(7)}`, '-1');
      await sb.kvPut(`befw/$service$/dc2/${NODE_NAME}/${WEB_SET}/${clientV4(7)}`, '-1');
      // A marker grant in the same write burst proves the agent has read these keys.
      await sb.kvPut(`befw/$service$/${DC}/${WEB_SET}/${clientV4(8)}`, '-1');
      await sb.waitFor('open', clientV4(8), NODE_V4, WEB, SOON_MS);
      assert.notEqual(await sb.probe(clientV4(7), NODE_V4, WEB), 'open');
      // Node scope is watched under the node's lower-case short name (and as Consul spells it).
      await sb.kvPut(`befw/$service$/${DC}/${NODE_NAME.toLowerCase()}/${WEB_SET}/${clientV4(7)}`, '-1');
      await sb.waitFor('open', clientV4(7), NODE_V4, WEB, SOON_MS);
    });

    it('never logs the ACL token it reads from token_file', () => {
      const log = sb.log('agent.log');
      assert.ok(!log.includes(TOKEN), 'token absent from the log');
      assert.ok(agent.events().some((e) => e.event === 'start' && e.tokenSource === 'token_file'));
    });

    it('leaves default-mode services to the rest of INPUT', async () => {
      // No base template here, so INPUT accepts what BEFW does not decide.
      assert.equal(await sb.probe(clientV4(2), NODE_V4, OPEN), 'open');
    });

    it('reports hostile keys and values without crashing or widening access', async () => {
      await sb.kvPut(`befw/$service$/${WEB_SET}/1.2.3.4 -j ACCEPT`, '-1');
      await sb.kvPut(`befw/$service$/${WEB_SET}/999.1.1.1`, '-1');
      await sb.kvPut(`befw/$service$/${WEB_SET}/${clientV4(6)}`, 'tomorrow');
      await sb.kvPut(`befw/$service$/${'x'.repeat(300)}/${clientV4(6)}`, '-1');
      await sb.kvPut(`befw/$service$/${WEB_SET}/${clientV4(4)}`, '-1'); // marker
      await sb.waitFor('open', clientV4(4), NODE_V4, WEB, SOON_MS);
      assert.notEqual(await sb.probe(clientV4(6), NODE_V4, WEB), 'open');
      assert.equal(agent.proc.exitCode, null, 'agent still running');
      const plan = sb.befw(['plan', '-c', `${sb.dir}/befw.conf`, '--json']);
      assert.equal(plan.code, 0, plan.stderr);
      const parsed = JSON.parse(plan.stdout) as {
        diagnostics: { code: string; subject: string }[];
        sets: { name: string; members: string[] }[];
      };
      const codes = parsed.diagnostics.map((d) => `${d.code} ${d.subject}`);
      assert.ok(
        codes.some((c) => c.startsWith('bad-address') && c.includes('1.2.3.4 -j ACCEPT')),
        codes.join('\n'),
      );
      assert.ok(codes.some((c) => c.startsWith('bad-address') && c.includes('999.1.1.1')));
      assert.ok(codes.some((c) => c.startsWith('bad-expiry') && c.includes(clientV4(6))));
      const web = parsed.sets.find((s) => s.name === WEB_SET);
      assert.ok(web !== undefined && !web.members.includes(`${clientV4(6)}/32`));
      assert.ok(!kernel.rules().includes('1.2.3.4'), 'nothing from a bad key reaches the rules');
    });

    it('registers service files, enforces them, and deregisters them when the file goes', async () => {
      sb.writeFile('services/files.json', JSON.stringify({ name: 'files', port: 8443, protocol: 'tcp', mode: 'enforcing' }));
      await sb.kvPut(`befw/$service$/files_tcp_8443/${clientV4(2)}`, '-1');
      await sb.waitFor('blocked', clientV4(3), NODE_V4, 8443, SOON_MS);
      await sb.waitFor('open', clientV4(2), NODE_V4, 8443, SOON_MS);
      const services = await sb.agentServices();
      assert.deepEqual(services.files?.Tags, ['befw', 'local', 'enforcing']);
      const { rmSync } = await import('node:fs');
      rmSync(`${sb.dir}/services/files.json`);
      await sb.waitFor('open', clientV4(3), NODE_V4, 8443, SOON_MS);
      const deadline = Date.now() + SOON_MS;
      while ((await sb.agentServices()).files !== undefined) {
        assert.ok(Date.now() < deadline, 'service file deregistered');
        await sleep(100);
      }
    });

    it(".ipset files are sets of their own named after the file (BEFW's meaning), never merged into rules_allow", async () => {
      sb.writeFile('ipsets/rules_allow.ipset', `# for the host's own rules\n${clientV6(6)} ${clientV4(6)}\n`);
      const deadline = Date.now() + SOON_MS;
      while (!kernel.has('rules_allow.ipset', clientV6(6))) {
        assert.ok(Date.now() < deadline, 'set rules_allow.ipset (IPv6 half) with the file member');
        await sleep(100);
      }
      assert.ok(kernel.has('rules_allow.ipset', clientV4(6)));
      // Not in rules_allow: the client is not accepted on every port because of the file.
      assert.notEqual(await sb.probe(clientV6(6), NODE_V6, DB), 'open');
    });

    it('enforces state.bin at start while Consul is unreachable', async () => {
      await agent.stop();
      // A config pointing at a Consul port nothing listens on: only state.bin can grant.
      const offline = sb.writeFile(
        'offline.conf',
        [
          `address=127.0.0.1:1`,
          `services=${sb.dir}/services`,
          `ipsets=${sb.dir}/ipsets`,
          `state=${sb.dir}/state/state.bin`,
          'set.rules_allow=203.0.113.0/28',
          'consul_timeout_sec=1',
          ...backendConfig(backend),
        ].join('\n'),
      );
      // Empty the set (the chain still drops non-members) so only the agent can bring the grant back.
      kernel.flush(WEB_SET);
      assert.notEqual(await sb.probe(clientV4(8), NODE_V4, WEB), 'open');
      agent = sb.startAgent(offline, 'agent-offline.log');
      await sb.waitFor('open', clientV4(8), NODE_V4, WEB, SOON_MS);
      assert.notEqual(await sb.probe(clientV4(6), NODE_V4, WEB), 'open');
      const events = agent.events();
      assert.ok(
        events.some((e) => e.event === 'state-loaded'),
        'state.bin was loaded',
      );
      assert.ok(
        events.some((e) => e.event === 'applied' && e.source === 'saved'),
        'and applied',
      );
      const deadline = Date.now() + 3000;
      while (!agent.events().some((e) => e.event === 'watch-error')) {
        assert.ok(Date.now() < deadline, 'the Consul outage is reported');
        await sleep(50);
      }
    });
  });
}

for (const backend of testBackends()) suite(backend);
