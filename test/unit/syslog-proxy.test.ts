import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { V1_MAX, V2_SIGNATURE, buildProxyV1, buildProxyV2, parseProxyHeader } from '../../src/reactor/syslog/proxyProtocol.js';

const B = (s: string): Buffer => Buffer.from(s, 'latin1');

function ok(buf: Buffer, datagram = false): Extract<ReturnType<typeof parseProxyHeader>, { kind: 'ok' }> {
  const r = parseProxyHeader(buf, datagram);
  assert.equal(r.kind, 'ok', JSON.stringify(r));
  return r;
}

function err(buf: Buffer, datagram = false): string {
  const r = parseProxyHeader(buf, datagram);
  assert.equal(r.kind, 'error', JSON.stringify(r));
  return (r as { reason: string }).reason;
}

describe('PROXY protocol v1 (HAProxy send-proxy)', () => {
  test('TCP4 as HAProxy sends it: the source is the device', () => {
    const h = B('PROXY TCP4 198.51.100.2 198.51.100.1 47336 5140\r\n<13>rest');
    const r = ok(h);
    assert.deepEqual(r.source, { address: '198.51.100.2', port: 47336 });
    assert.equal(r.version, 1);
    assert.equal(h.subarray(r.length).toString(), '<13>rest');
  });

  test('TCP6, canonicalised; a mapped IPv4 source becomes IPv4', () => {
    assert.deepEqual(ok(B('PROXY TCP6 2001:DB8:0:0::7 2001:db8::1 1 514\r\n')).source, { address: '2001:db8::7', port: 1 });
    assert.deepEqual(ok(B('PROXY TCP6 ::ffff:198.51.100.9 2001:db8::1 65535 514\r\n')).source, { address: '198.51.100.9', port: 65535 });
  });

  test('the longest valid v1 header fits the 107-byte limit', () => {
    const full = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe';
    const h = B(`PROXY TCP6 ${full} ${full} 65535 65535\r\n`);
    assert.ok(h.length <= V1_MAX);
    assert.equal(ok(h).length, h.length);
  });

  test('UNKNOWN means: use the connection itself', () => {
    assert.equal(ok(B('PROXY UNKNOWN\r\n')).source, null);
    assert.equal(ok(B('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n')).source, null);
  });

  test('waits for more bytes while the header can still complete', () => {
    for (const part of ['P', 'PROXY', 'PROXY TCP4 198.51.100.2', 'PROXY TCP4 198.51.100.2 198.51.100.1 1 2\r']) {
      assert.equal(parseProxyHeader(B(part)).kind, 'incomplete', part);
    }
  });

  test('refuses malformed headers with a reason', () => {
    assert.match(err(B(`PROXY TCP4 ${'1'.repeat(120)}`)), /longer than 107/);
    assert.match(err(B('PROXY TCP4 999.1.1.1 198.51.100.1 1 2\r\n')), /bad address/);
    assert.match(err(B('PROXY TCP4 198.51.100.2 198.51.100.1 01 2\r\n')), /bad port/);
    assert.match(err(B('PROXY TCP4 198.51.100.2 198.51.100.1 70000 2\r\n')), /bad port/);
    assert.match(err(B('PROXY TCP4 2001:db8::1 198.51.100.1 1 2\r\n')), /TCP4 header holds an IPv6/);
    assert.match(err(B('PROXY TCP6 198.51.100.2 2001:db8::1 1 2\r\n')), /TCP6 header holds an IPv4/);
    assert.match(err(B('PROXY UDP4 198.51.100.2 198.51.100.1 1 2\r\n')), /not TCP4, TCP6 or UNKNOWN/);
    assert.match(err(B('PROXY TCP4 198.51.100.2 198.51.100.1 1\r\n')), /needs/);
    assert.match(err(B('PROXY TCP4  198.51.100.2 198.51.100.1 1 2\r\n')), /needs|bad/);
    assert.match(err(B('PROXY TCP4 198.51.100.2 198.51.100.1 1 2\x00\r\n')), /non-printable/);
    assert.match(err(B('<13>Aug 26 no header')), /no PROXY/);
    assert.match(err(B('PROXY TCP4 198.51.100.2 198.51.100.1 1 2\r\n'), true), /cannot carry a datagram/);
  });
});

