import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../src/config/config.js';

function fails(text: string, line: number | null, key: string | null, reason?: RegExp): ConfigError {
  let caught: unknown;
  try {
    parseConfig(text, '/etc/befw.conf');
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof ConfigError, `expected a ConfigError for ${JSON.stringify(text)}, got ${String(caught)}`);
  assert.equal(caught.file, '/etc/befw.conf');
  assert.equal(caught.line, line, `line for ${JSON.stringify(text)}: ${caught.message}`);
  assert.equal(caught.key, key, `key for ${JSON.stringify(text)}: ${caught.message}`);
  if (reason !== undefined) assert.match(caught.reason, reason);
  const where = `/etc/befw.conf${line === null ? '' : `:${line}`}${key === null ? '' : ` (${key})`}: `;
  assert.ok(caught.message.startsWith(where), `message "${caught.message}" should start with "${where}"`);
  return caught;
}

describe('parseConfig: defaults and BEFW files', () => {
  test('an empty file gives the defaults', () => {
    const c = parseConfig('', '/etc/befw.conf');
    assert.equal(c.file, '/etc/befw.conf');
    assert.deepEqual(c.consul, { host: '127.0.0.1', port: 8500, secure: false });
    assert.equal(c.dc, null);
    assert.equal(c.token, null);
    assert.equal(c.tokenFile, null);
    assert.equal(c.nodeName, null);
    assert.equal(c.nodeDc, null);
    assert.equal(c.servicesDir, '/etc/befw.service.d');
    assert.equal(c.ipsetsDir, '/etc/befw.ipset.d');
    assert.equal(c.rulesTemplate, null);
    assert.equal(c.baseRules, null);
    assert.deepEqual(c.firewall, { backend: 'iptables', why: 'default (no firewall= in the config)', warning: null });
    assert.deepEqual(c.customSets, []);
    assert.deepEqual(c.managementNets, []);
    assert.equal(c.statePath, '/var/lib/befw/state.bin');
    assert.equal(c.resyncInterval, 300);
    assert.equal(c.consulWait, 300);
    assert.equal(c.maxStale, 5);
    assert.equal(c.consulTimeout, 10);
    assert.equal(c.logLevel, 'info');
  });

  test('a BEFW-style file with comments, blank lines, CRLF and spaces around "="', () => {
    const text = [
      '# befw config',
      '',
      'address = https://consul.local:8501',
      '  dc=dc1  ',
      '\ttoken=abc-123.XYZ_',
      'nodename=web-1\r',
      'nodedc=dc1',
      '   # indented comment',
      'services=/srv/befw/services',
      'ipsets=/srv/befw/ipsets',
      'rules=/etc/befw/service.rules',
      'base_rules=/etc/befw/base.rules',
      'state=/var/lib/befw/other.bin',
      'resync_interval=60',
      'consul_wait=120',
      'max_stale=2',
      'consul_timeout_sec=30',
      'log_level=debug',
      'set.rules_allow=10.0.0.0/8; 2001:db8:ffff::/48 ;192.168.1.77/24;',
      'set.blocklist=5;DROP',
      'set.monitor=NOOP',
      'set.partners=4;ACCEPT',
      'set.late=REJECT',
      '',
    ].join('\n');
    const c = parseConfig(text, '/etc/befw.conf');
    assert.deepEqual(c.consul, { host: 'consul.local', port: 8501, secure: true });
    assert.equal(c.dc, 'dc1');
    assert.equal(c.token, 'abc-123.XYZ_');
    assert.equal(c.nodeName, 'web-1');
    assert.equal(c.nodeDc, 'dc1');
    assert.equal(c.servicesDir, '/srv/befw/services');
    assert.equal(c.ipsetsDir, '/srv/befw/ipsets');
    assert.equal(c.rulesTemplate, '/etc/befw/service.rules');
    assert.equal(c.baseRules, '/etc/befw/base.rules');
    assert.equal(c.statePath, '/var/lib/befw/other.bin');
    assert.equal(c.resyncInterval, 60);
    assert.equal(c.consulWait, 120);
    assert.equal(c.maxStale, 2);
    assert.equal(c.consulTimeout, 30);
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.managementNets, [
      { family: 4, cidr: '10.0.0.0/8', prefix: 8 },
      { family: 6, cidr: '2001:db8:ffff::/48', prefix: 48 },
      { family: 4, cidr: '192.168.1.0/24', prefix: 24 },
    ]);
    // Sets without a priority get the next number after the built-ins, in file order.
    assert.deepEqual(c.customSets, [
      { name: 'blocklist', priority: 5, target: 'DROP' },
      { name: 'monitor', priority: 4, target: 'NOOP' },
      { name: 'partners', priority: 4, target: 'ACCEPT' },
      { name: 'late', priority: 6, target: 'REJECT' },
    ]);
  });

  test('address forms', () => {
    assert.deepEqual(parseConfig('address=10.1.2.3', 'f').consul, { host: '10.1.2.3', port: 8500, secure: false });
    assert.deepEqual(parseConfig('address=http://consul:8500/', 'f').consul, { host: 'consul', port: 8500, secure: false });
    assert.deepEqual(parseConfig('address=localhost:1', 'f').consul, { host: 'localhost', port: 1, secure: false });
  });

  test('a value may contain "="', () => {
    // Only the first "=" splits; the token pattern then rejects the rest, naming the key.
    fails('token=abc=def', 1, 'token', /token/);
  });

  test('an empty rules_allow means no management networks', () => {
    assert.deepEqual(parseConfig('set.rules_allow=', 'f').managementNets, []);
  });
});

