import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chainRuleLines, renderBaseRestore, renderChainRestore } from '../../src/dataplane/iptables/render.js';
import { DEFAULT_SERVICE_TEMPLATE, parseBaseTemplate, parseServiceTemplate } from '../../src/dataplane/iptables/templates.js';
import type { ChainRule } from '../../src/core/types.js';

const RULES: ChainRule[] = [
  { kind: 'static', set: 'rules_allow', target: 'ACCEPT' },
  { kind: 'static', set: 'rules_deny', target: 'REJECT' },
  { kind: 'static', set: 'blocklist', target: 'DROP' },
  { kind: 'service', service: 'web_tcp_8080', set: 'web_tcp_8080', proto: 'tcp', port: '8080', mode: 'enforcing' },
  { kind: 'service', service: 'web_tcp_8080', set: 'web_tcp_8080', proto: 'udp', port: '30000:30100', mode: 'enforcing' },
  { kind: 'service', service: 'dns_udp_53', set: 'dns_udp_53', proto: 'udp', port: '53', mode: 'default' },
];

describe('chainRuleLines', () => {
  test('IPv4: static rules, then service ACCEPT, DROP only when enforcing', () => {
    assert.deepEqual(chainRuleLines(RULES, 4, DEFAULT_SERVICE_TEMPLATE), [
      '-A BEFW -m set --match-set rules_allow src -j ACCEPT',
      '-A BEFW -m set --match-set rules_deny src -j REJECT',
      '-A BEFW -m set --match-set blocklist src -j DROP',
      '-A BEFW -p tcp --dport 8080 -m set --match-set web_tcp_8080 src -j ACCEPT',
      '-A BEFW -p tcp --dport 8080 -j DROP',
      '-A BEFW -p udp --dport 30000:30100 -m set --match-set web_tcp_8080 src -j ACCEPT',
      '-A BEFW -p udp --dport 30000:30100 -j DROP',
      '-A BEFW -p udp --dport 53 -m set --match-set dns_udp_53 src -j ACCEPT',
    ]);
  });

  test("BEFW's other set targets: LOG with a prefix naming the set, NFLOG group 0, RETURN, a user chain", () => {
    const rules: ChainRule[] = [
      { kind: 'static', set: 'audit', target: 'LOG' },
      { kind: 'static', set: 'a-very-long-set-name-of-28ch', target: 'LOG' },
      { kind: 'static', set: 'trace', target: 'NFLOG' },
      { kind: 'static', set: 'skip', target: 'RETURN' },
      { kind: 'static', set: 'office', target: 'chain:OFFICE_in' },
    ];
    assert.deepEqual(chainRuleLines(rules, 4, DEFAULT_SERVICE_TEMPLATE), [
      '-A BEFW -m set --match-set audit src -j LOG --log-prefix "befw audit "',
      // iptables' --log-prefix holds 29 characters
      '-A BEFW -m set --match-set a-very-long-set-name-of-28ch src -j LOG --log-prefix "befw a-very-long-set-name-of "',
      '-A BEFW -m set --match-set trace src -j NFLOG --nflog-group 0',
      '-A BEFW -m set --match-set skip src -j RETURN',
      '-A BEFW -m set --match-set office src -j OFFICE_in',
    ]);
    assert.deepEqual(chainRuleLines(rules.slice(0, 1), 6, DEFAULT_SERVICE_TEMPLATE), [
      '-A BEFW -m set --match-set audit_v6 src -j LOG --log-prefix "befw audit "',
    ]);
  });

  test('IPv6 uses the _v6 twins', () => {
    assert.deepEqual(chainRuleLines(RULES, 6, DEFAULT_SERVICE_TEMPLATE), [
      '-A BEFW -m set --match-set rules_allow_v6 src -j ACCEPT',
      '-A BEFW -m set --match-set rules_deny_v6 src -j REJECT',
      '-A BEFW -m set --match-set blocklist_v6 src -j DROP',
      '-A BEFW -p tcp --dport 8080 -m set --match-set web_tcp_8080_v6 src -j ACCEPT',
      '-A BEFW -p tcp --dport 8080 -j DROP',
      '-A BEFW -p udp --dport 30000:30100 -m set --match-set web_tcp_8080_v6 src -j ACCEPT',
      '-A BEFW -p udp --dport 30000:30100 -j DROP',
      '-A BEFW -p udp --dport 53 -m set --match-set dns_udp_53_v6 src -j ACCEPT',
    ]);
  });

  test('custom templates: {NAME} is the logical name, {SET} the kernel name; default: lines', () => {
    const t = parseServiceTemplate(
      [
        '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {SET} src -m comment --comment "{NAME}" -j ACCEPT',
        'default: -A BEFW -p {PROTO} --dport {PORT} -j LOG',
      ].join('\n'),
      't',
    );
    const rules: ChainRule[] = [
      {
        kind: 'service',
        service: 'a-very-long-logical-service-name_tcp_80',
        set: 'a-very-long-logica-0badf00d',
        proto: 'tcp',
        port: '80',
        mode: 'default',
      },
      { kind: 'service', service: 'x_tcp_1', set: 'x_tcp_1', proto: 'tcp', port: '1', mode: 'enforcing' },
    ];
    assert.deepEqual(chainRuleLines(rules, 6, t), [
      '-A BEFW -p tcp --dport 80 -m set --match-set a-very-long-logica-0badf00d_v6 src -m comment --comment "a-very-long-logical-service-name_tcp_80" -j ACCEPT',
      '-A BEFW -p tcp --dport 80 -j LOG',
      '-A BEFW -p tcp --dport 1 -m set --match-set x_tcp_1_v6 src -m comment --comment "x_tcp_1" -j ACCEPT',
    ]);
  });

  test('a placeholder used twice is replaced everywhere', () => {
    const t = parseServiceTemplate(
      '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {SET} src -m comment --comment "{SET} {PORT}" -j ACCEPT',
      't',
    );
    assert.deepEqual(chainRuleLines([RULES[5]!], 4, t), [
      '-A BEFW -p udp --dport 53 -m set --match-set dns_udp_53 src -m comment --comment "dns_udp_53 53" -j ACCEPT',
    ]);
  });

  test('no rules, no lines', () => {
    assert.deepEqual(chainRuleLines([], 4, DEFAULT_SERVICE_TEMPLATE), []);
  });
});

