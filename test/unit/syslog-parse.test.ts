import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type SyslogMessage, parseSyslog } from '../../src/reactor/syslog/syslogMessage.js';

function ok(line: string): SyslogMessage {
  const r = parseSyslog(line);
  assert.ok(r.ok, `expected ${JSON.stringify(line)} to parse, got ${r.ok ? '' : r.error}`);
  return r.value;
}

function bad(line: string): string {
  const r = parseSyslog(line);
  assert.equal(r.ok, false, `expected ${JSON.stringify(line)} to be refused`);
  return r.ok ? '' : r.error;
}

describe('RFC 3164 (BSD syslog), including the issue lines', () => {
  test('"Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.0.0.1 port 47336 ssh2"', () => {
    const m = ok('Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.0.0.1 port 47336 ssh2');
    assert.deepEqual(m, {
      format: '3164',
      pri: null,
      timestamp: 'Aug 26 13:55:13',
      hostname: 'vyos',
      app: 'sshd',
      procid: '2755',
      msgid: null,
      msg: 'Failed password for root from 10.0.0.1 port 47336 ssh2',
      repeat: 1,
    });
  });

  test('the same line with a PRI, as a device sends it', () => {
    const m = ok('<38>Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.0.0.1 port 47336 ssh2');
    assert.equal(m.pri, 38);
    assert.equal(m.app, 'sshd');
    assert.equal(m.hostname, 'vyos');
  });

  test('"eth1: state DOWN flags 0x00001002 …" alone is all message (no header)', () => {
    const m = ok('eth1: state DOWN flags 0x00001002 …');
    assert.equal(m.format, 'bare');
    assert.equal(m.msg, 'eth1: state DOWN flags 0x00001002 …');
    assert.equal(m.app, null);
    assert.equal(m.hostname, null);
  });

  test('the interface line behind a header: the program is the tag, the message keeps the interface', () => {
    const m = ok(
      '<30>Aug 26 14:02:11 vyos netplugd[1021]: eth1: state DOWN flags 0x00001002 BROADCAST,MULTICAST -> 0x00001003 UP,BROADCAST,MULTICAST',
    );
    assert.equal(m.app, 'netplugd');
    assert.match(m.msg, /^eth1: state DOWN flags/);
  });

  test('a day padded with a space, no hostname, a tag without pid, ISO time stamps', () => {
    assert.equal(ok('<13>Aug  6 01:02:03 host cron: job').timestamp, 'Aug  6 01:02:03');
    const noHost = ok('Aug 26 13:55:13 sshd[2755]: Invalid user x from 10.0.0.1');
    assert.equal(noHost.hostname, null);
    assert.equal(noHost.app, 'sshd');
    const noPid = ok('<4>Aug 26 13:55:13 vyos kernel: [ 12.345] eth0: link down');
    assert.equal(noPid.app, 'kernel');
    assert.equal(noPid.procid, null);
    const iso = ok('<86>2024-08-26T13:55:13.123456+02:00 web-01 sshd-session[99]: Failed password for root from 2001:db8::5 port 22 ssh2');
    assert.equal(iso.timestamp, '2024-08-26T13:55:13.123456+02:00');
    assert.equal(iso.hostname, 'web-01');
    assert.equal(iso.app, 'sshd-session');
  });

  test('a header without a valid tag keeps the rest as message', () => {
    const m = ok('<13>Aug 26 13:55:13 host this is not a tag line');
    assert.equal(m.hostname, 'host');
    assert.equal(m.app, null);
    assert.equal(m.msg, 'this is not a tag line');
  });

  test('a bad PRI is refused', () => {
    for (const l of ['<>x', '<192>x', '<1000>x', '<01>x', '<a>x', '<13x']) assert.match(bad(l), /bad PRI/, l);
    assert.equal(ok('<0>x').pri, 0);
    assert.equal(ok('<191>x').pri, 191);
  });
});

describe('rsyslog\'s "message repeated N times"', () => {
  test('a whole inner line of another program is not unwrapped (anyone can log as any program)', () => {
    const m = ok(
      '<13>Aug 26 21:59:03 vyos vyos: message repeated 4 times: [  Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.10.10.132 port 47336 ssh2]',
    );
    assert.equal(m.repeatRefused, true);
    assert.equal(m.repeat, 1);
    assert.equal(m.app, 'vyos');
    const nginx = ok('<13>Aug 26 21:59:03 web nginx[1]: message repeated 999999999 times: [ Aug 26 13:55:13 web sshd[1]: Failed password]');
    assert.equal(nginx.repeatRefused, true);
    // The same program inside: unwrapped, its message and count.
    const same = ok(
      '<38>Aug 26 21:59:03 vyos sshd[2755]: message repeated 4 times: [  Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.10.10.132 port 47336 ssh2]',
    );
    assert.equal(same.repeat, 4);
    assert.equal(same.app, 'sshd');
    assert.equal(same.msg, 'Failed password for root from 10.10.10.132 port 47336 ssh2');
  });

  test("rsyslog's own form: the outer tag is the program, the inner text the message", () => {
    const m = ok(
      '<38>Aug 26 21:59:03 vyos sshd[2755]: message repeated 3 times: [ Failed password for invalid user admin from 198.51.100.5 port 1 ssh2]',
    );
    assert.equal(m.repeat, 3);
    assert.equal(m.app, 'sshd');
    assert.equal(m.msg, 'Failed password for invalid user admin from 198.51.100.5 port 1 ssh2');
  });

  test('in RFC 5424 too; malformed repeats are not unwrapped; empty ones are refused', () => {
    assert.equal(
      ok('<38>1 2024-08-26T13:55:13Z vyos sshd 2755 - - message repeated 2 times: [ Invalid user x from 198.51.100.5]').repeat,
      2,
    );
    const notRepeat = ok('<38>Aug 26 21:59:03 vyos sshd[1]: message repeated 0 times: [ x]');
    assert.equal(notRepeat.repeat, 1);
    assert.match(notRepeat.msg, /^message repeated 0/);
    assert.match(bad('<38>Aug 26 21:59:03 vyos sshd[1]: message repeated 2 times: [   ]'), /without a message/);
  });
});

