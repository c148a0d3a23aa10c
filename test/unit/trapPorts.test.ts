import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { compile } from '../../src/core/compile.js';
import { observeLogPrefix, observeTag } from '../../src/core/observe.js';
import { TRAP_CANDIDATES, chooseTrapPorts, parseTrapSpec, trapRules } from '../../src/core/trap.js';
import type { AgentService, ChainRule, Snapshot } from '../../src/core/types.js';
import { chainRuleLines } from '../../src/dataplane/iptables/render.js';
import { DEFAULT_SERVICE_TEMPLATE } from '../../src/dataplane/iptables/templates.js';
import { renderChains } from '../../src/dataplane/nft/render.js';
import { TrapPorts, listeningPorts } from '../../src/agent/trapPorts.js';
import { encodeState, decodeState } from '../../src/state/stateStore.js';
import { recordingLog } from '../helpers/recordingLog.js';
import { parseConfig } from '../../src/config/config.js';

const NOW = 1_700_000_000_000;
const NODE = { name: 'web-1', dc: 'dc1' };
const WEB: AgentService = { id: 'web', name: 'web', port: 8080, tags: ['befw', 'enforcing'] };
const OBS: AgentService = { id: 'app', name: 'app', port: 9000, tags: ['befw', 'observe'] };

function snap(extra: Partial<Snapshot> = {}): Snapshot {
  return { node: NODE, agentServices: [WEB, OBS], fileServices: [], kv: [], ipsetFiles: [], inputDiagnostics: [], ...extra };
}

/** A draw that always takes the first free candidate: deterministic choices. */
const first = (): number => 0;

describe('trap ports: choosing', () => {
  test("picks 15 of BEFW's candidates, none used, and keeps previous ones that stay free", () => {
    const used = new Set([TRAP_CANDIDATES[0] as number, TRAP_CANDIDATES[2] as number]);
    const a = chooseTrapPorts({ kind: 'count', count: 15 }, [], used, first);
    assert.equal(a.ports.length, 15);
    for (const p of a.ports) assert.ok(TRAP_CANDIDATES.includes(p) && !used.has(p));
    // Previous ports are kept; one that became used is replaced, the others stay.
    const prev = [2222, 3389, 5900, 8081, 9200];
    const b = chooseTrapPorts({ kind: 'count', count: 5 }, prev, new Set([3389]), first);
    assert.deepEqual(
      b.ports.filter((p) => prev.includes(p)),
      [2222, 5900, 8081, 9200],
    );
    assert.equal(b.ports.length, 5);
    assert.ok(!b.ports.includes(3389));
  });

  test('fewer than 5 free: no traps at all, as BEFW (befw/nids.go:116-118), and a diagnostic', () => {
    const used = new Set(TRAP_CANDIDATES.slice(4));
    const c = chooseTrapPorts({ kind: 'count', count: 15 }, [], used, first);
    assert.deepEqual(c.ports, []);
    assert.equal(c.diagnostics[0]?.code, 'trap-ports-few');
  });

  test('hostile previous values (from a tampered state.bin) are dropped', () => {
    const c = chooseTrapPorts({ kind: 'count', count: 5 }, [0, -1, 70000, 1.5, '22', null, 2222], new Set(), first);
    assert.ok(c.ports.includes(2222));
    assert.ok(c.ports.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535));
    assert.equal(c.ports.length, 5);
  });

  test('nids_ports: a count or a list; bad text refused with a reason', () => {
    assert.deepEqual(parseTrapSpec('10'), { ok: true, spec: { kind: 'count', count: 10 } });
    assert.deepEqual(parseTrapSpec('5900, 2222,2222'), { ok: true, spec: { kind: 'list', ports: [2222, 5900] } });
    assert.equal(parseTrapSpec('3').ok, false);
    assert.equal(parseTrapSpec('99999').ok, false);
    assert.equal(parseTrapSpec('22,;reboot').ok, false);
    const l = chooseTrapPorts({ kind: 'list', ports: [2222, 8080] }, [], new Set([8080]), first);
    assert.deepEqual(l.ports, [2222]);
    assert.equal(l.diagnostics[0]?.code, 'trap-port-used');
  });

  test('the rules split the ports in groups of 15 (multiport)', () => {
    const ports = Array.from({ length: 20 }, (_, i) => 2000 + i);
    const r = trapRules(ports);
    assert.equal(r.length, 2);
    assert.deepEqual(
      r.map((x) => (x.kind === 'trap' ? x.ports.length : 0)),
      [15, 5],
    );
  });
});

