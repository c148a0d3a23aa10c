/**
 * `befw check` against a real kernel on both backends: a member swapped behind the agent's back
 * (one deleted, another added: the set's count stays the same) and a rule put in front of the
 * agent's are named by `befw check`, member by member and rule by rule; the agent repairs what a
 * check found at once (not at the next full comparison, an hour away here), and
 * `befw check --repair` answers only once the repair is done and checked again.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KernelOps, type TestBackend, backendConfig, testBackends } from '../helpers/backend.js';
import { type AgentProcess, NODE_V4, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';

const WEB = 8080;
const SET = `web_tcp_${WEB}`;

interface DriftJson {
  what: string;
  set?: string;
  chain?: string;
  detail: string;
  missing?: string[];
  missingCount?: number;
  extra?: string[];
  extraCount?: number;
  rulesMissing?: string[];
  rulesExtra?: string[];
}
interface CheckJson {
  ok: boolean;
  drifts: DriftJson[];
  repair: null | { state: 'started' } | { state: 'done'; outcome: string; remaining: DriftJson[] };
}

const bare = (m: string): string => m.replace(/\/(32|128)$/, '');

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    assert.ok(Date.now() < end, `timed out waiting for ${what}`);
    await sleep(50);
  }
}

function suite(backend: TestBackend): void {
  describe(`befw check names and repairs drift (${backend})`, () => {
    let sb: Sandbox;
    let agent: AgentProcess;
    let kernel: KernelOps;
    let config: string;

    const check = (...extra: string[]): { code: number; json: CheckJson } => {
      const r = sb.befw(['check', '-c', config, '--json', ...extra]);
      try {
        return { code: r.code, json: JSON.parse(r.stdout) as CheckJson };
      } catch {
        throw new Error(`befw check ${extra.join(' ')}: exit ${r.code}, not JSON: ${r.stdout}${r.stderr}`);
      }
    };
    const repairs = (): number => {
      const r = sb.befw(['status', '-c', config, '--json']);
      return (JSON.parse(r.stdout) as { stats: { repairs: number } }).stats.repairs;
    };
    /** Delete `gone` and add `added`: the set keeps its count. */
    const swap = (gone: string, added: string): void => {
      kernel.del(SET, gone);
      kernel.add(SET, added);
    };

    before(async () => {
      sb = await Sandbox.create();
      kernel = new KernelOps(sb, backend);
      await sb.registerService({ name: 'web', port: WEB, tags: ['befw', 'enforcing'] });
      await sb.listen([WEB]);
      await sb.kvPut(`befw/$service$/${SET}/${clientV4(2)}`, '-1');
      await sb.kvPut(`befw/$service$/${SET}/${clientV4(3)}`, '-1');
      config = sb.writeFile(
        'befw.conf',
        [
          `services=${sb.dir}/services`,
          `ipsets=${sb.dir}/ipsets`,
          `state=${sb.dir}/state.bin`,
          `socket=${sb.dir}/run/befw.sock`,
          // The agent's own member comparison is an hour away: only `befw check` can find a swap.
          'integrity_interval=3600',
          'integrity_full_interval=3600',
          ...backendConfig(backend),
        ].join('\n'),
      );
      agent = sb.startAgent(config);
      // Open before the agent too (no firewall yet): blocked means the plan is in.
      await sb.waitFor('blocked', clientV4(5), NODE_V4, WEB, 15_000);
      await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5000);
      await sb.waitFor('open', clientV4(3), NODE_V4, WEB, 5000);
    });

    after(async () => {
      await agent?.stop();
      await sb?.destroy();
    });

    it('a matching kernel: exit 0, nothing to repair', () => {
      const r = check();
      assert.equal(r.code, 0, JSON.stringify(r.json));
      assert.deepEqual(r.json.drifts, []);
      assert.equal(r.json.repair, null);
    });

    it('a swapped member is named (missing and extra), and the agent repairs it at once', async (t) => {
      const before = repairs();
      swap(clientV4(2), clientV4(9));
      assert.ok(kernel.has(SET, clientV4(9)) && !kernel.has(SET, clientV4(2)), 'swapped');
      const human = sb.befw(['check', '-c', config]);
      t.diagnostic(`befw check:\n${human.stdout}`);
      assert.equal(human.code, 1, human.stdout + human.stderr);
      assert.match(human.stdout, new RegExp(`missing ${clientV4(2).replaceAll('.', '\\.')}\\b`));
      assert.match(human.stdout, new RegExp(`extra +${clientV4(9).replaceAll('.', '\\.')}\\b`));
      assert.match(human.stdout, /the agent is repairing this now/);
      // No --repair, yet the agent repairs what this check found without waiting for its own check.
      await until('the swap repaired', () => kernel.has(SET, clientV4(2)) && !kernel.has(SET, clientV4(9)));
      await sb.waitFor('open', clientV4(2), NODE_V4, WEB, 5000);
      assert.notEqual(await sb.probe(clientV4(9), NODE_V4, WEB), 'open');
      assert.equal(repairs(), before + 1);
      assert.equal(check().code, 0);
    });

    it('--json carries the members per set, with counts', () => {
      swap(clientV4(3), clientV4(10));
      const r = check();
      assert.equal(r.code, 1);
      const d = r.json.drifts.find((x) => x.what === 'set-members');
      assert.ok(d !== undefined, JSON.stringify(r.json));
      assert.match(d.set ?? '', new RegExp(SET));
      assert.deepEqual((d.missing ?? []).map(bare), [clientV4(3)]);
      assert.deepEqual((d.extra ?? []).map(bare), [clientV4(10)]);
      assert.equal(d.missingCount, 1);
      assert.equal(d.extraCount, 1);
    });

    it('--repair answers after the repair, with a second check that finds nothing', async () => {
      await until('the previous swap repaired', () => kernel.has(SET, clientV4(3)));
      swap(clientV4(2), clientV4(11));
      const r = check('--repair');
      assert.equal(r.code, 1, 'drift was found');
      assert.ok(r.json.repair !== null && r.json.repair.state === 'done', JSON.stringify(r.json));
      assert.equal(r.json.repair.outcome, 'applied');
      assert.deepEqual(r.json.repair.remaining, []);
      // Already repaired when the answer came: no waiting.
      assert.ok(kernel.has(SET, clientV4(2)) && !kernel.has(SET, clientV4(11)));
    });

    it('a rule put in front of the agent’s is named as a rule not applied, and repaired', (t) => {
      kernel.insertAccept();
      const human = sb.befw(['check', '-c', config, '--repair']);
      t.diagnostic(`befw check --repair:\n${human.stdout}`);
      assert.equal(human.code, 1, human.stdout + human.stderr);
      assert.match(human.stdout, /rule extra +.*(ACCEPT|accept)/);
      assert.match(human.stdout, /after the repair: kernel matches the plan/);
      assert.doesNotMatch(kernel.rules(), backend === 'iptables' ? /-A BEFW -j ACCEPT/ : /^\s*accept\s*$/m);
    });

    it('with no agent running, --repair says so and the CLI writes nothing', async () => {
      await agent.stop();
      kernel.del(SET, clientV4(2));
      // Without packet counters (Consul's own traffic moves them) and comment lines.
      const rules = (): string =>
        kernel
          .rules()
          .replace(/\[\d+:\d+\]|packets \d+ bytes \d+/g, '')
          .replace(/^#.*\n/gm, '');
      const before = rules();
      const r = sb.befw(['check', '-c', config, '--repair']);
      assert.equal(r.code, 1, r.stdout + r.stderr);
      assert.match(r.stdout + r.stderr, /cannot reach the agent.*nothing repaired: start the agent/);
      assert.equal(kernel.has(SET, clientV4(2)), false, 'not put back by the CLI');
      assert.equal(rules(), before);
    });
  });
}

for (const backend of testBackends()) suite(backend);