describe('RFC 5424', () => {
  test('all header fields, structured data, BOM', () => {
    const m = ok(
      '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog 1234 ID47 [exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"][other@1 a="\\"]\\\\"] \ufeffAn application event',
    );
    assert.deepEqual(m, {
      format: '5424',
      pri: 165,
      timestamp: '2003-10-11T22:14:15.003Z',
      hostname: 'mymachine.example.com',
      app: 'evntslog',
      procid: '1234',
      msgid: 'ID47',
      msg: 'An application event',
      repeat: 1,
    });
  });

  test('logger --rfc5424 output, NILVALUEs, no message', () => {
    const m = ok(
      '<38>1 2024-08-26T13:55:13.512345+00:00 web-01 sshd 2755 - [timeQuality tzKnown="1" isSynced="0"] Failed password for root from 198.51.100.5 port 1 ssh2',
    );
    assert.equal(m.app, 'sshd');
    assert.equal(m.msgid, null);
    const nil = ok('<13>1 - - - - - -');
    assert.deepEqual([nil.timestamp, nil.hostname, nil.app, nil.procid, nil.msgid, nil.msg], [null, null, null, null, null, '']);
  });

  test('broken headers are refused with the field named', () => {
    assert.match(bad('<13>2 - - - - - -'), /version 2/);
    assert.match(bad('<13>1 yesterday host app - - - m'), /TIMESTAMP/);
    assert.match(bad('<13>1 - host'), /APP-NAME/);
    assert.match(bad('<13>1 - host app - - [x a="1" m'), /SD-ELEMENT|SD-PARAM|unterminated/);
    assert.match(bad('<13>1 - host app - - [x a="1]'), /unterminated/);
    assert.match(bad('<13>1 - host app - - x m'), /STRUCTURED-DATA/);
    assert.match(bad('<13>1 - host app - - -m'), /space after STRUCTURED-DATA/);
    assert.match(bad(`<13>1 - ${'h'.repeat(256)} app - - - m`), /HOSTNAME/);
  });
});

describe('parseSyslog: properties', () => {
  const tokens = fc.constantFrom(
    '<',
    '>',
    '13',
    '1',
    ' ',
    '-',
    '[',
    ']',
    '"',
    '\\',
    '=',
    'Aug',
    '26',
    '13:55:13',
    'vyos',
    'sshd',
    '[2755]',
    ':',
    'message repeated ',
    '4 times: ',
    'Failed password',
    '\ufeff',
    '2024-08-26T13:55:13Z',
    '\n',
    '\u0000',
  );
  const lines = fc.oneof(
    fc.string({ maxLength: 300 }),
    fc.array(tokens, { maxLength: 40 }).map((t) => t.join('')),
  );

  test('never throws; what it returns is bounded by the line', () => {
    fc.assert(
      fc.property(lines, (line) => {
        const r = parseSyslog(line);
        if (!r.ok) {
          assert.ok(r.error.length > 0);
          return;
        }
        const v = r.value;
        assert.ok(v.msg.length <= line.length);
        assert.ok(v.repeat >= 1 && Number.isSafeInteger(v.repeat));
        if (v.pri !== null) assert.ok(v.pri >= 0 && v.pri <= 191);
        for (const f of [v.hostname, v.app, v.procid, v.msgid]) if (f !== null) assert.ok(f.length <= 255 && !f.includes(' '));
      }),
      { seed: 6201, numRuns: 3000 },
    );
  });

  test('a header built from parts is read back as those parts', () => {
    const word = fc
      .string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyz0123456789-_.'.split('')), minLength: 1, maxLength: 20 })
      .filter((w) => w !== '-'); // "-" is 5424's NILVALUE
    fc.assert(
      fc.property(
        fc.nat(191),
        word,
        word,
        fc.nat(99999),
        fc.string({ maxLength: 80 }).filter((m) => !m.startsWith('message repeated ')),
        (pri, host, app, pid, msg) => {
          const v = ok(`<${pri}>Aug 26 13:55:13 ${host} ${app}[${pid}]: ${msg}`);
          assert.deepEqual([v.pri, v.hostname, v.app, v.procid, v.msg], [pri, host, app, String(pid), msg]);
          const f = ok(`<${pri}>1 2024-08-26T13:55:13Z ${host} ${app} ${pid} - - ${msg}`);
          assert.deepEqual(
            [f.pri, f.hostname, f.app, f.procid, f.msg],
            [pri, host, app, String(pid), msg.charCodeAt(0) === 0xfeff ? msg.slice(1) : msg],
          );
        },
      ),
      { seed: 6202, numRuns: 500 },
    );
  });
});
