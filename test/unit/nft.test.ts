/**
 * The nftables backend without a kernel: names, elements (hosts and networks, overlapping
 * networks cut into pieces, timeouts), the rendered transaction, the driver's full and delta
 * transactions and its integrity check against a scripted runner, the generation watch against
 * scripted monitor lines, and the takeover helpers.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { existsSync, mkdirSync, mkdtempSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChainRule, Plan, PlanSet } from '../../src/core/types.js';
import type { CommandResult, CommandRunner, LineSpawner, RunOptions } from '../../src/dataplane/exec.js';
import { chainLeftover, removalScript, retireIptables } from '../../src/dataplane/iptables/retire.js';
import { createNftDataplane, removeStaleTransactions, sameRule } from '../../src/dataplane/nft/driver.js';
import {
  canonicalElement,
  elementWithTimeout,
  jsonElement,
  netElements,
  nftDuration,
  pieceText,
} from '../../src/dataplane/nft/elements.js';
import { GenerationWatch } from '../../src/dataplane/nft/genWatch.js';
import { nftSetName } from '../../src/dataplane/nft/naming.js';
import { chainRewriteLines, renderChains, renderFull } from '../../src/dataplane/nft/render.js';
import { dropNftTable } from '../../src/dataplane/nft/retire.js';
import { BACKENDS } from '../../src/dataplane/registry.js';

const T = 1_700_000_000;
const NOW = T * 1000;

const set = (name: string, family: 'inet' | 'inet6', members: string[], expiring?: Record<string, number>): PlanSet => {
  const e = Object.entries(expiring ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  return {
    name,
    family,
    members: [...members].sort(),
    maxelem: 65536,
    ...(e.length === 0 ? {} : { expiring: { members: e.map(([m]) => m), at: e.map(([, at]) => at) } }),
  };
};

const RULES: readonly ChainRule[] = [
  { kind: 'loopback' },
  { kind: 'static', set: 'befw~protect', target: 'ACCEPT' },
  { kind: 'static', set: 'rules_deny', target: 'REJECT' },
  { kind: 'service', service: 'web_tcp_80', set: 'web_tcp_80', proto: 'tcp', port: '80', mode: 'enforcing' },
];

function plan(sets: PlanSet[], rules: readonly ChainRule[] = RULES): Plan {
  return { sets, rules, fingerprint: 'f', nextExpiry: null, services: [], setViews: [], diagnostics: [] };
}

const BASE_SETS = [
  set('befw~protect', 'inet', ['192.0.2.0/24']),
  set('befw~protect_v6', 'inet6', []),
  set('rules_deny', 'inet', []),
  set('rules_deny_v6', 'inet6', []),
];
const PLAN = plan([...BASE_SETS, set('web_tcp_80', 'inet', ['198.51.100.1/32', '198.51.100.2/32']), set('web_tcp_80_v6', 'inet6', [])]);

/** Answers by command line; records every call with its input. */
class Runner implements CommandRunner {
  readonly calls: { line: string; input: string | undefined }[] = [];
  readonly answers = new Map<string, Partial<CommandResult>[]>();
  pid = 1000;

  on(line: string, ...answers: Partial<CommandResult>[]): this {
    this.answers.set(line, answers);
    return this;
  }

  async run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<CommandResult> {
    const line = [cmd, ...args].join(' ');
    this.calls.push({ line, input: opts.input });
    opts.onSpawn?.(++this.pid);
    const q = this.answers.get(line);
    const a = q === undefined ? undefined : q.length > 1 ? q.shift() : q[0];
    if (a === undefined) return { code: 127, stdout: '', stderr: `not scripted: ${line}` };
    return { code: 0, stdout: '', stderr: '', ...a };
  }

  writes(): string[] {
    return this.calls.filter((c) => c.line === 'nft -f -').map((c) => c.input ?? '');
  }
}

