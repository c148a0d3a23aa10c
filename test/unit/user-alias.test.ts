/**
 * Users from leases, the pure part (core/userAlias.ts): which user names become aliases, MAC
 * forms, and what each event does to a MAC's record (grant, move, revoke, stale redelivery).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ALIAS_NAME } from '../../src/core/kvLayout.js';
import {
  EMPTY_RECORD,
  type MacRecord,
  canonicalMac,
  checkUserName,
  decideLease,
  encodeAddrOwner,
  evictAddress,
  leaseAddress,
  parseAddrOwner,
  parseMacRecord,
  userGrantKey,
  withoutAddress,
} from '../../src/core/userAlias.js';

const T = 1_700_000_000;
const MS = T * 1000;

describe('user names', () => {
  test('safe names pass as they are; hostile ones are refused with a reason', () => {
    assert.deepEqual(checkUserName('alice'), { ok: true, name: 'alice' });
    assert.deepEqual(checkUserName('j.doe-2_x'), { ok: true, name: 'j.doe-2_x' });
    for (const bad of [
      '',
      '..',
      'a..b',
      '../x',
      'a/b',
      '$x$',
      'alice@example.org',
      'a b',
      '.hidden',
      '-x',
      'x'.repeat(60),
      'é',
      'a\u0000',
      'Alice',
      'ALICE',
      'anonymous',
      'anonymous1',
      'anonymous.x',
      'anon',
      'anonbob',
    ]) {
      const r = checkUserName(bad);
      assert.equal(r.ok, false, bad);
    }
    assert.equal(checkUserName('x'.repeat(59)).ok, true);
  });

  test('every accepted name makes a valid alias and a key of exactly four path segments', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (raw) => {
        const r = checkUserName(raw);
        if (!r.ok) return;
        assert.match(`$user.${r.name}$`, ALIAS_NAME);
        const key = userGrantKey(r.name, '198.51.100.7');
        assert.deepEqual(key.split('/').length, 4);
        assert.ok(!key.includes('..'));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('lease addresses', () => {
  test('host addresses in canonical form; networks and special-purpose addresses are not leases', () => {
    assert.equal(leaseAddress('198.51.100.7'), '198.51.100.7');
    assert.equal(leaseAddress('2001:DB8::0:7'), '2001:db8::7');
    for (const t of ['198.51.100.0/24', '0.0.0.0', '127.0.0.1', '169.254.1.1', '224.0.0.1', '255.255.255.255', '::1', 'fe80::1', 'x', ''])
      assert.equal(leaseAddress(t), null, t);
  });
});

describe('MAC addresses', () => {
  test('the forms DHCP and RADIUS servers print become one', () => {
    for (const t of ['3a:95:af:d6:5b:7f', '3A-95-AF-D6-5B-7F', '3a95.afd6.5b7f', '3A95AFD65B7F'])
      assert.equal(canonicalMac(t), '3a:95:af:d6:5b:7f', t);
    for (const t of ['3a:95-af:d6:5b:7f', '3a:95:af:d6:5b', '3a:95:af:d6:5b:7f:00', 'zz:95:af:d6:5b:7f', ''])
      assert.equal(canonicalMac(t), null, t);
  });
});

function run(events: Parameters<typeof decideLease>[1][], start: MacRecord = EMPTY_RECORD, now = T): ReturnType<typeof decideLease>[] {
  let r = start;
  const out: ReturnType<typeof decideLease>[] = [];
  events.forEach((e, i) => {
    const d = decideLease(r, e, MS + i, now);
    out.push(d);
    r = d.record;
  });
  return out;
}

describe('decideLease', () => {
  test('login then lease grants until the earlier end; either order', () => {
    const [a, b] = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
      { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
    ]);
    assert.equal(a?.grant, null);
    assert.deepEqual(b?.grant, { key: 'befw/$alias$/$user.alice$/198.51.100.53', expiry: T + 120 });
    const [c, d] = run([
      { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
      { kind: 'login', user: 'alice', until: T + 60, addr: null },
    ]);
    assert.equal(c?.grant, null);
    assert.equal(d?.grant?.expiry, T + 60);
  });

  test('a lease that moves revokes the old address; a release or logout revokes the grant', () => {
    const [, granted, moved, released] = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
      { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
      { kind: 'lease', addr: '198.51.100.54', until: T + 120 },
      { kind: 'release', addr: '198.51.100.54' },
    ]);
    assert.equal(granted?.revoke, null);
    assert.equal(moved?.grant?.key, 'befw/$alias$/$user.alice$/198.51.100.54');
    assert.equal(moved?.revoke, 'befw/$alias$/$user.alice$/198.51.100.53');
    assert.equal(released?.grant, null);
    assert.equal(released?.revoke, 'befw/$alias$/$user.alice$/198.51.100.54');
    const [, , out] = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: '198.51.100.9' },
      { kind: 'lease', addr: '198.51.100.9', until: T + 600 },
      { kind: 'logout', user: 'alice', addr: '198.51.100.9' },
    ]);
    assert.equal(out?.grant, null);
    assert.equal(out?.revoke, 'befw/$alias$/$user.alice$/198.51.100.9');
  });

  test('a framed address (VPN) ends with the session; one DHCP leases keeps the lease end and outlives a logout', () => {
    const [vpn, , relogin] = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: '198.51.100.9' },
      { kind: 'logout', user: 'alice', addr: '198.51.100.9' },
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
    ]);
    assert.deepEqual(vpn?.grant, { key: 'befw/$alias$/$user.alice$/198.51.100.9', expiry: T + 86400 });
    assert.equal(relogin?.grant, null, 'the VPN address is gone with its session');
    const [, , acctStart, , again] = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
      { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
      { kind: 'login', user: 'alice', until: T + 86400, addr: '198.51.100.53' },
      { kind: 'logout', user: 'alice', addr: '198.51.100.53' },
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
    ]);
    assert.equal(acctStart?.grant?.expiry, T + 120, 'accounting does not stretch the DHCP lease');
    assert.deepEqual(again?.grant, { key: 'befw/$alias$/$user.alice$/198.51.100.53', expiry: T + 120 });
  });

  test("another user on the same device moves the grant to them; a stranger's logout changes nothing", () => {
    const [, , bob, strangerOut] = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
      { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
      { kind: 'login', user: 'bob', until: T + 86400, addr: null },
      { kind: 'logout', user: 'alice', addr: null },
    ]);
    assert.equal(bob?.grant?.key, 'befw/$alias$/$user.bob$/198.51.100.53');
    assert.equal(bob?.revoke, 'befw/$alias$/$user.alice$/198.51.100.53');
    assert.equal(strangerOut?.revoke, null);
    assert.equal(strangerOut?.grant?.key, 'befw/$alias$/$user.bob$/198.51.100.53');
  });

  test('an expired lease grants nothing; a redelivered older line is stale', () => {
    const [, expired] = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
      { kind: 'lease', addr: '198.51.100.53', until: T - 1 },
    ]);
    assert.equal(expired?.grant, null);
    const rec = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
      { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
      { kind: 'release', addr: '198.51.100.53' },
    ])[2]!.record;
    const again = decideLease(rec, { kind: 'lease', addr: '198.51.100.53', until: T + 120 }, MS + 1, T);
    assert.equal(again.stale, true);
    assert.equal(again.grant, null);
  });

  test('records round-trip through JSON; garbage reads as empty', () => {
    const d = run([
      { kind: 'login', user: 'alice', until: T + 86400, addr: null },
      { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
    ])[1]!;
    assert.deepEqual(parseMacRecord(JSON.stringify(d.record)), d.record);
    for (const g of [null, '', 'x', '[]', '{"user":"../x","addr":"nope","granted":"befw/$ipset$/rules_allow/0.0.0.0/0"}'])
      assert.deepEqual({ ...parseMacRecord(g) }, { ...EMPTY_RECORD }, String(g));
  });
});

describe('user names: case and PEAP outer identities', () => {
  test('upper case is refused, not folded (ALICE may be another account); the reason says so', () => {
    const r = checkUserName('ALICE');
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.error, /upper-case/);
  });

  test('"anon…" (a client-chosen PEAP/TTLS outer identity) never becomes an alias', () => {
    const r = checkUserName('anonymous');
    assert.match(r.ok ? '' : r.error, /outer identity/);
    assert.equal(checkUserName('anna').ok, true, 'only the anon prefix');
  });
});

describe('address index', () => {
  const granted = run([
    { kind: 'login', user: 'alice', until: T + 86400, addr: null },
    { kind: 'lease', addr: '198.51.100.53', until: T + 120 },
  ])[1]!;

  test('evicting an address clears the record and revokes its grant; another address is untouched', () => {
    const out = evictAddress(granted.record, '198.51.100.53', MS + 10);
    assert.equal(out?.revoke, 'befw/$alias$/$user.alice$/198.51.100.53');
    assert.equal(out?.record.addr, null);
    assert.equal(out?.record.granted, null);
    assert.equal(out?.record.user, 'alice', 'the login stays');
    assert.equal(out?.record.leaseSeenMs, MS + 10, 'an older ACK of this MAC redelivered later is stale');
    assert.equal(evictAddress(granted.record, '198.51.100.54', MS + 10), null);
  });

  test('a MAC that lost the address to a newer line grants nothing and drops what it held', () => {
    const moved = decideLease(granted.record, { kind: 'lease', addr: '198.51.100.60', until: T + 120 }, MS + 5, T);
    const lost = withoutAddress(granted.record, moved);
    assert.equal(lost.grant, null);
    assert.equal(lost.revoke, 'befw/$alias$/$user.alice$/198.51.100.53');
    assert.equal(lost.record.addr, null);
  });

  test('owners round-trip; garbage reads as no owner', () => {
    const o = { mac: '3a:95:af:d6:5b:7f', seenMs: MS };
    assert.deepEqual(parseAddrOwner(encodeAddrOwner(o)), o);
    for (const g of [null, '', '{}', '{"mac":"x","seenMs":1}', '{"mac":"3a:95:af:d6:5b:7f","seenMs":"1"}'])
      assert.equal(parseAddrOwner(g), null, String(g));
  });
});
