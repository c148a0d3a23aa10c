import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import {
  DEFAULT_SERVICE_TEMPLATE,
  TemplateError,
  parseBaseTemplate,
  parseServiceTemplate,
} from '../../src/dataplane/iptables/templates.js';

const SHIPPED_SERVICE = new URL('../../../templates/iptables/service.rules', import.meta.url);
const SHIPPED_BASE = new URL('../../../templates/iptables/base.rules', import.meta.url);

function serviceError(text: string, line?: number, pattern?: RegExp): void {
  assert.throws(
    () => parseServiceTemplate(text, 'svc.rules'),
    (e: unknown) => {
      assert.ok(e instanceof TemplateError, `expected TemplateError, got ${String(e)}`);
      assert.equal(e.file, 'svc.rules');
      if (line !== undefined) assert.equal(e.line, line);
      if (pattern !== undefined) assert.match(e.message, pattern);
      assert.ok(e.message.startsWith(`svc.rules:${e.line}: `));
      return true;
    },
  );
}

function baseError(text: string, line?: number, pattern?: RegExp): void {
  assert.throws(
    () => parseBaseTemplate(text, 'base.rules'),
    (e: unknown) => {
      assert.ok(e instanceof TemplateError, `expected TemplateError, got ${String(e)}`);
      if (line !== undefined) assert.equal(e.line, line);
      if (pattern !== undefined) assert.match(e.message, pattern);
      return true;
    },
  );
}

const GOOD_BASE = [
  '# base ruleset',
  '*filter',
  ':INPUT DROP [0:0]',
  ':FORWARD DROP [0:0]',
  ':OUTPUT ACCEPT [0:0]',
  ':BEFW - [0:0]',
  '-A INPUT -i lo -j ACCEPT',
  '-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT',
  '-A INPUT -p {ICMP} -j ACCEPT',
  '-A INPUT -j BEFW',
  '-A INPUT -p tcp --dport 22 -j ACCEPT',
  'COMMIT',
  '',
].join('\n');

describe('parseServiceTemplate', () => {
  test('the built-in template', () => {
    assert.deepEqual(DEFAULT_SERVICE_TEMPLATE.lines, [
      { only: null, text: '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {SET} src -j ACCEPT' },
      { only: 'enforcing', text: '-A BEFW -p {PROTO} --dport {PORT} -j DROP' },
    ]);
  });

  test('comments, blank lines, mode prefixes and all placeholders', () => {
    const t = parseServiceTemplate(
      [
        '# comment',
        '',
        '   -A BEFW -p {PROTO} --dport {PORT} -m set --match-set {SET} src -m comment --comment "{NAME}" -j ACCEPT   ',
        'enforcing: -A BEFW -p {PROTO} --dport {PORT} -j DROP',
        'default:-A BEFW -p {PROTO} --dport {PORT} -j LOG',
      ].join('\n'),
      'svc.rules',
    );
    assert.deepEqual(t.lines, [
      { only: null, text: '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {SET} src -m comment --comment "{NAME}" -j ACCEPT' },
      { only: 'enforcing', text: '-A BEFW -p {PROTO} --dport {PORT} -j DROP' },
      { only: 'default', text: '-A BEFW -p {PROTO} --dport {PORT} -j LOG' },
    ]);
  });

  test('every rule must start with "-A BEFW "', () => {
    serviceError('-A BEFW -m set --match-set {SET} src -j ACCEPT\n-A INPUT -j ACCEPT', 2, /-A BEFW/);
    serviceError('-I BEFW -m set --match-set {SET} src -j ACCEPT', 1);
    serviceError('-A BEFWX -m set --match-set {SET} src -j ACCEPT', 1);
    serviceError('enforcing: -A INPUT -j DROP\n-A BEFW -m set --match-set {SET} src -j ACCEPT', 1);
    serviceError('A BEFW -m set --match-set {SET} src -j ACCEPT', 1);
  });

  test('unknown placeholders are rejected', () => {
    serviceError('-A BEFW -m set --match-set {SET} src -j {TARGET}', 1, /\{TARGET\}/);
    serviceError('-A BEFW -m set --match-set {set} src -j ACCEPT', 1, /placeholder/);
    serviceError('-A BEFW -m set --match-set {SET} src -p {ICMP} -j ACCEPT', 1, /placeholder/);
    serviceError('-A BEFW -m set --match-set {SET} src -j ACCEPT {}', 1, /placeholder/);
  });

  test('a template without {SET} is rejected', () => {
    serviceError('-A BEFW -p {PROTO} --dport {PORT} -j ACCEPT', 0, /\{SET\}/);
    serviceError('# only a comment', 0, /\{SET\}/);
    serviceError('', 0, /\{SET\}/);
  });

  test('characters iptables rules do not need are rejected', () => {
    for (const bad of [
      '-A BEFW -m set --match-set {SET} src -j ACCEPT; rm -rf /',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT $(reboot)',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT `id`',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT | tee',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT\t-j DROP',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT & x',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT > /tmp/x',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT [0:0]',
      '-A BEFW -m set --match-set {SET} src -j ACCEPT\u0000',
    ]) {
      serviceError(bad, 1, /characters/);
    }
  });

  test('surrounding whitespace, a trailing CR included, is trimmed', () => {
    const t = parseServiceTemplate('  -A BEFW -m set --match-set {SET} src -j ACCEPT\r\n', 'svc.rules');
    assert.deepEqual(t.lines, [{ only: null, text: '-A BEFW -m set --match-set {SET} src -j ACCEPT' }]);
  });

  test('a rule may not jump back into BEFW', () => {
    serviceError('-A BEFW -m set --match-set {SET} src -j BEFW', 1, /jump/);
    serviceError('-A BEFW -m set --match-set {SET} src -g BEFW', 1, /jump/);
    // Every spelling iptables-restore takes (each one made the whole chain fail to load).
    for (const j of ['--jump BEFW', '--goto BEFW', '-j "BEFW"', "-g 'BEFW'", '-jBEFW', '--jump=BEFW', '-j befw', '-j INPUT', '-g FORWARD'])
      serviceError(`-A BEFW -m set --match-set {SET} src ${j}`, 1, /jump back into BEFW or to a built-in chain/);
  });

  test('a rule line is one rule of BEFW: no second command, no table', () => {
    for (const extra of ['-j ACCEPT -I BEFW 1', '--append INPUT -j ACCEPT', '--table nat -j ACCEPT', '-t nat -j ACCEPT', '-j ACCEPT -F'])
      serviceError(`-A BEFW -m set --match-set {SET} src ${extra}`, 1, /one rule to BEFW, with no other command or table/);
    // Words that only look like commands in lower case are iptables options.
    assert.equal(parseServiceTemplate('-A BEFW -i eth0 -p tcp -m set --match-set {SET} src -j ACCEPT', 's').lines.length, 1);
  });

  test('the shipped templates/iptables/service.rules parses', (t) => {
    if (!existsSync(SHIPPED_SERVICE)) {
      t.skip('templates/iptables/service.rules does not exist yet');
      return;
    }
    const parsed = parseServiceTemplate(readFileSync(SHIPPED_SERVICE, 'utf8'), 'service.rules');
    assert.ok(parsed.lines.some((l) => l.text.includes('{SET}')));
    // The built-in template says it is the shipped one.
    assert.deepEqual(parsed.lines, DEFAULT_SERVICE_TEMPLATE.lines);
  });
});

