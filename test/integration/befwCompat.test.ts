/**
 * BEFW's operations against a real befw agent in a namespace: BEFW's API socket (helo, help,
 * reload, clear_missing), BEFW's befw-cli (register, show, reload, refresh, deregister) and
 * `befw migrate check`, on a config written the way BEFW's demo writes it (relative paths,
 * consulwatch_timeout_sec, nids); and BEFW's demo `rules.json` (JSON templates) translated and
 * enforced: its header opens Consul's ports to everyone, its rule_service rejects non-clients.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, DC, NODE_NAME, NODE_V4, ROOT, Sandbox, clientV4, sleep, waitEvent } from '../helpers/sandbox.js';

const WEB = 8080;

/** Sends lines on a unix socket and reads as many lines back. */
function ask(path: string, lines: readonly string[], timeoutMs = 20_000): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const c = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`no answer on ${path}: got ${JSON.stringify(buf)}`));
    }, timeoutMs);
    c.setEncoding('utf8');
    c.on('connect', () => c.write(lines.map((l) => `${l}\n`).join('')));
    c.on('data', (d: string) => {
      buf += d;
      const got = buf.split('\n');
      if (got.length > lines.length) {
        clearTimeout(timer);
        c.destroy();
        resolve(got.slice(0, lines.length));
      }
    });
    c.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function until(cond: () => boolean, what: string, withinMs = 10_000): Promise<void> {
  const end = Date.now() + withinMs;
  while (!cond()) {
    assert.ok(Date.now() < end, `not within ${withinMs} ms: ${what}`);
    await sleep(50);
  }
}

describe("BEFW's operations against befw: api.sock, befw-cli, migrate check", () => {
  let sb: Sandbox;
  let agent: AgentProcess;
  let config: string;
  let apiSock: string;

  const befwCli = (args: string[]): { code: number; stdout: string; stderr: string } => {
    const r = spawnSync('ip', ['netns', 'exec', sb.nodeNs, process.execPath, join(ROOT, 'bin/befw-cli'), ...args], { encoding: 'utf8' });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  };

  before(async () => {
    sb = await Sandbox.create();
    apiSock = join(sb.dir, 'run', 'api.sock');
    await sb.listen([WEB]);
    config = sb.writeFile(
      'befw.conf',
      [
        // As BEFW's demo/befw.conf writes it: paths next to the config, BEFW's timeouts.
        'services=services',
        'ipsets=ipsets',
        'state=state/state.bin',
        'consul_timeout_sec=300',
        'consulwatch_timeout_sec=600',
        'nids=false',
        'set.rules_allow=203.0.113.0/28',
        `befw_api=run/api.sock`,
        'integrity_interval=60',
      ].join('\n'),
    );
    const reg = befwCli(['-config', config, 'register', 'web', 'tcp', String(WEB)]);
    assert.equal(reg.code, 0, reg.stderr);
    assert.equal(reg.stdout, 'Service registered\n');
    await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(2)}`, '-1');
    await sb.kvPut(`befw/$ipset$/rules_deny/${clientV4(3)}`, '-1');
    agent = sb.startAgent(config);
    await sb.waitFor('blocked', clientV4(3), NODE_V4, WEB, 15_000);
    await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5_000);
    await until(() => agent.events().some((e) => e.event === 'befw-api-listening'), "BEFW's API socket up");
  });

  after(async () => {
    await agent?.stop();
    await sb?.destroy();
  });

  it('serves api.sock as BEFW did, mode 0600', async () => {
    assert.equal(statSync(apiSock).mode & 0o777, 0o600);
    assert.deepEqual(await ask(apiSock, ['helo befw', 'help', 'clear_missing', 'stats']), [
      'Hello, befw',
      'helo;help;reload;clear_missing;',
      'ok',
      'command not found; type help for help',
    ]);
  });

  it('reload on api.sock rebuilds the agent, which goes on enforcing', async () => {
    assert.deepEqual(await ask(apiSock, ['reload']), ['ok']);
    // The agent's log reaches its file through a pipe: give it a moment.
    await until(() => agent.events().some((e) => e.event === 'befw-api-reload'), 'befw-api-reload logged');
    await until(() => agent.events().some((e) => e.event === 'reload'), 'the agent rebuilt (reload logged)');
    await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5_000);
    assert.notEqual(await sb.probe(clientV4(3), NODE_V4, WEB, 300), 'open');
  });

  it("befw-cli show: BEFW's layout, with the clients", () => {
    const r = befwCli(['-config', config, 'show']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^Node: ${NODE_NAME} @ ${DC}\n\n- Service: web_tcp_${WEB}\n--- ${clientV4(2)}/32\n`));
  });

  it('befw-cli register refuses a name or a port that is taken, as BEFW did', () => {
    const again = befwCli(['-config', config, 'register', 'web', 'tcp', String(WEB)]);
    assert.equal(again.code, 1);
    assert.equal(again.stderr, 'FATAL ERROR: this Name already exists\n');
    const port = befwCli(['-config', config, 'register', 'other', 'tcp', String(WEB)]);
    assert.equal(port.stderr, 'FATAL ERROR: this port/protocol pair already exists with Name web\n');
    const usage = befwCli(['-config', config, 'register', 'web']);
    assert.equal(usage.code, 1);
    assert.match(usage.stderr, /^Usage: befw-cli register <service name> <protocol> <port>/);
  });

  it('befw-cli reload and refresh ask the agent', () => {
    const reload = befwCli(['-config', config, 'reload']);
    assert.equal(reload.code, 0, reload.stderr);
    assert.equal(reload.stdout, 'Reloaded successfully\n');
    const refresh = befwCli(['-config', config, 'refresh']);
    assert.equal(refresh.code, 0, refresh.stderr);
    assert.match(refresh.stdout, /^Missing stats were cleared/);
    // The same tool as `befw befw-cli`.
    const viaBefw = sb.befw(['befw-cli', '-config', config, 'help', 'show']);
    assert.equal(viaBefw.code, 0, viaBefw.stderr);
    assert.match(viaBefw.stdout, /^Usage: befw befw-cli show/);
  });

  it('befw migrate check lists what BEFW would enforce differently, and exits 1', () => {
    const r = sb.befw(['migrate', 'check', '-c', config, '--release', 'id-first-tag', '--json']);
    assert.equal(r.code, 1, r.stderr);
    const report = JSON.parse(r.stdout) as { release: string; differences: { kind: string; subject: string }[] };
    assert.equal(report.release, 'id-first-tag');
    const kinds = report.differences.map((d) => `${d.kind} ${d.subject}`);
    // The management network (BEFW enforces it only after a failed refresh), and nothing about
    // the service: befw-cli register tagged its port, so every release names it web_tcp_8080.
    assert.ok(kinds.includes('config set.rules_allow 203.0.113.0/28'), kinds.join('\n'));
    assert.ok(!kinds.some((k) => k.startsWith('service')), kinds.join('\n'));
    assert.ok(!kinds.some((k) => k.startsWith('entry')), kinds.join('\n'));
  });

  it('befw-cli deregister removes what it registered', () => {
    const r = befwCli(['-config', config, 'deregister', 'web']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'Service deregistered\n');
    const gone = befwCli(['-config', config, 'deregister', 'web']);
    assert.equal(gone.stderr, 'FATAL ERROR: service web not found on local agent\n');
  });
});

