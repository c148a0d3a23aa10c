/**
 * Issue 10, tried for real: hostile and mistaken input against an agent in a network namespace
 * with a real Consul, real ipset/iptables and real TCP connections.
 *
 *   - Protected paths: denies of loopback, of the management network, of 0.0.0.0/0, of the
 *     Consul server's address and of a Consul member's (a client agent that joins from the client
 *     namespace) written raw to KV are clipped (what remains of a wide network is still enforced),
 *     reported, and undone through Consul; Consul's own traffic keeps flowing throughout.
 *   - The guard that waits: Consul restarted empty changes nothing before guard_hold (five times
 *     longer, since the index went backwards), says so, and applies once released.
 *   - Safe local files: truncated and half-written service files, a FIFO, /dev/zero and 50 MB
 *     files; the agent keeps enforcing KV changes and health says what is wrong.
 *   - One agent per node, SIGTERM, a failing state.bin save.
 *
 * Continuous probes run through every sequence: a client that must stay accepted and one that
 * must stay refused; any other answer at any moment is a wrong verdict, and there must be none.
 * Measured times are printed as test diagnostics.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, symlinkSync, truncateSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  type AgentProcess,
  type ProbeResult,
  DC,
  NODE_MGMT_V4,
  NODE_NAME,
  NODE_V4,
  NODE_V6,
  Sandbox,
  clientV4,
  clientV6,
  mgmtV4,
  sleep,
  waitEvent,
} from '../helpers/sandbox.js';

const WEB = 8080;
const DB = 5432;
const WEB_SET = 'web_tcp_8080';
const DB_SET = 'db_tcp_5432';
const MGMT_NET = '203.0.113.0/28';
const MGMT_CLIENT = mgmtV4(2);
const METRICS_PORT = 19187;

interface Diag {
  severity: string;
  code: string;
  subject: string;
  message: string;
}

interface Status {
  pid: number;
  consul: { reachable: boolean };
  diagnostics: Diag[];
  protectedClipped: number;
  problems: string[];
  sets: { name: string; members: number }[];
  stateSave: { failingSince: number | null; lastError: string | null };
  guard: { holding: { since: number; until: number | null; reasons: string[]; suspect: string | null } | null };
}

type Want = 'open' | 'refused' | 'closed';

interface Verdicts {
  readonly what: string;
  readonly probes: number;
  readonly wrong: string[];
}

/**
 * Probes `src` -> `dst`:`port` over and over until stopped. `open` must connect every time,
 * `refused` must be REJECTed every time, `closed` must never connect (DROP or REJECT).
 */
function watchVerdict(sb: Sandbox, what: string, src: string, dst: string, port: number, want: Want): { stop(): Promise<Verdicts> } {
  let running = true;
  let probes = 0;
  const wrong: string[] = [];
  const ok = (r: ProbeResult): boolean => (want === 'open' ? r === 'open' : want === 'refused' ? r === 'refused' : r !== 'open');
  const loop = (async () => {
    while (running) {
      // On the veth pair a handshake or a REJECT answers in well under a millisecond, so a wait
      // costs nothing where an answer is expected; a generous one keeps a busy CI host (a
      // stalled probe process) from reading as a drop. A probe that must be DROPped waits less.
      const r = await sb.probe(src, dst, port, want === 'closed' ? 250 : 1000);
      probes++;
      if (!ok(r)) wrong.push(`${new Date().toISOString()} ${r}`);
      await sleep(4);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return { what, probes, wrong };
    },
  };
}

/** Runs `fn` while every watch probes; afterwards no watch may have seen a wrong verdict. */
async function throughout<T>(
  t: { diagnostic(msg: string): void },
  watches: { stop(): Promise<Verdicts> }[],
  fn: () => Promise<T>,
): Promise<T> {
  let outcome: { ok: true; value: T } | { ok: false; err: unknown };
  try {
    outcome = { ok: true, value: await fn() };
  } catch (err) {
    outcome = { ok: false, err };
  }
  const verdicts = await Promise.all(watches.map((w) => w.stop()));
  for (const v of verdicts) t.diagnostic(`${v.what}: ${v.probes} probes, ${v.wrong.length} wrong`);
  // Wrong verdicts first: they are the finding, whatever else failed.
  for (const v of verdicts)
    assert.equal(v.wrong.length, 0, `${v.what}: ${v.wrong.length} wrong verdicts in ${v.probes} probes: ${v.wrong.slice(0, 5).join(', ')}`);
  if (!outcome.ok) throw outcome.err;
  for (const v of verdicts) assert.ok(v.probes >= 10, `${v.what}: only ${v.probes} probes`);
  return outcome.value;
}

/** Polls `fn` until it returns a value other than undefined; returns it and the time taken. */
async function until<T>(what: string, ms: number, fn: () => T | undefined | Promise<T | undefined>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (v !== undefined) return { value: v, ms: Date.now() - t0 };
    if (Date.now() - t0 > ms) throw new Error(`${what}: not within ${ms} ms`);
    await sleep(50);
  }
}

function statusOf(sb: Sandbox, config: string): Status {
  const r = sb.befw(['status', '--json', '-c', config]);
  assert.equal(r.code, 0, `befw status: ${r.stderr}`);
  return JSON.parse(r.stdout) as Status;
}