describe('trap ports and observe mode: plan and renderers', () => {
  test('trap after rules_allow/rules_deny, before the services; never on a service port; off without nids', () => {
    const plan = compile(
      snap({ trapPorts: [2222, 8080, 3389, 5900, 9200, 9300] }),
      { customSets: [], managementNets: [], nids: true },
      NOW,
    );
    const kinds = plan.rules.map((r) => (r.kind === 'static' ? `static:${r.set}` : r.kind));
    const trapAt = kinds.indexOf('trap');
    assert.ok(trapAt > kinds.indexOf('static:rules_deny'), kinds.join(' '));
    assert.ok(trapAt < kinds.indexOf('service'), kinds.join(' '));
    const trap = plan.rules[trapAt] as Extract<ChainRule, { kind: 'trap' }>;
    assert.deepEqual(trap.ports, [2222, 3389, 5900, 9200, 9300]);
    assert.ok(plan.diagnostics.some((d) => d.code === 'trap-port-used' && d.subject === 'trap port 8080'));
    const off = compile(snap({ trapPorts: [2222] }), { customSets: [], managementNets: [] }, NOW);
    assert.ok(!off.rules.some((r) => r.kind === 'trap'));
  });

  test('iptables: LOG with the fixed prefix, rate-limited; observe logs non-clients after the ACCEPT', () => {
    const plan = compile(snap({ trapPorts: [2222, 3389, 5900, 9200, 9300] }), { customSets: [], managementNets: [], nids: true }, NOW);
    const lines = chainRuleLines(plan.rules, 4, DEFAULT_SERVICE_TEMPLATE);
    assert.ok(
      lines.includes(
        '-A BEFW -p tcp -m multiport --dports 2222,3389,5900,9200,9300 -m conntrack --ctstate NEW -m hashlimit --hashlimit-upto 2/sec --hashlimit-burst 20 --hashlimit-mode srcip --hashlimit-name befw-trap -m limit --limit 20/sec --limit-burst 100 -j LOG --log-prefix "befw-trap "',
      ),
      lines.join('\n'),
    );
    // ip6tables gets its own hashlimit table name.
    const six = chainRuleLines(plan.rules, 6, DEFAULT_SERVICE_TEMPLATE);
    assert.ok(
      six.some((l) => l.includes('--hashlimit-name befw-trap6 ') && l.includes('"befw-trap "')),
      six.join('\n'),
    );
    const obs = lines.filter((l) => l.includes('--dport 9000'));
    assert.deepEqual(obs, [
      '-A BEFW -p tcp --dport 9000 -m set --match-set app_tcp_9000 src -j ACCEPT',
      '-A BEFW -p tcp --dport 9000 -m conntrack --ctstate ESTABLISHED -m connbytes --connbytes 2:2 --connbytes-dir original --connbytes-mode packets -m limit --limit 10/sec --limit-burst 50 -j LOG --log-prefix "befw-obs:app_tcp_9000 "',
    ]);
    // Observe drops nothing; enforcing still does.
    assert.ok(!obs.some((l) => l.endsWith('-j DROP')));
    assert.ok(lines.includes('-A BEFW -p tcp --dport 8080 -j DROP'));
  });

  test('nft: the trap rule in the input chain, the observe log in the service chain', () => {
    const plan = compile(snap({ trapPorts: [2222, 3389, 5900, 9200, 9300] }), { customSets: [], managementNets: [], nids: true }, NOW);
    const chains = renderChains(plan.rules);
    const input = chains[0]?.rules ?? [];
    assert.ok(
      input.includes(
        'tcp dport { 2222, 3389, 5900, 9200, 9300 } ct state new limit rate 20/second burst 100 packets log prefix "befw-trap "',
      ),
    );
    const app = chains.find((c) => c.name.includes('app'));
    assert.ok(app);
    assert.equal(
      app.rules[app.rules.length - 1],
      'ct state established ct label != 127 limit rate 10/second burst 50 packets ct label set 127 log prefix "befw-obs:app_tcp_9000 "',
    );
  });

  test('observe mode logs no UDP port: a UDP packet proves nothing about its source', () => {
    const dns: AgentService = { id: 'd1', name: 'dns', port: 5353, tags: ['befw', 'observe', 'udp'] };
    const plan = compile(snap({ agentServices: [WEB, dns] }), { customSets: [], managementNets: [], observeDefault: true }, NOW);
    const udp = plan.rules.filter((r) => r.kind === 'service' && r.proto === 'udp');
    assert.ok(udp.length > 0 && udp.every((r) => r.kind === 'service' && r.mode === 'observe'), JSON.stringify(plan.rules));
    const lines = chainRuleLines(plan.rules, 4, DEFAULT_SERVICE_TEMPLATE);
    assert.ok(!lines.some((l) => l.includes('-p udp') && l.includes('-j LOG')), lines.join('\n'));
    assert.ok(
      lines.some((l) => l.includes('-p udp --dport 5353') && l.includes('-j ACCEPT')),
      lines.join('\n'),
    );
    const nft = renderChains(plan.rules).flatMap((c) => c.rules);
    assert.ok(!nft.some((l) => l.includes('befw-obs:dns_udp_5353')), nft.join('\n'));
  });

  test("observe_default=true: default-mode services log non-clients (BEFW's NFLOG 402 line); enforcing ones do not", () => {
    const web: AgentService = { id: 'w2', name: 'w2', port: 7000, tags: ['befw'] };
    const plan = compile(snap({ agentServices: [WEB, web] }), { customSets: [], managementNets: [], observeDefault: true }, NOW);
    const lines = chainRuleLines(plan.rules, 4, DEFAULT_SERVICE_TEMPLATE);
    assert.ok(lines.some((l) => l.includes('--dport 7000') && l.includes('befw-obs:w2_tcp_7000 ')));
    assert.ok(!lines.some((l) => l.includes('--dport 8080') && l.includes('-j LOG')));
  });

  test('config: nids_ports and observe_default, bad values refused with the line', () => {
    const c = parseConfig('nids=true\nnids_ports=2222,3389,5900,8081,9200\nobserve_default=true\n', 'befw.conf');
    assert.deepEqual(c.nidsPorts, { kind: 'list', ports: [2222, 3389, 5900, 8081, 9200] });
    assert.equal(c.observeDefault, true);
    assert.throws(() => parseConfig('nids_ports=2\n', 'befw.conf'), /befw\.conf:1 \(nids_ports\)/);
    assert.throws(() => parseConfig('nids_ports=22;reboot\n', 'befw.conf'), /nids_ports/);
  });

  test("observe tags fit iptables' 29-character prefix and stay distinct for long names", () => {
    const a = 'a-very-long-service-name_tcp_8080';
    const b = 'a-very-long-service-name_tcp_8081';
    assert.equal(observeTag('web_tcp_80'), 'web_tcp_80');
    assert.notEqual(observeTag(a), observeTag(b));
    for (const s of [a, b, 'x'.repeat(200)]) assert.ok(observeLogPrefix(s).length <= 29, observeLogPrefix(s));
  });
});

