/**
 * Switching backends on a live node, with nobody refused getting in at any moment:
 *
 *   A. BEFW's nft table (table inet befw, chain `filter`, a frozen rules_deny) -> befw, firewall=nft:
 *      replaced in one transaction; the frozen deny no Consul change could lift is gone.
 *   B. befw nft -> befw iptables: the iptables chain is in before the table goes.
 *   C. befw iptables -> befw nft: the table is in before chain BEFW, its jump and its ipsets go.
 *   D. BEFW's nft table -> befw iptables.
 *
 * Throughout each switch a client denied in Consul (REJECT, probed every few ms) and a client never
 * granted (DROP on an enforcing service) are probed continuously: neither may get in.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, NODE_V4, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';

const WEB = 8080;
const WEB_SET = 'web_tcp_8080';
const GRANTED = clientV4(2);
const FROZEN = clientV4(4); // denied in BEFW's old table only; granted in Consul
const DENIED = clientV4(9); // denied in Consul (and in BEFW's table)
const STRANGER = clientV4(3); // never granted

/** What BEFW's nft provider left on a node: its table, its chain `filter`, interval sets. */
const BEFW_TABLE = `table inet befw {
  set ip4_rules_allow { type ipv4_addr; flags interval; auto-merge; }
  set ip4_rules_deny { type ipv4_addr; flags interval; auto-merge; elements = { ${FROZEN}, ${DENIED} } }
  set ip4_web { type ipv4_addr; flags interval; auto-merge; elements = { ${GRANTED} } }
  chain filter {
    type filter hook input priority 0; policy accept;
    ip saddr @ip4_rules_allow accept
    ip saddr @ip4_rules_deny reject
    ip saddr @ip4_web tcp dport { ${WEB} } accept
  }
}
`;