describe('parseBaseTemplate', () => {
  test('a good base parses and keeps its text', () => {
    assert.equal(parseBaseTemplate(GOOD_BASE, 'base.rules').text, GOOD_BASE);
  });

  test('-I INPUT jump counts too', () => {
    const text = GOOD_BASE.replace('-A INPUT -j BEFW', '-I INPUT 1 -j BEFW');
    assert.equal(parseBaseTemplate(text, 'base.rules').text, text);
  });

  test('needs *filter', () => {
    baseError(GOOD_BASE.replace('*filter\n', ''), undefined, /filter/);
    baseError('# nothing\n', 0, /filter/);
  });

  test('only the filter table', () => {
    baseError(GOOD_BASE.replace('*filter', '*nat'), 2, /filter/);
    baseError(`${GOOD_BASE}*mangle\nCOMMIT\n`, undefined, /filter|COMMIT/);
  });

  test('needs :BEFW', () => {
    baseError(GOOD_BASE.replace(':BEFW - [0:0]\n', ''), 0, /BEFW/);
  });

  test('needs the INPUT jump to BEFW', () => {
    baseError(GOOD_BASE.replace('-A INPUT -j BEFW\n', ''), 0, /INPUT/);
    baseError(GOOD_BASE.replace('-A INPUT -j BEFW', '-A FORWARD -j BEFW'), 0, /INPUT/);
  });

  test('needs COMMIT and nothing after it', () => {
    baseError(GOOD_BASE.replace('COMMIT\n', ''), 0, /COMMIT/);
    baseError(`${GOOD_BASE}-A INPUT -j DROP\n`, 13, /after COMMIT/);
  });

  test('rules of the BEFW chain do not belong in the base', () => {
    baseError(GOOD_BASE.replace('COMMIT', '-A BEFW -j ACCEPT\nCOMMIT'), 12, /BEFW/);
    baseError(GOOD_BASE.replace('COMMIT', '-I BEFW 1 -j ACCEPT\nCOMMIT'), 12, /BEFW/);
    baseError(GOOD_BASE.replace('COMMIT', '-I BEFW -s 10.0.0.0/8 -j ACCEPT\nCOMMIT'), 12, /BEFW/);
    baseError(GOOD_BASE.replace('COMMIT', '--append BEFW -j ACCEPT\nCOMMIT'), 12, /BEFW/);
  });

  test('unknown placeholders and bad characters', () => {
    baseError(GOOD_BASE.replace('{ICMP}', '{SET}'), 9, /placeholder/);
    baseError(GOOD_BASE.replace('-A INPUT -i lo -j ACCEPT', '-A INPUT -i lo -j ACCEPT; reboot'), 7, /characters/);
    baseError(GOOD_BASE.replace(':OUTPUT ACCEPT [0:0]', ':OUTPUT ACCEPT [0:0] $x'), 5, /characters/);
  });

  test('rules before *filter', () => {
    baseError(`-A INPUT -j ACCEPT\n${GOOD_BASE}`, 1, /before/);
  });

  test('the shipped templates/iptables/base.rules parses', (t) => {
    if (!existsSync(SHIPPED_BASE)) {
      t.skip('templates/iptables/base.rules does not exist yet');
      return;
    }
    const text = readFileSync(SHIPPED_BASE, 'utf8');
    assert.equal(parseBaseTemplate(text, 'base.rules').text, text);
  });
});
