/**
 * The audit trail: the layout (and that no agent reads it), records as hostile input, who is
 * writing, the CLI's transaction, the reactor's evidence, and the agent's member-change log.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AUDIT_ROOT,
  MAX_AUDIT_CHARS,
  auditKeyFor,
  auditView,
  decodeAudit,
  encodeAudit,
  entryKeyFor,
  keysNaming,
  memberChanges,
  namingId,
  operatorIdentity,
} from '../../src/core/audit.js';
import { compile } from '../../src/core/compile.js';
import { ConfigError, parseConfig } from '../../src/config/config.js';
import { parseKv } from '../../src/core/kvLayout.js';
import type { AgentService, KvPair, Snapshot } from '../../src/core/types.js';
import { auditStamp, deleteAudited, putAudited } from '../../src/cli/access/audit.js';
import { UsageError } from '../../src/cli/access/errors.js';
import type { KvTxnOp, KvWriter } from '../../src/consul/kvWriter.js';
import { ConsulError } from '../../src/consul/connection.js';
import { logMemberChanges, MAX_LINES } from '../../src/agent/memberLog.js';
import { newJobContext } from '../../src/reactor/responder/actionTypes.js';
import { BanRunner } from '../../src/reactor/responder/banAction.js';
import { FakeKv, protectionFor, testJob } from '../helpers/reactorFakes.js';
import { recordingLog } from '../helpers/recordingLog.js';

const NOW = 1_700_000_000_000;
const T = NOW / 1000;
const NODE = { name: 'web-01', dc: 'dc1' };
const WEB: AgentService = { id: 'web', name: 'web', port: 8080, tags: ['befw', 'enforcing'] };

function snap(kv: Record<string, string>): Snapshot {
  return {
    node: NODE,
    agentServices: [WEB],
    fileServices: [],
    kv: Object.entries(kv).map(([key, value]) => ({ key, value })),
    ipsetFiles: [],
    inputDiagnostics: [],
  };
}

const OPTS = { customSets: [], managementNets: [] };

/** BEFW's own key filter (befw/static.go:29), as befw-sync's cleaner applies it before deleting. */
const BEFW_KEY = /^befw\/\S+\/(?:[0-9.]+(?:\/[0-9]+)?|[0-9a-fA-F:]+(?:\/[0-9]+)?|\$\S+\$)$/;

describe('audit layout', () => {
  test('befw/<path> <-> befw-audit/<path>; keys outside befw/ have none', () => {
    const k = 'befw/$service$/dc1/web_tcp_8080/198.51.100.0/24';
    assert.equal(auditKeyFor(k), 'befw-audit/$service$/dc1/web_tcp_8080/198.51.100.0/24');
    assert.equal(entryKeyFor(auditKeyFor(k) as string), k);
    assert.equal(auditKeyFor('befw-protect/dc1/web-01'), null);
  });

  test("neither befw's agent nor BEFW's key filter sees a record", () => {
    const entries = { 'befw/$service$/web_tcp_8080/198.51.100.7': '-1' };
    const audit = auditKeyFor('befw/$service$/web_tcp_8080/198.51.100.7') as string;
    const withAudit = { ...entries, [audit]: encodeAudit(record()), [`${AUDIT_ROOT}$ipset$/rules_deny/198.51.100.9`]: 'x'.repeat(100_000) };
    const a = compile(snap(entries), OPTS, NOW);
    const b = compile(snap(withAudit), OPTS, NOW);
    assert.equal(b.fingerprint, a.fingerprint);
    assert.deepEqual(b.diagnostics, a.diagnostics, 'no diagnostic either: the keys are not befw/ keys');
    assert.equal(parseKv([{ key: audit, value: 'junk' }], NODE).grants.length, 0);
    assert.equal(BEFW_KEY.test(audit), false);
    // ...while a record under befw/.audit/ would match it, and befw-sync would delete it as junk.
    assert.equal(BEFW_KEY.test('befw/.audit/$service$/web_tcp_8080/198.51.100.7'), true);
  });
});

