import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { ConfigError } from '../../src/config/config.js';
import { parseReactorConfig } from '../../src/reactor/config/reactorConfig.js';

const EXAMPLE = new URL('../../../examples/reactor/reactor.json', import.meta.url).pathname;
const FILE = '/etc/befw/reactor.json';

function base(): Record<string, unknown> {
  return {
    queue: { servers: ['127.0.0.1:11300'], hmacKeyFile: '/etc/befw/reactor.key' },
    parser: { listeners: [{ protocol: 'tcp', port: 5140 }], allowedDevices: ['198.51.100.0/24', '2001:db8::/32'] },
    responder: { actions: { 'ssh-auth-failure': [{ type: 'ban' }] } },
  };
}

function refused(config: unknown, path: string, reason: RegExp): void {
  assert.throws(
    () => parseReactorConfig(JSON.stringify(config), FILE),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.key, path, err.message);
      assert.match(err.reason, reason);
      assert.ok(err.message.startsWith(`${FILE} (${path}): `), err.message);
      return true;
    },
  );
}

// `any` on purpose: the tests below poke at arbitrary depths of a plain JSON object.
/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-member-access, @typescript-eslint/no-unsafe-assignment, @typescript-eslint/no-unsafe-return, @typescript-eslint/no-unsafe-call -- see above */
function edit(f: (c: Record<string, any>) => void): Record<string, unknown> {
  const c = base() as Record<string, any>;
  f(c);
  return c;
}

describe('reactor config: the shipped example', () => {
  test('parses, with defaults filled in', () => {
    const c = parseReactorConfig(readFileSync(EXAMPLE, 'utf8'), EXAMPLE);
    assert.equal(c.parser?.listeners.length, 3);
    assert.equal(c.parser?.listeners[0]?.name, 'tcp:0.0.0.0:5140');
    assert.deepEqual(c.parser?.triggers.events.sort(), ['http-auth-failure', 'iface-down', 'observed', 'port-scan', 'ssh-auth-failure']);
    assert.equal(c.parser?.thresholds.get('ssh-auth-failure')?.maxRetry, 5);
    assert.equal(c.queue.servers[0]?.text, '127.0.0.1:11300');
    const ban = c.responder?.actions.get('ssh-auth-failure')?.[0];
    assert.deepEqual(ban, {
      type: 'ban',
      set: 'rules_deny',
      scope: 'world',
      dc: null,
      node: null,
      bantimeSec: 3600,
      factor: 2,
      maxBantimeSec: 604800,
      forgetAfterSec: 604800,
      prefixV4: 32,
      prefixV6: 128,
    });
    assert.deepEqual(c.warnings, []);
    assert.deepEqual(c.responder?.devices.get('edge1')?.interfaces, ['eth1', 'eth2']);
    assert.deepEqual(c.parser?.devices.lookup('198.51.100.254')?.udpActions, []);
    assert.equal(c.responder?.devices.get('edge1')?.url.href, 'https://198.51.100.254/');
    assert.ok(c.protect.has('203.0.113.7'));
  });

  test('a minimal config gets the documented defaults', () => {
    const c = parseReactorConfig(JSON.stringify(base()), FILE);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.queue.tubePrefix, 'befw-');
    assert.equal(c.queue.ttrSec, 60);
    assert.equal(c.queue.maxAttempts, 5);
    const p = c.parser!;
    assert.equal(p.listeners[0]?.address, '0.0.0.0');
    assert.equal(p.maxLineBytes, 8192);
    assert.equal(p.dedupMs, 600_000);
    assert.equal(p.devices.lookup('198.51.100.1')?.name, 'allowed');
    assert.equal(p.devices.lookup('192.0.2.1'), null, 'nobody else');
    assert.deepEqual(p.devices.lookup('2001:db8::1')?.udpActions, [], 'nothing over UDP unless configured');
    assert.equal(p.maxConnectionsPerDevice, 16);
    assert.equal(p.maxRepeat, 10);
    assert.equal(c.responder?.banBudgetPerMinute, 60);
    // sshd (4), iface-down, port-scan and observe (befw's trap ports and observe mode).
    assert.equal(p.triggers.triggers.length, 7);
    assert.deepEqual(
      c.responder?.actions.get('port-scan')?.map((a) => [a.type, a.type === 'ban' ? `${a.set} ${a.scope}` : '']),
      [['ban', 'rules_deny world']],
      'a port scan is banned fleet-wide by default',
    );
    assert.equal(c.responder?.actions.get('observed')?.[0]?.type, 'observe');
    assert.equal(c.responder?.stateKvPrefix, 'befw-reactor');
  });
});