describe('renderChainRestore', () => {
  test('v4 without the jump', () => {
    assert.equal(
      renderChainRestore(RULES.slice(0, 2), 4, DEFAULT_SERVICE_TEMPLATE, false),
      '*filter\n:BEFW - [0:0]\n-A BEFW -m set --match-set rules_allow src -j ACCEPT\n-A BEFW -m set --match-set rules_deny src -j REJECT\nCOMMIT\n',
    );
  });

  test('v6 with insertJump: the INPUT jump goes in the same transaction, after the chain', () => {
    assert.equal(
      renderChainRestore([RULES[0]!], 6, DEFAULT_SERVICE_TEMPLATE, true),
      '*filter\n:BEFW - [0:0]\n-A BEFW -m set --match-set rules_allow_v6 src -j ACCEPT\n-I INPUT 1 -j BEFW\nCOMMIT\n',
    );
  });

  test('an empty chain still declares (flushes) BEFW', () => {
    assert.equal(renderChainRestore([], 4, DEFAULT_SERVICE_TEMPLATE, false), '*filter\n:BEFW - [0:0]\nCOMMIT\n');
  });
});

describe('renderBaseRestore', () => {
  const base = parseBaseTemplate(
    [
      '*filter',
      ':INPUT DROP [0:0]',
      ':BEFW - [0:0]',
      '-A INPUT -p {ICMP} -j ACCEPT',
      '-A INPUT -j BEFW',
      '-A INPUT -p {ICMP} --icmp-type 8 -j ACCEPT',
      'COMMIT',
      '',
      '',
    ].join('\n'),
    'base',
  );

  test('v4: {ICMP} is icmp and the chain rules sit right before COMMIT', () => {
    assert.equal(
      renderBaseRestore(base, RULES.slice(0, 1), 4, DEFAULT_SERVICE_TEMPLATE),
      [
        '*filter',
        ':INPUT DROP [0:0]',
        ':BEFW - [0:0]',
        '-A INPUT -p icmp -j ACCEPT',
        '-A INPUT -j BEFW',
        '-A INPUT -p icmp --icmp-type 8 -j ACCEPT',
        '-A BEFW -m set --match-set rules_allow src -j ACCEPT',
        'COMMIT',
        '',
      ].join('\n'),
    );
  });

  test('v6: {ICMP} is ipv6-icmp and sets are the _v6 twins', () => {
    const out = renderBaseRestore(base, RULES.slice(3, 4), 6, DEFAULT_SERVICE_TEMPLATE);
    assert.equal(
      out,
      [
        '*filter',
        ':INPUT DROP [0:0]',
        ':BEFW - [0:0]',
        '-A INPUT -p ipv6-icmp -j ACCEPT',
        '-A INPUT -j BEFW',
        '-A INPUT -p ipv6-icmp --icmp-type 8 -j ACCEPT',
        '-A BEFW -p tcp --dport 8080 -m set --match-set web_tcp_8080_v6 src -j ACCEPT',
        '-A BEFW -p tcp --dport 8080 -j DROP',
        'COMMIT',
        '',
      ].join('\n'),
    );
    assert.doesNotMatch(out, /\{ICMP\}/);
  });

  test('a base without a trailing newline still ends with exactly one', () => {
    const b = parseBaseTemplate('*filter\n:BEFW - [0:0]\n-A INPUT -j BEFW\nCOMMIT', 'b');
    assert.equal(renderBaseRestore(b, [], 4, DEFAULT_SERVICE_TEMPLATE), '*filter\n:BEFW - [0:0]\n-A INPUT -j BEFW\nCOMMIT\n');
  });

  test('an indented COMMIT is found', () => {
    const b = parseBaseTemplate('*filter\n:BEFW - [0:0]\n-A INPUT -j BEFW\n  COMMIT  \n', 'b');
    assert.equal(
      renderBaseRestore(b, [RULES[1]!], 4, DEFAULT_SERVICE_TEMPLATE),
      '*filter\n:BEFW - [0:0]\n-A INPUT -j BEFW\n-A BEFW -m set --match-set rules_deny src -j REJECT\n  COMMIT  \n',
    );
  });
});
