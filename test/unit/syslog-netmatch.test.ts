import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseIp, parseNet } from '../../src/core/address.js';
import { CanonicalIpCache, NEVER_TARGETED, NetSet, canonicalIp } from '../../src/core/netMatch.js';

/** Reference membership: everything as BigInt, straight from the definitions. */
function contains(cidr: string, address: string): boolean {
  const n = parseNet(cidr);
  const a = parseIp(address);
  if (!n.ok || !a.ok || n.value.family !== a.value.family) return false;
  const bits = n.value.family === 4 ? 32 : 128;
  const base = parseIp(n.value.cidr.split('/')[0] ?? '');
  if (!base.ok) return false;
  const big = (v: { v4?: number; v6?: bigint }): bigint => (n.value.family === 4 ? BigInt(v.v4 ?? 0) : (v.v6 ?? 0n));
  const shift = BigInt(bits - n.value.prefix);
  return big(a.value) >> shift === big(base.value) >> shift;
}

describe('NetSet and address canonicalisation', () => {
  test('IPv4, IPv6, mapped addresses, /0 and /32', () => {
    const s = NetSet.parse(['198.51.100.0/24', '2001:db8::/32', '203.0.113.7', '0.0.0.0/0']);
    assert.equal(s.find('198.51.100.200'), '198.51.100.0/24');
    assert.equal(s.find('::ffff:198.51.100.9'), '198.51.100.0/24');
    assert.equal(s.find('2001:DB8:1::1'), '2001:db8::/32');
    assert.equal(s.find('2001:db9::1'), null);
    assert.equal(s.find('8.8.8.8'), '0.0.0.0/0');
    assert.equal(s.find('not an address'), null);
    assert.equal(new NetSet([]).has('198.51.100.1'), false);
    const one = NetSet.parse(['203.0.113.7/32']);
    assert.equal(one.has('203.0.113.7'), true);
    assert.equal(one.has('203.0.113.6'), false);
  });

  test('special-purpose addresses are never targeted', () => {
    for (const a of [
      '127.0.0.1',
      '0.0.0.0',
      '169.254.169.254',
      '224.0.0.1',
      '239.255.255.250',
      '255.255.255.255',
      '::1',
      '::',
      'fe80::1',
      'ff02::fb',
    ])
      assert.ok(NEVER_TARGETED.has(a), a);
    for (const a of ['198.51.100.5', '203.0.113.5', '2001:db8::5', '192.0.2.1']) assert.equal(NEVER_TARGETED.has(a), false, a);
  });

  test('canonical forms; the cache answers like the function', () => {
    assert.equal(canonicalIp('2001:DB8:0:0::7'), '2001:db8::7');
    assert.equal(canonicalIp('::ffff:198.51.100.7'), '198.51.100.7');
    for (const bad of ['', '198.51.100.7/32', '010.0.0.1', '1.2.3', '2001:db8::7%eth0', 'x'.repeat(50)])
      assert.equal(canonicalIp(bad), null, bad);
    const cache = new CanonicalIpCache(4);
    for (let round = 0; round < 3; round++) {
      for (const t of ['198.51.100.7', '2001:DB8::1', 'bad', '::ffff:10.0.0.1', '203.0.113.9', '999.1.1.1'])
        assert.equal(cache.get(t), canonicalIp(t), t);
    }
  });

  test('property: membership agrees with a reference computation, IPv4 and IPv6', () => {
    const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
    const v6 = fc.array(fc.nat(0xffff), { minLength: 8, maxLength: 8 }).map((g) => g.map((x) => x.toString(16)).join(':'));
    const net = fc.oneof(fc.tuple(v4, fc.nat(32)), fc.tuple(v6, fc.nat(128))).map(([a, p]) => `${a}/${p}`);
    fc.assert(
      fc.property(fc.array(net, { maxLength: 6 }), fc.oneof(v4, v6), (cidrs, address) => {
        const s = NetSet.parse(cidrs);
        const want = cidrs
          .map((c) => parseNet(c))
          .filter((r) => r.ok)
          .find((r) => r.ok && contains(r.value.cidr, address));
        const got = s.find(address);
        assert.equal(got, want?.ok === true ? want.value.cidr : null);
      }),
      { seed: 6801, numRuns: 2000 },
    );
  });
});
