/**
 * One source of truth for health: readiness and Consul reachability as status, /readyz and the
 * metrics compute them (status.ts), the contact probe against a Consul that hangs, the state a
 * reload keeps (AgentLife), and how `befw check` names drift (memberDiff, ruleDiff, formatCheck).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AgentLife } from '../../src/agent/agentLife.js';
import { CONTACT_INTERVAL_MS, CONTACT_STALE_MS, ConsulContactProbe } from '../../src/agent/consulContact.js';
import { parseRequest } from '../../src/agent/controlProtocol.js';
import { OutcomeRecorder } from '../../src/agent/outcomeRecorder.js';
import { type StatusParts, agentStatus, health, readiness } from '../../src/agent/status.js';
import { checkExitCode, formatCheck } from '../../src/cli/checkReport.js';
import { DRIFT_LIST_MAX, memberDiff, ruleDiff } from '../../src/dataplane/dataplane.js';
import type { Plan } from '../../src/core/types.js';
import { recordingLog } from '../helpers/recordingLog.js';

const NOW = 1_750_000_000_000;

function parts(over: Partial<StatusParts> & { lastSource?: 'consul' | 'saved' | null; ready?: boolean } = {}): StatusParts {
  const life = new AgentLife(() => NOW - 60_000);
  const plan = { fingerprint: 'abcdef01234567', nextExpiry: null, sets: [], diagnostics: [] } as unknown as Plan;
  return {
    startedAt: life.startedAt,
    backend: { name: 'iptables', description: 'iptables + ipset' },
    inputs: { consulHealth: { reachable: true, lastAnswerAt: null, lastError: null, lastContactMs: null }, kvPrefixes: [] },
    contact: { at: NOW - 2000, error: null },
    reconciler: {
      stats: life.stats,
      lastSource: over.lastSource === undefined ? 'consul' : over.lastSource,
      lastPlan: over.lastSource === null ? null : plan,
      guardStatus: { holding: null, manual: null },
      stateSave: { failingSince: null, lastError: null },
    },
    recorder: { ready: over.ready ?? true },
    loop: { healthy: true },
    staleAfterMs: 900_000,
    now: NOW,
    ...over,
  };
}

describe('Consul reachability: last successful contact', () => {
  it('a recent contact and answering watches: reachable, N s ago', () => {
    const s = agentStatus(parts());
    assert.equal(s.consul.reachable, true);
    assert.equal(s.consul.sinceContactMs, 2000);
    assert.equal(s.consul.contactAt, NOW - 2000);
  });

  it('a hung Consul (the watches look fine: their queries are merely open) is not reachable once contact is old', () => {
    const s = agentStatus(parts({ contact: { at: NOW - CONTACT_STALE_MS - 1, error: null } }));
    assert.equal(s.consul.reachable, false);
    assert.equal(s.consul.sinceContactMs, CONTACT_STALE_MS + 1);
  });

  it('a probe that just failed (timed out) makes it unreachable at once, with the reason', () => {
    const s = agentStatus(parts({ contact: { at: NOW - 3000, error: 'timeout of 2000ms exceeded' } }));
    assert.equal(s.consul.reachable, false);
    assert.equal(s.consul.lastError, 'timeout of 2000ms exceeded');
  });

  it('never reached', () => {
    const s = agentStatus(parts({ contact: { at: null, error: 'connect ECONNREFUSED' } }));
    assert.equal(s.consul.reachable, false);
    assert.equal(s.consul.sinceContactMs, null);
    assert.match(readiness(s).detail, /Consul never reached \(connect ECONNREFUSED\)/);
  });
});

describe('/readyz and /healthz from the status', () => {
  it('a plan from Consul stays enforced while Consul is away: ready, and the detail says since when', () => {
    const s = agentStatus(parts({ contact: { at: NOW - 42_000, error: null } }));
    const r = readiness(s);
    assert.equal(r.ok, true);
    assert.equal(r.detail, 'ready: enforcing abcdef01234567 from consul; Consul last contact 42 s ago, NOT REACHED');
  });

  it('state.bin enforced, Consul never reached: ready', () => {
    const r = readiness(agentStatus(parts({ lastSource: 'saved', contact: { at: null, error: null } })));
    assert.equal(r.ok, true);
    assert.match(r.detail, /^ready: enforcing abcdef01234567 from state\.bin; Consul never reached$/);
  });

  it('before the first apply: not ready', () => {
    const r = readiness(agentStatus(parts({ ready: false, lastSource: null })));
    assert.equal(r.ok, false);
    assert.match(r.detail, /^not ready: the first apply is not done/);
  });

  it('/healthz follows the problems', () => {
    assert.deepEqual(health(agentStatus(parts())), { ok: true, detail: 'ok' });
    const stuck = agentStatus(parts({ loop: { healthy: false } }));
    assert.equal(health(stuck).ok, false);
    assert.match(health(stuck).detail, /running for minutes/);
  });
});

describe('ConsulContactProbe', () => {
  it('records completed requests only: a request that hangs leaves the last contact where it was', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: NOW });
    const life = new AgentLife();
    let hang = false;
    let pings = 0;
    const probe = new ConsulContactProbe({
      ping: () => {
        pings++;
        return hang ? new Promise(() => undefined) : Promise.resolve();
      },
      life,
      log: recordingLog().log,
    });
    const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));
    probe.start();
    await flush();
    assert.equal(life.contact.at, NOW);
    hang = true;
    t.mock.timers.tick(CONTACT_INTERVAL_MS);
    await flush();
    assert.equal(pings, 2);
    t.mock.timers.tick(10 * CONTACT_INTERVAL_MS);
    await flush();
    assert.equal(pings, 2, 'one request at a time: the hung one is not doubled');
    assert.equal(life.contact.at, NOW, 'no contact while it hangs');
    probe.stop();
  });

  it('a failed request keeps the last contact time and records why', async () => {
    const life = new AgentLife();
    life.contacted();
    const at = life.contact.at;
    const probe = new ConsulContactProbe({ ping: () => Promise.reject(new Error('ECONNREFUSED')), life, log: recordingLog().log });
    probe.start();
    await new Promise((resolve) => setImmediate(resolve));
    probe.stop();
    assert.equal(life.contact.at, at);
    assert.equal(life.contact.error, 'ECONNREFUSED');
  });
});

describe('AgentLife: what a reload keeps', () => {
  it('readiness recorded by one agent is the next agent’s too', () => {
    const life = new AgentLife();
    const first = new OutcomeRecorder(null, undefined, life.readiness);
    first.recordStart(null);
    const second = new OutcomeRecorder(null, undefined, life.readiness);
    assert.equal(second.ready, true);
  });

  it('uptime counts from the process start, and the counters are one object', () => {
    let now = 1000;
    const life = new AgentLife(() => now);
    now = 99_000;
    life.stats.repairs++;
    const s = agentStatus({ ...parts(), startedAt: life.startedAt, reconciler: { ...parts().reconciler, stats: life.stats } });
    assert.equal(s.startedAt, 1000);
    assert.equal(s.stats.repairs, 1);
  });
});

describe('befw check: naming the drift', () => {
  it('memberDiff names missing and extra members, sorted, bounded, with counts', () => {
    const want = Array.from({ length: 30 }, (_, i) => `10.0.0.${i}/32`);
    const got = [...want.slice(5), '192.0.2.9/32'];
    const d = memberDiff(want, got);
    assert.equal(d.missingCount, 5);
    assert.deepEqual(d.missing, ['10.0.0.0/32', '10.0.0.1/32', '10.0.0.2/32', '10.0.0.3/32', '10.0.0.4/32']);
    assert.deepEqual(d.extra, ['192.0.2.9/32']);
    const many = memberDiff(
      [],
      Array.from({ length: 50 }, (_, i) => `198.51.100.${i}`),
    );
    assert.equal(many.extra.length, DRIFT_LIST_MAX);
    assert.equal(many.extraCount, 50);
  });

  it('ruleDiff compares rules as multisets', () => {
    assert.deepEqual(ruleDiff(['a', 'b', 'b'], ['b', 'a', 'x']), { missing: ['b'], extra: ['x'] });
    assert.deepEqual(ruleDiff(['a', 'b'], ['b', 'a']), { missing: [], extra: [] });
  });

  it('formatCheck prints each member and rule, the rest counted, and the repair', () => {
    const text = formatCheck({
      ok: false,
      drifts: [
        {
          what: 'set-members',
          set: 'web_tcp_8080',
          detail: '2 members in the kernel, 2 applied',
          missing: ['198.51.100.2/32'],
          missingCount: 1,
          extra: ['198.51.100.9/32'],
          extraCount: 25,
        },
        { what: 'chain', family: 4, chain: 'BEFW', detail: '3 rules, 2 applied', rulesMissing: [], rulesExtra: ['-A BEFW -j ACCEPT'] },
      ],
      repair: { state: 'done', outcome: 'applied', remaining: [] },
    });
    assert.equal(
      text,
      [
        'kernel differs from the plan (2):',
        '  set web_tcp_8080: 2 members in the kernel, 2 applied',
        '      missing 198.51.100.2/32',
        '      extra   198.51.100.9/32',
        '      extra   ... and 24 more',
        '  chain BEFW (IPv4): 3 rules, 2 applied',
        '      rule extra   -A BEFW -j ACCEPT',
        'repair: applied',
        'after the repair: kernel matches the plan',
      ].join('\n'),
    );
  });

  it('exit codes: 0 matched, 1 differed (repaired or not; 2 is for usage errors)', () => {
    const d = { what: 'jump' as const, family: 4 as const, detail: 'INPUT does not jump to BEFW' };
    assert.equal(checkExitCode({ ok: true, drifts: [], repair: null }), 0);
    assert.equal(checkExitCode({ ok: false, drifts: [d], repair: { state: 'started' } }), 1);
    assert.equal(checkExitCode({ ok: false, drifts: [d], repair: { state: 'done', outcome: 'applied', remaining: [] } }), 1);
    assert.equal(checkExitCode({ ok: false, drifts: [d], repair: { state: 'done', outcome: 'apply-failed: x', remaining: [d] } }), 1);
  });
});

describe('control protocol: check --repair', () => {
  it('takes repair only on check, and only as a boolean', () => {
    assert.deepEqual(parseRequest('{"cmd":"check","repair":true}'), { cmd: 'check', repair: true });
    assert.deepEqual(parseRequest('{"cmd":"check"}'), { cmd: 'check' });
    for (const bad of [
      '{"cmd":"check","repair":"yes"}',
      '{"cmd":"check","repair":1}',
      '{"cmd":"status","repair":true}',
      '{"cmd":"reload","repair":false}',
    ]) {
      const r = parseRequest(bad);
      assert.ok('error' in r, bad);
      assert.match(r.error, /repair: only check takes it/);
    }
  });
});