describe('nft names', () => {
  it('prefixes per family and kind; protected sets upper case; anything else is refused', () => {
    assert.equal(nftSetName('web_tcp_8080', 'inet', 'hosts'), 'ip4_web_tcp_8080');
    assert.equal(nftSetName('web_tcp_8080', 'inet6', 'nets'), 'net6_web_tcp_8080');
    assert.equal(nftSetName('1c.app-x_tcp_1', 'inet', 'hosts'), 'ip4_1c.app-x_tcp_1');
    assert.equal(nftSetName('befw~consul', 'inet', 'nets'), 'net4_BEFW_CONSUL');
    assert.throws(() => nftSetName('x y', 'inet', 'hosts'));
  });
});

describe('nft elements', () => {
  it('networks that do not overlap are their own elements', () => {
    const s = set('a', 'inet', ['10.0.0.0/24', '10.0.1.0/24', '10.0.1.7/32'], { '10.0.1.0/24': T + 10 });
    assert.deepEqual(
      [...netElements(s)],
      [
        ['10.0.0.0/24', null],
        ['10.0.1.0/24', T + 10],
      ],
    );
  });

  it('overlapping networks are cut into pieces that leave with the last network covering them', () => {
    // A /16 that expires soon, a /24 inside it that never does, and a /24 inside it that lasts longer.
    const s = set('a', 'inet', ['10.1.0.0/16', '10.1.5.0/24', '10.1.9.0/24'], { '10.1.0.0/16': T + 100, '10.1.9.0/24': T + 900 });
    assert.deepEqual(
      [...netElements(s)],
      [
        ['10.1.0.0-10.1.4.255', T + 100],
        ['10.1.5.0/24', null],
        ['10.1.6.0-10.1.8.255', T + 100],
        ['10.1.9.0/24', T + 900],
        ['10.1.10.0-10.1.255.255', T + 100],
      ],
    );
    // Same expiry inside and around: one element again.
    assert.deepEqual([...netElements(set('b', 'inet6', ['2001:db8::/32', '2001:db8:1::/48']))], [['2001:db8::/32', null]]);
  });

  it('piece texts: address, prefix when aligned, else range; timeouts in ms, none when due', () => {
    assert.equal(pieceText(0x0a000000n, 0x0a0000ffn, 'inet'), '10.0.0.0/24');
    assert.equal(pieceText(0x0a000001n, 0x0a000001n, 'inet'), '10.0.0.1');
    assert.equal(pieceText(0x0a000001n, 0x0a000005n, 'inet'), '10.0.0.1-10.0.0.5');
    assert.equal(pieceText(0n, (1n << 128n) - 1n, 'inet6'), '::/0');
    assert.equal(elementWithTimeout('10.0.0.1', null, NOW), '10.0.0.1');
    assert.equal(elementWithTimeout('10.0.0.1', T + 2, NOW), '10.0.0.1 timeout 2s');
    // nft 1.0.6 refuses 100000000ms and more: a two-day grant in nft's own units.
    assert.equal(elementWithTimeout('10.0.0.1', T + 2 * 86400 + 3661, NOW), '10.0.0.1 timeout 2d1h1m1s');
    assert.equal(nftDuration(1500), '1s500ms');
    assert.equal(elementWithTimeout('10.0.0.1', T, NOW), null);
  });

  it('reads elements as nft -j prints them, and compares spellings canonically', () => {
    assert.deepEqual(jsonElement('10.0.0.1'), { text: '10.0.0.1', timeout: false });
    assert.deepEqual(jsonElement({ prefix: { addr: '10.0.0.0', len: 8 } }), { text: '10.0.0.0/8', timeout: false });
    assert.deepEqual(jsonElement({ range: ['10.0.0.1', '10.0.0.9'] }), { text: '10.0.0.1-10.0.0.9', timeout: false });
    assert.deepEqual(jsonElement({ elem: { val: { prefix: { addr: '10.0.0.0', len: 8 } }, timeout: 86400, expires: 86399 } }), {
      text: '10.0.0.0/8',
      timeout: true,
    });
    assert.equal(canonicalElement('::1.2.3.4', 'inet6'), '::102:304');
    assert.equal(canonicalElement('10.0.0.0/8', 'inet'), '10.0.0.0/8');
  });
});

