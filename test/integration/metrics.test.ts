/**
 * The health figures of a real agent in a namespace, read the four ways an operator reads them
 * (`befw status`, /healthz, /readyz, /metrics), which must agree:
 *   - /metrics passes `promtool check metrics` with no complaint, and every metric the Grafana
 *     dashboard (docs/grafana-dashboard.json) queries is in it; the dashboard's queries parse;
 *   - a reload keeps uptime, counters and readiness;
 *   - a hung Consul (SIGSTOP: its blocking queries stay open, nothing answers) shows as not
 *     reached for N s in status and metrics, while the node stays ready (its plan is enforced),
 *     and as reached again once it continues.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, NODE_V4, ROOT, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';

const WEB = 8080;
const METRICS_PORT = 9188;

function promtool(): string {
  const env = process.env.PROMTOOL_BIN;
  if (env !== undefined && env !== '') return env;
  const cached = join(ROOT, '.cache/promtool/promtool');
  if (existsSync(cached)) return cached;
  throw new Error('no promtool: set PROMTOOL_BIN or run scripts/install-deps.sh');
}

interface StatusJson {
  startedAt: number;
  ready: boolean;
  problems: string[];
  consul: { reachable: boolean; contactAt: number | null; sinceContactMs: number | null; lastError: string | null };
  stats: { applies: number; repairs: number };
}

/** `name{labels} value` lines of a Prometheus text page, as name -> [labels, value][]. */
function samples(text: string): Map<string, { labels: string; value: number }[]> {
  const out = new Map<string, { labels: string; value: number }[]>();
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m === null) continue;
    const list = out.get(m[1] ?? '') ?? [];
    list.push({ labels: m[2] ?? '', value: Number(m[3]) });
    out.set(m[1] ?? '', list);
  }
  return out;
}

function value(text: string, name: string, labels = ''): number {
  const s = samples(text)
    .get(name)
    ?.find((x) => x.labels === labels);
  assert.ok(s !== undefined, `${name}${labels} not in /metrics`);
  return s.value;
}

/** The PromQL of every panel of the dashboard. */
function dashboardExprs(): string[] {
  const d = JSON.parse(readFileSync(join(ROOT, 'docs/grafana-dashboard.json'), 'utf8')) as {
    panels: { targets?: { expr: string }[] }[];
  };
  return d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
}