function record(over: Partial<Parameters<typeof encodeAudit>[0]> = {}): Parameters<typeof encodeAudit>[0] {
  return {
    v: 1,
    op: 'add',
    by: 'alice',
    reason: 'SEC-1',
    at: '2023-11-14T22:13:20Z',
    from: 'ops-1',
    tool: 'befw client add',
    value: '-1',
    ...over,
  };
}

describe('audit records are hostile input', () => {
  test('a record round-trips', () => {
    const r = decodeAudit(encodeAudit(record()));
    assert.ok(r.ok);
    assert.deepEqual(r.record, record());
  });

  test('huge, malformed or partial records are errors, never throws', () => {
    for (const bad of [
      null,
      'x'.repeat(MAX_AUDIT_CHARS + 1),
      'not json',
      '[]',
      '42',
      '{"v":2,"by":"a","at":"b"}',
      '{"v":1}',
      '{"v":1,"by":7,"at":"x"}',
    ]) {
      const r = decodeAudit(bad);
      assert.equal(r.ok, false, String(bad).slice(0, 40));
    }
  });

  test('text is made printable and capped, numbers kept sane', () => {
    const text = JSON.stringify({
      v: 1,
      by: 'eve\u001b[31m',
      at: 'now',
      reason: `a\nb${'r'.repeat(5000)}`,
      evidence: { sample: '\u0000line\r\nforged', count: -5, firstSeenMs: 'x', spoofable: 'yes' },
    });
    const r = decodeAudit(text);
    assert.ok(r.ok);
    assert.equal(r.record.by, 'eve\\x1b[31m');
    assert.ok((r.record.reason ?? '').length <= 501 && (r.record.reason ?? '').startsWith('a\\x0ab'));
    assert.equal(r.record.evidence?.sample, '\\x00line\\x0d\\x0aforged');
    assert.equal(r.record.evidence?.count, 0);
    assert.equal(r.record.evidence?.spoofable, false);
    // What the writer stores is bounded too.
    assert.ok(encodeAudit(record({ reason: 'x'.repeat(100_000), evidence: evidence('y'.repeat(100_000)) })).length < MAX_AUDIT_CHARS);
  });

  test('a record written for another value is stale: someone without a record changed the entry', () => {
    const text = encodeAudit(record({ value: '1700000000' }));
    assert.equal(auditView(text, '1700000000').state, 'ok');
    assert.equal(auditView(text, '-1').state, 'stale');
    assert.equal(auditView(encodeAudit(record({ op: 'rm' })), '-1').state, 'stale');
    assert.equal(auditView(undefined, '-1').state, 'none');
    assert.equal(auditView('{', '-1').state, 'bad');
  });
});

function evidence(sample: string) {
  return { event: 'e', trigger: 't', count: 3, firstSeenMs: 1, lastSeenMs: 2, device: 'edge', transport: 'tcp', sample, spoofable: false };
}

describe('audit keys of befw.conf', () => {
  test('defaults, the three values of audit=, and bad values refused with their line', () => {
    const d = parseConfig('', '/etc/befw.conf');
    assert.deepEqual([d.audit, d.auditRequireReason, d.auditBy], ['true', false, null]);
    const c = parseConfig('audit=required\naudit_require_reason=true\naudit_by=alice@ops', '/etc/befw.conf');
    assert.deepEqual([c.audit, c.auditRequireReason, c.auditBy], ['required', true, 'alice@ops']);
    assert.throws(() => parseConfig('audit=maybe', '/etc/befw.conf'), ConfigError);
    assert.throws(() => parseConfig('\naudit_by=root; rm', '/etc/befw.conf'), /befw.conf:2 \(audit_by\): expected an operator name/);
  });
});