describe('nft render', () => {
  it('keeps the plan order; services through one verdict map per protocol', () => {
    const chains = renderChains(RULES);
    assert.deepEqual(chains[0]?.rules, [
      'iif "lo" accept',
      'ip saddr @ip4_BEFW_PROTECT accept',
      'ip saddr @net4_BEFW_PROTECT accept',
      'ip6 saddr @ip6_BEFW_PROTECT accept',
      'ip6 saddr @net6_BEFW_PROTECT accept',
      'ip saddr @ip4_rules_deny reject',
      'ip saddr @net4_rules_deny reject',
      'ip6 saddr @ip6_rules_deny reject',
      'ip6 saddr @net6_rules_deny reject',
      'tcp dport vmap { 80 : jump svc_web_tcp_80 }',
    ]);
    assert.deepEqual(chains[1], {
      name: 'svc_web_tcp_80',
      rules: [
        'ip saddr @ip4_web_tcp_80 accept',
        'ip saddr @net4_web_tcp_80 accept',
        'ip6 saddr @ip6_web_tcp_80 accept',
        'ip6 saddr @net6_web_tcp_80 accept',
        'drop',
      ],
    });
  });

  it("BEFW's other set targets: log prefix, log group 0, return; a user chain is not rendered", () => {
    const chains = renderChains([
      { kind: 'static', set: 'audit', target: 'LOG' },
      { kind: 'static', set: 'trace', target: 'NFLOG' },
      { kind: 'static', set: 'skip', target: 'RETURN' },
    ]);
    assert.deepEqual(chains[0]?.rules, [
      'ip saddr @ip4_audit log prefix "befw audit "',
      'ip saddr @net4_audit log prefix "befw audit "',
      'ip6 saddr @ip6_audit log prefix "befw audit "',
      'ip6 saddr @net6_audit log prefix "befw audit "',
      'ip saddr @ip4_trace log group 0',
      'ip saddr @net4_trace log group 0',
      'ip6 saddr @ip6_trace log group 0',
      'ip6 saddr @net6_trace log group 0',
      'ip saddr @ip4_skip return',
      'ip saddr @net4_skip return',
      'ip6 saddr @ip6_skip return',
      'ip6 saddr @net6_skip return',
    ]);
    assert.throws(() => renderChains([{ kind: 'static', set: 'office', target: 'chain:OFFICE' }]), /user chain OFFICE/);
    // A set named like a verdict, inside a log prefix, is no verdict when the rule is read back.
    assert.ok(
      sameRule(
        'ip saddr @ip4_accept-x log prefix "befw accept-x 2 "',
        '{"match": {"right": "@ip4_accept-x"}}, {"log": {"prefix": "befw accept-x 2 "}}',
      ),
    );
  });

  it('ports services share jump to a chain with their rules in plan order, as the iptables chain has them', () => {
    const chains = renderChains([
      { kind: 'service', service: 'a_tcp_80', set: 'a_tcp_80', proto: 'tcp', port: '80', mode: 'default' },
      { kind: 'service', service: 'b_tcp_70', set: 'b_tcp_70', proto: 'tcp', port: '70:90', mode: 'enforcing' },
      { kind: 'service', service: 'b_tcp_70', set: 'b_tcp_70', proto: 'udp', port: '53', mode: 'enforcing' },
    ]);
    assert.deepEqual(chains[0]?.rules, [
      'tcp dport vmap { 70-79 : jump svc_b_tcp_70, 80 : jump svcs_1, 81-90 : jump svc_b_tcp_70 }',
      'udp dport vmap { 53 : jump svc_b_tcp_70 }',
    ]);
    const shared = chains.find((c) => c.name === 'svcs_1');
    assert.deepEqual(
      shared?.rules.filter((r) => r.startsWith('ip saddr') || r === 'drop'),
      [
        'ip saddr @ip4_a_tcp_80 accept',
        'ip saddr @net4_a_tcp_80 accept',
        'ip saddr @ip4_b_tcp_70 accept',
        'ip saddr @net4_b_tcp_70 accept',
        'drop',
      ],
    );
  });

  it("peers: new connections to Consul's ports, and from them only replies", () => {
    const rules = renderChains([{ kind: 'peers', set: 'befw~consul', proto: 'udp', ports: [8301] }])[0]?.rules ?? [];
    assert.ok(rules.includes('ip saddr @ip4_BEFW_CONSUL udp dport 8301 accept'));
    assert.ok(rules.includes('ip6 saddr @net6_BEFW_CONSUL udp sport 8301 ct state established accept'));
    assert.ok(!rules.some((r) => / sport 8301 accept$/.test(r)), 'a source port alone opens nothing');
    assert.equal(rules.length, 8);
  });

  it('a full write replaces the table in one transaction; chains are rewritten old ones flushed, unused ones deleted', () => {
    const text = renderFull(PLAN, NOW).text;
    assert.match(text, /^add table inet befw\ndelete table inet befw\ntable inet befw \{\n/);
    assert.match(text, /\nadd element inet befw ip4_web_tcp_80 \{ 198\.51\.100\.1, 198\.51\.100\.2 \}\n/);
    assert.match(text, /\nadd element inet befw net4_BEFW_PROTECT \{ 192\.0\.2\.0\/24 \}\n/);
    const lines = chainRewriteLines(['input', 'svc_old', 'svc_web_tcp_80'], renderChains(RULES));
    assert.deepEqual(lines.slice(0, 4), [
      'flush chain inet befw input',
      'flush chain inet befw svc_old',
      'flush chain inet befw svc_web_tcp_80',
      'delete chain inet befw svc_old',
    ]);
    assert.match(lines[4] ?? '', /^table inet befw \{\n\tchain input \{\n\t\ttype filter hook input priority filter; policy accept;\n/);
  });
});

/** `nft -j list table inet befw` as the kernel would print PLAN (or a tampered version of it). */
function listing(o: { extra?: string; chainRules?: number; drop?: string } = {}): string {
  const items: unknown[] = [{ metainfo: { version: '1.0.6' } }, { table: { family: 'inet', name: 'befw' } }];
  const full = renderFull(PLAN, NOW);
  for (const s of full.sets) {
    const elem: unknown[] = [];
    if (s.name === 'ip4_web_tcp_80') elem.push('198.51.100.1', '198.51.100.2');
    if (s.name === 'net4_BEFW_PROTECT') elem.push({ prefix: { addr: '192.0.2.0', len: 24 } });
    if (s.name === 'ip4_web_tcp_80' && o.extra !== undefined) elem.push(o.extra);
    const kept = elem.filter((e) => e !== o.drop);
    items.push({
      set: {
        family: 'inet',
        table: 'befw',
        name: s.name,
        type: s.family === 'inet' ? 'ipv4_addr' : 'ipv6_addr',
        flags: s.kind === 'hosts' ? ['timeout'] : ['interval', 'timeout'],
        ...(kept.length > 0 ? { elem: kept } : {}),
      },
    });
  }
  for (const c of full.chains) {
    items.push({
      chain: {
        family: 'inet',
        table: 'befw',
        name: c.name,
        ...(c.name === 'input' ? { type: 'filter', hook: 'input', prio: 0, policy: 'accept' } : {}),
      },
    });
    const rules = c.name === 'input' && o.chainRules !== undefined ? c.rules.slice(0, o.chainRules) : c.rules;
    for (const r of rules) {
      // A stand-in for nft's expressions that keeps what sameRule looks for.
      const verdict = /(accept|drop|reject)$/.exec(r)?.[1] ?? 'accept';
      const expr: unknown[] = [...r.matchAll(/@(\S+)/g)].map((m) => ({ match: { right: `@${m[1]}` } }));
      for (const n of r.matchAll(/\b(\d+)\b/g)) expr.push({ match: { right: Number(n[1]) } });
      for (const j of r.matchAll(/jump (\S+)/g)) expr.push({ jump: { target: j[1] } });
      if (!/vmap/.test(r)) expr.push({ [verdict]: null });
      items.push({ rule: { family: 'inet', table: 'befw', chain: c.name, handle: 1, expr } });
    }
  }
  return JSON.stringify({ nftables: items });
}

describe('nft driver', () => {
  const LIST = 'nft -j list table inet befw';

  it('writes the whole table first, then one-member deltas, element timeouts included', async () => {
    const r = new Runner().on('nft -f -', {});
    const dp = createNftDataplane(r, { watch: null, now: () => NOW, retireIptables: null });
    const full = await dp.apply({ plan: PLAN, owned: [] });
    assert.equal(full.mode, 'full');
    assert.equal(full.chainWritten, true);
    assert.match(r.writes()[0] ?? '', /^add table inet befw\ndelete table inet befw\n/);

    const next = plan([
      ...BASE_SETS,
      set('web_tcp_80', 'inet', ['198.51.100.1/32', '198.51.100.3/32'], { '198.51.100.3/32': T + 60 }),
      set('web_tcp_80_v6', 'inet6', []),
    ]);
    const delta = await dp.apply({ plan: next, owned: [] });
    assert.equal(delta.mode, 'delta');
    assert.equal(delta.chainWritten, false);
    assert.equal(delta.added, 1);
    assert.equal(delta.deleted, 1);
    assert.equal(
      r.writes()[1],
      [
        'add element inet befw ip4_web_tcp_80 { 198.51.100.2 }',
        'delete element inet befw ip4_web_tcp_80 { 198.51.100.2 }',
        'add element inet befw ip4_web_tcp_80 { 198.51.100.3 timeout 1m }',
        '',
      ].join('\n'),
    );

    // A renewed grant: the element is written again with its new timeout.
    const renewed = plan([
      ...BASE_SETS,
      set('web_tcp_80', 'inet', ['198.51.100.1/32', '198.51.100.3/32'], { '198.51.100.3/32': T + 600 }),
      set('web_tcp_80_v6', 'inet6', []),
    ]);
    await dp.apply({ plan: renewed, owned: [] });
    assert.equal(
      r.writes()[2],
      [
        'add element inet befw ip4_web_tcp_80 { 198.51.100.3 }',
        'delete element inet befw ip4_web_tcp_80 { 198.51.100.3 }',
        'add element inet befw ip4_web_tcp_80 { 198.51.100.3 timeout 10m }',
        '',
      ].join('\n'),
    );

    // The same plan again writes nothing.
    const same = await dp.apply({ plan: renewed, owned: [] });
    assert.equal(same.added + same.deleted, 0);
    assert.equal(r.writes().length, 3);
  });

  it('a new service adds its sets, rewrites the chains and deletes sets no longer used, in one transaction', async () => {
    const r = new Runner().on('nft -f -', {});
    const dp = createNftDataplane(r, { watch: null, now: () => NOW, retireIptables: null });
    await dp.apply({ plan: PLAN, owned: [] });
    const next = plan(
      [...BASE_SETS, set('api_tcp_81', 'inet', ['198.51.100.9/32']), set('api_tcp_81_v6', 'inet6', [])],
      [...RULES.slice(0, 3), { kind: 'service', service: 'api_tcp_81', set: 'api_tcp_81', proto: 'tcp', port: '81', mode: 'default' }],
    );
    const report = await dp.apply({ plan: next, owned: [] });
    const text = r.writes()[1] ?? '';
    const at = (s: string): number => text.indexOf(s);
    assert.ok(at('add set inet befw ip4_api_tcp_81 { type ipv4_addr; flags timeout; }') === 0);
    assert.ok(at('add element inet befw ip4_api_tcp_81 { 198.51.100.9 }') > 0);
    assert.ok(at('flush chain inet befw input') > at('add element inet befw ip4_api_tcp_81'));
    assert.ok(at('delete chain inet befw svc_web_tcp_80') > at('flush chain inet befw svc_web_tcp_80'));
    assert.ok(at('delete set inet befw ip4_web_tcp_80') > at('chain svc_api_tcp_81 {'));
    assert.deepEqual(report.destroyed, ['ip4_web_tcp_80', 'net4_web_tcp_80', 'ip6_web_tcp_80', 'net6_web_tcp_80']);
    assert.equal(report.chainWritten, true);
  });

  it('a failed transaction forgets: the next apply replaces the whole table', async () => {
    const r = new Runner().on('nft -f -', {}, { code: 1, stderr: 'Error: Could not process rule' }, {});
    const dp = createNftDataplane(r, { watch: null, now: () => NOW, retireIptables: null });
    await dp.apply({ plan: PLAN, owned: [] });
    const next = plan([...BASE_SETS, set('web_tcp_80', 'inet', ['198.51.100.1/32']), set('web_tcp_80_v6', 'inet6', [])]);
    await assert.rejects(dp.apply({ plan: next, owned: [] }), /apply failed at transaction: nft -f - exited 1/);
    const again = await dp.apply({ plan: next, owned: [] });
    assert.equal(again.mode, 'full');
    assert.match(r.writes()[2] ?? '', /^add table inet befw\ndelete table inet befw/);
  });

  it('integrity: reads back after a chain write and accepts it, then reads only when someone else changed the ruleset', async () => {
    const lines: string[] = [];
    let onLine: (l: string) => void = () => undefined;
    const spawn: LineSpawner = (_cmd, _args, l) => {
      onLine = (x) => {
        lines.push(x);
        l(x);
      };
      return { pid: 1, stop: () => undefined };
    };
    const watch = new GenerationWatch(spawn);
    const r = new Runner().on('nft -f -', {}).on(LIST, { stdout: listing() });
    const clock = { now: NOW };
    const dp = createNftDataplane(r, { watch, now: () => (clock.now += 1000), retireIptables: null });
    await dp.apply({ plan: PLAN, owned: [] });
    const ourPid = r.pid;
    assert.equal(watch.running, true, 'the watch starts after the first apply');

    assert.deepEqual(await dp.verify({ members: false }), [], 'first check: read back and accepted');
    const reads = (): number => r.calls.filter((c) => c.line === LIST).length;
    assert.equal(reads(), 1);
    onLine(`NEWGEN: GENID=7 PID=${ourPid} NAME=nft`);
    assert.deepEqual(await dp.verify({ members: false }), []);
    assert.equal(reads(), 1, 'no foreign generation: nothing read');

    r.on(LIST, { stdout: listing({ extra: '203.0.113.66' }) });
    onLine('NEWGEN: GENID=8 PID=4242 NAME=nft');
    const drift = await dp.verify({ members: false });
    assert.equal(reads(), 2);
    assert.deepEqual(drift, [
      {
        what: 'set-members',
        set: 'ip4_web_tcp_80',
        detail: '3 elements in the kernel: 1 not applied (203.0.113.66)',
        missing: [],
        missingCount: 0,
        extra: ['203.0.113.66'],
        extraCount: 1,
      },
    ]);

    r.on(LIST, { stdout: listing({ chainRules: 5 }) });
    const chain = await dp.verify({ members: true });
    assert.equal(chain[0]?.what, 'chain');

    r.on(LIST, { code: 1, stderr: 'Error: No such file or directory' });
    assert.deepEqual(await dp.verify({ members: true }), [{ what: 'table', detail: 'table inet befw is gone' }]);
    assert.ok(lines.length === 2);
  });

  it('sameRule: set references, ports and verdicts must be the ones written', () => {
    const json = JSON.stringify([{ match: { right: '@ip4_a' } }, { match: { right: 8080 } }, { accept: null }]);
    assert.equal(sameRule('ip saddr @ip4_a tcp dport 8080 accept', json), true);
    assert.equal(sameRule('ip saddr @ip4_a tcp dport 8080 drop', json), false);
    assert.equal(sameRule('ip saddr @ip4_b tcp dport 8080 accept', json), false);
    assert.equal(sameRule('ip saddr @ip4_a tcp dport 8081 accept', json), false);
    const named = JSON.stringify([{ match: { right: '@ip4_block-2.x' } }, { drop: null }]);
    assert.equal(sameRule('ip saddr @ip4_block-2.x drop', named), true, 'digits in a set name are no port');
  });

  it('takes over only with a real plan, and keeps what earlier runs owned until it has', async () => {
    const r = new Runner().on('nft -f -', {});
    const seen: (readonly string[])[] = [];
    const dp = createNftDataplane(r, {
      watch: null,
      now: () => NOW,
      retireIptables: async (owned) => {
        seen.push(owned);
        return { removed: ['iptables-nft chain BEFW (IPv4) and 1 jump(s)'], failed: [] };
      },
    });
    const minimal = await dp.apply({ plan: PLAN, owned: ['web_tcp_80', 'web_tcp_80_v6'], adopt: false });
    assert.equal(minimal.takeover, null);
    assert.deepEqual(minimal.owned, ['web_tcp_80', 'web_tcp_80_v6'], 'kept for the takeover');
    const real = await dp.apply({ plan: PLAN, owned: ['web_tcp_80', 'web_tcp_80_v6'], adopt: true, full: true });
    assert.deepEqual(real.takeover?.removed, ['iptables-nft chain BEFW (IPv4) and 1 jump(s)']);
    assert.deepEqual(seen, [['web_tcp_80', 'web_tcp_80_v6']]);
    assert.deepEqual(real.owned, []);
    assert.equal((await dp.apply({ plan: PLAN, owned: [], adopt: true })).takeover, null, 'once');
  });
});

describe('transaction files', () => {
  it('an agent killed mid-apply leaves its transaction file: the next start removes old ones only', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'befw-test-'));
    for (const n of ['befw-nft-old', 'befw-nft-new', 'other-old']) mkdirSync(join(dir, n));
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(join(dir, 'befw-nft-old'), hourAgo, hourAgo);
    utimesSync(join(dir, 'other-old'), hourAgo, hourAgo);
    await removeStaleTransactions(dir);
    assert.deepEqual(
      ['befw-nft-old', 'befw-nft-new', 'other-old'].map((n) => existsSync(join(dir, n))),
      [false, true, true],
    );
  });
});

