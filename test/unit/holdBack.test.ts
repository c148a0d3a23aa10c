import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DEFAULT_GUARD } from '../../src/core/blastRadius.js';
import { compile } from '../../src/core/compile.js';
import { holdBack, loosenings } from '../../src/core/holdBack.js';
import type { AgentService, Plan, Snapshot } from '../../src/core/types.js';

const NOW = 1_700_000_000_000;
const WEB: AgentService = { id: 'web', name: 'web', port: 8080, tags: ['befw', 'enforcing'] };
const DNS: AgentService = { id: 'dns', name: 'dns', port: 53, tags: ['befw', 'udp'] };

function plan(kv: Record<string, string>, services: AgentService[] = [WEB, DNS]): Plan {
  const snapshot: Snapshot = {
    node: { name: 'web-1', dc: 'dc1' },
    agentServices: services,
    fileServices: [],
    kv: Object.entries(kv)
      .map(([key, value]) => ({ key, value }))
      .sort((a, b) => (a.key < b.key ? -1 : 1)),
    ipsetFiles: [],
    inputDiagnostics: [],
  };
  return compile(snapshot, { customSets: [], managementNets: [] }, NOW, { views: false });
}

const members = (p: Plan, name: string): readonly string[] => p.sets.find((s) => s.name === name)?.members ?? [];
const grants = (n: number, set = 'web_tcp_8080'): Record<string, string> =>
  Object.fromEntries(Array.from({ length: n }, (_, i) => [`befw/$service$/${set}/198.51.100.${i + 1}`, '-1']));

describe('guard: what loosens', () => {
  test('additions and a single removal pass at once', () => {
    const before = plan(grants(20));
    const after = plan({ ...grants(19), 'befw/$service$/web_tcp_8080/203.0.113.1': '-1' });
    assert.deepEqual(loosenings(before, after, DEFAULT_GUARD), []);
  });

  test('an empty Consul: every grant and set removal waits', () => {
    const before = plan({ ...grants(20), 'befw/$ipset$/rules_deny/203.0.113.66': '-1', 'befw/$ipset$/rules_deny/203.0.113.67': '-1' });
    const after = plan({});
    const l = loosenings(before, after, DEFAULT_GUARD);
    assert.deepEqual(l.map((x) => (x.kind === 'mass-removal' ? x.removal.set : x.kind)).sort(), ['rules_deny', 'web_tcp_8080']);
  });

  test('an enforcing service turning default, or vanishing, loosens (its DROP goes)', () => {
    const before = plan({});
    const modeChange = plan({}, [{ ...WEB, tags: ['befw'] }, DNS]);
    assert.deepEqual(
      loosenings(before, modeChange, DEFAULT_GUARD).map((x) => x.kind === 'rule-removed' && x.rule),
      ['web_tcp_8080 8080/tcp enforcing'],
    );
    const gone = plan({}, [DNS]);
    assert.deepEqual(
      loosenings(before, gone, DEFAULT_GUARD).map((x) => x.kind === 'rule-removed' && x.rule),
      ['web_tcp_8080 8080/tcp enforcing'],
    );
  });

  test('`guard hold`: every removal waits, however small', () => {
    const before = plan(grants(3));
    const after = plan(grants(2));
    assert.deepEqual(loosenings(before, after, DEFAULT_GUARD), []);
    assert.deepEqual(loosenings(before, after, DEFAULT_GUARD, true), [{ kind: 'removal', set: 'web_tcp_8080', removed: 1 }]);
  });
});

describe('guard: the plan enforced while a loosening waits', () => {
  test('removed members stay, new ones go in', () => {
    const before = plan(grants(20));
    const after = plan({ 'befw/$service$/web_tcp_8080/203.0.113.1': '-1' });
    const held = holdBack(before, after);
    assert.equal(members(held, 'web_tcp_8080').length, 21);
    assert.ok(members(held, 'web_tcp_8080').includes('203.0.113.1/32'));
    assert.notEqual(held.fingerprint, after.fingerprint);
    assert.notEqual(held.fingerprint, before.fingerprint);
  });

  test('a vanished enforcing service keeps its set and its ACCEPT-then-DROP rules', () => {
    const before = plan(grants(2));
    const after = plan({}, [DNS]);
    const held = holdBack(before, after);
    assert.deepEqual(held.rules, before.rules);
    assert.deepEqual(members(held, 'web_tcp_8080'), members(before, 'web_tcp_8080'));
  });

  test('nothing to hold back: the same plan, the same fingerprint', () => {
    const p = plan(grants(5));
    assert.equal(holdBack(p, p).fingerprint, p.fingerprint);
    const more = plan(grants(6));
    assert.equal(holdBack(p, more).fingerprint, more.fingerprint);
  });
});