describe("BEFW's demo rules.json on a real agent", () => {
  // The demo's header accepts 8300,8301,8302,8500,8501,8600 from everyone (demo/rules.json); the
  // sandbox's Consul leaves 8501 (HTTPS) unused, so a listener there stands for Consul.
  const CONSUL_HTTPS = 8501;
  let sb: Sandbox;
  let agent: AgentProcess;

  before(async () => {
    sb = await Sandbox.create();
    await sb.listen([WEB, CONSUL_HTTPS]);
    const fixture = new URL('../../../test/fixtures/befw/demo/rules.json', import.meta.url).pathname;
    sb.writeFile('rules.json', readFileSync(fixture, 'utf8'));
    const config = sb.writeFile(
      'befw.conf',
      ['rules=rules.json', 'state=state/state.bin', 'set.rules_allow=203.0.113.0/28', 'integrity_interval=60'].join('\n'),
    );
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw'] });
    await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(2)}`, '-1');
    await sb.kvPut(`befw/$ipset$/rules_deny/${clientV4(3)}`, '-1');
    agent = sb.startAgent(config);
    // Everything is open before the agent's first apply: wait for it, not for a probe.
    await waitEvent(agent, (e) => e.event === 'applied' && e.source === 'consul', 15_000);
  });

  after(async () => {
    await agent?.stop();
    await sb?.destroy();
  });

  it('a client of the default-mode service gets in; anyone else is rejected, as rule_service says', async () => {
    await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5_000);
    assert.equal(await sb.probe(clientV4(4), NODE_V4, WEB, 300), 'refused');
  });

  it("the header's Consul ports are open to everyone, but rules_deny still wins", async () => {
    await sb.waitFor('open', clientV4(4), NODE_V4, CONSUL_HTTPS, 5_000);
    assert.notEqual(await sb.probe(clientV4(3), NODE_V4, CONSUL_HTTPS, 300), 'open');
  });

  it('logs what the translation changed, once, at start', () => {
    const notes = agent.events().filter((e) => e.event === 'firewall-config');
    assert.ok(
      notes.some((e) => /no rule_service_e/.test(String(e.msg))),
      JSON.stringify(notes),
    );
    assert.ok(
      notes.some((e) => /header accepts without a set match/.test(String(e.msg))),
      JSON.stringify(notes),
    );
  });

  it('writes the header rule after rules_deny and before the service rules', () => {
    const r = spawnSync('ip', ['netns', 'exec', sb.nodeNs, 'iptables', '-S', 'BEFW'], { encoding: 'utf8' });
    const rules = r.stdout.split('\n');
    const deny = rules.findIndex((l) => /rules_deny src -j (DROP|REJECT)/.test(l));
    const header = rules.findIndex((l) => l.includes('--dports 8300,8301,8302,8500,8501,8600 -j ACCEPT'));
    const service = rules.findIndex((l) => l.includes(`--dports ${WEB}`) && l.includes('--match-set web_tcp_8080 src -j ACCEPT'));
    assert.ok(deny >= 0 && header > deny && service > header, rules.join('\n'));
  });
});