describe('generation watch', () => {
  it('counts generations by other processes; a monitor that exits is restarted and reported lost', () => {
    const started: string[] = [];
    let exit: (code: number | null, stderr: string) => void = () => undefined;
    let line: (l: string) => void = () => undefined;
    const spawn: LineSpawner = (cmd, args, onLine, onExit) => {
      started.push([cmd, ...args].join(' '));
      line = onLine;
      exit = onExit;
      return { pid: 1, stop: () => undefined };
    };
    const w = new GenerationWatch(spawn);
    w.ours(42);
    w.start();
    assert.equal(w.take().lost, true, 'never watched before');
    line('NEWGEN: GENID=5 PID=42 NAME=nft');
    line('# new generation 6 by process 43 (iptables)');
    line('EVENT: whatever');
    assert.deepEqual(w.take(), { foreign: 1, lost: false, unavailable: false });
    exit(1, 'netlink: No buffer space available');
    assert.equal(w.running, false);
    assert.equal(w.take().lost, true);
    assert.equal(w.running, true, 'restarted by the check');
    assert.deepEqual(started, ['stdbuf -oL xtables-monitor -e', 'stdbuf -oL xtables-monitor -e']);
  });

  it('a monitor that cannot start hands over to the next; with none, the watch says so', () => {
    const started: string[] = [];
    let exit: (code: number | null, stderr: string) => void = () => undefined;
    const spawn: LineSpawner = (cmd, args, _onLine, onExit) => {
      started.push([cmd, ...args].join(' '));
      exit = onExit;
      return { pid: 1, stop: () => undefined };
    };
    const w = new GenerationWatch(spawn);
    w.start();
    exit(127, 'stdbuf: failed to run command xtables-monitor: No such file or directory');
    assert.equal(w.take().lost, true);
    exit(127, 'stdbuf: failed to run command nft: No such file or directory');
    assert.deepEqual(started, ['stdbuf -oL xtables-monitor -e', 'stdbuf -oL nft monitor']);
    assert.equal(w.unavailable, true);
    assert.deepEqual(w.take(), { foreign: 0, lost: false, unavailable: true });
  });
});

