import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { banKey, bantimeFor, offenceKey, parseOffence, previousBans } from '../../src/reactor/responder/banPolicy.js';
import { decideRetry } from '../../src/reactor/responder/retryPolicy.js';
import { deviceForSender, interfacePath } from '../../src/reactor/responder/vyosActions.js';
import { buildForm, interpretReply } from '../../src/reactor/responder/vyosClient.js';
import { NetSet } from '../../src/core/netMatch.js';
import type { BanAction, DeviceConfig } from '../../src/reactor/config/reactorConfig.js';

const BAN: BanAction = {
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

describe('ban policy', () => {
  test('keys follow the KV layout at each scope', () => {
    assert.equal(banKey(BAN, 'dc1', '198.51.100.5'), 'befw/$ipset$/rules_deny/198.51.100.5');
    assert.equal(banKey({ ...BAN, scope: 'dc' }, 'dc1', '2001:db8::5'), 'befw/$ipset$/dc1/rules_deny/2001:db8::5');
    assert.equal(
      banKey({ ...BAN, scope: 'node', node: 'web-01', set: 'blocked' }, 'dc1', '198.51.100.5'),
      'befw/$ipset$/dc1/web-01/blocked/198.51.100.5',
    );
    assert.equal(offenceKey('befw-reactor', '198.51.100.5'), 'befw-reactor/offences/198.51.100.5');
  });

  test('bantime × factor^n, capped', () => {
    assert.deepEqual(
      [0, 1, 2, 3, 4, 5, 50].map((n) => bantimeFor(BAN, n)),
      [3600, 7200, 14400, 28800, 57600, 86400, 86400],
    );
    assert.equal(bantimeFor({ ...BAN, factor: 1 }, 10), 3600);
    assert.equal(bantimeFor({ ...BAN, factor: 100, maxBantimeSec: 10 * 365 * 86400 }, 100000), 10 * 365 * 86400);
  });

  test('repeat offences count until forgetAfter has passed since the last ban ended', () => {
    const rec = {
      count: 3,
      lastBanMs: 1_000_000,
      lastExpiry: 1_000 + 3600,
      lastBantimeSec: 3600,
      jobs: [],
      event: 'e',
      device: { address: 'x', hostname: null },
      clearedMs: null,
    };
    assert.equal(previousBans(null, BAN, 0), 0);
    assert.equal(previousBans(rec, BAN, (1_000 + 3600) * 1000 + 604_799_000), 3);
    assert.equal(previousBans(rec, BAN, (1_000 + 3600) * 1000 + 604_800_000), 0);
  });

  test('offence records: what was written is read; anything else is no record', () => {
    const rec = {
      count: 2,
      lastBanMs: 5,
      lastExpiry: 6,
      lastBantimeSec: 7,
      jobs: ['a', 'b'],
      event: 'ssh-auth-failure',
      device: { address: '198.51.100.2', hostname: 'vyos' },
      clearedMs: 1234,
    };
    assert.deepEqual(parseOffence(JSON.stringify(rec)), rec);
    assert.equal(parseOffence(JSON.stringify({ ...rec, clearedMs: undefined }))?.clearedMs, null);
    for (const bad of [null, '', 'x', '{}', '{"count":"1","lastBanMs":1,"jobs":[]}', '[]'])
      assert.equal(parseOffence(bad), null, String(bad));
  });
});

describe('retry policy', () => {
  const policy = { maxAttempts: 5, retryDelaySec: 2, retryDelayMaxSec: 10 };
  test('release with doubling delays, bury after the last attempt or on a permanent failure', () => {
    assert.deepEqual(
      [1, 2, 3, 4].map((a) => decideRetry(policy, a, false)),
      [
        { kind: 'release', delaySec: 2 },
        { kind: 'release', delaySec: 4 },
        { kind: 'release', delaySec: 8 },
        { kind: 'release', delaySec: 10 },
      ],
    );
    assert.equal(decideRetry(policy, 5, false).kind, 'bury');
    assert.equal(decideRetry(policy, 1, true).kind, 'bury');
  });

  test('property: delays never shrink and never pass the cap', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 1000 }),
        (max, base, cap) => {
          const p = { maxAttempts: max, retryDelaySec: base, retryDelayMaxSec: Math.max(base, cap) };
          let last = -1;
          for (let a = 1; a < max; a++) {
            const d = decideRetry(p, a, false);
            assert.equal(d.kind, 'release');
            if (d.kind === 'release') {
              assert.ok(d.delaySec >= last && d.delaySec <= p.retryDelayMaxSec);
              last = d.delaySec;
            }
          }
          assert.equal(decideRetry(p, max, false).kind, 'bury');
        },
      ),
      { seed: 6701, numRuns: 300 },
    );
  });
});