describe('parseConfig: errors name the line and the key', () => {
  test('unknown key', () => {
    fails('dc=dc1\n\nfoo=bar', 3, 'foo', /unknown key/);
    fails('DC=dc1', 1, 'DC', /unknown key/);
    fails('# c\nset.Upper=3;DROP', 2, 'set.Upper', /unknown key/);
  });

  test('keys that look like object internals are unknown keys too', () => {
    fails('__proto__=x', 1, '__proto__', /unknown key/);
    fails('dc=dc1\nconstructor=x', 2, 'constructor', /unknown key/);
    fails('hasOwnProperty=x', 1, 'hasOwnProperty', /unknown key/);
  });

  test('not key=value', () => {
    fails('dc=dc1\njust words', 2, null, /key=value/);
    fails('=value', 1, null, /key=value/);
  });

  test('duplicate key', () => {
    const e = fails('dc=dc1\nnodename=a\ndc=dc2', 3, 'dc', /duplicate/);
    assert.match(e.reason, /line 1/);
    fails('set.x=3;DROP\nset.x=4;DROP', 2, 'set.x', /duplicate/);
  });

  test('bad address', () => {
    fails('address=consul:99999', 1, 'address', /host:port/);
    fails('address=consul:0', 1, 'address');
    fails('address=ftp://consul:8500', 1, 'address');
    fails('address=consul 8500', 1, 'address');
    fails('address=', 1, 'address');
  });

  test('bad names and values', () => {
    fails('dc=dc 1', 1, 'dc');
    fails('nodename=web/1', 1, 'nodename');
    fails('resync_interval=0', 1, 'resync_interval', /seconds/);
    fails('resync_interval=1.5', 1, 'resync_interval', /seconds/);
    fails('max_stale=-1', 1, 'max_stale', /seconds/);
    fails('consul_wait=600', 1, 'consul_wait', /seconds/);
    fails('consul_wait=0', 1, 'consul_wait', /seconds/);
    assert.equal(parseConfig('consul_wait=599', 'f').consulWait, 599);
    fails('consul_timeout_sec=-1', 1, 'consul_timeout_sec', /seconds/);
    fails('log_level=verbose', 1, 'log_level', /one of/);
    fails('token=has space', 1, 'token');
  });

  test("relative paths are read from the config file's directory (BEFW's demo writes services=services)", () => {
    for (const [key, field] of [
      ['services', 'servicesDir'],
      ['ipsets', 'ipsetsDir'],
      ['rules', 'rulesTemplate'],
      ['state', 'statePath'],
      ['token_file', 'tokenFile'],
      ['socket', 'socketPath'],
      ['befw_api', 'befwApi'],
    ] as const) {
      assert.equal(parseConfig(`# x\n${key}=relative/path`, '/etc/befw/befw.conf')[field], '/etc/befw/relative/path', key);
      assert.equal(parseConfig(`${key}=/abs/path`, '/etc/befw/befw.conf')[field], '/abs/path', key);
      fails(`# x\n${key}=bad\u0001path`, 2, key, /path/);
    }
    fails('# x\nbase_rules=relative/path', 2, 'base_rules', /absolute path/);
  });

  test('token and token_file together', () => {
    fails('token=abc\ntoken_file=/etc/befw.token', 2, 'token_file', /not both/);
    fails('token_file=/etc/befw.token\ntoken=abc', 1, 'token_file', /not both/);
    assert.equal(parseConfig('token_file=/etc/befw.token', 'f').tokenFile, '/etc/befw.token');
  });

  test('bad set spec', () => {
    fails('set.blocklist=DE.NY', 1, 'set.blocklist', /PRIORITY;\]?TARGET/);
    fails('set.blocklist=3;accept', 1, 'set.blocklist', /upper case \(ACCEPT\)/);
    fails('set.blocklist=3;', 1, 'set.blocklist', /PRIORITY;\]?TARGET/);
    fails('set.blocklist=;DROP', 1, 'set.blocklist', /PRIORITY;\]?TARGET/);
    fails('set.blocklist=x;DROP', 1, 'set.blocklist', /PRIORITY;\]?TARGET/);
    fails('set.blocklist=3;4;DROP', 1, 'set.blocklist', /PRIORITY;\]?TARGET/);
    fails('set.blocklist=3;1.5', 1, 'set.blocklist', /PRIORITY;\]?TARGET/);
    fails(`set.blocklist=3;${'C'.repeat(29)}`, 1, 'set.blocklist', /user chain/);
    fails('set.blocklist=3;BEFW', 1, 'set.blocklist', /loop/);
    fails('set.blocklist=3;INPUT', 1, 'set.blocklist', /built-in chain INPUT/);
    fails('set.blocklist=3;Input', 1, 'set.blocklist', /built-in chain INPUT/);
    fails('set.blocklist=3;nflog', 1, 'set.blocklist', /upper case \(NFLOG\)/);
  });

  test("BEFW's targets: LOG, NFLOG, RETURN and a user chain", () => {
    const c = parseConfig('set.audit=4;LOG\nset.trace=5;NFLOG\nset.skip=6;RETURN\nset.office=7;OFFICE_in-2\nset.quiet=NOOP', 'f');
    assert.deepEqual(c.customSets, [
      { name: 'audit', priority: 4, target: 'LOG' },
      { name: 'trace', priority: 5, target: 'NFLOG' },
      { name: 'skip', priority: 6, target: 'RETURN' },
      { name: 'office', priority: 7, target: 'chain:OFFICE_in-2' },
      { name: 'quiet', priority: 7, target: 'NOOP' },
    ]);
    assert.deepEqual(c.warnings, []);
  });

  test('a user chain is refused for firewall=nft, every other target is not', () => {
    fails('firewall=nft\nset.office=7;OFFICE', 2, 'set.office', /user chain.*table inet befw.*holds no chain OFFICE/);
    fails('set.office=OFFICE\nfirewall=nftc7', 1, 'set.office', /firewall=nftc7 runs nftables/);
    const c = parseConfig('firewall=nft\nset.a=LOG\nset.b=NFLOG\nset.c=RETURN\nset.d=DROP', 'f');
    assert.deepEqual(
      c.customSets.map((s) => s.target),
      ['LOG', 'NFLOG', 'RETURN', 'DROP'],
    );
    assert.equal(parseConfig('firewall=iptables\nset.office=7;OFFICE', 'f').customSets[0]?.target, 'chain:OFFICE');
  });

  test('rules_deny is built in', () => {
    fails('dc=x\nset.rules_deny=2;REJECT', 2, 'set.rules_deny', /built in/);
    fails('set.rules_deny=REJECT', 1, 'set.rules_deny', /built in/);
  });

  test('any integer priority, as BEFW; below 3 is a warning (rules_allow and rules_deny stay first)', () => {
    const c = parseConfig('set.early=2;ACCEPT\nset.zero=0;LOG\nset.neg=-5;DROP\nset.big=+123456789;RETURN', 'f');
    assert.deepEqual(c.customSets, [
      { name: 'early', priority: 2, target: 'ACCEPT' },
      { name: 'zero', priority: 0, target: 'LOG' },
      { name: 'neg', priority: -5, target: 'DROP' },
      { name: 'big', priority: 123456789, target: 'RETURN' },
    ]);
    assert.equal(c.warnings.length, 3);
    assert.match(
      c.warnings[0] ?? '',
      /set\.early=2;ACCEPT: priority 2 comes after rules_allow \(1\) and rules_deny \(2\).*ahead of the built-in sets/,
    );
    assert.match(c.warnings[1] ?? '', /set\.zero=0;LOG.*iptables-restore refuses/);
    assert.deepEqual(parseConfig('set.ok=3;ACCEPT', 'f').customSets, [{ name: 'ok', priority: 3, target: 'ACCEPT' }]);
    assert.deepEqual(parseConfig('set.ok=3;ACCEPT', 'f').warnings, []);
  });

  test('set names must fit the kernel with their _v6 twin', () => {
    fails(`set.${'a'.repeat(29)}=3;DROP`, 1, `set.${'a'.repeat(29)}`, /set name/);
    fails('set.foo_v6=3;DROP', 1, 'set.foo_v6', /_v6/);
    assert.equal(parseConfig(`set.${'a'.repeat(28)}=3;DROP`, 'f').customSets.length, 1);
  });

  test('bad management networks name the network', () => {
    fails('set.rules_allow=10.0.0.0/8;999.1.1.1', 1, 'set.rules_allow', /999\.1\.1\.1/);
    fails('set.rules_allow=10.0.0.0/33', 1, 'set.rules_allow');
    fails('set.rules_allow=010.0.0.0/8', 1, 'set.rules_allow');
    fails('set.rules_allow=10.0.0.0/8,10.1.0.0/16', 1, 'set.rules_allow', /networks/);
    fails('set.rules_allow=fe80::1%eth0', 1, 'set.rules_allow', /networks/);
  });

  test('control characters in keys are not echoed raw', () => {
    const e = fails('bad\u0007key=1', 1, 'bad\\x07key', /unknown key/);
    assert.doesNotMatch(e.message, /\u0007/);
  });
});