/** Whether `addr` matches kernel set `set` in the node namespace (`ipset test`). */
function inSet(sb: Sandbox, set: string, addr: string): boolean {
  const r = spawnSync('ip', ['netns', 'exec', sb.nodeNs, 'ipset', 'test', set, addr], { encoding: 'utf8' });
  if (r.status !== 0 && !/is NOT in set/.test(r.stderr)) throw new Error(`ipset test ${set} ${addr}: ${r.stderr}`);
  return r.status === 0;
}

/** The node's firewall as text: rules of both families (packet counters left out) and every set with its members. */
function kernel(sb: Sandbox): string {
  const rules = (cmd: string): string =>
    sb
      .inNode(cmd, ['-t', 'filter'])
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/, '[]'))
      .join('\n');
  const sets = sb.inNode('ipset', ['save']).split('\n').sort().join('\n');
  return `${rules('iptables-save')}\n${rules('ip6tables-save')}\n${sets}`;
}

/** The agent's exit code, or 'still running' after `ms`. */
function exited(a: AgentProcess, ms: number): Promise<number | null | 'still running'> {
  const p = a.proc;
  if (p.exitCode !== null) return Promise.resolve(p.exitCode);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve('still running'), ms);
    p.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code);
    });
  });
}

/** `text` as a literal inside a RegExp. */
function re(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function metric(sb: Sandbox, name: string): number {
  const r = sb.httpInNode(`http://127.0.0.1:${METRICS_PORT}/metrics`);
  assert.equal(r.status, 200);
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(r.body);
  assert.ok(m !== null, `metric ${name} not found`);
  return Number(m[1]);
}

function rssMb(pid: number): number {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  assert.ok(kb !== undefined, 'no VmRSS');
  return Number(kb) / 1024;
}

describe('protected paths and the guard that waits (Consul bound to the node address)', () => {
  const GRANTED = clientV4(3); // granted on web; caught by the 0.0.0.0/0 deny while it lasts
  const STRANGER = clientV4(4); // never granted: DROPped on the enforcing ports
  const DENIED = clientV4(9); // in rules_deny from the start: REJECTed on every port
  const DENIED2 = clientV4(8);
  const PEER = clientV4(5); // a Consul client agent joins from here
  const PEER_NET = '198.51.100.4/30';
  const PEER_NET_OTHER = clientV4(6);
  const GUARD_HOLD = 3;
  let sb: Sandbox;
  let agent: AgentProcess;
  let config: string;

  before(async () => {
    // Consul's cluster side on the node's veth address, as on a real node: its members (and so
    // the peers the agent protects) report 198.51.100.1, not loopback.
    sb = await Sandbox.create({ consulBind: NODE_V4 });
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
    await sb.registerService({ name: 'db', port: DB, tags: ['befw', 'enforcing'] });
    await sb.listen([WEB, DB]);
    await sb.kvPutMany([
      { key: `befw/$service$/${WEB_SET}/${GRANTED}`, value: '-1' },
      { key: `befw/$service$/${WEB_SET}/${clientV6(3)}`, value: '-1' },
      { key: `befw/$ipset$/rules_deny/${DENIED}`, value: '-1' },
      { key: `befw/$ipset$/rules_deny/${DENIED2}`, value: '-1' },
      // Grants elsewhere, so that the undo below does not shrink the tree by most of its keys.
      ...Array.from({ length: 10 }, (_, i) => ({ key: `befw/$service$/${DB_SET}/192.0.2.${10 + i}`, value: '-1' })),
    ]);
    config = sb.writeFile(
      'befw.conf',
      [
        `services=${sb.dir}/services`,
        `ipsets=${sb.dir}/ipsets`,
        `state=${sb.dir}/state/state.bin`,
        `set.rules_allow=${MGMT_NET}`,
        `metrics=127.0.0.1:${METRICS_PORT}`,
        `guard_hold=${GUARD_HOLD}`,
        'integrity_interval=1',
        'consul_timeout_sec=2',
        'log_level=debug',
      ].join('\n'),
    );
    agent = sb.startAgent(config);
    await waitEvent(agent, (e) => e.event === 'applied' && e.source === 'consul', 20_000);
    await sb.waitFor('open', GRANTED, NODE_V4, WEB, 5000);
    assert.equal(await sb.probe(DENIED, NODE_V4, WEB), 'refused');
    assert.notEqual(await sb.probe(STRANGER, NODE_V4, WEB), 'open');
    assert.equal(await sb.probe(MGMT_CLIENT, NODE_MGMT_V4, WEB), 'open');
  });

  after(async () => {
    await agent?.stop();
    await sb?.destroy();
  });

  it('clips raw KV denies of loopback, the management network and 0.0.0.0/0, keeps the rest, and takes the undo from Consul', async (t) => {
    const refusedKeys = [
      'befw/$ipset$/rules_deny/127.0.0.1',
      'befw/$ipset$/rules_deny/127.0.0.0/8',
      'befw/$ipset$/rules_deny/::1',
      `befw/$ipset$/${DC}/${NODE_NAME}/rules_deny/::1`,
    ];
    const clippedKeys = [
      'befw/$ipset$/rules_deny/203.0.113.0/24',
      `befw/$ipset$/${DC}/rules_deny/${MGMT_NET}`,
      'befw/$ipset$/rules_deny/0.0.0.0/0',
    ];
    const allKeys = [...refusedKeys, ...clippedKeys];
    await throughout(
      t,
      [
        watchVerdict(sb, 'management client on web', MGMT_CLIENT, NODE_MGMT_V4, WEB, 'open'),
        watchVerdict(sb, 'management client on db', MGMT_CLIENT, NODE_MGMT_V4, DB, 'open'),
        watchVerdict(sb, 'denied client on web', DENIED, NODE_V4, WEB, 'refused'),
      ],
      async () => {
        const t0 = Date.now();
        for (const key of allKeys) await sb.kvPut(key, '-1');
        // What remains of 0.0.0.0/0 is enforced: a client outside every protected range is REJECTed.
        const took = await sb.waitFor('blocked', GRANTED, NODE_V4, WEB, 10_000);
        t.diagnostic(
          `deny of 0.0.0.0/0 enforced (minus protected ranges) ${Date.now() - t0} ms after the first raw write (${took} ms after the last)`,
        );
        assert.equal(await sb.probe(GRANTED, NODE_V4, WEB), 'refused');
        assert.equal(await sb.probe(STRANGER, NODE_V4, DB), 'refused');

        // The kernel's deny set holds no protected address, and does hold the rest of the world.
        for (const a of ['127.0.0.1', '127.1.2.3', MGMT_CLIENT, '203.0.113.15', NODE_V4])
          assert.ok(!inSet(sb, 'rules_deny', a), `${a} in rules_deny`);
        assert.ok(!inSet(sb, 'rules_deny_v6', '::1'), '::1 in rules_deny_v6');
        for (const a of [GRANTED, '203.0.113.16', '8.8.8.8', '198.51.100.0', '255.255.255.254'])
          assert.ok(inSet(sb, 'rules_deny', a), `${a} not in rules_deny`);

        // The agent still hears Consul: its next KV change goes in.
        const t1 = Date.now();
        await sb.kvPut(`befw/$service$/${WEB_SET}/${clientV6(5)}`, '-1');
        const next = await sb.waitFor('open', clientV6(5), NODE_V6, WEB, 5000);
        t.diagnostic(`next KV change (a new grant) enforced ${Date.now() - t1} ms after its write (probe ${next} ms)`);

        // Status, plan and metrics name each key and what it would have cut.
        const s = statusOf(sb, config);
        const bySubject = new Map(s.diagnostics.map((d) => [d.subject, d]));
        for (const key of refusedKeys) {
          assert.equal(bySubject.get(key)?.code, 'refused-address', `${key}: ${JSON.stringify(bySubject.get(key))}`);
          assert.match(bySubject.get(key)?.message ?? '', /loopback/);
        }
        for (const key of clippedKeys)
          assert.equal(bySubject.get(key)?.code, 'protected-clipped', `${key}: ${JSON.stringify(bySubject.get(key))}`);
        assert.match(
          bySubject.get(clippedKeys[0] ?? '')?.message ?? '',
          /203\.0\.113\.0\/28 \(management network\).*enforced without them/,
        );
        assert.match(bySubject.get(clippedKeys[1] ?? '')?.message ?? '', /management network.*not enforced/);
        const wide = bySubject.get('befw/$ipset$/rules_deny/0.0.0.0/0')?.message ?? '';
        for (const what of ['127.0.0.0/8 (loopback)', `${MGMT_NET} (management network)`, `${NODE_V4}/32 (Consul peer)`])
          assert.ok(wide.includes(what), wide);
        assert.equal(s.protectedClipped, allKeys.length);
        assert.equal(metric(sb, 'befw_protected_clipped'), allKeys.length);
        const plan = sb.befw(['plan', '--json', '-c', config]);
        assert.equal(plan.code, 0, plan.stderr);
        const planDiags = (JSON.parse(plan.stdout) as { diagnostics: Diag[] }).diagnostics;
        for (const key of allKeys)
          assert.ok(
            planDiags.some((d) => d.subject === key && (d.code === 'refused-address' || d.code === 'protected-clipped')),
            `plan: ${key}`,
          );

        // The undo arrives through Consul. Lifting most of rules_deny loosens: the guard holds it
        // for guard_hold, then applies it.
        const from = agent.events().length;
        const t2 = Date.now();
        for (const key of allKeys) await sb.kvDelete(key);
        const undone = await sb.waitFor('open', GRANTED, NODE_V4, WEB, GUARD_HOLD * 1000 + 10_000);
        const held = agent
          .events()
          .slice(from)
          .find((e) => e.event === 'guard-held');
        t.diagnostic(
          `undo through Consul: denied client accepted again ${Date.now() - t2} ms after the deletes (guard_hold ${GUARD_HOLD} s; held: ${JSON.stringify(held?.reasons ?? null)}; probe ${undone} ms)`,
        );
        assert.ok(held !== undefined, 'lifting most of rules_deny was held');
        assert.ok(undone >= GUARD_HOLD * 1000 - 300, `applied after ${undone} ms, before guard_hold`);
        assert.equal(statusOf(sb, config).protectedClipped, 0);
      },
    );
    assert.equal(await sb.probe(DENIED, NODE_V4, WEB), 'refused');
    assert.ok(!agent.events().some((e) => e.event === 'watch-error'), 'the agent never lost its Consul');
  });

  it("clips raw KV denies of the Consul server's and a Consul member's addresses; Consul's traffic keeps flowing", async (t) => {
    // The peers as the local agent reports them, in the kernel and ahead of every deny.
    assert.ok(inSet(sb, 'befw~consul', NODE_V4), 'the Consul server is in befw~consul');
    const chain = sb.inNode('iptables', ['-S', 'BEFW']).split('\n');
    const tcp = chain.findIndex((l) =>
      /^-A BEFW -p tcp -m set --match-set befw~consul src -m multiport --dports (\d+,)*8301(,\d+)* -j ACCEPT$/.test(l),
    );
    const udp = chain.findIndex((l) =>
      /^-A BEFW -p udp -m set --match-set befw~consul src -m multiport --dports (\d+,)*8301(,\d+)* -j ACCEPT$/.test(l),
    );
    const deny = chain.findIndex((l) => /--match-set rules_deny src -j REJECT/.test(l));
    assert.ok(tcp >= 0 && udp >= 0, chain.join('\n'));
    assert.ok(tcp < deny && udp < deny, `peers accepted ahead of rules_deny:\n${chain.join('\n')}`);
    assert.ok(/--dports (\d+,)*8300(,\d+)*/.test(chain[tcp] ?? ''), `server RPC port protected: ${chain[tcp]}`);
    t.diagnostic(`peers rules: ${chain[tcp]} | ${chain[udp]}`);

    // A new member joins (a Consul client agent in the client namespace): protected within the
    // agent's members poll (10 s).
    const tJoin = Date.now();
    const peer = await sb.startConsulPeer(PEER);
    try {
      const joined = await until('new Consul member protected', 15_000, () => (inSet(sb, 'befw~consul', PEER) ? true : undefined));
      t.diagnostic(
        `new Consul member ${PEER} in befw~consul ${Date.now() - tJoin} ms after it was started (joined, then the members poll)`,
      );
      assert.ok(joined.ms < 12_000);
      // A peer is accepted on Consul's ports only: speaking from Consul's port 8302 (serf WAN)
      // to an enforcing service it has no grant on gets it nothing.
      for (const srcPort of [8300, 8302]) assert.equal(await sb.probe(PEER, NODE_V4, WEB, 400, srcPort), 'timeout', `from :${srcPort}`);

      const serverKeys = [`befw/$ipset$/rules_deny/${NODE_V4}`, `befw/$ipset$/${DC}/${NODE_NAME}/rules_deny/${NODE_V4}`];
      const peerKey = `befw/$ipset$/rules_deny/${PEER}`;
      const netKey = `befw/$ipset$/rules_deny/${PEER_NET}`; // .4-.7: the member and three others
      const keys = [...serverKeys, peerKey, netKey];
      let deniedAt = 0;
      await throughout(
        t,
        [
          watchVerdict(sb, 'management client on web', MGMT_CLIENT, NODE_MGMT_V4, WEB, 'open'),
          watchVerdict(sb, 'denied client on web', DENIED, NODE_V4, WEB, 'refused'),
        ],
        async () => {
          const t0 = Date.now();
          for (const key of keys) await sb.kvPut(key, '-1');
          // What remains of the /30 is enforced at once.
          const rest = await until('rest of the /30 denied', 5000, async () =>
            (await sb.probe(PEER_NET_OTHER, NODE_V4, WEB)) === 'refused' ? true : undefined,
          );
          deniedAt = Date.now();
          t.diagnostic(
            `denies written; ${PEER_NET_OTHER} (in ${PEER_NET}, not a member) REJECTed ${Date.now() - t0} ms after the first write`,
          );
          assert.ok(rest.ms < 5000);
          const s = statusOf(sb, config);
          const msg = (k: string): string => s.diagnostics.find((d) => d.subject === k && d.code === 'protected-clipped')?.message ?? '';
          for (const key of serverKeys) assert.match(msg(key), new RegExp(`${re(NODE_V4)}/32 \\(Consul peer\\).*not enforced`), key);
          assert.match(msg(peerKey), new RegExp(`${re(PEER)}/32 \\(Consul peer\\).*not enforced`));
          assert.match(msg(netKey), new RegExp(`${re(PEER)}/32 \\(Consul peer\\).*enforced without them as 2 network`));
          assert.equal(s.protectedClipped, keys.length);
          for (const a of [NODE_V4, PEER]) assert.ok(!inSet(sb, 'rules_deny', a), `${a} in rules_deny`);
          for (const a of ['198.51.100.4', '198.51.100.6', '198.51.100.7']) assert.ok(inSet(sb, 'rules_deny', a), `${a} not in rules_deny`);
          assert.ok(inSet(sb, 'befw~consul', NODE_V4) && inSet(sb, 'befw~consul', PEER));
          // befw plan reads the peers too, and says the same.
          const plan = sb.befw(['plan', '--json', '-c', config]);
          assert.equal(plan.code, 0, plan.stderr);
          const planned = JSON.parse(plan.stdout) as { diagnostics: Diag[]; sets: { name: string; members: string[] }[] };
          for (const key of keys)
            assert.ok(
              planned.diagnostics.some((d) => d.subject === key && d.code === 'protected-clipped'),
              `plan: ${key}`,
            );
          assert.ok(!(planned.sets.find((x) => x.name === 'rules_deny')?.members ?? []).includes(`${PEER}/32`));

          // Consul's own traffic keeps flowing: a write at the server is read through the member
          // (its RPC to the server crosses the node's firewall), and the member stays alive past
          // serf's failure detection (without the clip it is marked failed within seconds).
          await sb.kvPut('befw-test/after-deny', 'still here');
          const read = await peer.consul('GET', '/v1/kv/befw-test/after-deny?raw');
          assert.equal(read.status, 200);
          assert.equal(read.body, 'still here');
          // Unprotected, serf marks the member failed within about a second of the REJECT.
          await sleep(Math.max(0, deniedAt + 4000 - Date.now()));
          const members = JSON.parse((await sb.consul('GET', '/v1/agent/members')).body) as { Addr: string; Status: number }[];
          assert.equal(members.find((m) => m.Addr === PEER)?.Status, 1, `member alive 4 s after the deny: ${JSON.stringify(members)}`);
          assert.ok(statusOf(sb, config).consul.reachable);
        },
      );
      for (const key of keys) await sb.kvDelete(key);
      await until('clip cleared', 5000, () => (statusOf(sb, config).protectedClipped === 0 ? true : undefined));
      await until('rest of the /30 lifted', 5000, async () =>
        (await sb.probe(PEER_NET_OTHER, NODE_V4, WEB)) !== 'refused' ? true : undefined,
      );
    } finally {
      await peer.stop();
    }
  });

  it('holds what an empty Consul restart would remove until guard_hold (x5, index reset), says so, and applies it once released', async (t) => {
    assert.equal(await sb.probe(GRANTED, NODE_V4, WEB), 'open');
    const from = agent.events().length;
    let releasedAt = 0;
    let heldSince = 0;
    await throughout(
      t,
      [
        watchVerdict(sb, 'granted client on web', GRANTED, NODE_V4, WEB, 'open'),
        watchVerdict(sb, 'stranger on web', STRANGER, NODE_V4, WEB, 'closed'),
        watchVerdict(sb, 'denied client on web', DENIED, NODE_V4, WEB, 'refused'),
        watchVerdict(sb, 'management client on db', MGMT_CLIENT, NODE_MGMT_V4, DB, 'open'),
      ],
      async () => {
        // consul agent -dev keeps nothing: it comes back with no KV, no services, a new index.
        const t0 = Date.now();
        await sb.stopConsul();
        await sb.startConsul();
        t.diagnostic(`Consul restarted empty in ${Date.now() - t0} ms`);
        const first = await waitEvent(agent, (e) => e.event === 'guard-held', 30_000, from);
        const firstAt = Date.parse(String(first.time));
        t.diagnostic(
          `guard held ${firstAt - t0} ms after the restart began: ${JSON.stringify(first.reasons)}; suspect: ${String(first.suspect)}`,
        );
        // Each new read that differs (KV, then services) starts the hold again; the last one waits
        // five times guard_hold, since the KV index went backwards.
        const { value: hold } = await until('status shows the hold, suspect and naming web', 10_000, () => {
          const h = statusOf(sb, config).guard.holding;
          return h !== null && h.suspect !== null && h.reasons.some((r) => r.includes(WEB_SET)) ? h : undefined;
        });
        heldSince = firstAt;
        t.diagnostic(`status: holding ${JSON.stringify(hold.reasons)} until ${new Date(hold.until ?? 0).toISOString()} (${hold.suspect})`);
        assert.ok(hold.until !== null && hold.until - hold.since >= GUARD_HOLD * 1000 * 5 - 100, `hold lasts x5: ${JSON.stringify(hold)}`);
        assert.equal(metric(sb, 'befw_guard_holding'), 1);
        const ready = sb.httpInNode(`http://127.0.0.1:${METRICS_PORT}/readyz`);
        assert.match(ready.body, /the guard holds a change until/);
        // Nothing removed at 2 s, nor past guard_hold itself (the watches say so continuously).
        await sleep(Math.max(0, firstAt + 2000 - Date.now()));
        assert.ok(inSet(sb, WEB_SET, GRANTED), 'grant still in the kernel at 2 s');
        await sleep(Math.max(0, firstAt + (GUARD_HOLD + 1) * 1000 - Date.now()));
        assert.ok(inSet(sb, WEB_SET, GRANTED), `grant still in the kernel at guard_hold + 1 s`);
        assert.notEqual(statusOf(sb, config).guard.holding, null, 'still holding past guard_hold: the inputs are suspect');
        assert.ok(
          !agent
            .events()
            .slice(from)
            .some((e) => e.event === 'guard-confirmed'),
        );
        releasedAt = Date.now();
      },
    );
    const tRelease = Date.now();
    const r = sb.befw(['guard', 'release', '-c', config]);
    assert.equal(r.code, 0, r.stderr);
    // Released: the empty Consul is taken as it is. web is no longer a service, so its port is no
    // longer the agent's business, and rules_deny is empty.
    await sb.waitFor('open', STRANGER, NODE_V4, WEB, 5000);
    t.diagnostic(
      `released after ${releasedAt - heldSince} ms of hold; applied within ${Date.now() - tRelease} ms of running befw guard release`,
    );
    await waitEvent(agent, (e) => e.event === 'guard-released', 2000, from);
    assert.equal(statusOf(sb, config).guard.holding, null);
    assert.equal(await sb.probe(DENIED, NODE_V4, WEB), 'open');
    assert.ok(!sb.inNode('iptables', ['-S', 'BEFW']).includes(WEB_SET));
    assert.equal(metric(sb, 'befw_guard_holding'), 0);
  });
});

describe('safe local files, health, one agent per node, SIGTERM', () => {
  const FILES = 9100;
  const FILES_EXTRA = 9101;
  const FILES_SET = 'files_tcp_9100';
  const GRANTED = clientV4(2);
  const STRANGER = clientV4(3);
  const SERVICE = { name: 'files', port: FILES, protocol: 'tcp', mode: 'enforcing' };
  let sb: Sandbox;
  let agent: AgentProcess;
  let config: string;
  let servicePath: string;

  const registered = async (): Promise<{ Tags: string[] } | undefined> => (await sb.agentServices()).files;

  before(async () => {
    sb = await Sandbox.create();
    servicePath = sb.writeFile('services/files.json', JSON.stringify(SERVICE));
    sb.writeFile('ipsets/.keep', '');
    await sb.listen([FILES, FILES_EXTRA]);
    await sb.kvPut(`befw/$service$/${FILES_SET}/${GRANTED}`, '-1');
    config = sb.writeFile(
      'befw.conf',
      [
        `services=${sb.dir}/services`,
        `ipsets=${sb.dir}/ipsets`,
        `state=${sb.dir}/state/state.bin`,
        `set.rules_allow=${MGMT_NET}`,
        `metrics=127.0.0.1:${METRICS_PORT}`,
        'guard_hold=3',
        'integrity_interval=1',
        'log_level=debug',
      ].join('\n'),
    );
    agent = sb.startAgent(config);
    await waitEvent(agent, (e) => e.event === 'applied' && e.source === 'consul', 20_000);
    await sb.waitFor('open', GRANTED, NODE_V4, FILES, 5000);
    await sb.waitFor('blocked', STRANGER, NODE_V4, FILES, 5000);
    await until('service file registered', 10_000, registered);
  });

  after(async () => {
    await agent?.stop();
    await sb?.destroy();
  });

  it('keeps the last good version of a truncated or half-written service file: port closed, service registered', async (t) => {
    const from = agent.events().length;
    const fileProblem = (): Diag | undefined =>
      statusOf(sb, config).diagnostics.find((d) => d.subject === servicePath && d.code === 'bad-service-file');
    const stillRegistered = async (when: string): Promise<void> => assert.ok((await registered()) !== undefined, `deregistered ${when}`);
    await throughout(
      t,
      [
        watchVerdict(sb, 'stranger on the file service', STRANGER, NODE_V4, FILES, 'closed'),
        watchVerdict(sb, 'granted client on the file service', GRANTED, NODE_V4, FILES, 'open'),
      ],
      async () => {
        const text = JSON.stringify({ ...SERVICE, ports: [`${FILES_EXTRA}/tcp`] });
        // 1. Truncated in place, mid-JSON (a full disk, a crashed editor).
        truncateSync(servicePath, 17);
        const cut = await until('truncated file reported', 5000, fileProblem);
        t.diagnostic(`truncated file reported after ${cut.ms} ms: ${cut.value.message}`);
        assert.match(cut.value.message, /last good version kept/);
        await stillRegistered('after the truncation');
        // 2. Emptied.
        writeFileSync(servicePath, '');
        await sleep(1500);
        assert.match(fileProblem()?.message ?? '', /not JSON.*last good version kept/);
        await stillRegistered('while empty');
        // 3. Half-written: the writer stalls past the settle time, then finishes (a new version
        //    with a second port).
        const fd = openSync(servicePath, 'w');
        try {
          writeSync(fd, text.slice(0, Math.floor(text.length / 2)));
          await sleep(1500);
          assert.match(fileProblem()?.message ?? '', /last good version kept/);
          await stillRegistered('while half-written');
          writeSync(fd, text.slice(Math.floor(text.length / 2)));
        } finally {
          closeSync(fd);
        }
        const t0 = Date.now();
        // The finished version is taken: the new port is enforced too, and the problem is gone.
        const took = await sb.waitFor('blocked', STRANGER, NODE_V4, FILES_EXTRA, 5000);
        t.diagnostic(`finished file taken ${Date.now() - t0} ms after the last write (probe ${took} ms)`);
        assert.equal(await sb.probe(GRANTED, NODE_V4, FILES_EXTRA), 'open');
        await until('file problem cleared', 5000, () => (fileProblem() === undefined ? true : undefined));
        const reg = await until('registration updated', 5000, async () =>
          (await registered())?.Tags.includes(`${FILES_EXTRA}/tcp`) ? true : undefined,
        );
        t.diagnostic(`registration carries the new port after ${reg.ms} ms`);
      },
    );
    assert.ok(
      !agent
        .events()
        .slice(from)
        .some((e) => e.event === 'service-deregistered'),
      'never deregistered',
    );
  });

  it('keeps enforcing KV changes past a FIFO, /dev/zero and 50 MB files, and says so in status, /healthz and metrics', async (t) => {
    const dir = sb.dir;
    const bad = {
      fifoService: `${dir}/services/fifo.json`,
      fifoIpset: `${dir}/ipsets/fifo.ipset`,
      zeroService: `${dir}/services/zero.json`,
      zeroIpset: `${dir}/ipsets/rules_allow.ipset`,
      bigService: `${dir}/services/big.json`,
      bigIpset: `${dir}/ipsets/rules_deny.ipset`,
    };
    const rssBefore = rssMb(agent.proc.pid ?? 0);
    for (const p of [bad.fifoService, bad.fifoIpset]) {
      const r = spawnSync('mkfifo', [p]);
      assert.equal(r.status, 0);
    }
    symlinkSync('/dev/zero', bad.zeroService);
    symlinkSync('/dev/zero', bad.zeroIpset);
    // 50 MB of well-formed lines (benchmarking range): were it read, rules_deny would swell.
    const line = (i: number): string => `198.${18 + ((i >> 16) & 1)}.${(i >> 8) & 255}.${i & 255}\n`;
    const chunk = Buffer.from(Array.from({ length: 1 << 17 }, (_, i) => line(i)).join(''));
    const big = Buffer.alloc(50 * 1024 * 1024);
    for (let at = 0; at < big.length; at += chunk.length) chunk.copy(big, at);
    writeFileSync(bad.bigIpset, big);
    writeFileSync(bad.bigService, big);

    const t0 = Date.now();
    await sb.kvPut(`befw/$service$/${FILES_SET}/${clientV4(4)}`, '-1');
    const took = await sb.waitFor('open', clientV4(4), NODE_V4, FILES, 5000);
    t.diagnostic(`a new grant opened ${Date.now() - t0} ms after its write with the bad files in place (probe ${took} ms)`);
    assert.notEqual(await sb.probe(STRANGER, NODE_V4, FILES), 'open');

    const { value: s, ms } = await until('status lists every bad file', 5000, () => {
      const st = statusOf(sb, config);
      return Object.values(bad).every((p) => st.diagnostics.some((d) => d.subject === p)) ? st : undefined;
    });
    t.diagnostic(`status lists the ${Object.keys(bad).length} bad files (${ms} ms): ${s.problems.join('; ')}`);
    const msg = (p: string): string => s.diagnostics.find((d) => d.subject === p)?.message ?? '';
    assert.match(msg(bad.fifoService), /FIFO/);
    assert.match(msg(bad.fifoIpset), /FIFO/);
    assert.match(msg(bad.zeroService), /device/);
    assert.match(msg(bad.zeroIpset), /device/);
    assert.match(msg(bad.bigService), /cap of 1048576 bytes/);
    assert.match(msg(bad.bigIpset), /cap of 16777216 bytes/);
    assert.ok(
      s.problems.some((p) => /6 local file problem/.test(p)),
      JSON.stringify(s.problems),
    );
    assert.ok((s.sets.find((x) => x.name === 'rules_deny')?.members ?? -1) === 0, 'nothing read from the 50 MB file');
    assert.ok((s.sets.find((x) => x.name === 'rules_allow')?.members ?? -1) === 1, 'nothing read from /dev/zero');
    const health = sb.httpInNode(`http://127.0.0.1:${METRICS_PORT}/healthz`);
    assert.equal(health.status, 503);
    assert.match(health.body, /local file problem/);
    assert.ok(metric(sb, 'befw_problems') >= 1);

    // Memory stays where it was, through a few more passes over the bad files.
    for (let i = 0; i < 3; i++) {
      await sb.kvPut(`befw/$service$/${FILES_SET}/192.0.2.${20 + i}`, '-1');
      await sleep(300);
    }
    const rss = rssMb(agent.proc.pid ?? 0);
    t.diagnostic(`agent RSS ${rssBefore.toFixed(1)} MB before the bad files, ${rss.toFixed(1)} MB after`);
    assert.ok(rss < 300, `RSS ${rss} MB`);

    for (const p of Object.values(bad)) unlinkSync(p);
    const cleared = await until('healthy again', 5000, () =>
      sb.httpInNode(`http://127.0.0.1:${METRICS_PORT}/healthz`).status === 200 ? true : undefined,
    );
    t.diagnostic(`/healthz 200 again ${cleared.ms} ms after the bad files were removed`);
    assert.deepEqual(statusOf(sb, config).problems, []);
  });

  it('shows a failing state.bin save in status, /healthz and metrics', async (t) => {
    const dir = `${sb.dir}/state`;
    // Inside the agent's own mount namespace (ip netns exec gave it one), so nothing else sees it.
    const inAgent = (args: string[]): void => {
      const r = spawnSync('nsenter', ['-t', String(agent.proc.pid), '-m', '--', ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
    };
    assert.equal(metric(sb, 'befw_state_save_failing'), 0);
    inAgent(['mount', '--bind', dir, dir]);
    try {
      inAgent(['mount', '-o', 'remount,ro,bind', dir]);
      const from = agent.events().length;
      const t0 = Date.now();
      await sb.kvPut(`befw/$service$/${FILES_SET}/${clientV4(5)}`, '-1');
      await sb.waitFor('open', clientV4(5), NODE_V4, FILES, 5000);
      await waitEvent(agent, (e) => e.event === 'state-save-failed', 5000, from);
      const s = statusOf(sb, config);
      t.diagnostic(`save failure visible ${Date.now() - t0} ms after the change: ${s.problems.join('; ')}`);
      assert.ok(s.stateSave.failingSince !== null);
      assert.match(s.stateSave.lastError ?? '', /read-only|EROFS/i);
      assert.ok(
        s.problems.some((p) => /state\.bin cannot be saved/.test(p)),
        JSON.stringify(s.problems),
      );
      assert.equal(metric(sb, 'befw_state_save_failing'), 1);
      const health = sb.httpInNode(`http://127.0.0.1:${METRICS_PORT}/healthz`);
      assert.equal(health.status, 503);
      assert.match(health.body, /state\.bin cannot be saved/);
    } finally {
      inAgent(['umount', dir]);
    }
    // The next change saves again, and the alarm clears.
    await sb.kvPut(`befw/$service$/${FILES_SET}/${clientV4(6)}`, '-1');
    await sb.waitFor('open', clientV4(6), NODE_V4, FILES, 5000);
    await until('save healthy again', 5000, () => (statusOf(sb, config).stateSave.failingSince === null ? true : undefined));
    assert.equal(metric(sb, 'befw_state_save_failing'), 0);
  });

  it('lets a second agent on the node exit 1 at once, naming the first, and touch nothing', async (t) => {
    const before = kernel(sb);
    const state = readFileSync(`${sb.dir}/state/state.bin`);
    // Another config (its own socket and state.bin): only the node lock stands in its way.
    const other = sb.writeFile(
      'befw-second.conf',
      readFileSync(config, 'utf8')
        .replace(/^socket=.*$/m, `socket=${sb.dir}/befw-second.sock`)
        .replace(/^state=.*$/m, `state=${sb.dir}/state-second/state.bin`),
    );
    const t0 = Date.now();
    const second = sb.startAgent(other, 'agent-second.log');
    const code = await exited(second, 10_000);
    const ms = Date.now() - t0;
    t.diagnostic(`second agent exited ${code} after ${ms} ms: ${sb.log('agent-second.log').trim()}`);
    assert.equal(code, 1);
    assert.ok(ms < 5000, `took ${ms} ms`);
    const lines = sb.log('agent-second.log').trim().split('\n');
    assert.equal(lines.length, 1, lines.join('\n'));
    assert.match(lines[0] ?? '', new RegExp(`another befw agent runs on this node: pid ${agent.proc.pid}\\b`));
    assert.equal(kernel(sb), before, 'the kernel is unchanged');
    assert.ok(readFileSync(`${sb.dir}/state/state.bin`).equals(state), 'state.bin is unchanged');
    assert.ok(!existsSync(`${sb.dir}/state-second`) && !existsSync(`${sb.dir}/befw-second.sock`), 'the second agent created nothing');
    assert.equal(agent.proc.exitCode, null, 'the first agent still runs');
    assert.equal(statusOf(sb, config).pid, agent.proc.pid, 'and still answers on its socket');
  });

  it('exits within 2 s of SIGTERM and leaves the firewall as it is', async (t) => {
    const netns = sb.inNode('readlink', ['/proc/self/ns/net']).trim();
    const lock = `/run/befw/agent-net${/\[(\d+)\]/.exec(netns)?.[1] ?? ''}.lock`;
    assert.equal(readFileSync(lock, 'utf8').trim(), String(agent.proc.pid));
    const before = kernel(sb);
    const from = agent.events().length;
    const t0 = Date.now();
    const code = await agent.stop('SIGTERM');
    const ms = Date.now() - t0;
    // The agent's own account of the stop, relative to the signal: where the time went if slow.
    const steps = agent
      .events()
      .slice(from)
      .map((e) => `${String(e.event)} +${Date.parse(String(e.time)) - t0} ms`);
    t.diagnostic(`agent exited ${code} ${ms} ms after SIGTERM (${steps.join(', ')})`);
    assert.equal(code, 0);
    assert.ok(ms < 2000, `took ${ms} ms: ${steps.join(', ')}`);
    assert.equal(kernel(sb), before, 'the firewall is left as it is');
    assert.ok(agent.events().some((e) => e.event === 'stopped'));
    assert.throws(() => readFileSync(lock), /ENOENT/, 'lock released');
    assert.equal(await sb.probe(GRANTED, NODE_V4, FILES), 'open');
    assert.notEqual(await sb.probe(STRANGER, NODE_V4, FILES), 'open');
  });
});