describe('who is writing', () => {
  test('--by, then audit_by, then SUDO_USER before USER and LOGNAME; odd names cleaned', () => {
    const env = { SUDO_USER: 'bob', USER: 'root', LOGNAME: 'root' };
    assert.equal(operatorIdentity('alice', 'cfg', env), 'alice');
    assert.equal(operatorIdentity(null, 'cfg', env), 'cfg');
    assert.equal(operatorIdentity(null, null, env), 'bob');
    assert.equal(operatorIdentity(null, null, { USER: 'root' }), 'root');
    assert.equal(operatorIdentity(null, null, { LOGNAME: 'x y\nz' }), 'x?y?z');
    assert.equal(operatorIdentity(null, null, {}), 'unknown');
  });

  const CONFIG = { audit: 'true' as const, auditRequireReason: false, auditBy: null };

  test('--reason and --by are checked; audit_require_reason makes --reason mandatory; audit=false writes none', () => {
    assert.equal(auditStamp({ reason: 'SEC-9', by: 'alice' }, CONFIG, 'client add', NOW)?.by, 'alice');
    assert.equal(auditStamp({}, CONFIG, 'client add', NOW)?.reason, null);
    assert.throws(() => auditStamp({}, { ...CONFIG, auditRequireReason: true }, 'client add', NOW), UsageError);
    assert.throws(() => auditStamp({ reason: '  ' }, CONFIG, 'client add', NOW), UsageError);
    assert.throws(() => auditStamp({ reason: 'a\u001bb' }, CONFIG, 'client add', NOW), UsageError);
    assert.throws(() => auditStamp({ reason: 'x'.repeat(501) }, CONFIG, 'client add', NOW), UsageError);
    assert.throws(() => auditStamp({ by: 'root; rm -rf' }, CONFIG, 'client add', NOW), UsageError);
    assert.equal(auditStamp({ reason: 'x' }, { ...CONFIG, audit: 'false' }, 'client add', NOW), null);
  });
});

/** A KvWriter recording what it was asked; `txn` absent when `withTxn` is false. */
function fakeWriter(withTxn: boolean, txnError?: Error): KvWriter & { calls: string[]; txns: (readonly KvTxnOp[])[] } {
  const calls: string[] = [];
  const txns: (readonly KvTxnOp[])[] = [];
  const w = {
    calls,
    txns,
    list: async () => [],
    putCas: async (key: string) => (calls.push(`put ${key}`), true),
    deleteCas: async (key: string) => (calls.push(`delete ${key}`), true),
  };
  if (!withTxn) return w;
  return {
    ...w,
    txn: async (ops: readonly KvTxnOp[]) => {
      if (txnError !== undefined) throw txnError;
      txns.push(ops);
      return true;
    },
  };
}

