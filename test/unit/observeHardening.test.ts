/**
 * Red-team fixes of observe mode and trap ports: the parser's window refuses new addresses when
 * full (O(1), counted), observed records with times no reader can print are set aside, a set at
 * its record cap needs --yes to be granted from, and port-scan bans have a budget of their own.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ObserveAggregator, OBSERVE_TRIGGERS } from '../../src/reactor/syslog/observeAggregate.js';
import { OBSERVED_MAX_PER_SET, OBSERVED_MAX_TIME_SEC, parseObservedRecord } from '../../src/core/observe.js';
import { fromObservedCapCheck, readObserved } from '../../src/cli/observed.js';
import { BanBudget } from '../../src/reactor/responder/worker.js';
import { DEFAULT_EVENT_ACTIONS, parseReactorConfig } from '../../src/reactor/config/reactorConfig.js';

describe('observe aggregation: a full window refuses newcomers', () => {
  test('per tag: the 1001st address is refused and counted; known ones keep counting', () => {
    const a = new ObserveAggregator<null>(100_000);
    for (let i = 0; i < 1000; i++) a.add('app', `10.0.${i >> 8}.${i & 255}`, 'tcp', null, 1, 0, 'x', null);
    a.add('app', '203.0.113.9', 'tcp', null, 5, 0, 'x', null);
    assert.equal(a.size, 1000);
    assert.equal(a.refused, 1);
    a.add('app', '10.0.0.1', 'tcp', null, 1, 0, 'x', null);
    a.add('other', '203.0.113.9', 'tcp', null, 1, 0, 'x', null);
    assert.equal(a.size, 1001);
    const out = a.due(10_000);
    assert.equal(out.find((s) => s.address === '10.0.0.1')?.count, 2);
    assert.equal(
      out.some((s) => s.tag === 'app' && s.address === '203.0.113.9'),
      false,
    );
    // After the flush the window is open again.
    a.add('app', '203.0.113.9', 'tcp', null, 1, 10_001, 'x', null);
    assert.equal(a.size, 1);
  });

  test('in all: past maxEntries every new address is refused', () => {
    const a = new ObserveAggregator<null>(10);
    for (let i = 0; i < 25; i++) a.add(`t${i}`, '203.0.113.1', 'tcp', null, 1, 0, 'x', null);
    assert.equal(a.size, 10);
    assert.equal(a.refused, 15);
  });

  test('observe lines are TCP only (no UDP rule is written, so a UDP line is not one of ours)', () => {
    const re = new RegExp(OBSERVE_TRIGGERS[0]?.pattern ?? '');
    const line = (proto: string): string =>
      `befw-obs:app_tcp_9000 IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=${proto} SPT=4000 DPT=9000 LEN=40`;
    assert.ok(
      re.test(
        `befw-obs:app_tcp_9000 IN=eth0 OUT= SRC=203.0.113.5 DST=198.51.100.1 LEN=52 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=4000 DPT=9000 WINDOW=502 RES=0x00 ACK URGP=0`,
      ),
    );
    assert.equal(re.test(line('UDP')), false);
  });
});

describe('observed records: times are bounded', () => {
  const rec = (first: number, last = first, expires = 1_800_000_000): string =>
    JSON.stringify({ count: 1, first, last, expires, nodes: [] });

  test('year 9999 is the last time accepted; beyond, and negative, are refused', () => {
    assert.ok(parseObservedRecord(rec(OBSERVED_MAX_TIME_SEC, OBSERVED_MAX_TIME_SEC, OBSERVED_MAX_TIME_SEC)));
    assert.equal(parseObservedRecord(rec(OBSERVED_MAX_TIME_SEC + 1)), null);
    assert.equal(parseObservedRecord(rec(2 ** 53 - 1)), null);
    assert.equal(parseObservedRecord(rec(1, 2 ** 53 - 1)), null);
    assert.equal(parseObservedRecord(rec(1, 1, 2 ** 53 - 1)), null);
    assert.equal(parseObservedRecord(rec(-1)), null);
  });

  test('one hostile record does not break the listing of the others', async () => {
    const entries = [
      { key: 'befw-observed/app_tcp_9000/203.0.113.20', value: rec(1_700_000_000), modifyIndex: 1 },
      { key: 'befw-observed/app_tcp_9000/203.0.113.21', value: rec(2 ** 53 - 1), modifyIndex: 2 },
    ];
    const consul = { list: async () => entries } as unknown as Parameters<typeof readObserved>[0]['consul'];
    const list = await readObserved({ consul, nowMs: 1_700_000_000_000 }, 'app_tcp_9000');
    assert.deepEqual(
      list.live.map((o) => o.address),
      ['203.0.113.20'],
    );
    assert.equal(list.stale.length, 1);
  });
});

describe('client add --from-observed at the cap', () => {
  test('a set at its record cap needs --yes; below it, or with --yes, it goes ahead', () => {
    assert.equal(fromObservedCapCheck(OBSERVED_MAX_PER_SET - 1, 999, false), null);
    assert.match(fromObservedCapCheck(OBSERVED_MAX_PER_SET, 1000, false) ?? '', /cap \(1000\).*--yes to grant these 1000/);
    assert.equal(fromObservedCapCheck(OBSERVED_MAX_PER_SET, 1000, true), null);
  });
});

describe('ban budget: port-scan has its own', () => {
  test('port-scan bans fill their own window; sshd bans still go through, and the reverse', () => {
    const b = new BanBudget(3);
    for (let i = 0; i < 3; i++) b.record(1000, 'port-scan');
    assert.equal(b.over(1000, 'port-scan'), true);
    assert.equal(b.over(1000, 'sshd'), false);
    assert.equal(b.over(1000), false);
    for (let i = 0; i < 3; i++) b.record(1000, 'sshd');
    // Events other than port-scan share one window.
    assert.equal(b.over(1000, 'haproxy'), true);
    assert.equal(b.firstAlert('port-scan'), true);
    assert.equal(b.firstAlert('port-scan'), false);
    assert.equal(b.firstAlert('sshd'), true);
    assert.equal(b.over(61_000, 'port-scan'), false);
  });
});

describe('default port-scan ban', () => {
  test('short and not escalating (a forged victim is cut off for an hour, not for days)', () => {
    assert.deepEqual(DEFAULT_EVENT_ACTIONS['port-scan'], [{ type: 'ban', set: 'rules_deny', scope: 'world', bantimeSec: 3600, factor: 1 }]);
    const cfg = parseReactorConfig(
      JSON.stringify({ queue: { servers: ['127.0.0.1:11300'], hmacKeyFile: '/etc/befw/k' }, responder: { actions: {} } }),
      't.json',
    );
    const ban = cfg.responder?.actions.get('port-scan')?.[0];
    assert.ok(ban !== undefined && ban.type === 'ban');
    assert.equal(ban.factor, 1);
    assert.equal(ban.bantimeSec, 3600);
  });
});