describe('trap ports: the agent side', () => {
  const PROC = [
    '  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode',
    '   0: 0100007F:08AE 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0 100 0 0 10 0',
    '   1: 0100007F:0D3D 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0 100 0 0 10 0',
  ].join('\n');

  test('listening ports: LISTEN lines only', () => {
    assert.deepEqual([...listeningPorts(PROC)], [2222]);
  });

  test("attach: keeps state.bin's ports, avoids listeners and services, and survives an old state.bin", async () => {
    const saved = encodeState({ savedAt: NOW, snapshot: snap({ trapPorts: [2222, 3389, 5900, 9200, 9300] }), owned: [], fingerprint: 'x' });
    const loaded = decodeState(saved);
    const { log } = recordingLog();
    const traps = new TrapPorts({
      config: { nids: true, nidsPorts: { kind: 'count', count: 5 }, setNaming: 'name-port' },
      store: { load: async () => loaded },
      log,
      now: () => NOW,
      read: async (path) => (path.endsWith('tcp') ? PROC : ''),
      draw: first,
    });
    const s = await traps.attach(snap());
    assert.ok(!s.trapPorts?.includes(2222), 'a listening port is replaced');
    assert.deepEqual(
      s.trapPorts?.filter((p) => [3389, 5900, 9200, 9300].includes(p)),
      [3389, 5900, 9200, 9300],
    );
    // A state.bin from before trap ports (no trapPorts in its snapshot) still loads and gives fresh ports.
    const old = decodeState(encodeState({ savedAt: NOW, snapshot: snap(), owned: [], fingerprint: 'x' }));
    assert.equal(old.kind, 'ok');
    const fresh = new TrapPorts({
      config: { nids: true, nidsPorts: { kind: 'count', count: 15 }, setNaming: 'name-port' },
      store: { load: async () => old },
      log,
      now: () => NOW,
      read: async () => '',
      draw: first,
    });
    assert.equal((await fresh.attach(snap())).trapPorts?.length, 15);
    const off = new TrapPorts({
      config: { nids: false, nidsPorts: { kind: 'count', count: 15 }, setNaming: 'name-port' },
      store: { load: async () => old },
      log,
      now: () => NOW,
    });
    assert.equal((await off.attach(snap())).trapPorts, undefined);
  });
});