describe('PROXY protocol v2 (HAProxy send-proxy-v2)', () => {
  test('IPv4 and IPv6 over a stream', () => {
    const v4 = buildProxyV2('198.51.100.2', '198.51.100.1', 40000, 5140);
    assert.deepEqual(ok(Buffer.concat([v4, B('<13>x')])).source, { address: '198.51.100.2', port: 40000 });
    assert.equal(ok(v4).length, 28);
    const v6 = buildProxyV2('2001:db8::2', '2001:db8::1', 1, 2);
    assert.deepEqual(ok(v6).source, { address: '2001:db8::2', port: 1 });
    assert.equal(ok(v6).length, 52);
  });

  test('TLVs after the addresses are skipped', () => {
    const tlv = Buffer.from([0x04, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_NOOP-ish
    const h = buildProxyV2('198.51.100.3', '198.51.100.1', 1, 2, { tlv });
    const r = ok(Buffer.concat([h, B('body')]));
    assert.equal(r.length, 28 + tlv.length);
    assert.equal(r.source?.address, '198.51.100.3');
  });

  test('LOCAL (health checks) means: use the connection itself', () => {
    assert.equal(ok(buildProxyV2('198.51.100.2', '198.51.100.1', 1, 2, { local: true })).source, null);
  });

  test('datagrams: DGRAM on UDP, never STREAM on UDP or DGRAM on TCP', () => {
    const d = buildProxyV2('198.51.100.2', '198.51.100.1', 1, 514, { dgram: true });
    assert.equal(ok(d, true).source?.address, '198.51.100.2');
    assert.match(err(d, false), /datagram on a stream/);
    assert.match(err(buildProxyV2('198.51.100.2', '198.51.100.1', 1, 514), true), /stream ahead of a datagram/);
  });

  test('refuses bad versions, commands, families, and short or oversized blocks', () => {
    const good = buildProxyV2('198.51.100.2', '198.51.100.1', 1, 2);
    const mutate = (at: number, value: number): Buffer => {
      const b = Buffer.from(good);
      b[at] = value;
      return b;
    };
    assert.match(err(mutate(12, 0x11)), /version 1/);
    assert.match(err(mutate(12, 0x22)), /unknown command/);
    assert.match(err(mutate(13, 0x41)), /unknown family/);
    const short = Buffer.from(good);
    short.writeUInt16BE(4, 14);
    assert.match(err(short), /short/);
    const huge = Buffer.from(good);
    huge.writeUInt16BE(60000, 14);
    assert.match(err(huge), /above/);
    assert.equal(parseProxyHeader(good.subarray(0, 20)).kind, 'incomplete');
    assert.equal(parseProxyHeader(V2_SIGNATURE.subarray(0, 5)).kind, 'incomplete');
  });
});

describe('PROXY protocol: properties', () => {
  const v4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((o) => o.join('.'));
  const v6 = fc
    .array(fc.nat(0xffff), { minLength: 8, maxLength: 8 })
    .map((g) => g.map((x) => x.toString(16)).join(':'))
    .filter((a) => !a.startsWith('0:0:0:0:0:ffff:'));
  const port = fc.nat(65535);

  test('what v1 and v2 builders write, the parser reads back', () => {
    fc.assert(
      fc.property(fc.oneof(fc.tuple(v4, v4), fc.tuple(v6, v6)), port, port, fc.boolean(), ([src, dst], sp, dp, two) => {
        const h = two ? buildProxyV2(src, dst, sp, dp) : buildProxyV1(src, dst, sp, dp);
        const r = ok(Buffer.concat([h, B('<13>m\n')]));
        assert.equal(r.length, h.length);
        assert.equal(r.source?.port, sp);
        assert.equal(parseProxyHeader(Buffer.concat([h.subarray(0, h.length - 1)])).kind, 'incomplete');
      }),
      { seed: 6101, numRuns: 300 },
    );
  });

  test('random bytes, and random bytes after a signature, never throw and never claim more than they hold', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.constantFrom('none', 'v1', 'v2'), fc.boolean(), (bytes, prefix, dgram) => {
        const head = prefix === 'v1' ? B('PROXY ') : prefix === 'v2' ? V2_SIGNATURE : Buffer.alloc(0);
        const buf = Buffer.concat([head, Buffer.from(bytes)]);
        const r = parseProxyHeader(buf, dgram);
        if (r.kind === 'ok') assert.ok(r.length <= buf.length);
      }),
      { seed: 6102, numRuns: 2000 },
    );
  });
});
