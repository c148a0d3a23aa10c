/**
 * The VyOS actions, through the real pipeline (logger -> `befw syslog` -> beanstalkd ->
 * `befw responder`), against a local stand-in for the VyOS HTTP API (test/helpers/vyosMock.ts)
 * that checks the documented request format and answers, and fails, the way VyOS does.
 */
import assert from 'node:assert/strict';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type LabProcess, type LogEvent, ReactorLab, labConfig } from '../helpers/reactorLab.js';
import { NODE_V4, Sandbox, clientV4, sleep } from '../helpers/sandbox.js';

const SYSLOG_PORT = 5514;
const API_PORT = 8443;
const KEY = 'MY-HTTPS-API-PLAINTEXT-KEY-0123456789';
const HELPERS = new URL('../helpers/', import.meta.url).pathname;

interface ApiRequest {
  seq: number;
  method: string;
  endpoint: string;
  contentType: string;
  form: string;
  fields: string[];
  keyOk: boolean;
  data: { op: string; path?: string[] };
  status: number;
  injected?: string;
}

describe('VyOS actions against a VyOS-like API (documented request format, VyOS answers and failures)', () => {
  let sb: Sandbox;
  let lab: ReactorLab;
  let parser: LabProcess;
  let responder: LabProcess;
  let config = '';
  let control = '';

  before(async () => {
    sb = await Sandbox.create();
    lab = new ReactorLab(sb);
    await lab.beanstalkd(11300);
    const keyFile = sb.writeFile('edge1.key', `${KEY}\n`);
    const wrongKey = sb.writeFile('edge2.key', 'not-the-key\n');
    for (const f of [keyFile, wrongKey]) chmodSync(f, 0o600);
    const openKey = sb.writeFile('edge3.key', `${KEY}\n`);
    chmodSync(openKey, 0o644); // readable by others: refused before it is ever sent
    control = sb.writeFile('vyos-control.json', '[]');
    sb.spawnIn(sb.nodeNs, process.execPath, [join(HELPERS, 'vyosMock.js'), String(API_PORT), keyFile, control], 'vyos.log');
    await lab.waitListening(sb.nodeNs, API_PORT);
    const device = (keyFile: string, address: string): Record<string, unknown> => ({
      url: `http://127.0.0.1:${API_PORT}`,
      keyFile,
      addresses: [address],
      timeoutSec: 2,
      interfaces: ['eth0', 'eth1', 'eth2', 'eth7'],
    });
    config = lab.writeConfig(
      'reactor.json',
      labConfig({
        protect: ['198.51.100.60/32'],
        queue: { maxAttempts: 3, retryDelaySec: 1, retryDelayMaxSec: 2 },
        parser: {
          listeners: [{ protocol: 'tcp', address: NODE_V4, port: SYSLOG_PORT }],
          allowedDevices: ['198.51.100.0/24'],
          thresholds: { 'ssh-auth-failure': { maxRetry: 2, findTimeSec: 60 } },
          dedupSec: 0,
        },
        responder: {
          consul: { address: '127.0.0.1:8500' },
          actions: {
            'ssh-auth-failure': [{ type: 'vyos-address-group', devices: ['edge1'], group: 'BEFW-BLOCK', ipv6Group: 'BEFW-BLOCK6' }],
            'iface-down': [{ type: 'vyos-disable-interface' }],
          },
          devices: { edge1: device(keyFile, clientV4(2)), edge2: device(wrongKey, clientV4(3)), edge3: device(openKey, clientV4(6)) },
        },
      }),
    );
    parser = await lab.parser(config, 'parser.log');
    responder = await lab.responder(config, 'responder.log');
  });

  after(async () => {
    for (const p of [parser, responder]) if (p !== undefined) await p.stop();
    if (sb !== undefined) await sb.destroy();
  });

  const requests = (): ApiRequest[] => lab.events('vyos.log').filter((e) => e.event === 'request') as unknown as ApiRequest[];
  const sshBurst = (attacker: string): void =>
    lab.logger(
      sb.clientNs,
      ['-T', '-n', NODE_V4, '-P', String(SYSLOG_PORT), '--rfc3164', '-t', 'sshd', '--id=2755'],
      [1, 2].map(() => `Failed password for root from ${attacker} port 47336 ssh2`),
    );
  const ifaceDown = (iface: string, source = clientV4(2)): void => {
    lab.send(sb.clientNs, {
      proto: 'tcp',
      host: NODE_V4,
      port: SYSLOG_PORT,
      source,
      payloads: [
        Buffer.from(
          `<30>Aug 26 14:02:11 vyos netplugd[1021]: ${iface}: state DOWN flags 0x00001002 BROADCAST,MULTICAST -> 0x00001003 UP,BROADCAST,MULTICAST\n`,
        ),
      ],
    });
  };
  const outcome = (pred: (e: LogEvent) => boolean, what: string, timeoutMs = 8000): Promise<LogEvent> =>
    responder.waitFor(pred, timeoutMs, what);
  const forSubject =
    (subject: string) =>
    (e: LogEvent): boolean =>
      (e.job as { subject?: string } | undefined)?.subject === subject;

  it('adds an IPv4 attacker to the address group: retrieve, configure set, config-file save, in the documented form', async () => {
    const before = requests().length;
    sshBurst('198.51.100.50');
    const done = await outcome((e) => e.event === 'action' && forSubject('198.51.100.50')(e), 'the address-group action');
    assert.equal(done.result, 'added');
    assert.deepEqual(done.devices, { edge1: 'added' });
    assert.equal(typeof done.lineToActionMs, 'number');
    const reqs = requests().slice(before);
    assert.deepEqual(
      reqs.map((r) => [r.endpoint, r.data]),
      [
        ['/retrieve', { op: 'returnValues', path: ['firewall', 'group', 'address-group', 'BEFW-BLOCK', 'address'] }],
        ['/configure', { op: 'set', path: ['firewall', 'group', 'address-group', 'BEFW-BLOCK', 'address', '198.51.100.50'] }],
        ['/config-file', { op: 'save' }],
      ],
    );
    for (const r of reqs) {
      assert.equal(r.method, 'POST');
      assert.equal(r.contentType, 'multipart/form-data');
      assert.deepEqual(r.fields, ['data', 'key']);
      assert.equal(r.keyOk, true);
      assert.equal(r.status, 200);
    }
  });

  it('sends IPv6 attackers to the ipv6 address group', async () => {
    const before = requests().length;
    sshBurst('2001:db8:aaaa::50');
    const done = await outcome((e) => e.event === 'action' && forSubject('2001:db8:aaaa::50')(e), 'the IPv6 action');
    assert.equal(done.kind, 'ipv6-address-group');
    const set = requests()
      .slice(before)
      .find((r) => r.endpoint === '/configure');
    assert.deepEqual(set?.data.path, ['firewall', 'group', 'ipv6-address-group', 'BEFW-BLOCK6', 'address', '2001:db8:aaaa::50']);
  });

  it('is idempotent: an address already in the group is not set again (the save still runs)', async () => {
    const before = requests().length;
    sshBurst('198.51.100.50');
    const again = await outcome(
      (e) => e.event === 'action' && forSubject('198.51.100.50')(e) && e.result === 'already-present',
      'already-present',
    );
    assert.deepEqual(again.devices, { edge1: 'already-present' });
    assert.deepEqual(
      requests()
        .slice(before)
        .map((r) => r.endpoint),
      ['/retrieve', '/config-file'],
    );
  });

  it('disables the interface that went down on the device that said so, once', async () => {
    const before = requests().length;
    ifaceDown('eth1');
    const done = await outcome((e) => e.event === 'action' && forSubject('eth1')(e), 'disable eth1');
    assert.equal(done.result, 'disabled');
    assert.equal(done.device, 'edge1');
    assert.deepEqual(
      requests()
        .slice(before)
        .map((r) => [r.endpoint, r.data]),
      [
        ['/retrieve', { op: 'showConfig', path: ['interfaces'] }],
        ['/retrieve', { op: 'showConfig', path: ['interfaces', 'ethernet', 'eth1'] }],
        ['/configure', { op: 'set', path: ['interfaces', 'ethernet', 'eth1', 'disable'] }],
        ['/config-file', { op: 'save' }],
      ],
    );
    ifaceDown('eth1');
    await outcome((e) => e.event === 'action' && forSubject('eth1')(e) && e.result === 'already-disabled', 'already-disabled');
  });

  it('releases the job with a growing delay while the API fails (500, a proxy page), then succeeds', async () => {
    writeFileSync(
      control,
      JSON.stringify([
        { id: 'c500', endpoint: '/configure', status: 500, times: 1 },
        { id: 'c502', endpoint: '/configure', status: 502, times: 1, html: true },
      ]),
    );
    sshBurst('198.51.100.51');
    const done = await outcome((e) => e.event === 'action' && forSubject('198.51.100.51')(e), 'the action after two failures', 15_000);
    assert.equal(done.result, 'added');
    const released = responder.events().filter((e) => e.event === 'job-released' && forSubject('198.51.100.51')(e));
    assert.deepEqual(
      released.map((e) => [e.attempt, e.delaySec]),
      [
        [1, 1],
        [2, 2],
      ],
    );
    assert.match(String(released[0]?.error), /HTTP 500: An internal error occured/);
    assert.match(String(released[1]?.error), /HTTP 502 with a body that is not the API's JSON/);
    const injected = requests()
      .filter((r) => r.injected !== undefined)
      .map((r) => [r.injected, r.status]);
    assert.deepEqual(injected, [
      ['c500', 500],
      ['c502', 502],
    ]);
  });

  it('buries at once what retrying cannot fix: a wrong key (401), a refused command (400), an unknown device, a key file others can read', async () => {
    ifaceDown('eth2', clientV4(3)); // edge2: wrong key
    const unauth = await outcome((e) => e.event === 'job-buried' && forSubject('eth2')(e), 'buried on 401');
    assert.equal(unauth.attempt, 1);
    assert.match(String(unauth.error), /HTTP 401: Valid API key is required/);
    const lastBad = requests().pop();
    assert.equal(lastBad?.keyOk, false);
    assert.equal(lastBad?.status, 401);

    ifaceDown('eth7'); // edge1 has no eth7: VyOS refuses the path
    const refused = await outcome((e) => e.event === 'job-buried' && forSubject('eth7')(e), 'buried on 400');
    assert.match(String(refused.error), /HTTP 400: Configuration under specified path is empty/);

    ifaceDown('eth1', clientV4(4)); // no device configured for 198.51.100.4
    const unknown = await outcome((e) => e.event === 'job-buried' && forSubject('eth1')(e), 'buried: unknown device');
    assert.match(String(unknown.error), /no device .* sends from 198\.51\.100\.4/);

    const sent = requests().length;
    ifaceDown('eth1', clientV4(6)); // edge3: its key file is readable by others
    const tooOpen = await outcome(
      (e) => e.event === 'job-buried' && forSubject('eth1')(e) && /edge3\.key/.test(String(e.error)),
      'buried: key file too open',
    );
    assert.match(String(tooOpen.error), /VyOS API key file .*edge3\.key: readable by group or others/);
    assert.equal(requests().length, sent, 'nothing was sent with that key');

    const tube = lab.queueStats(config)[0]?.tubes.find((t) => t.tube === 'befw-iface-down');
    assert.equal(tube?.buried, 4);
  });

  it('a buried job kicked after the cause is fixed is done', async () => {
    writeFileSync(control, JSON.stringify([{ id: 'commit-failed', endpoint: '/configure', status: 400, times: 1 }]));
    ifaceDown('eth2');
    await outcome(
      (e) => e.event === 'job-buried' && forSubject('eth2')(e) && /Commit failed/.test(String(e.error)),
      'buried on a failed commit',
    );
    const peek = sb.befw(['queue', 'peek', '--buried', '-c', config, '--event', 'iface-down']);
    assert.equal(peek.code, 0, peek.stderr);
    assert.match(peek.stdout, /befw-iface-down: 5 buried/);
    assert.match(peek.stdout, /permanent failure: vyos-disable-interface: .*HTTP 401: Valid API key is required/);
    const kick = sb.befw(['queue', 'kick', '-c', config, '--event', 'iface-down', '--bound', '10']);
    assert.equal(kick.code, 0, kick.stderr);
    assert.match(kick.stdout, /befw-iface-down: kicked 5/);
    const done = await outcome(
      (e) => e.event === 'action' && forSubject('eth2')(e) && e.device === 'edge1',
      'eth2 disabled on edge1 after the kick',
    );
    assert.equal(done.result, 'disabled');
    // The four that cannot succeed are buried again; nothing else is left.
    const end = Date.now() + 8000;
    let tube = lab.queueStats(config)[0]?.tubes.find((t) => t.tube === 'befw-iface-down');
    while ((tube?.buried ?? 0) < 4 && Date.now() < end) {
      await sleep(100);
      tube = lab.queueStats(config)[0]?.tubes.find((t) => t.tube === 'befw-iface-down');
    }
    assert.deepEqual([tube?.ready, tube?.reserved, tube?.buried], [0, 0, 4]);
  });

  it('never touches protected addresses', async () => {
    const before = requests().length;
    sshBurst('198.51.100.60'); // on the protect list: counted by the parser, never queued
    await parser.waitFor((e) => e.event === 'stats' && Number(e.ignored) >= 2, 5000, 'the protected address counted as ignored');
    assert.equal(
      parser.events().some((e) => e.event === 'job-queued' && forSubject('198.51.100.60')(e)),
      false,
    );
    assert.equal(requests().length, before);
  });

  it('disables only the interfaces the device allows, and never the one it is reached by', async () => {
    ifaceDown('eth3'); // not in edge1's interfaces
    const notListed = await outcome((e) => e.event === 'action' && forSubject('eth3')(e), 'eth3 refused');
    assert.equal(notListed.result, 'refused');
    assert.match(String(notListed.reason), /not in \/responder\/devices\/edge1\/interfaces/);
    const before = requests().length;
    ifaceDown('eth0'); // listed, but it holds the API's address (the mock gives eth0 127.0.0.1/8)
    const mgmt = await outcome((e) => e.event === 'action' && forSubject('eth0')(e), 'eth0 refused');
    assert.equal(mgmt.result, 'refused');
    assert.match(String(mgmt.reason), /eth0 is how the device is reached \(it holds 127\.0\.0\.1, the API address\)/);
    assert.ok(
      requests()
        .slice(before)
        .every((r) => r.endpoint === '/retrieve'),
      'nothing configured',
    );
  });
});
