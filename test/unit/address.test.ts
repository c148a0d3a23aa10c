import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { kernelMembers, parseIp, parseNet, printable } from '../../src/core/address.js';

function cidr(text: string): string {
  const r = parseNet(text);
  assert.ok(r.ok, `expected ${JSON.stringify(text)} to parse, got ${r.ok ? '' : r.error}`);
  return r.value.cidr;
}

function rejects(text: string): void {
  const r = parseNet(text);
  assert.equal(r.ok, false, `expected ${JSON.stringify(text)} to be rejected, got ${r.ok ? r.value.cidr : ''}`);
  if (!r.ok) assert.ok(r.error.length > 0);
}

describe('parseNet: IPv4', () => {
  test('host addresses become /32', () => {
    assert.equal(cidr('198.51.100.7'), '198.51.100.7/32');
    assert.equal(cidr('0.0.0.0'), '0.0.0.0/32');
    assert.equal(cidr('255.255.255.255'), '255.255.255.255/32');
  });

  test('networks keep their prefix and report family and prefix', () => {
    const r = parseNet('198.51.100.0/24');
    assert.ok(r.ok);
    assert.deepEqual(r.value, { family: 4, prefix: 24, cidr: '198.51.100.0/24', hostBits: false });
    assert.equal(cidr('10.0.0.0/8'), '10.0.0.0/8');
    assert.equal(cidr('0.0.0.0/0'), '0.0.0.0/0');
    assert.equal(cidr('1.2.3.4/32'), '1.2.3.4/32');
  });

  test('host bits are cleared and flagged', () => {
    const r = parseNet('198.51.100.77/24');
    assert.ok(r.ok);
    assert.equal(r.value.cidr, '198.51.100.0/24');
    assert.equal(r.value.hostBits, true);
    const z = parseNet('255.255.255.255/0');
    assert.ok(z.ok);
    assert.equal(z.value.cidr, '0.0.0.0/0');
    assert.equal(z.value.hostBits, true);
    const odd = parseNet('10.1.2.3/13');
    assert.ok(odd.ok);
    assert.equal(odd.value.cidr, '10.0.0.0/13');
    const exact = parseNet('10.8.0.0/13');
    assert.ok(exact.ok);
    assert.equal(exact.value.hostBits, false);
  });

  test('rejects malformed IPv4', () => {
    for (const bad of [
      '999.1.1.1',
      '256.0.0.1',
      '010.1.1.1',
      '1.02.3.4',
      '00.1.1.1',
      '1.2.3',
      '1.2.3.4.5',
      '10.1',
      '1..2.3',
      '1.2.3.',
      '.1.2.3',
      '1.2.3.4/33',
      '1.2.3.4/024',
      '1.2.3.4/',
      '1.2.3.4/-1',
      '1.2.3.4/+8',
      '1.2.3.4/8/8',
      '1.2.3.4/ 8',
      '0x7f.0.0.1',
      '1.2.3.4a',
    ]) {
      rejects(bad);
    }
  });

  test('rejects whitespace, control characters, injection and empty input', () => {
    for (const bad of [
      '',
      ' ',
      ' 1.2.3.4',
      '1.2.3.4 ',
      '1.2.3.4\n',
      '1.2.3.4\n-A INPUT -j ACCEPT',
      '1.2.3.4\t',
      '1.2.3.4\r',
      '1.2.3.4 -j ACCEPT',
      '1.2.3.4;rm -rf /',
      '1.2.3.4\u0000',
      '１.2.3.4',
      '/24',
      '/',
    ]) {
      rejects(bad);
    }
  });
});