describe('takeover helpers', () => {
  const SAVE = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':BEFW - [0:0]',
    '-A INPUT -j BEFW',
    '-A INPUT -i eth0 -j BEFW',
    '-A BEFW -m set --match-set rules_allow src -j ACCEPT',
    '-A BEFW -p tcp --dport 80 -m set --match-set web_tcp_80 src -j ACCEPT',
    'COMMIT',
  ].join('\n');

  it('finds chain BEFW, what jumps to it and the sets it matches; removes them in one transaction', () => {
    const left = chainLeftover(SAVE);
    assert.deepEqual(left, {
      hasChain: true,
      jumps: ['-A INPUT -j BEFW', '-A INPUT -i eth0 -j BEFW'],
      sets: ['rules_allow', 'web_tcp_80'],
    });
    assert.equal(removalScript(left), '*filter\n-D INPUT -j BEFW\n-D INPUT -i eth0 -j BEFW\n-F BEFW\n-X BEFW\nCOMMIT\n');
  });

  it('retires iptables state: chain first, then ipsets nothing else references', async () => {
    const r = new Runner()
      .on('iptables-nft-save -t filter', { stdout: SAVE })
      .on('ip6tables-nft-save -t filter', { stdout: '*filter\nCOMMIT\n' })
      .on('iptables-nft-restore --noflush --wait', {})
      .on('ipset list -t', {
        stdout: 'Name: web_tcp_80\nType: hash:net\nReferences: 0\n\nName: rules_allow\nType: hash:net\nReferences: 1\n',
      })
      .on('ipset restore', {});
    const t = await retireIptables(r, ['web_tcp_80_v6'], { legacyPresent: async () => false });
    assert.deepEqual(t.removed, ['iptables-nft chain BEFW (IPv4) and 2 jump(s)', 'ipset web_tcp_80']);
    assert.deepEqual(t.failed, [{ what: 'ipset rules_allow', error: 'still referenced 1 time(s) by other rules' }]);
    assert.equal(r.calls.find((c) => c.line === 'ipset restore')?.input, 'destroy web_tcp_80\n');
    assert.ok(!r.calls.some((c) => c.line.startsWith('iptables-legacy')), 'legacy tables not present: not read');
  });

  it('drops table inet befw; a missing table or a missing nft is nothing to do', async () => {
    assert.equal(await dropNftTable(new Runner().on('nft delete table inet befw', {})), 'removed');
    assert.equal(
      await dropNftTable(new Runner().on('nft delete table inet befw', { code: 1, stderr: 'Error: No such file or directory' })),
      'absent',
    );
    assert.equal(await dropNftTable(new Runner()), 'absent');
    await assert.rejects(
      dropNftTable(new Runner().on('nft delete table inet befw', { code: 1, stderr: 'Error: Operation not permitted' })),
    );
  });
});