describe('health in one place: status, /healthz, /readyz and /metrics agree; promtool; the dashboard', () => {
  let sb: Sandbox;
  let agent: AgentProcess;
  let config: string;

  const status = (): StatusJson => {
    const r = sb.befw(['status', '-c', config, '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    return JSON.parse(r.stdout) as StatusJson;
  };
  const get = (path: string): { status: number; body: string } => sb.httpInNode(`http://127.0.0.1:${METRICS_PORT}${path}`);
  const metrics = (): string => get('/metrics').body;

  /** The four readings of readiness and Consul. */
  const agree = (): { s: StatusJson; m: string; ready: { status: number; body: string } } => {
    const s = status();
    const m = metrics();
    const ready = get('/readyz');
    assert.equal(value(m, 'befw_ready'), s.ready ? 1 : 0, 'befw_ready follows status');
    assert.equal(ready.status, s.ready ? 200 : 503, `/readyz follows status: ${ready.body}`);
    assert.equal(value(m, 'befw_consul_up'), s.consul.reachable ? 1 : 0, 'befw_consul_up follows status');
    assert.equal(get('/healthz').status, s.problems.length === 0 ? 200 : 503);
    assert.equal(value(m, 'befw_problems'), s.problems.length);
    return { s, m, ready };
  };

  before(async () => {
    sb = await Sandbox.create();
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
    await sb.listen([WEB]);
    await sb.kvPut(`befw/$service$/web_tcp_${WEB}/${clientV4(2)}`, '-1');
    config = sb.writeFile(
      'befw.conf',
      [
        `services=${sb.dir}/services`,
        `ipsets=${sb.dir}/ipsets`,
        `state=${sb.dir}/state.bin`,
        `socket=${sb.dir}/run/befw.sock`,
        `metrics=127.0.0.1:${METRICS_PORT}`,
        // A hung Consul is noticed within a probe interval plus this.
        'consul_timeout_sec=2',
      ].join('\n'),
    );
    agent = sb.startAgent(config);
    await sb.waitFor('blocked', clientV4(5), NODE_V4, WEB, 15_000);
    await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5000);
    // The endpoint starts right after the first agent: the apply can come first.
    const end = Date.now() + 10_000;
    for (;;) {
      try {
        if (get('/readyz').status === 200) break;
      } catch {
        // not listening yet
      }
      assert.ok(Date.now() < end, `no /readyz:\n${sb.log('agent.log').slice(-2000)}`);
      await sleep(100);
    }
  });

  after(async () => {
    // A stopped Consul would not see SIGTERM.
    for (const pid of consulPids()) spawnSync('kill', ['-CONT', String(pid)]);
    await agent?.stop();
    await sb?.destroy();
  });

  function consulPids(): number[] {
    if (sb === undefined) return [];
    const r = spawnSync('ip', ['netns', 'pids', sb.nodeNs], { encoding: 'utf8' });
    return r.stdout
      .split('\n')
      .filter((p) => p !== '')
      .map(Number)
      .filter((pid) => {
        try {
          return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'consul';
        } catch {
          return false;
        }
      });
  }

  it('/metrics passes promtool check metrics', () => {
    const text = metrics();
    const file = join(sb.dir, 'metrics.txt');
    writeFileSync(file, text);
    const r = spawnSync(promtool(), ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(`${r.stdout}${r.stderr}`.trim(), '', `promtool complains about ${file}`);
    assert.equal(r.status, 0);
    for (const name of [
      'befw_build_info',
      'befw_ready',
      'befw_consul_up',
      'befw_consul_last_contact_seconds',
      'process_cpu_seconds_total',
    ]) {
      assert.ok(samples(text).has(name), `${name} exported`);
    }
    assert.equal(value(text, 'befw_diagnostics', '{severity="error"}'), 0, 'severities start at zero');
    assert.equal(value(text, 'befw_drift_repairs_total'), 0);
  });

  it('every metric the dashboard queries is exported, and its queries parse', () => {
    const exported = new Set(samples(metrics()).keys());
    const exprs = dashboardExprs();
    assert.ok(exprs.length >= 20, `${exprs.length} queries`);
    const names = new Set(exprs.flatMap((e) => e.match(/\b(befw|process|nodejs)_[a-zA-Z0-9_]+/g) ?? []));
    const missing = [...names].filter((n) => !exported.has(n));
    assert.deepEqual(missing, [], 'dashboard metrics not in /metrics');
    // promtool parses PromQL in rule files: one recording rule per query.
    const rules = {
      groups: [{ name: 'dashboard', rules: exprs.map((e, i) => ({ record: `dashboard:q${i}`, expr: e.replaceAll('$instance', '.*') })) }],
    };
    const file = join(sb.dir, 'dashboard-rules.json');
    writeFileSync(file, JSON.stringify(rules));
    const r = spawnSync(promtool(), ['check', 'rules', file], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('status, /healthz, /readyz and metrics agree; a reload keeps uptime, counters and readiness', async () => {
    const before = agree();
    assert.equal(before.s.ready, true);
    assert.equal(before.s.consul.reachable, true);
    assert.match(before.ready.body, /^ready: enforcing [0-9a-f]+ from consul; Consul last contact \d+ s ago/);
    const applied = value(before.m, 'befw_applies_total', '{result="applied"}');
    assert.ok(before.s.stats.applies >= 1);
    const r = sb.befw(['reload', '-c', config]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const end = Date.now() + 10_000;
    // The new agent enforces state.bin, then reconciles from Consul.
    while (status().stats.applies < before.s.stats.applies + 1) {
      assert.ok(Date.now() < end, 'the new agent applied');
      await sleep(50);
    }
    const afterReload = agree();
    assert.equal(afterReload.s.startedAt, before.s.startedAt, 'uptime counts from the process start');
    assert.ok(afterReload.s.stats.applies > before.s.stats.applies, 'counters go on');
    assert.equal(afterReload.s.ready, true);
    assert.ok(value(afterReload.m, 'befw_applies_total', '{result="applied"}') >= applied);
  });

  it('a hung Consul shows as not reached for N s, while the node stays ready', async (t) => {
    const pids = consulPids();
    assert.equal(pids.length, 1, `one consul in ${sb.nodeNs}`);
    const pid = pids[0] ?? 0;
    process.kill(pid, 'SIGSTOP');
    try {
      const end = Date.now() + 25_000;
      while (status().consul.reachable) {
        assert.ok(Date.now() < end, 'Consul still shown as reachable while stopped');
        await sleep(200);
      }
      await sleep(1500);
      const { s, m, ready } = agree();
      assert.equal(s.consul.reachable, false);
      assert.ok((s.consul.sinceContactMs ?? 0) >= 1000, `not reached for ${s.consul.sinceContactMs} ms`);
      assert.ok(value(m, 'befw_consul_last_contact_seconds') >= 1);
      assert.equal(value(m, 'befw_consul_up'), 0);
      assert.equal(ready.status, 200, 'the plan is still enforced');
      assert.match(ready.body, /^ready: enforcing [0-9a-f]+ from consul; Consul last contact \d+ s ago, NOT REACHED/);
      const human = sb.befw(['status', '-c', config]);
      t.diagnostic(`/readyz: ${ready.body}\nbefw status:\n${human.stdout.split('\n').slice(0, 3).join('\n')}`);
      assert.match(human.stdout, /Consul: +UNREACHABLE .*last contact/);
      assert.equal(await sb.probe(clientV4(2), NODE_V4, WEB), 'open', 'still enforcing');
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const end = Date.now() + 20_000;
    while (!status().consul.reachable) {
      assert.ok(Date.now() < end, 'Consul reachable again after SIGCONT');
      await sleep(200);
    }
    const { s } = agree();
    assert.ok((s.consul.sinceContactMs ?? Infinity) < 15_000);
  });
});