describe('parseNet: IPv6', () => {
  test('canonical RFC 5952 form: lowercase, no leading zeros, longest zero run compressed', () => {
    assert.equal(cidr('2001:DB8::7'), '2001:db8::7/128');
    assert.equal(cidr('2001:0db8:0000:0000:0000:0000:0000:0007'), '2001:db8::7/128');
    assert.equal(cidr('2001:db8:0:0:1:0:0:1'), '2001:db8::1:0:0:1/128'); // first of equal runs
    assert.equal(cidr('2001:0:0:1:0:0:0:1'), '2001:0:0:1::1/128'); // longest run wins
    assert.equal(cidr('2001:db8:0:1:1:1:1:1'), '2001:db8:0:1:1:1:1:1/128'); // a single zero group is not compressed
    assert.equal(cidr('::'), '::/128');
    assert.equal(cidr('::1'), '::1/128');
    assert.equal(cidr('1::'), '1::/128');
    assert.equal(cidr('fe80::'), 'fe80::/128');
    assert.equal(cidr('0:0:0:0:0:0:0:1'), '::1/128');
    assert.equal(cidr('1:0:0:0:0:0:0:0'), '1::/128');
    assert.equal(cidr('FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF'), 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128');
    assert.equal(cidr('1:2:3:4:5:6:7::'), '1:2:3:4:5:6:7:0/128');
    assert.equal(cidr('::2:3:4:5:6:7:8'), '0:2:3:4:5:6:7:8/128');
  });

  test('networks are masked to their prefix', () => {
    assert.equal(cidr('2001:db8::/32'), '2001:db8::/32');
    const r = parseNet('2001:db8:1234::1/32');
    assert.ok(r.ok);
    assert.equal(r.value.cidr, '2001:db8::/32');
    assert.equal(r.value.hostBits, true);
    assert.equal(r.value.family, 6);
    assert.equal(r.value.prefix, 32);
    assert.equal(cidr('2001:db8:ffff:ffff::/33'), '2001:db8:8000::/33');
    assert.equal(cidr('::/0'), '::/0');
    assert.equal(cidr('ffff::/0'), '::/0');
    assert.equal(cidr('2001:db8::1/128'), '2001:db8::1/128');
  });

  test('IPv4-mapped addresses become IPv4, with the prefix translated', () => {
    const r = parseNet('::ffff:1.2.3.4');
    assert.ok(r.ok);
    assert.deepEqual(r.value, { family: 4, prefix: 32, cidr: '1.2.3.4/32', hostBits: false });
    assert.equal(cidr('::FFFF:1.2.3.4'), '1.2.3.4/32');
    assert.equal(cidr('::ffff:102:304'), '1.2.3.4/32');
    assert.equal(cidr('0:0:0:0:0:ffff:1.2.3.4'), '1.2.3.4/32');
    assert.equal(cidr('::ffff:198.51.100.7/120'), '198.51.100.0/24');
    assert.equal(cidr('::ffff:0.0.0.0/96'), '0.0.0.0/0');
    rejects('::ffff:1.2.3.4/64'); // below the mapped range: not an IPv4 network
    rejects('::ffff:1.2.3.4/129');
  });

  test('other embedded IPv4 forms stay IPv6', () => {
    assert.equal(cidr('::1.2.3.4'), '::102:304/128');
    assert.equal(cidr('64:ff9b::192.0.2.33'), '64:ff9b::c000:221/128');
    assert.equal(cidr('1:2:3:4:5:6:1.2.3.4'), '1:2:3:4:5:6:102:304/128');
  });

  test('rejects malformed IPv6', () => {
    for (const bad of [
      'fe80::1%eth0',
      'fe80::1%1',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7',
      '1::2::3',
      ':::',
      ':1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:',
      '1:2:3:4:5:6:7::8',
      '12345::',
      'g::1',
      '::ffff:1.2.3',
      '::ffff:999.1.2.3',
      '::ffff:01.2.3.4',
      '1.2.3.4::',
      '1:2:3:4:5:6:7:1.2.3.4',
      '1:2:3:4:5:6::1.2.3.4',
      ':1.2.3.4',
      '2001:db8::/129',
      '2001:db8::/032',
      '[2001:db8::1]',
      '2001:db8::1 ',
      '0000:0000:0000:0000:0000:0000:0000:0000:0',
    ]) {
      rejects(bad);
    }
  });
});

describe('parseIp', () => {
  test('reports family and value', () => {
    const v4 = parseIp('1.2.3.4');
    assert.ok(v4.ok);
    assert.equal(v4.value.family, 4);
    assert.equal(v4.value.v4, 0x01020304);
    const v6 = parseIp('::2');
    assert.ok(v6.ok);
    assert.equal(v6.value.family, 6);
    assert.equal(v6.value.v6, 2n);
  });
  test("rejects prefixes (that is parseNet's job)", () => {
    assert.equal(parseIp('1.2.3.4/32').ok, false);
  });
});

describe('kernelMembers', () => {
  test('/0 is split into its halves', () => {
    const v4 = parseNet('0.0.0.0/0');
    assert.ok(v4.ok);
    assert.deepEqual(kernelMembers(v4.value), ['0.0.0.0/1', '128.0.0.0/1']);
    const v6 = parseNet('::/0');
    assert.ok(v6.ok);
    assert.deepEqual(kernelMembers(v6.value), ['::/1', '8000::/1']);
  });
  test('the halves are themselves canonical', () => {
    for (const half of ['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1']) assert.equal(cidr(half), half);
  });
  test('everything else is unchanged', () => {
    for (const text of ['0.0.0.0/1', '10.0.0.0/8', '1.2.3.4', '2001:db8::/32', '::1']) {
      const n = parseNet(text);
      assert.ok(n.ok);
      assert.deepEqual(kernelMembers(n.value), [n.value.cidr]);
    }
  });
});

describe('printable', () => {
  test('escapes control characters and caps length', () => {
    assert.equal(printable('a\nb\u0000c\u007f'), 'a\\x0ab\\x00c\\x7f');
    assert.equal(printable('x'.repeat(100), 10), `${'x'.repeat(10)}…`);
    assert.equal(printable('plain'), 'plain');
  });
  test('the cap holds after escaping', () => {
    const out = printable('\n'.repeat(500), 20);
    assert.ok(out.length <= 21, `got ${out.length} characters`);
    assert.ok(out.endsWith('…'));
    assert.doesNotMatch(out, /\n/);
    assert.equal(printable('\n'.repeat(5), 20), '\\x0a'.repeat(5));
  });
});