describe('reactor config: evidence and protection', () => {
  test('no devices: nothing is read from anyone, and the config says so', () => {
    refused(
      edit((c) => delete c.parser.allowedDevices),
      '/parser/devices',
      /no devices/,
    );
    refused(
      edit((c) => (c.parser.allowedDevices = [])),
      '/parser/devices',
      /no devices/,
    );
  });

  test('jobs must be signed: hmacKeyFile is required with a parser or a responder', () => {
    refused(
      edit((c) => delete c.queue.hmacKeyFile),
      '/queue/hmacKeyFile',
      /required/,
    );
  });

  test('devices: longest prefix wins; hostnames and UDP actions per device; never disable an interface over UDP', () => {
    const c = parseReactorConfig(
      JSON.stringify(
        edit((x) => {
          x.parser.devices = [
            { name: 'edge1', addresses: ['198.51.100.254/32'], hostnames: ['Edge1'], udpActions: ['ban'] },
            { name: 'dup', addresses: ['192.0.2.0/24'] },
          ];
        }),
      ),
      FILE,
    );
    const p = c.parser!;
    assert.equal(p.devices.lookup('198.51.100.254')?.name, 'edge1');
    assert.equal(p.devices.lookup('198.51.100.253')?.name, 'allowed');
    assert.deepEqual([...(p.devices.lookup('198.51.100.254')?.hostnames ?? [])], ['edge1']);
    refused(
      edit((x) => (x.parser.devices = [{ name: 'r', addresses: ['192.0.2.1/32'], udpActions: ['vyos-disable-interface'] }])),
      '/parser/devices/0/udpActions',
      /cannot be triggered over UDP/,
    );
    refused(
      edit((x) => (x.parser.limits = { maxConnections: 4, maxConnectionsPerDevice: 5 })),
      '/parser/limits/maxConnectionsPerDevice',
      /at most maxConnections/,
    );
  });

  test('managementNets and ignore still work, folded into protect, with a warning; a ban shorter than dedupSec warns', () => {
    const c = parseReactorConfig(
      JSON.stringify(
        edit((x) => {
          x.ignore = ['192.0.2.0/28'];
          x.responder.managementNets = ['203.0.113.0/28'];
          x.responder.actions['ssh-auth-failure'] = [{ type: 'ban', bantimeSec: 60 }];
        }),
      ),
      FILE,
    );
    assert.ok(c.protect.has('192.0.2.1') && c.protect.has('203.0.113.1'));
    assert.equal(c.warnings.length, 3, c.warnings.join('\n'));
    assert.match(c.warnings[0] ?? '', /ignore is deprecated/);
    assert.match(c.warnings[1] ?? '', /managementNets is deprecated.*befw-protect/);
    assert.match(c.warnings[2] ?? '', /60 s is shorter than \/parser\/dedupSec \(600 s\)/);
  });

  test('wider bans only by config, and not absurdly wide', () => {
    const c = parseReactorConfig(
      JSON.stringify(edit((x) => (x.responder.actions['ssh-auth-failure'] = [{ type: 'ban', prefixV4: 24, prefixV6: 64 }]))),
      FILE,
    );
    const ban = c.responder?.actions.get('ssh-auth-failure')?.[0];
    assert.ok(ban?.type === 'ban' && ban.prefixV4 === 24 && ban.prefixV6 === 64);
    refused(
      edit((x) => (x.responder.actions['ssh-auth-failure'] = [{ type: 'ban', prefixV4: 4 }])),
      '/responder/actions/ssh-auth-failure/0/prefixV4',
      />= 8/,
    );
  });
});