describe('the CLI writes an entry and its record together', () => {
  const stamp = (required = false) => ({
    by: 'alice',
    reason: 'SEC-1',
    from: 'ops-1',
    tool: 'befw x client add',
    atMs: NOW,
    required,
    warnings: [] as string[],
  });
  const key = 'befw/$service$/web_tcp_8080/198.51.100.7';

  test('one transaction: check-and-set of the entry, the record beside it', async () => {
    const w = fakeWriter(true);
    assert.equal(await putAudited(w, key, '-1', 5, stamp()), true);
    assert.equal(w.calls.length, 0);
    const ops = w.txns[0] ?? [];
    assert.deepEqual(ops[0], { verb: 'cas', key, value: '-1', index: 5 });
    assert.equal(ops[1]?.key, 'befw-audit/$service$/web_tcp_8080/198.51.100.7');
    const r = decodeAudit(ops[1]?.verb === 'set' ? ops[1].value : null);
    assert.ok(r.ok);
    assert.equal(r.record.by, 'alice');
    assert.equal(r.record.value, '-1');
  });

  test('removal leaves a tombstone saying who removed what', async () => {
    const w = fakeWriter(true);
    await deleteAudited(w, key, '1700003600', 9, stamp());
    const ops = w.txns[0] ?? [];
    assert.deepEqual(ops[0], { verb: 'delete-cas', key, index: 9 });
    const r = decodeAudit(ops[1]?.verb === 'set' ? ops[1].value : null);
    assert.ok(r.ok);
    assert.equal(r.record.op, 'rm');
    assert.equal(r.record.value, '1700003600');
  });

  test('without a stamp (audit=false) or a transaction, the entry alone', async () => {
    const w = fakeWriter(true);
    await putAudited(w, key, '-1', 0, null);
    assert.deepEqual(w.calls, [`put ${key}`]);
    const old = fakeWriter(false);
    await putAudited(old, key, '-1', 0, stamp());
    assert.deepEqual(old.calls, [`put ${key}`]);
  });

  test('a token without write on befw-audit/: the entry alone with a warning, or nothing with audit=required; a denied entry reads as before', async () => {
    const auditDenied = new ConsulError(`kv put befw-audit/$service$/web_tcp_8080/198.51.100.7`, 403, 'permission denied');
    const w = fakeWriter(true, auditDenied);
    const s = stamp();
    assert.equal(await putAudited(w, key, '-1', 0, s), true);
    assert.deepEqual(w.calls, [`put ${key}`]);
    assert.match(s.warnings[0] ?? '', /audit record not written: .*befw-audit\//);
    const strict = fakeWriter(true, auditDenied);
    await assert.rejects(putAudited(strict, key, '-1', 0, stamp(true)), /befw-audit\/.*audit=required.*nothing written/);
    assert.deepEqual(strict.calls, []);
    const entryDenied = new ConsulError(`kv put ${key}`, 403, new Error(`permission denied: the ACL token lacks key write on ${key}`));
    await assert.rejects(putAudited(fakeWriter(true, entryDenied), key, '-1', 0, stamp()), (e: Error) => e === entryDenied);
  });
});

describe('the reactor records its evidence', () => {
  test('a ban carries by=reactor, the trigger, the count and a cleaned sample line', async () => {
    const kv = new FakeKv();
    const protection = protectionFor(kv, [], () => NOW);
    const action = {
      type: 'ban' as const,
      set: 'rules_deny',
      scope: 'world' as const,
      dc: null,
      node: null,
      bantimeSec: 3600,
      factor: 2,
      maxBantimeSec: 86400,
      forgetAfterSec: 604800,
      prefixV4: 32,
      prefixV6: 128,
    };
    const runner = new BanRunner(action, { kv, protection, stateKvPrefix: 'befw-reactor', localDc: async () => 'dc1', now: () => NOW });
    const job = testJob('198.51.100.5', { sample: `Failed password for \u001b[2Jroot ${'A'.repeat(5000)}`, count: 7 }, NOW);
    assert.equal((await runner.run(job, newJobContext())).result, 'banned');
    const text = kv.data.get('befw-audit/$ipset$/rules_deny/198.51.100.5')?.value ?? null;
    const r = decodeAudit(text);
    assert.ok(r.ok, String(text));
    assert.equal(r.record.by, 'reactor');
    assert.equal(r.record.value, String(T + 3600));
    assert.equal(r.record.evidence?.trigger, 'sshd-failed-password');
    assert.equal(r.record.evidence?.count, 7);
    assert.ok(r.record.evidence?.sample.startsWith('Failed password for \\x1b[2Jroot'));
    assert.ok((r.record.evidence?.sample.length ?? 0) <= 301);
    assert.equal(auditView(text, kv.data.get('befw/$ipset$/rules_deny/198.51.100.5')?.value ?? null).state, 'ok');
  });
});

describe('a responder token without write on befw-audit/ still bans', () => {
  /** Consul's answer to a transaction with a denied operation: a rollback naming it (409), not a 403. */
  class DenyingKv extends FakeKv {
    override async txn(ops: Parameters<FakeKv['txn']>[0]): ReturnType<FakeKv['txn']> {
      if (ops.some((o) => o.key.startsWith('befw-audit/'))) return { ok: false, errors: ['Permission denied'] };
      return super.txn(ops);
    }
  }

  test('the ban is written without its record, and the outcome says so', async () => {
    const kv = new DenyingKv();
    const protection = protectionFor(kv, [], () => NOW);
    const action = {
      type: 'ban' as const,
      set: 'rules_deny',
      scope: 'world' as const,
      dc: null,
      node: null,
      bantimeSec: 60,
      factor: 2,
      maxBantimeSec: 600,
      forgetAfterSec: 600,
      prefixV4: 32,
      prefixV6: 128,
    };
    const runner = new BanRunner(action, { kv, protection, stateKvPrefix: 'befw-reactor', localDc: async () => 'dc1', now: () => NOW });
    const out = await runner.run(testJob('198.51.100.6', {}, NOW), newJobContext());
    assert.equal(out.result, 'banned');
    assert.equal(kv.data.get('befw/$ipset$/rules_deny/198.51.100.6')?.value, String(T + 60));
    assert.equal(kv.data.has('befw-audit/$ipset$/rules_deny/198.51.100.6'), false);
    assert.match(String((out.detail as { audit?: unknown }).audit), /not written: Permission denied/);
  });
});

describe('member changes, as the agent logs them', () => {
  const at = (kv: Record<string, string>) => compile(snap(kv), OPTS, NOW, { views: false });

  test('added, removed, expired and renewed, with expiry before and after', () => {
    const prev = at({
      'befw/$service$/web_tcp_8080/198.51.100.1': String(T + 10),
      'befw/$service$/web_tcp_8080/198.51.100.2': '-1',
      'befw/$service$/web_tcp_8080/2001:db8::3': String(T + 60),
    });
    const next = at({
      'befw/$service$/web_tcp_8080/198.51.100.2': String(T + 3600),
      'befw/$service$/web_tcp_8080/198.51.100.4': '-1',
      'befw/$service$/web_tcp_8080/2001:db8::3': String(T + 120),
    });
    const d = memberChanges(prev, next, NOW + 20_000, 100);
    const rows = d.changes.map((c) => [c.set, c.member, c.change, c.oldExpiry, c.newExpiry]);
    assert.deepEqual(rows, [
      ['web_tcp_8080', '198.51.100.1/32', 'expired', T + 10, undefined],
      ['web_tcp_8080', '198.51.100.4/32', 'added', undefined, null],
      ['web_tcp_8080', '198.51.100.2/32', 'renewed', null, T + 3600],
      ['web_tcp_8080_v6', '2001:db8::3/128', 'renewed', T + 60, T + 120],
    ]);
    assert.deepEqual([d.added, d.removed, d.renewed], [1, 1, 2]);
  });

  test('keys naming a member: direct keys only, host and network forms', () => {
    const kv: KvPair[] = [
      { key: 'befw/$service$/web_tcp_8080/198.51.100.4', value: '-1' },
      { key: 'befw/$service$/dc1/web_tcp_8080/198.51.100.0/24', value: '-1' },
      { key: 'befw/$service$/other_tcp_1/198.51.100.4', value: '-1' },
    ];
    const changes = [
      { set: 'web_tcp_8080', member: '198.51.100.4/32', change: 'added' as const, oldExpiry: undefined, newExpiry: null },
      { set: 'web_tcp_8080', member: '198.51.100.0/24', change: 'added' as const, oldExpiry: undefined, newExpiry: null },
    ];
    const keys = keysNaming(kv, changes);
    assert.deepEqual(keys.get(namingId(changes[0]!)), ['befw/$service$/web_tcp_8080/198.51.100.4']);
    assert.deepEqual(keys.get(namingId(changes[1]!)), ['befw/$service$/dc1/web_tcp_8080/198.51.100.0/24']);
  });

  test('a 20,000-member change logs at most MAX_LINES lines and one summary; the first plan only a summary', () => {
    const big: Record<string, string> = {};
    for (let i = 0; i < 20_000; i++) big[`befw/$service$/web_tcp_8080/10.${(i >> 8) & 255}.${i & 255}.1`] = '-1';
    const prev = at({});
    const next = at(big);
    const rec = recordingLog('info');
    logMemberChanges(rec.log, null, next, null, NOW);
    assert.equal(rec.events.length, 1);
    assert.equal(rec.named('members-initial').length, 1);
    const s = snap(big);
    logMemberChanges(rec.log, prev, next, { kv: s.kv, node: NODE }, NOW);
    const lines = rec.named('member');
    assert.equal(lines.length, MAX_LINES);
    assert.equal(lines[0]?.change, 'added');
    assert.deepEqual(lines[0]?.keys, [`befw/$service$/web_tcp_8080/${String(lines[0]?.address).replace('/32', '')}`]);
    const summary = rec.named('members-changed');
    assert.equal(summary.length, 1);
    assert.equal(summary[0]?.added, 20_000);
    assert.equal(summary[0]?.notLogged, 20_000 - MAX_LINES);
  });
});