describe('backend registry', () => {
  it('nft needs nft; rules= is noted as unused; base_rules= is refused', async () => {
    const missing = new Runner();
    await assert.rejects(BACKENDS.nft.prepare({ runner: missing, rules: null, base: null, iptablesTools: 'auto' }), /nft does not run/);
    const ok = new Runner().on('nft --version', { stdout: 'nftables v1.0.6 (Lester Gooch #5)\n' });
    const b = await BACKENDS.nft.prepare({
      runner: ok,
      rules: { file: '/etc/befw/service.rules', text: '' },
      base: null,
      iptablesTools: 'auto',
    });
    assert.equal(b.name, 'nft');
    assert.match(b.description, /nftables v1\.0\.6.*table inet befw/);
    assert.match(b.notes[0] ?? '', /iptables rule template/);
    b.dataplane.close();
    await assert.rejects(
      BACKENDS.nft.prepare({ runner: ok, rules: null, base: { file: '/b', text: '' }, iptablesTools: 'auto' }),
      /base_rules= is for the iptables backend/,
    );
  });

  it('each backend renders the plan as it would write it', () => {
    assert.match(
      BACKENDS.iptables.render(PLAN, { rules: null, base: null }, NOW),
      /-A BEFW -p tcp --dport 80 -m set --match-set web_tcp_80 src -j ACCEPT/,
    );
    assert.match(BACKENDS.nft.render(PLAN, { rules: null, base: null }, NOW), /tcp dport vmap \{ 80 : jump svc_web_tcp_80 \}/);
  });
});