describe('reactor config: errors name the file and the JSON path', () => {
  test('shape errors (schema)', () => {
    refused(
      edit((c) => (c.parser.listeners[0].port = 70000)),
      '/parser/listeners/0/port',
      /<= 65535/,
    );
    refused(
      edit((c) => (c.parser.listeners[0].protocol = 'sctp')),
      '/parser/listeners/0/protocol',
      /one of "tcp", "udp"/,
    );
    refused(
      edit((c) => (c.parser.extra = 1)),
      '/parser/extra',
      /unknown key/,
    );
    refused(
      edit((c) => delete c.queue.servers),
      '/queue/servers',
      /required/,
    );
    refused(
      edit((c) => (c.queue.ttrSec = 0)),
      '/queue/ttrSec',
      />= 2/,
    );
    refused(
      edit((c) => (c.responder.actions['ssh-auth-failure'][0].bantime = 5)),
      '/responder/actions/ssh-auth-failure/0/bantime',
      /unknown key/,
    );
    refused(
      edit((c) => (c.responder.actions['ssh-auth-failure'][0].type = 'nuke')),
      '/responder/actions/ssh-auth-failure/0/type',
      /one of/,
    );
    refused(
      edit((c) => (c.responder.actions.SSH = [{ type: 'ban' }])),
      '/responder/actions/SSH',
      /bad name/,
    );
    refused(
      edit((c) => (c.parser.thresholds = JSON.parse('{"__proto__": {"maxRetry": 1, "findTimeSec": 1}}'))),
      '/parser/thresholds/__proto__',
      /bad name/,
    );
    refused(
      edit((c) => (c.responder.actions['ssh-auth-failure'] = [{ type: 'vyos-address-group', devices: 7, group: 'A', ipv6Group: 'B' }])),
      '/responder/actions/ssh-auth-failure/0/devices',
      /"source", "all" or a list/,
    );
  });

  test('meaning errors (after the schema)', () => {
    refused(
      edit((c) => (c.ignore = ['198.51.100.0/24', '10.0.0.256'])),
      '/ignore/1',
      /octet 256/,
    );
    refused(
      edit((c) => (c.parser.trustedProxies = ['nope'])),
      '/parser/trustedProxies/0',
      /not an IP/,
    );
    refused(
      edit((c) => (c.parser.listeners[0].proxyProtocol = true)),
      '/parser/listeners/0/proxyProtocol',
      /trustedProxies/,
    );
    refused(
      edit((c) => (c.parser.listeners[0].address = '0.0.0.0/0')),
      '/parser/listeners/0/address',
      /not an IP address/,
    );
    refused(
      edit((c) => c.parser.listeners.push({ protocol: 'tcp', port: 5140 })),
      '/parser/listeners/1',
      /listed twice/,
    );
    refused(
      edit((c) => (c.queue.servers = ['beanstalk'])),
      '/queue/servers/0',
      /host:port/,
    );
    refused(
      edit((c) => (c.queue.servers = ['unix:relative'])),
      '/queue/servers/0',
      /absolute/,
    );
    refused(
      edit((c) => (c.parser.triggers = [{ name: 'x', event: 'x', pattern: '(?<attacker>' }])),
      '/parser/triggers/0/pattern',
      /does not compile/,
    );
    refused(
      edit((c) => (c.parser.triggers = [{ name: 'x', event: 'x', pattern: 'from (?<ip>\\S+)' }])),
      '/parser/triggers/0/pattern',
      /named group "attacker"/,
    );
    refused(
      edit((c) => (c.parser.triggers = [{ name: 'sshd-invalid-user', event: 'x', pattern: '(?<attacker>\\S+)' }])),
      '/parser/triggers/0/name',
      /defined twice/,
    );
    refused(
      edit((c) => (c.parser.thresholds = { 'ssh-auth-faliure': { maxRetry: 1, findTimeSec: 1 } })),
      '/parser/thresholds/ssh-auth-faliure',
      /no trigger produces/,
    );
    refused(
      edit((c) => (c.responder.actions = { 'ssh-auth-faliure': [{ type: 'ban' }] })),
      '/responder/actions/ssh-auth-faliure',
      /no trigger produces/,
    );
    refused(
      edit((c) => (c.responder.actions = { 'iface-down': [{ type: 'ban' }] })),
      '/responder/actions/iface-down/0',
      /needs events about an address/,
    );
    refused(
      edit((c) => (c.responder.actions['ssh-auth-failure'][0].set = 'rules_allow')),
      '/responder/actions/ssh-auth-failure/0/set',
      /cannot go into rules_allow/,
    );
    refused(
      edit((c) => (c.responder.actions['ssh-auth-failure'][0].scope = 'node')),
      '/responder/actions/ssh-auth-failure/0/node',
      /needs the node name/,
    );
    refused(
      edit((c) => Object.assign(c.responder.actions['ssh-auth-failure'][0], { bantimeSec: 100, maxBantimeSec: 10 })),
      '/responder/actions/ssh-auth-failure/0/maxBantimeSec',
      /at least bantimeSec/,
    );
    refused(
      edit(
        (c) => (c.responder.actions['ssh-auth-failure'] = [{ type: 'vyos-address-group', devices: ['edge9'], group: 'A', ipv6Group: 'B' }]),
      ),
      '/responder/actions/ssh-auth-failure/0/devices/0',
      /no device "edge9"/,
    );
    const device = { url: 'http://198.51.100.254', keyFile: '/etc/k', addresses: ['198.51.100.254'] };
    refused(
      edit((c) => (c.responder.devices = { edge1: device })),
      '/responder/devices/edge1/url',
      /clear text/,
    );
    refused(
      edit((c) => (c.responder.devices = { edge1: { ...device, url: 'https://admin:pw@198.51.100.254' } })),
      '/responder/devices/edge1/url',
      /without credentials/,
    );
  });

  test('not JSON at all', () => {
    assert.throws(
      () => parseReactorConfig('{"queue":', FILE),
      (e: unknown) => e instanceof ConfigError && /not valid JSON/.test(e.message),
    );
  });

  test('property: any value at any place either parses or throws a ConfigError naming the file', () => {
    const paths = [
      ['queue'],
      ['queue', 'servers'],
      ['queue', 'servers', '0'],
      ['queue', 'ttrSec'],
      ['parser'],
      ['parser', 'listeners'],
      ['parser', 'listeners', '0'],
      ['parser', 'listeners', '0', 'address'],
      ['parser', 'triggers'],
      ['parser', 'thresholds'],
      ['parser', 'limits'],
      ['ignore'],
      ['responder'],
      ['responder', 'actions'],
      ['responder', 'actions', 'ssh-auth-failure'],
      ['responder', 'actions', 'ssh-auth-failure', '0'],
      ['responder', 'devices'],
      ['responder', 'consul'],
    ];
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.jsonValue({ maxDepth: 3 }), (path, value) => {
        const c = base();
        let at = c;
        for (const k of path.slice(0, -1)) at = (at[k] ?? {}) as Record<string, unknown>;
        at[path[path.length - 1] as string] = value;
        try {
          parseReactorConfig(JSON.stringify(c), FILE);
        } catch (err) {
          assert.ok(err instanceof ConfigError, String(err));
          assert.ok(err.message.startsWith(FILE));
        }
      }),
      { seed: 6501, numRuns: 1000 },
    );
  });
});
