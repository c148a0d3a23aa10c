/**
 * The audit trail against a real Consul (its /v1/txn) and the real agent in a namespace: every CLI
 * write lands with its record in befw-audit/, `ls` shows who, from where and why, hostile records
 * never break `ls` nor reach the agent, and the agent logs each member change with its key.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { decodeAudit } from '../../src/core/audit.js';
import { Cli, kvTree } from '../helpers/cli.js';
import { type AgentProcess, Sandbox, sleep } from '../helpers/sandbox.js';

const WEB = 'web_tcp_8080';
const KEY = `befw/$service$/${WEB}/198.51.100.7`;
const AUDIT = `befw-audit/$service$/${WEB}/198.51.100.7`;

interface LsJson {
  entries: {
    key: string;
    value: string;
    audit: null | { by?: string; reason?: string | null; from?: string; stale?: boolean; error?: string };
  }[];
}

describe('audit trail against a real Consul', () => {
  let sb: Sandbox;
  let cli: Cli;
  let strict: string;
  let agent: AgentProcess;

  before(async () => {
    sb = await Sandbox.create();
    await sb.registerService({ name: 'web', port: 8080, tags: ['befw', 'enforcing'] });
    const base = [`services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, `state=${sb.dir}/state/state.bin`];
    const conf = sb.writeFile('befw.conf', base.join('\n'));
    strict = sb.writeFile('strict.conf', [...base, 'audit_require_reason=true'].join('\n'));
    cli = await Cli.start(sb, conf);
    agent = sb.startAgent(conf);
    const deadline = Date.now() + 20_000;
    while (!agent.events().some((e) => e.event === 'applied')) {
      if (Date.now() > deadline) throw new Error(`agent never applied:\n${sb.log('agent.log')}`);
      await sleep(50);
    }
  });

  after(async () => {
    if (agent !== undefined) await agent.stop();
    if (sb !== undefined) await sb.destroy();
  });

  it('client add writes the entry and its record in one go; ls shows author, source and reason', async () => {
    await cli.ok(['client', 'add', WEB, '198.51.100.7', '--ttl', '2h', '--reason', 'SEC-1234 vendor VPN', '--by', 'alice']);
    const kv = await kvTree(sb, 'befw-audit/');
    const r = decodeAudit(kv[AUDIT] ?? null);
    assert.ok(r.ok, JSON.stringify(kv));
    assert.equal(r.record.by, 'alice');
    assert.equal(r.record.reason, 'SEC-1234 vendor VPN');
    assert.equal(r.record.value, (await kvTree(sb))[KEY]);
    assert.match(r.record.tool, /client add$/);
    const ls = JSON.parse(await cli.ok(['client', 'ls', '--json'])) as LsJson;
    assert.equal(ls.entries[0]?.audit?.by, 'alice');
    const text = await cli.ok(['client', 'ls']);
    assert.match(text, /^SERVICE\s+ADDRESS\s+SCOPE\s+EXPIRY$/m);
    assert.match(
      text,
      /^web_tcp_8080\s+198\.51\.100\.7\s+world\s+until .*\n {4}by alice from \S+ at \S+ \(befw \S+ client add\): SEC-1234 vendor VPN$/m,
    );
  });

  it('the identity comes from the environment without --by (SUDO_USER before USER)', async () => {
    await cli.ok(['deny', 'add', '198.51.100.66', '--ttl', '1h'], { SUDO_USER: 'bob', USER: 'root' });
    const r = decodeAudit((await kvTree(sb, 'befw-audit/'))['befw-audit/$ipset$/rules_deny/198.51.100.66'] ?? null);
    assert.ok(r.ok);
    assert.equal(r.record.by, 'bob');
    assert.equal(r.record.reason, null);
    assert.match(await cli.ok(['deny', 'ls']), /198\.51\.100\.66 .*\n {4}by bob from .*\(befw \S+ deny add\): no reason given$/m);
  });

  it('audit_require_reason=true refuses an add or rm without --reason, writing nothing', async () => {
    const state = async (): Promise<string> => JSON.stringify([await kvTree(sb), await kvTree(sb, 'befw-audit/')]);
    const before = await state();
    await cli.fails(['client', 'add', WEB, '198.51.100.8', '--ttl', '1h'], /--reason.*required/, {}, strict);
    await cli.fails(['client', 'rm', WEB, '198.51.100.7'], /--reason.*required/, {}, strict);
    assert.equal(await state(), before);
    await cli.ok(['client', 'add', WEB, '198.51.100.8', '--ttl', '1h', '--reason', 'INC-7'], {}, strict);
  });

  it('a record overtaken by another writer is marked stale; hostile records never break ls', async () => {
    await sb.kvPut(KEY, '-1'); // BEFW's tools and the UI keep no record
    await sb.kvPut('befw/$service$/web_tcp_8080/198.51.100.9', '-1');
    await sb.kvPut('befw-audit/$service$/web_tcp_8080/198.51.100.9', `{"v":1,"by":"x","at":"y","reason":"${'Z'.repeat(400_000)}"}`);
    await sb.kvPut('befw/$service$/web_tcp_8080/198.51.100.10', '-1');
    await sb.kvPut('befw-audit/$service$/web_tcp_8080/198.51.100.10', '\u001b[31m not json');
    const ls = JSON.parse(await cli.ok(['client', 'ls', '--json'])) as LsJson;
    const by = new Map(ls.entries.map((e) => [e.key, e.audit]));
    assert.equal(by.get(KEY)?.stale, true);
    assert.match(by.get('befw/$service$/web_tcp_8080/198.51.100.9')?.error ?? '', /ignored/);
    assert.match(by.get('befw/$service$/web_tcp_8080/198.51.100.10')?.error ?? '', /not JSON/);
    const text = await cli.ok(['client', 'ls']);
    assert.ok(!text.includes('\u001b'), 'no control characters reach the terminal');
    assert.ok(text.length < 20_000, `ls printed ${text.length} characters`);
  });

  it('rm deletes the entry and leaves a tombstone saying who removed it and why', async () => {
    await cli.ok(['client', 'rm', WEB, '198.51.100.8', '--reason', 'INC-7 closed', '--by', 'carol']);
    assert.equal((await kvTree(sb))[`befw/$service$/${WEB}/198.51.100.8`], undefined);
    const r = decodeAudit((await kvTree(sb, 'befw-audit/'))[`befw-audit/$service$/${WEB}/198.51.100.8`] ?? null);
    assert.ok(r.ok);
    assert.equal(r.record.op, 'rm');
    assert.equal(r.record.by, 'carol');
    assert.equal(r.record.reason, 'INC-7 closed');
  });

  it('the agent logs each member change with set, address, key and expiry, and never reads befw-audit/', async () => {
    await cli.ok(['client', 'add', WEB, '198.51.100.77', '--ttl', '2h', '--reason', 'log me']);
    const deadline = Date.now() + 10_000;
    let line: Record<string, unknown> | undefined;
    while (line === undefined) {
      line = agent.events().find((e) => e.event === 'member' && e.address === '198.51.100.77/32');
      if (Date.now() > deadline) throw new Error(`no member line:\n${sb.log('agent.log').slice(-4000)}`);
      if (line === undefined) await sleep(50);
    }
    assert.equal(line.set, WEB);
    assert.equal(line.change, 'added');
    assert.deepEqual(line.keys, [`befw/$service$/${WEB}/198.51.100.77`]);
    assert.match(String((line.expiry as { to: string }).to), /^\d{4}-\d\d-\d\dT/);
    const log = sb.log('agent.log');
    assert.ok(!log.includes('befw-audit/'), 'the agent never mentions an audit key');
    assert.ok(!log.includes('ZZZZ'), 'nor any audit value');
  });
});
