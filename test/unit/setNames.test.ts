import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { BASE_NAME_MAX, IPSET_NAME_MAX, assignKernelNames, v6Name } from '../../src/dataplane/iptables/setNames.js';
import { hash53 } from '../../src/core/hash.js';
import { shuffled } from '../helpers/shuffle.js';

describe('assignKernelNames', () => {
  test('limits', () => {
    assert.equal(IPSET_NAME_MAX, 31);
    assert.equal(BASE_NAME_MAX, 28);
    assert.equal(v6Name('web_tcp_8080'), 'web_tcp_8080_v6');
  });

  test('names of up to 28 characters are unchanged', () => {
    const names = ['rules_allow', 'rules_deny', 'web_tcp_8080', 'a', 'x'.repeat(28)];
    const m = assignKernelNames(names);
    for (const n of names) assert.equal(m.get(n), n);
    assert.equal(m.size, names.length);
  });

  test('longer names are shortened to 28 with a readable prefix; the v6 twin fits in 31', () => {
    const long = 'a-really-long-service-name-for-tests_tcp_8080';
    const m = assignKernelNames([long]);
    const k = m.get(long)!;
    assert.equal(k.length, 28);
    assert.match(k, /^a-really-long-servi-[0-9a-f]{8}$/);
    assert.ok(v6Name(k).length <= 31);
    assert.equal(k, `${long.slice(0, 19)}-${hash53(long, 0).slice(-8)}`);
    const exactly29 = 'y'.repeat(29);
    assert.equal(assignKernelNames([exactly29]).get(exactly29)!.length, 28);
  });

  test('stable: the same name gets the same kernel name across runs and alongside other names', () => {
    const long = 'payments-gateway-internal-api_tcp_9443';
    const alone = assignKernelNames([long]).get(long);
    const withOthers = assignKernelNames(['web_tcp_80', long, 'zzz-another-very-long-name-here_udp_53']).get(long);
    assert.equal(alone, withOthers);
    assert.equal(alone, assignKernelNames([long]).get(long));
  });

  test('no collisions among many long names sharing a prefix, and all fit', () => {
    const names: string[] = [];
    for (let i = 0; i < 3000; i++) names.push(`shared-prefix-that-is-long-${i}_tcp_${1000 + (i % 7)}`);
    for (let i = 0; i < 50; i++) names.push(`short${i}`);
    const m = assignKernelNames(names);
    const kernel = [...m.values()];
    assert.equal(m.size, names.length);
    assert.equal(new Set(kernel).size, kernel.length, 'kernel names collide');
    const all = new Set([...kernel, ...kernel.map(v6Name)]);
    assert.equal(all.size, kernel.length * 2, "a kernel name collides with another set's v6 twin");
    for (const k of kernel) {
      assert.ok(k.length <= 28, k);
      assert.ok(v6Name(k).length <= 31, k);
      assert.match(k, /^[a-z0-9._-]+$/);
    }
  });

  test('a short name that looks like a shortened one keeps its name; the long one moves aside', () => {
    const long = 'collision-bait-service-name-x_tcp_80';
    const natural = assignKernelNames([long]).get(long)!;
    const m = assignKernelNames([long, natural]);
    assert.equal(m.get(natural), natural);
    assert.notEqual(m.get(long), natural);
    assert.equal(m.get(long)!.length, 28);
    assert.equal(m.get(long), `${long.slice(0, 19)}-${hash53(long, 1).slice(-8)}`);
  });

  test('deterministic regardless of input order and duplicates', () => {
    const names: string[] = [];
    for (let i = 0; i < 200; i++) names.push(i % 3 === 0 ? `s${i}` : `some-quite-long-logical-set-name-${i}`);
    const ref = JSON.stringify([...assignKernelNames(names).entries()].sort());
    for (let seed = 1; seed <= 5; seed++) {
      const again = assignKernelNames([...shuffled(names, seed), ...names.slice(0, 10)]);
      assert.equal(JSON.stringify([...again.entries()].sort()), ref);
    }
  });
});

describe('hash53', () => {
  test('14 hex digits, seed-dependent, stable', () => {
    assert.match(hash53('abc'), /^[0-9a-f]{14}$/);
    assert.equal(hash53('abc'), hash53('abc'));
    assert.notEqual(hash53('abc'), hash53('abd'));
    assert.notEqual(hash53('abc', 0), hash53('abc', 1));
    assert.match(hash53(''), /^[0-9a-f]{14}$/);
  });
});
