/**
 * The multi-node lab (issue 12, item 3): one Consul server per datacenter, four Consul client
 * agents in their own network namespaces over one bridge, one befw agent per node with its own
 * services, real ipset/iptables and real TCP connections from a client namespace.
 *
 *   node1 dc1: web 8080             node3 dc1: web 8080, dns 53/udp
 *   node2 dc1: web 8080, db 5432    node4 dc2: web 8080, db 5432 (reads the KV of dc1 over WAN)
 *
 * "Woken" is measured as the agent counts it: KV answers whose data changed
 * (befw_consul_kv_answers_total{changed="true"}, from each agent's own /metrics). Answers that
 * only moved the index (Consul wakes an empty prefix on every write under its nearest existing
 * ancestor) are reported beside them, not asserted: they cost a request but no re-read, no
 * compile and no apply. Figures (write -> enforced per node, answers per agent per write) go to
 * the test's diagnostics; no timing is asserted beyond "within seconds".
 */
import assert from 'node:assert/strict';
import { type TestContext, after, before, describe, it } from 'node:test';
import { type FleetNode, type FleetNodeSpec, FleetLab, type KvAnswers, fleetClientV4, fleetClientV6 } from '../helpers/fleetLab.js';
import { sleep } from '../helpers/sandbox.js';

const WEB = 8080;
const DB = 5432;
const WEB_SET = 'web_tcp_8080';
const DB_SET = 'db_tcp_5432';
const SOON_MS = 15_000; // "within seconds", with room for a loaded CI machine
/** After the last wanted node enforced a write, how long the others get to show any answer. */
const SETTLE_MS = 600;

const web = { name: 'web', port: WEB, tags: ['befw', 'enforcing'] };
const db = { name: 'db', port: DB, tags: ['befw', 'enforcing'] };
const dns = { name: 'dns', port: 53, tags: ['befw', 'enforcing', 'udp'] };
const SPECS: FleetNodeSpec[] = [
  { name: 'node1', dc: 'dc1', services: [web] },
  { name: 'node2', dc: 'dc1', services: [web, db] },
  { name: 'node3', dc: 'dc1', services: [web, dns] },
  { name: 'node4', dc: 'dc2', services: [web, db] },
];

interface Target {
  readonly node: FleetNode;
  readonly src: string;
  readonly port: number;
  readonly v6?: boolean;
}

interface Delta {
  readonly changed: number;
  readonly unchanged: number;
  readonly errors: number;
  /** `applied` and `kv-changed` events the agent logged in the window. */
  readonly applies: number;
  readonly kvChanged: number;
}

interface WriteFigures {
  /** write -> the first probe through, per node (ms). */
  readonly enforcedMs: Map<string, number>;
  /** write -> the agent logged its apply (ms). */
  readonly appliedMs: Map<string, number | null>;
  readonly deltas: Map<string, Delta>;
}

function count(n: FleetNode, event: string): number {
  return n.events().filter((e) => e.event === event).length;
}

function firstAppliedAfter(n: FleetNode, t0: number): number | null {
  for (const e of n.events()) {
    if (e.event !== 'applied') continue;
    const at = Date.parse(String(e.time));
    if (at >= t0) return at - t0;
  }
  return null;
}

const dst = (t: Target): string => (t.v6 === true ? t.node.v6 : t.node.v4);