describe('parseConfig: firewall= as BEFW meant it, base_rules=', () => {
  test('nft is nftables; nftc7 too, with a warning; anything else is iptables', () => {
    assert.deepEqual(parseConfig('firewall=nft', 'f').firewall, { backend: 'nft', why: 'firewall=nft', warning: null });
    const c7 = parseConfig('firewall=nftc7', 'f').firewall;
    assert.equal(c7.backend, 'nft');
    assert.match(c7.warning ?? '', /nftc7.*runs as firewall=nft/);
    assert.deepEqual(parseConfig('firewall=iptables', 'f').firewall, { backend: 'iptables', why: 'firewall=iptables', warning: null });
    const other = parseConfig('firewall=ipset', 'f').firewall;
    assert.equal(other.backend, 'iptables');
    assert.match(other.warning ?? '', /neither nft nor nftc7: iptables, as BEFW read it/);
  });

  test('a path given to firewall= points to base_rules=', () => {
    const e = fails(
      'firewall=/etc/befw/base.rules',
      1,
      'firewall',
      /is a path: .*base ruleset file moved to its own key, base_rules=\/etc\/befw\/base\.rules/,
    );
    assert.equal(e.key, 'firewall');
  });

  test('base_rules= is the iptables base ruleset; with firewall=nft it is refused', () => {
    assert.equal(parseConfig('base_rules=/etc/befw/base.rules', 'f').baseRules, '/etc/befw/base.rules');
    fails('firewall=nft\nbase_rules=/etc/befw/base.rules', 2, 'base_rules', /nftables.*\/etc\/nftables\.conf/);
  });
});