describe('takeover between BEFW and both backends, nobody refused let in', () => {
  let sb: Sandbox;
  let agent: AgentProcess | null = null;
  let n = 0;

  const nsRun = (cmd: string, args: string[], input?: string): { code: number; out: string } => {
    const r = spawnSync('ip', ['netns', 'exec', sb.nodeNs, cmd, ...args], { encoding: 'utf8', ...(input === undefined ? {} : { input }) });
    return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
  };
  const config = (firewall: 'nft' | 'iptables'): string =>
    sb.writeFile(
      `befw-${firewall}.conf`,
      [
        `services=${sb.dir}/services`,
        `ipsets=${sb.dir}/ipsets`,
        `state=${sb.dir}/state.bin`,
        `socket=${sb.dir}/befw.sock`,
        'set.rules_allow=203.0.113.0/28',
        'log_level=debug',
        `firewall=${firewall}`,
      ].join('\n'),
    );

  const waitEvent = async (
    a: AgentProcess,
    pred: (e: Record<string, unknown>) => boolean,
    ms: number,
  ): Promise<Record<string, unknown>> => {
    const end = Date.now() + ms;
    for (;;) {
      const hit = a.events().find(pred);
      if (hit !== undefined) return hit;
      if (Date.now() > end) throw new Error(`no matching agent event within ${ms} ms:\n${sb.log(`agent-${n}.log`).slice(-3000)}`);
      await sleep(20);
    }
  };

  /**
   * Starts the agent on `firewall` while the refused clients are probed; returns ms to the
   * takeover. BEFW's nft provider never dropped non-members (its base ruleset did): where its table
   * is all there is, the stranger is only checked once the switch is done.
   */
  const switchTo = async (firewall: 'nft' | 'iptables', done: () => boolean, fromBefw = false): Promise<{ ms: number; probes: number }> => {
    const denied = sb.watchRefused(DENIED, NODE_V4, WEB);
    const stranger = fromBefw ? null : sb.watchRefused(STRANGER, NODE_V4, WEB);
    const t0 = Date.now();
    n++;
    agent = sb.startAgent(config(firewall), `agent-${n}.log`);
    // The takeover comes with the first real plan: state.bin's, or Consul's.
    await waitEvent(agent, (e) => e.event === 'applied' && e.source !== 'minimal', 20_000);
    while (!done()) {
      assert.ok(Date.now() - t0 < 20_000, `the takeover to ${firewall} did not finish:\n${sb.log(`agent-${n}.log`).slice(-3000)}`);
      await sleep(20);
    }
    const ms = Date.now() - t0;
    await sleep(300); // and a little after
    const d = await denied.stop();
    const s = (await stranger?.stop()) ?? { opened: 0, probes: 0 };
    assert.equal(d.opened, 0, `denied client got in ${d.opened} times in ${d.probes} probes`);
    assert.equal(s.opened, 0, `stranger got in ${s.opened} times in ${s.probes} probes`);
    assert.notEqual(await sb.probe(STRANGER, NODE_V4, WEB), 'open');
    assert.ok(d.probes > 10, `denied client probed ${d.probes} times`);
    return { ms, probes: d.probes + s.probes };
  };

  const stopAgent = async (): Promise<void> => {
    await agent?.stop();
    agent = null;
  };

  const nftTable = (): string => {
    const r = nsRun('nft', ['list', 'table', 'inet', 'befw']);
    return r.code === 0 ? r.out : '';
  };
  const iptablesChain = (): boolean => /^:BEFW /m.test(nsRun('iptables-save', ['-t', 'filter']).out);
  const ipsets = (): string[] =>
    nsRun('ipset', ['list', '-n'])
      .out.split('\n')
      .filter((x) => x !== '');

  before(async () => {
    sb = await Sandbox.create();
    await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
    await sb.listen([WEB]);
    await sb.kvPut(`befw/$service$/${WEB_SET}/${GRANTED}`, '-1');
    await sb.kvPut(`befw/$service$/${WEB_SET}/${FROZEN}`, '-1');
    await sb.kvPut(`befw/$ipset$/rules_deny/${DENIED}`, '-1');
  });

  after(async () => {
    await stopAgent();
    await sb?.destroy();
  });

  it("A: BEFW's nft table -> firewall=nft, in one transaction; the frozen deny is lifted", async (t) => {
    assert.equal(nsRun('nft', ['-f', '-'], BEFW_TABLE).code, 0);
    assert.equal(await sb.probe(FROZEN, NODE_V4, WEB), 'refused', "BEFW's frozen deny rejects");
    const r = await switchTo('nft', () => !/chain filter/.test(nftTable()) && /chain input/.test(nftTable()), true);
    await sb.waitFor('open', FROZEN, NODE_V4, WEB, 5000);
    assert.equal(await sb.probe(GRANTED, NODE_V4, WEB), 'open');
    assert.doesNotMatch(nftTable(), /ip4_web\b/, "BEFW's sets went with its table");
    t.diagnostic(`BEFW nft -> befw nft: ${r.ms} ms from the agent's start, ${r.probes} probes of refused clients, none in`);
  });

  it('B: firewall=nft -> firewall=iptables: the chain first, then the table goes', async (t) => {
    await stopAgent();
    const r = await switchTo('iptables', () => iptablesChain() && nftTable() === '');
    assert.ok(agent?.events().some((e) => e.event === 'applied' && JSON.stringify(e.takeover ?? '').includes('inet befw')));
    assert.equal(await sb.probe(GRANTED, NODE_V4, WEB), 'open');
    assert.equal(await sb.probe(FROZEN, NODE_V4, WEB), 'open');
    t.diagnostic(`befw nft -> befw iptables: ${r.ms} ms from the agent's start, ${r.probes} probes of refused clients, none in`);
  });

  it('C: firewall=iptables -> firewall=nft: the table first, then chain BEFW, its jump and its ipsets go', async (t) => {
    await stopAgent();
    assert.ok(ipsets().includes(WEB_SET));
    const r = await switchTo('nft', () => !iptablesChain() && ipsets().length === 0 && /chain input/.test(nftTable()));
    assert.doesNotMatch(nsRun('iptables-save', ['-t', 'filter']).out, /BEFW/, 'no jump left');
    assert.equal(await sb.probe(GRANTED, NODE_V4, WEB), 'open');
    t.diagnostic(`befw iptables -> befw nft: ${r.ms} ms from the agent's start, ${r.probes} probes of refused clients, none in`);
  });

  it("D: BEFW's nft table -> firewall=iptables: the frozen deny is lifted once the chain is in", async (t) => {
    await stopAgent();
    assert.equal(nsRun('nft', ['delete', 'table', 'inet', 'befw']).code, 0);
    assert.equal(nsRun('nft', ['-f', '-'], BEFW_TABLE).code, 0);
    const r = await switchTo('iptables', () => iptablesChain() && nftTable() === '', true);
    await sb.waitFor('open', FROZEN, NODE_V4, WEB, 5000);
    t.diagnostic(`BEFW nft -> befw iptables: ${r.ms} ms from the agent's start, ${r.probes} probes of refused clients, none in`);
  });
});
