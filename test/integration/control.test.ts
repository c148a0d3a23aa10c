/**
 * The operator's side of a running agent: `befw status`, `befw check`, `befw reload` (and
 * SIGHUP) over the control socket, the metrics and health endpoint, systemd notifications
 * (against a local datagram socket that records what it receives), and SIGTERM leaving the
 * firewall exactly as it was.
 */
import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, NODE_V4, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';

const WEB = 8080;
const METRICS_PORT = 9187;

interface DgramSocket {
  bind(path: string): void;
  close(): void;
}

describe('control socket, metrics, health and systemd notifications', () => {
  let sb: Sandbox;
  let agent: AgentProcess;
  let config: string;
  const notes: string[] = [];
  let recorder: DgramSocket;

  const baseConfig = (extra: string[] = [], management = '203.0.113.0/28'): string =>
    [
      `services=${sb.dir}/services`,
      `ipsets=${sb.dir}/ipsets`,
      `state=${sb.dir}/state/state.bin`,
      `socket=${sb.dir}/run/befw.sock`,
      `metrics=127.0.0.1:${METRICS_PORT}`,
      `set.rules_allow=${management}`,
      'integrity_interval=60',
      ...extra,
    ].join('\n');

  const http = (path: string): { code: number; body: string } => {
    const out = sb.inNode('curl', ['-s', '-o', '-', '-w', '\n%{http_code}', `http://127.0.0.1:${METRICS_PORT}${path}`]);
    const nl = out.lastIndexOf('\n');
    return { code: Number(out.slice(nl + 1)), body: out.slice(0, nl) };
  };

  before(async () => {
    sb = await Sandbox.create();
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
    await sb.listen([WEB]);
    await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(2)}`, '-1');
    await sb.kvPut(`befw/$service$/web_tcp_${WEB}/not-an-address`, '-1');
    // systemd's side of sd_notify: a datagram socket that keeps every message.
    const require = createRequire(import.meta.url);
    const dgram = require('unix-dgram') as { createSocket(type: 'unix_dgram', listener: (buf: Buffer) => void): DgramSocket };
    recorder = dgram.createSocket('unix_dgram', (buf) => notes.push(buf.toString()));
    recorder.bind(`${sb.dir}/notify.sock`);
    config = sb.writeFile('befw.conf', baseConfig());
    agent = sb.startAgent(config, 'agent.log', { NOTIFY_SOCKET: `${sb.dir}/notify.sock`, WATCHDOG_USEC: '1000000' });
    await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 15_000);
    const end = Date.now() + 10_000;
    while (!notes.some((n) => n.includes('READY=1'))) {
      assert.ok(Date.now() < end, `no READY=1 (got ${JSON.stringify(notes)})`);
      await sleep(50);
    }
  });

  after(async () => {
    await agent?.stop();
    recorder?.close();
    await sb?.destroy();
  });

  it('notifies systemd: READY once applied, then WATCHDOG pings', async () => {
    const ready = notes.find((n) => n.includes('READY=1')) ?? '';
    assert.match(ready, /STATUS=enforcing [0-9a-f]+ \(consul\)/);
    const end = Date.now() + 3000;
    while (!notes.some((n) => n === 'WATCHDOG=1')) {
      assert.ok(Date.now() < end, `no WATCHDOG=1 (got ${JSON.stringify(notes)})`);
      await sleep(50);
    }
  });

  it('creates the control socket 0600 in a 0700 directory', () => {
    assert.equal(statSync(`${sb.dir}/run/befw.sock`).mode & 0o777, 0o600);
    assert.equal(statSync(`${sb.dir}/run`).mode & 0o777, 0o700);
  });

  it('befw status reports Consul, the last apply, sets with counts and ignored entries', () => {
    const human = sb.befw(['status', '-c', config]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /Consul: +reachable/);
    assert.match(human.stdout, /web_tcp_8080 +1 member\(s\) +inet/);
    assert.match(human.stdout, /bad-address +befw\/\$service\$\/web_tcp_8080\/not-an-address/);
    const json = sb.befw(['status', '-c', config, '--json']);
    const s = JSON.parse(json.stdout) as {
      consul: { reachable: boolean };
      sets: { name: string; members: number }[];
      fingerprint: string;
      lastSource: string;
      stats: { applies: number };
    };
    assert.equal(s.consul.reachable, true);
    assert.equal(s.lastSource, 'consul');
    assert.match(s.fingerprint, /^[0-9a-f]{14}$/);
    assert.deepEqual(
      s.sets.find((x) => x.name === 'rules_allow'),
      { name: 'rules_allow', family: 'inet', members: 1 },
    );
    assert.ok(s.stats.applies >= 1);
  });

  it('befw check exits 0 when the kernel matches and 1 on drift', () => {
    const ok = sb.befw(['check', '-c', config]);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
    assert.match(ok.stdout, /kernel matches the plan/);
    sb.inNode('ipset', ['del', `web_tcp_${WEB}`, clientV4(2)]);
    const drift = sb.befw(['check', '-c', config, '--json']);
    assert.equal(drift.code, 1);
    const answer = JSON.parse(drift.stdout) as { ok: boolean; drifts: { what: string; set: string }[] };
    assert.ok(
      answer.drifts.some((d) => d.set === `web_tcp_${WEB}`),
      drift.stdout,
    );
  });

  it('befw reload applies a new config, and rejects a bad one while the agent goes on', async () => {
    sb.writeFile('befw.conf', baseConfig([], '203.0.113.0/28;198.51.100.7/32'));
    const r = sb.befw(['reload', '-c', config]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    await sb.waitFor('open', clientV4(7), NODE_V4, WEB, 10_000);
    // The drift made by the previous test is gone too: the new agent applied in full.
    await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 10_000);

    sb.writeFile('befw.conf', `${baseConfig()}\nbogus_key=1\n`);
    const bad = sb.befw(['reload', '-c', config]);
    assert.equal(bad.code, 1);
    assert.match(bad.stdout, /reload rejected: .*befw\.conf:\d+ \(bogus_key\): unknown key/);
    assert.equal(agent.proc.exitCode, null);
    assert.equal(await sb.probe(clientV4(7), NODE_V4, WEB), 'open', 'old config still enforced');
    sb.writeFile('befw.conf', baseConfig());
  });

  it('a reload whose agent cannot be built (unreadable template) keeps the old agent, by command and by SIGHUP', async () => {
    const rejectedBefore = agent.events().filter((e) => e.event === 'reload-rejected').length;
    sb.writeFile('befw.conf', baseConfig([`rules=${sb.dir}/no-such-template.rules`]));
    const bad = sb.befw(['reload', '-c', config]);
    assert.equal(bad.code, 1, bad.stdout + bad.stderr);
    assert.match(bad.stdout, /reload rejected: .*\(rules\): cannot read template .*no-such-template\.rules/);
    agent.proc.kill('SIGHUP');
    const end = Date.now() + 10_000;
    while (agent.events().filter((e) => e.event === 'reload-rejected').length < rejectedBefore + 2) {
      assert.ok(Date.now() < end, 'SIGHUP reload rejected');
      await sleep(50);
    }
    assert.equal(agent.proc.exitCode, null, 'the agent still runs');
    assert.equal(await sb.probe(clientV4(7), NODE_V4, WEB), 'open', 'old config still enforced');
    const status = sb.befw(['status', '-c', config, '--json']);
    assert.equal(status.code, 0, status.stdout + status.stderr);
    const s = JSON.parse(status.stdout) as { lastReload: { ok: boolean; error?: string }; stats: { applies: number } };
    assert.equal(s.lastReload.ok, false);
    assert.match(s.lastReload.error ?? '', /cannot read template/);
    sb.writeFile('befw.conf', baseConfig());
  });

  it('SIGHUP reloads too', async () => {
    const before = agent.events().filter((e) => e.event === 'reload').length;
    agent.proc.kill('SIGHUP');
    const end = Date.now() + 10_000;
    while (agent.events().filter((e) => e.event === 'reload').length === before) {
      assert.ok(Date.now() < end, 'SIGHUP reloaded');
      await sleep(50);
    }
    await sb.waitFor('blocked', clientV4(7), NODE_V4, WEB, 10_000);
  });

  it('serves metrics, /healthz and /readyz on loopback', () => {
    const m = http('/metrics');
    assert.equal(m.code, 200);
    assert.match(m.body, /befw_applies_total\{result="applied"\} \d+/);
    assert.match(m.body, /befw_set_members\{set="web_tcp_8080"\} 1/);
    assert.match(m.body, /befw_apply_duration_seconds_bucket/);
    assert.match(m.body, /befw_diagnostics\{severity="(error|warning)"\} 1/);
    assert.match(m.body, /befw_build_info\{version="[0-9.]+",node_version="[0-9.]+"\} 1/);
    assert.match(m.body, /befw_ready 1/);
    assert.match(m.body, /befw_consul_up 1/);
    assert.match(m.body, /^process_cpu_seconds_total /m, 'standard process metrics');
    assert.match(m.body, /befw_applies_total\{result="apply-failed"\} 0/, 'label values start at zero');
    assert.equal(http('/healthz').code, 200);
    const r = http('/readyz');
    assert.equal(r.code, 200, r.body);
    assert.equal(http('/nope').code, 404);
  });

  it('SIGTERM stops the agent and leaves the firewall exactly as it is', async () => {
    const rules = sb.inNode('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, '');
    const sets = sb.inNode('ipset', ['save']);
    const code = await agent.stop('SIGTERM');
    assert.equal(code, 0);
    assert.ok(notes.includes('STOPPING=1'), JSON.stringify(notes));
    assert.equal(sb.inNode('iptables-save', ['-t', 'filter']).replace(/^#.*\n/gm, ''), rules);
    assert.equal(sb.inNode('ipset', ['save']), sets);
    assert.equal(await sb.probe(clientV4(2), NODE_V4, WEB), 'open');
    assert.notEqual(await sb.probe(clientV4(3), NODE_V4, WEB), 'open');
  });
});