describe('VyOS request format and replies', () => {
  test('the form body is what curl --form data=... --form key=... sends, and parses back as a form', async () => {
    const data = { op: 'set', path: ['firewall', 'group', 'address-group', 'BEFW-BLOCK', 'address', '198.51.100.5'] };
    const form = buildForm(data, 'MY-HTTPS-API-PLAINTEXT-KEY', 'BOUNDARY');
    assert.equal(form.contentType, 'multipart/form-data; boundary=BOUNDARY');
    assert.equal(
      form.body.toString(),
      '--BOUNDARY\r\nContent-Disposition: form-data; name="data"\r\n\r\n{"op":"set","path":["firewall","group","address-group","BEFW-BLOCK","address","198.51.100.5"]}\r\n' +
        '--BOUNDARY\r\nContent-Disposition: form-data; name="key"\r\n\r\nMY-HTTPS-API-PLAINTEXT-KEY\r\n--BOUNDARY--\r\n',
    );
    // An independent multipart parser (the fetch API's) reads the same two fields.
    const fd = await new Request('http://vyos/configure', {
      method: 'POST',
      headers: { 'content-type': form.contentType },
      body: form.body,
    }).formData();
    assert.deepEqual(JSON.parse(fd.get('data') as string), data);
    assert.equal(fd.get('key'), 'MY-HTTPS-API-PLAINTEXT-KEY');
    assert.deepEqual([...fd.keys()], ['data', 'key']);
  });

  test('replies: JSON in a text/html body, success or a typed failure', () => {
    assert.deepEqual(interpretReply(200, '{"success": true, "data": null, "error": null}'), { ok: true, data: null });
    assert.deepEqual(interpretReply(200, '{"success": true, "data": ["198.51.100.5"], "error": null}'), {
      ok: true,
      data: ['198.51.100.5'],
    });
    const unauth = interpretReply(401, '{"success": false, "error": "Valid API key is required", "data": null}');
    assert.deepEqual(unauth, { ok: false, permanent: true, error: 'HTTP 401: Valid API key is required' });
    assert.equal(
      (
        interpretReply(400, '{"success": false, "error": "Configuration path: [firewall] is not valid", "data": null}') as {
          permanent: boolean;
        }
      ).permanent,
      true,
    );
    assert.equal(
      (
        interpretReply(500, '{"success": false, "error": "An internal error occured. Check the logs for details.", "data": null}') as {
          permanent: boolean;
        }
      ).permanent,
      false,
    );
    const gateway = interpretReply(502, '<html><body><h1>502 Bad Gateway</h1></body></html>');
    assert.equal(gateway.ok, false);
    assert.equal((gateway as { permanent: boolean }).permanent, false);
    assert.match((gateway as { error: string }).error, /not the API's JSON/);
    assert.equal((interpretReply(200, '{"success": false, "error": "x", "data": null}') as { permanent: boolean }).permanent, true);
  });

  test('interface names map to config paths; unknown ones are refused', () => {
    assert.deepEqual(interfacePath('eth1'), ['interfaces', 'ethernet', 'eth1']);
    assert.deepEqual(interfacePath('eth1.10'), ['interfaces', 'ethernet', 'eth1', 'vif', '10']);
    assert.deepEqual(interfacePath('bond0'), ['interfaces', 'bonding', 'bond0']);
    assert.deepEqual(interfacePath('wg0'), ['interfaces', 'wireguard', 'wg0']);
    assert.deepEqual(interfacePath('vtun3'), ['interfaces', 'openvpn', 'vtun3']);
    for (const bad of ['ens3', 'eth', 'eth1.x', 'wg0.5', 'eth1;x', 'ETH1']) assert.equal(interfacePath(bad), null, bad);
  });

  test('the device is found by the sender address, never by hostname', () => {
    const dev = (name: string, nets: string[]): DeviceConfig => ({
      name,
      url: new URL('https://vyos'),
      keyFile: '/k',
      caFile: null,
      addresses: NetSet.parse(nets),
      timeoutMs: 1000,
      interfaces: [],
    });
    const devices = new Map([
      ['edge1', dev('edge1', ['198.51.100.2/32'])],
      ['edge2', dev('edge2', ['2001:db8::/64'])],
    ]);
    assert.equal(deviceForSender(devices, '198.51.100.2')?.name, 'edge1');
    assert.equal(deviceForSender(devices, '2001:db8::9')?.name, 'edge2');
    assert.equal(deviceForSender(devices, '198.51.100.3'), null);
  });
});