describe('parseConfig: every problem at once, with suggestions', () => {
  test('an unknown key gets the closest known one', () => {
    fails('guard_shar=5', 1, 'guard_shar', /^unknown key; did you mean guard_share\?$/);
    fails('adress=127.0.0.1:8500', 1, 'adress', /did you mean address\?/);
    fails('nodname=web-01', 1, 'nodname', /did you mean nodename\?/);
    fails('xyzzy=1', 1, 'xyzzy', /^unknown key$/);
  });

  test('all problems in one error, by line, each with its line and key', () => {
    const text = ['dc=dc1', 'adress=127.0.0.1:8500', 'log_level=loud', 'no equals sign', 'dc=dc2', 'token=a', 'token_file=/t'].join('\n');
    let caught: unknown;
    try {
      parseConfig(text, '/etc/befw.conf');
    } catch (e) {
      caught = e;
    }
    assert.ok(caught instanceof ConfigError);
    assert.deepEqual(
      caught.problems.map((p) => [p.line, p.key]),
      [
        [2, 'adress'],
        [3, 'log_level'],
        [4, null],
        [5, 'dc'],
        [7, 'token_file'],
      ],
    );
    assert.equal(caught.line, 2, 'the first problem is the error own');
    assert.match(caught.problems[1]?.reason ?? '', /expected one of fatal, error/);
    assert.match(caught.problems[3]?.reason ?? '', /duplicate key \(first set on line 1\)/);
    assert.equal(caught.message.split('\n').length, 1, 'one line for the CLI');
    assert.match(
      caught.message,
      /^\/etc\/befw\.conf: 5 problems: \(1\) line 2 \(adress\): unknown key; did you mean address\? \(2\) line 3 \(log_level\): .* \(5\) line 7 \(token_file\): set token or token_file, not both$/,
    );
  });

  test('a file with a problem on every line lists 20 and counts the rest', () => {
    const text = Array.from({ length: 500 }, (_, i) => `bad${i}=1`).join('\n');
    assert.throws(
      () => parseConfig(text, '/etc/befw.conf'),
      (e: unknown) => e instanceof ConfigError && e.problems.length === 21 && e.problems[20]?.reason === 'and 480 more problems',
    );
  });

  test('a value that fails the schema is not checked again (one problem per key)', () => {
    const e = fails('resync_interval=0', 1, 'resync_interval', /whole seconds/);
    assert.equal(e.problems.length, 1);
  });
});