describe('multi-node lab: scoped watches across a fleet', () => {
  let lab: FleetLab;
  let nodes: FleetNode[];
  let setupMs = 0;

  /**
   * One write, then: every wanted node enforces it (probe through), every other one still blocks
   * it, and each running agent's KV answers in the window.
   */
  async function measureWrite(
    write: () => Promise<void>,
    open: readonly Target[],
    blocked: readonly Target[],
    running: readonly FleetNode[] = nodes,
  ): Promise<WriteFigures> {
    const before = await lab.kvAnswers(running);
    const logged = new Map(running.map((n) => [n.name, { applies: count(n, 'applied'), kvChanged: count(n, 'kv-changed') }]));
    const t0 = Date.now();
    await write();
    const enforced = await Promise.all(
      open.map(async (t) => {
        await lab.waitFor('open', t.src, dst(t), t.port, SOON_MS);
        return [t.node.name, Date.now() - t0] as const;
      }),
    );
    await sleep(SETTLE_MS);
    for (const t of blocked) {
      assert.notEqual(await lab.probeOnce(t.src, dst(t), t.port, 150), 'open', `${t.src} -> ${t.node.name}:${t.port} must stay blocked`);
    }
    const afterAnswers = await lab.kvAnswers(running);
    const deltas = new Map<string, Delta>();
    for (const n of running) {
      const a = before.get(n.name) as KvAnswers;
      const b = afterAnswers.get(n.name) as KvAnswers;
      const l = logged.get(n.name) as { applies: number; kvChanged: number };
      deltas.set(n.name, {
        changed: b.changed - a.changed,
        unchanged: b.unchanged - a.unchanged,
        errors: b.errors - a.errors,
        applies: count(n, 'applied') - l.applies,
        kvChanged: count(n, 'kv-changed') - l.kvChanged,
      });
    }
    const enforcedMs = new Map<string, number>();
    for (const [name, ms] of enforced) enforcedMs.set(name, Math.max(enforcedMs.get(name) ?? 0, ms));
    const appliedMs = new Map<string, number | null>();
    for (const name of enforcedMs.keys()) appliedMs.set(name, firstAppliedAfter(lab.node(name), t0));
    return { enforcedMs, appliedMs, deltas };
  }

  function report(t: TestContext, label: string, f: WriteFigures): void {
    const enforced = [...f.enforcedMs].map(([n, ms]) => `${n} ${ms} ms (applied ${f.appliedMs.get(n) ?? '?'} ms)`).join(', ');
    const answers = [...f.deltas].map(([n, d]) => `${n} ${d.changed}/${d.unchanged}`).join(', ');
    const applies = [...f.deltas].map(([n, d]) => `${n} ${d.applies}`).join(', ');
    t.diagnostic(`${label}: write -> enforced: ${enforced === '' ? 'none wanted' : enforced}`);
    const all = [...f.deltas.values()];
    const total = `${all.reduce((s, d) => s + d.changed + d.unchanged, 0)} answers, ${all.filter((d) => d.changed > 0).length} agent(s) with changed data`;
    t.diagnostic(`${label}: KV answers changed/unchanged per agent: ${answers}; applies: ${applies}; fleet: ${total}`);
  }

  before(async () => {
    const t0 = Date.now();
    lab = await FleetLab.create(SPECS);
    nodes = lab.nodes;
    setupMs = Date.now() - t0;
  });

  after(async () => {
    if (lab !== undefined) {
      await Promise.all(lab.nodes.map((n) => n.stopAgent()));
      await lab.destroy();
    }
  });

  it('runs one agent per node, each watching only its own prefixes; idle agents ask nothing', async (t) => {
    t.diagnostic(`lab up (2 servers, 4 Consul clients, 4 befw agents, first applies) in ${setupMs} ms`);
    for (const n of nodes) {
      const s = n.status();
      assert.equal(s.consul.reachable, true, `${n.name} reaches Consul`);
      const prefixes = s.kvPrefixes;
      t.diagnostic(`${n.name} (${n.dc}) watches ${prefixes.length} KV prefixes`);
      assert.ok(prefixes.includes(`befw/$service$/${WEB_SET}/`), `${n.name} watches web at world scope`);
      assert.ok(prefixes.includes(`befw/$service$/${n.dc}/${WEB_SET}/`), `${n.name} watches web in its own dc`);
      assert.ok(prefixes.includes(`befw/$service$/${n.dc}/${n.name}/`), `${n.name} watches its own node scope`);
      assert.equal(prefixes.includes(`befw/$service$/${DB_SET}/`), n.spec.services.includes(db), `${n.name}: db only where db runs`);
      assert.ok(!prefixes.includes('befw/'), 'no whole-tree watch');
      for (const other of nodes) {
        if (other !== n) assert.ok(!prefixes.some((p) => p.includes(`/${other.name}/`)), `${n.name} never watches ${other.name}'s scope`);
      }
      if (n.dc === 'dc1') assert.ok(!prefixes.some((p) => p.includes('/dc2/')));
      else assert.ok(!prefixes.some((p) => p.includes('/dc1/')));
    }
    // Each agent publishes its protected networks (befw-protect/<dc>/<node>) shortly after it
    // starts: a KV write like any other, which wakes empty prefixes too. Let those pass first.
    const deadline = Date.now() + 10_000;
    while (!nodes.every((n) => count(n, 'protect-published') > 0) && Date.now() < deadline) await sleep(100);
    await sleep(300);
    // The baseline for the per-write figures below: without writes, parked queries stay parked.
    const idle = await measureWrite(() => sleep(1000), [], []);
    report(t, 'no write (1 s idle)', idle);
    for (const n of nodes) assert.equal(idle.deltas.get(n.name)?.changed, 0);
  });

  it('enforces one world-scope write on every node (IPv4, then IPv6)', async (t) => {
    for (const n of nodes) assert.notEqual(await lab.probeOnce(fleetClientV4(2), n.v4, WEB, 150), 'open', `${n.name} closed before`);
    const f4 = await measureWrite(
      () => lab.kvPut(`befw/$service$/${WEB_SET}/${fleetClientV4(2)}`, '-1'),
      nodes.map((node) => ({ node, src: fleetClientV4(2), port: WEB })),
      nodes.map((node) => ({ node, src: fleetClientV4(3), port: WEB })),
    );
    report(t, `world ${WEB_SET}/${fleetClientV4(2)}`, f4);
    const f6 = await measureWrite(
      () => lab.kvPut(`befw/$service$/${WEB_SET}/${fleetClientV6(2)}`, '-1'),
      nodes.map((node) => ({ node, src: fleetClientV6(2), port: WEB, v6: true })),
      nodes.map((node) => ({ node, src: fleetClientV6(3), port: WEB, v6: true })),
    );
    report(t, `world ${WEB_SET}/${fleetClientV6(2)}`, f6);
    for (const f of [f4, f6]) {
      for (const n of nodes) assert.ok((f.deltas.get(n.name)?.changed ?? 0) >= 1, `${n.name} saw the change`);
    }
  });

  it('enforces a node-scope write on its node only, and wakes no other agent', async (t) => {
    const [node1, ...others] = nodes as [FleetNode, ...FleetNode[]];
    const src = fleetClientV4(3);
    const f = await measureWrite(
      () => lab.kvPut(`befw/$service$/dc1/node1/${WEB_SET}/${src}`, '-1'),
      [{ node: node1, src, port: WEB }],
      others.map((node) => ({ node, src, port: WEB })),
    );
    report(t, `node scope dc1/node1/${WEB_SET}/${src}`, f);
    assert.ok((f.deltas.get('node1')?.changed ?? 0) >= 1);
    for (const n of others) {
      const d = f.deltas.get(n.name) as Delta;
      assert.equal(d.changed, 0, `${n.name}: no KV answer with changed data`);
      assert.equal(d.kvChanged, 0, `${n.name}: no kv-changed event`);
      assert.equal(d.applies, 0, `${n.name}: no apply`);
    }
  });

  it('carries a datacenter-scope write to the nodes of that datacenter only', async (t) => {
    const dc1 = nodes.filter((n) => n.dc === 'dc1');
    const dc2 = nodes.filter((n) => n.dc === 'dc2');
    const a = fleetClientV4(4);
    const f1 = await measureWrite(
      () => lab.kvPut(`befw/$service$/dc1/${WEB_SET}/${a}`, '-1'),
      dc1.map((node) => ({ node, src: a, port: WEB })),
      dc2.map((node) => ({ node, src: a, port: WEB })),
    );
    report(t, `dc scope dc1/${WEB_SET}/${a}`, f1);
    const b = fleetClientV4(5);
    const f2 = await measureWrite(
      () => lab.kvPut(`befw/$service$/dc2/${WEB_SET}/${b}`, '-1'),
      dc2.map((node) => ({ node, src: b, port: WEB })),
      dc1.map((node) => ({ node, src: b, port: WEB })),
    );
    report(t, `dc scope dc2/${WEB_SET}/${b}`, f2);
    for (const [f, inside, outside] of [
      [f1, dc1, dc2],
      [f2, dc2, dc1],
    ] as const) {
      for (const n of inside) assert.ok((f.deltas.get(n.name)?.changed ?? 0) >= 1, `${n.name} saw the change`);
      for (const n of outside) {
        assert.equal(f.deltas.get(n.name)?.changed, 0, `${n.name}: no changed answer`);
        assert.equal(f.deltas.get(n.name)?.applies, 0, `${n.name}: no apply`);
      }
    }
  });

  it('changes data only on the agents that run the service a write concerns', async (t) => {
    const src = fleetClientV4(6);
    const runners = nodes.filter((n) => n.spec.services.includes(db));
    const rest = nodes.filter((n) => !n.spec.services.includes(db));
    assert.ok(runners.length >= 2 && rest.length >= 1);
    const f = await measureWrite(
      () => lab.kvPut(`befw/$service$/${DB_SET}/${src}`, '-1'),
      runners.map((node) => ({ node, src, port: DB })),
      // The grant is for db only: the same client stays out of web on the db nodes.
      runners.map((node) => ({ node, src, port: WEB })),
    );
    report(t, `world ${DB_SET}/${src}`, f);
    for (const n of runners) assert.ok((f.deltas.get(n.name)?.changed ?? 0) >= 1, `${n.name} saw the change`);
    for (const n of rest) {
      assert.equal(f.deltas.get(n.name)?.changed, 0, `${n.name} runs no db: no changed answer`);
      assert.equal(f.deltas.get(n.name)?.applies, 0, `${n.name}: no apply`);
    }
  });

  it('lets a node that was down catch up when it comes back', async (t) => {
    const node3 = lab.node('node3');
    const up = nodes.filter((n) => n !== node3);
    const world = fleetClientV4(7);
    const own = fleetClientV4(8);
    // The node goes down hard: its Consul agent and its befw agent killed, its kernel left as it was.
    const downAt = Date.now();
    await node3.stopAgent('SIGKILL');
    await node3.stopConsul('SIGKILL');
    const f = await measureWrite(
      async () => {
        await lab.kvPut(`befw/$service$/${WEB_SET}/${world}`, '-1');
        await lab.kvPut(`befw/$service$/dc1/node3/${WEB_SET}/${own}`, '-1');
      },
      up.map((node) => ({ node, src: world, port: WEB })),
      [
        { node: node3, src: world, port: WEB },
        { node: node3, src: own, port: WEB },
      ],
      up,
    );
    report(t, 'while node3 is down: world + node3-scope writes', f);
    // What node3 enforced before it went down is still enforced.
    assert.equal(await lab.probeOnce(fleetClientV4(2), node3.v4, WEB), 'open');
    const backAt = Date.now();
    await node3.startConsul();
    const consulMs = Date.now() - backAt;
    const agentAt = Date.now();
    await node3.startAgent();
    const [worldMs, ownMs] = await Promise.all([
      lab.waitFor('open', world, node3.v4, WEB, SOON_MS).then(() => Date.now() - agentAt),
      lab.waitFor('open', own, node3.v4, WEB, SOON_MS).then(() => Date.now() - agentAt),
    ]);
    t.diagnostic(
      `node3 down ${backAt - downAt} ms; back: Consul agent rejoined in ${consulMs} ms; ` +
        `agent start -> missed world write enforced ${worldMs} ms, missed node-scope write ${ownMs} ms`,
    );
    // And it is a full member again: the next write reaches it like any other node.
    const g = await measureWrite(
      () => lab.kvPut(`befw/$service$/dc1/node3/${WEB_SET}/${fleetClientV4(9)}`, '-1'),
      [{ node: node3, src: fleetClientV4(9), port: WEB }],
      up.map((node) => ({ node, src: fleetClientV4(9), port: WEB })),
    );
    report(t, 'node3 back: node3-scope write', g);
    for (const n of up) assert.equal(g.deltas.get(n.name)?.changed, 0);
  });

  it('survives a Consul server restart: enforcement holds, then writes flow again', async (t) => {
    const server = lab.serverFor('dc1');
    const held = fleetClientV4(2); // granted at world scope earlier
    const fresh = fleetClientV4(40);
    const baseline = await lab.kvAnswers();
    const stoppedAt = Date.now();
    await server.stop();
    // Outage: every agent keeps what it enforces.
    await sleep(1500);
    for (const n of nodes) {
      assert.equal(await lab.probeOnce(held, n.v4, WEB), 'open', `${n.name} keeps enforcing during the outage`);
      assert.equal(n.agentProc?.exitCode, null, `${n.name} agent still running`);
    }
    const during = await lab.kvAnswers();
    const startAt = Date.now();
    await server.start();
    const serverMs = Date.now() - startAt;
    const f = await measureWrite(
      () => lab.kvPut(`befw/$service$/${WEB_SET}/${fresh}`, '-1'),
      nodes.map((node) => ({ node, src: fresh, port: WEB })),
      nodes.map((node) => ({ node, src: fleetClientV4(3), port: WEB })).filter((x) => x.node.name !== 'node1'),
    );
    report(t, `after the restart: world ${WEB_SET}/${fresh}`, f);
    t.diagnostic(
      `server down ${startAt - stoppedAt} ms, leader again ${serverMs} ms after start; ` +
        `Consul request errors during the outage per agent: ${[...during].map(([n, a]) => `${n} ${a.errors - (baseline.get(n)?.errors ?? 0)}`).join(', ')}`,
    );
    for (const n of nodes) {
      assert.equal(await lab.probeOnce(held, n.v4, WEB), 'open', `${n.name} still enforces the old grant`);
      assert.equal(n.status().consul.reachable, true, `${n.name} reaches Consul again`);
    }
  });
});
