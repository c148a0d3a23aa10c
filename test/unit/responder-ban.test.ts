/**
 * The ban action against a recording in-memory KV with Consul's check-and-set semantics (the
 * same action against a real Consul runs in the reactor integration tests).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ReactorJob } from '../../src/reactor/queue/job.js';
import { ActionError, newJobContext } from '../../src/reactor/responder/actionTypes.js';
import { BanRunner } from '../../src/reactor/responder/banAction.js';
import { FakeKv, protectionFor, testJob } from '../helpers/reactorFakes.js';
import type { BanAction } from '../../src/reactor/config/reactorConfig.js';

const ACTION: BanAction = {
  type: 'ban',
  set: 'rules_deny',
  scope: 'world',
  dc: null,
  node: null,
  bantimeSec: 3600,
  factor: 2,
  maxBantimeSec: 86400,
  forgetAfterSec: 604800,
  prefixV4: 32,
  prefixV6: 128,
};
const T0 = 1_700_000_000_000;

function job(subject = '198.51.100.5'): ReactorJob {
  return testJob(subject, {}, T0);
}

function runner(kv: FakeKv, opts: { now?: () => number; ignore?: string[]; mgmt?: string[]; action?: Partial<BanAction> } = {}): BanRunner {
  const protection = protectionFor(kv, [...(opts.ignore ?? []), ...(opts.mgmt ?? [])], opts.now ?? (() => T0));
  return new BanRunner(
    { ...ACTION, ...opts.action },
    { kv, protection, stateKvPrefix: 'befw-reactor', localDc: async () => 'dc1', now: opts.now ?? (() => T0) },
  );
}

describe('ban action', () => {
  test('writes the ban with now + bantime and an offence record naming the device', async () => {
    const kv = new FakeKv();
    const out = await runner(kv).run(job(), newJobContext());
    assert.equal(out.result, 'banned');
    assert.equal(kv.data.get('befw/$ipset$/rules_deny/198.51.100.5')?.value, String(T0 / 1000 + 3600));
    const rec = JSON.parse(kv.data.get('befw-reactor/offences/198.51.100.5')?.value ?? '{}') as {
      count: number;
      device: { address: string };
      jobs: string[];
    };
    assert.equal(rec.count, 1);
    assert.equal(rec.device.address, '198.51.100.2');
    assert.equal(rec.jobs.length, 1);
    assert.deepEqual(out.detail, {
      key: 'befw/$ipset$/rules_deny/198.51.100.5',
      set: 'rules_deny',
      scope: 'world',
      expiry: T0 / 1000 + 3600,
      bantimeSec: 3600,
      offence: 1,
      replaced: null,
    });
  });

  test('is idempotent: the same job again, or another job while the ban lives, writes nothing', async () => {
    const kv = new FakeKv();
    const j = job();
    await runner(kv).run(j, newJobContext());
    const txns = kv.txns;
    assert.equal((await runner(kv).run(j, newJobContext())).result, 'already-applied');
    assert.equal((await runner(kv, { now: () => T0 + 1000 }).run(job(), newJobContext())).result, 'already-banned');
    assert.equal(kv.txns, txns);
  });

  test('a redelivered job stays applied even after an operator lifted the ban', async () => {
    const kv = new FakeKv();
    const j = job();
    await runner(kv).run(j, newJobContext());
    kv.data.delete('befw/$ipset$/rules_deny/198.51.100.5');
    assert.equal((await runner(kv).run(j, newJobContext())).result, 'already-applied');
    assert.equal(kv.data.has('befw/$ipset$/rules_deny/198.51.100.5'), false);
  });

  test('repeat offenders get bantime × factor^n, capped', async () => {
    const kv = new FakeKv();
    let now = T0;
    const r = runner(kv, { now: () => now });
    const bantimes: number[] = [];
    for (let i = 0; i < 7; i++) {
      const out = await r.run(job(), newJobContext());
      assert.equal(out.result, 'banned');
      bantimes.push(out.detail.bantimeSec as number);
      now = ((out.detail.expiry as number) + 1) * 1000; // the ban has run out
    }
    assert.deepEqual(bantimes, [3600, 7200, 14400, 28800, 57600, 86400, 86400]);
  });

  test('an offender forgiven after forgetAfter starts again at bantime', async () => {
    const kv = new FakeKv();
    let now = T0;
    const r = runner(kv, { now: () => now, action: { forgetAfterSec: 60 } });
    const first = await r.run(job(), newJobContext());
    now = ((first.detail.expiry as number) + 61) * 1000;
    assert.equal((await r.run(job(), newJobContext())).detail.bantimeSec, 3600);
  });

  test('an expired or unreadable entry is replaced; a never-expiring one stays', async () => {
    const kv = new FakeKv();
    kv.put('befw/$ipset$/rules_deny/198.51.100.5', String(T0 / 1000 - 10));
    const out = await runner(kv).run(job(), newJobContext());
    assert.equal(out.result, 'banned');
    assert.equal(out.detail.replaced, String(T0 / 1000 - 10));
    kv.put('befw/$ipset$/rules_deny/198.51.100.6', 'tomorrow');
    assert.equal((await runner(kv).run(job('198.51.100.6'), newJobContext())).result, 'banned');
    kv.put('befw/$ipset$/rules_deny/198.51.100.7', '-1');
    assert.equal((await runner(kv).run(job('198.51.100.7'), newJobContext())).result, 'already-banned');
  });

  test('never bans the ignore list, management networks or live rules_allow entries (aliases too)', async () => {
    const kv = new FakeKv();
    const r = runner(kv, { ignore: ['198.51.100.0/28'], mgmt: ['203.0.113.0/28', '2001:db8:1::/48'] });
    assert.match((await r.run(job('198.51.100.5'), newJobContext())).detail.reason as string, /protect list/);
    assert.match((await r.run(job('203.0.113.9'), newJobContext())).detail.reason as string, /protect list/);
    assert.match((await r.run(job('2001:db8:1::9'), newJobContext())).detail.reason as string, /protect list/);
    kv.put('befw/$ipset$/rules_allow/198.51.100.64/26', '-1');
    kv.put('befw/$ipset$/dc1/rules_allow/198.51.100.30', String(T0 / 1000 + 100));
    kv.put('befw/$ipset$/dc1/rules_allow/198.51.100.31', String(T0 / 1000 - 100)); // expired: no protection
    kv.put('befw/$ipset$/dc2/rules_allow/198.51.100.32', '-1'); // another datacenter
    kv.put('befw/$ipset$/rules_allow/$ops$', '-1');
    kv.put('befw/$alias$/$ops$/$oncall$', '-1');
    kv.put('befw/$alias$/$oncall$/198.51.100.40', '-1');
    const results = [];
    for (const a of ['198.51.100.70', '198.51.100.30', '198.51.100.31', '198.51.100.32', '198.51.100.40', '198.51.100.41'])
      results.push((await r.run(job(a), newJobContext())).result);
    assert.deepEqual(results, ['protected', 'protected', 'banned', 'banned', 'protected', 'banned']);
    assert.equal(kv.data.has('befw/$ipset$/rules_deny/198.51.100.70'), false);
  });

  test('never bans special-purpose addresses, even with nothing configured', async () => {
    const kv = new FakeKv();
    for (const a of ['127.0.0.1', '::1', '0.0.0.0', '224.0.0.251', 'fe80::1']) {
      const out = await runner(kv).run(job(a), newJobContext());
      assert.equal(out.result, 'protected', a);
      assert.match(out.detail.reason as string, /special-purpose/);
    }
    assert.equal(kv.data.size, 0);
  });

  test('two responders racing on one attacker write one ban', async () => {
    const kv = new FakeKv();
    const a = runner(kv);
    const b = runner(kv);
    // b's transaction lands between a's reads and a's transaction.
    let bResult = '';
    kv.beforeTxn = () => {
      kv.beforeTxn = null;
      void b.run(job(), newJobContext()).then((o) => (bResult = o.result));
    };
    const aResult = (await a.run(job(), newJobContext())).result;
    await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual([aResult, bResult].sort(), ['already-banned', 'banned']);
    assert.equal((JSON.parse(kv.data.get('befw-reactor/offences/198.51.100.5')?.value ?? '{}') as { count?: number }).count, 1);
  });

  test('dc and node scopes use their keys and their rules_allow', async () => {
    const kv = new FakeKv();
    kv.put('befw/$ipset$/dc1/web-01/rules_allow/198.51.100.9', '-1');
    const node = runner(kv, { action: { scope: 'node', node: 'web-01' } });
    assert.equal((await node.run(job('198.51.100.9'), newJobContext())).result, 'protected');
    assert.equal((await node.run(job('198.51.100.10'), newJobContext())).detail.key, 'befw/$ipset$/dc1/web-01/rules_deny/198.51.100.10');
    const dc = runner(kv, { action: { scope: 'dc', dc: 'dc7', set: 'blocked' } });
    assert.equal((await dc.run(job('198.51.100.11'), newJobContext())).detail.key, 'befw/$ipset$/dc7/blocked/198.51.100.11');
  });

  test('Consul failures are transient errors; a non-address subject is permanent', async () => {
    const kv = new FakeKv();
    kv.failing = true;
    await assert.rejects(
      runner(kv).run(job(), newJobContext()),
      (e: unknown) => e instanceof ActionError && !e.permanent && /connection refused/.test(e.message),
    );
    kv.failing = false;
    await assert.rejects(runner(kv).run(job('eth1'), newJobContext()), (e: unknown) => e instanceof ActionError && e.permanent);
    assert.equal(kv.data.size, 0, 'nothing written, nothing loosened');
  });
});
