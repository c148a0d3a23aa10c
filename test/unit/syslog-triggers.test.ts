import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  BUILTIN_TRIGGERS,
  type MatchProblem,
  type TriggerSpec,
  TriggerSet,
  compileTrigger,
  matchFields,
} from '../../src/reactor/syslog/triggers.js';
import { parseSyslog } from '../../src/reactor/syslog/syslogMessage.js';

const builtins = new TriggerSet(Object.values(BUILTIN_TRIGGERS).flat().map(compileTrigger));

function matchLine(
  line: string,
  set = builtins,
): { names: string[]; subjects: string[]; problems: MatchProblem[]; fields: Record<string, string>[] } {
  const r = parseSyslog(line);
  assert.ok(r.ok, r.ok ? '' : r.error);
  const problems: MatchProblem[] = [];
  const m = set.match(r.value.app, r.value.msg, (p) => problems.push(p));
  return { names: m.map((x) => x.trigger.name), subjects: m.map((x) => x.subject), problems, fields: m.map((x) => matchFields(x)) };
}

describe('built-in sshd triggers', () => {
  test('"Failed password for root from 10.0.0.1 port 47336 ssh2" (the issue line)', () => {
    const r = matchLine('Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.0.0.1 port 47336 ssh2');
    assert.deepEqual(r.names, ['sshd-failed-password']);
    assert.deepEqual(r.subjects, ['10.0.0.1']);
    assert.equal(r.fields[0]?.user, 'root');
  });

  test("a repeat wrapped by another program does not match; sshd's own does", () => {
    const other = matchLine(
      '<13>Aug 26 21:59:03 vyos vyos: message repeated 4 times: [  Aug 26 13:55:13 vyos sshd[2755]: Failed password for root from 10.10.10.132 port 47336 ssh2]',
    );
    assert.deepEqual(other.subjects, []);
    const own = matchLine(
      '<38>Aug 26 21:59:03 vyos sshd[2755]: message repeated 4 times: [ Failed password for root from 10.10.10.132 port 47336 ssh2]',
    );
    assert.deepEqual(own.subjects, ['10.10.10.132']);
  });

  /**
   * Real OpenSSH 8.x / 9.x / 10.x lines (auth.c, auth2.c, sshd-session, pam_unix), each with what
   * must be made of it: the trigger and attacker, or nothing (lines that are not a failed
   * attempt of their own, or that would count one attempt twice).
   */
  const OPENSSH: readonly [string, string, string | null, string | null][] = [
    ['sshd', 'Failed password for root from 198.51.100.9 port 47336 ssh2', 'sshd-failed-password', '198.51.100.9'],
    ['sshd', 'Failed password for invalid user admin from 198.51.100.9 port 47336 ssh2', 'sshd-failed-password', '198.51.100.9'],
    ['sshd-session', 'Failed password for root from 2001:db8::9 port 22 ssh2', 'sshd-failed-password', '2001:db8::9'],
    ['sshd', 'Failed keyboard-interactive/pam for invalid user x from 198.51.100.9 port 22 ssh2', 'sshd-failed-password', '198.51.100.9'],
    ['sshd-auth', 'Failed password for root from 198.51.100.9 port 22 ssh2', 'sshd-failed-password', '198.51.100.9'],
    ['sshd', 'Invalid user admin from 198.51.100.9 port 47336', 'sshd-invalid-user', '198.51.100.9'],
    ['sshd', 'Invalid user  from 198.51.100.9 port 47336', 'sshd-invalid-user', '198.51.100.9'],
    ['sshd', 'Invalid user admin from 198.51.100.9', 'sshd-invalid-user', '198.51.100.9'], // OpenSSH 7.4 and older: no port
    [
      'sshd',
      'error: maximum authentication attempts exceeded for root from 198.51.100.9 port 47336 ssh2 [preauth]',
      'sshd-max-auth-attempts',
      '198.51.100.9',
    ],
    [
      'sshd-session',
      'error: maximum authentication attempts exceeded for invalid user oracle from 198.51.100.9 port 47336 ssh2 [preauth]',
      'sshd-max-auth-attempts',
      '198.51.100.9',
    ],
    [
      'sshd',
      'pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.9  user=root',
      'sshd-pam-auth-failure',
      '198.51.100.9',
    ],
    [
      'sshd',
      'pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.9',
      'sshd-pam-auth-failure',
      '198.51.100.9',
    ],
    // Not a failed attempt of its own (a disconnect after one, a summary, a success, a key probe).
    ['sshd', 'Connection closed by authenticating user root 198.51.100.9 port 47336 [preauth]', null, null],
    ['sshd', 'Connection closed by invalid user admin 198.51.100.9 port 47336 [preauth]', null, null],
    ['sshd', 'Disconnected from invalid user admin 198.51.100.9 port 47336 [preauth]', null, null],
    ['sshd', 'Disconnected from authenticating user root 198.51.100.9 port 47336 [preauth]', null, null],
    ['sshd', 'Received disconnect from 198.51.100.9 port 47336:11: Bye Bye [preauth]', null, null],
    ['sshd', 'Disconnecting invalid user admin 198.51.100.9 port 47336: Too many authentication failures [preauth]', null, null],
    ['sshd', 'Connection closed by 198.51.100.9 port 47336 [preauth]', null, null],
    ['sshd', 'PAM 2 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.9  user=root', null, null],
    ['sshd', 'Accepted password for deploy from 198.51.100.9 port 47336 ssh2', null, null],
    ['sshd', 'Failed publickey for root from 198.51.100.9 port 47336 ssh2: RSA SHA256:Zm9vYmFyYmF6cXV4', null, null],
    ['sshd', 'Failed none for invalid user x from 198.51.100.9 port 47336 ssh2', null, null],
    ['sshd', 'pam_unix(sshd:auth): check pass; user unknown', null, null],
  ];

  for (const [program, msg, trigger, attacker] of OPENSSH) {
    test(`OpenSSH: ${program}: ${msg.slice(0, 70)}`, () => {
      const r = matchLine(`<38>Nov 21 02:00:01 web-01 ${program}[4242]: ${msg}`);
      assert.deepEqual(r.names, trigger === null ? [] : [trigger]);
      assert.deepEqual(r.subjects, attacker === null ? [] : [attacker]);
    });
  }

  test('user names that hold "from ADDR port N", quotes or trailing text never name the attacker', () => {
    const REAL = '198.51.100.9';
    const VICTIM = '192.0.2.77';
    const hostile = [
      `x from ${VICTIM} port 1`,
      `x from ${VICTIM} port 1 ssh2`,
      `x from ${VICTIM} port 1 ssh2 [preauth]`,
      `"x from ${VICTIM} port 1"`,
      `x' from ${VICTIM} port 1 '`,
      `from ${VICTIM}`,
      `${VICTIM}`,
      `rhost=${VICTIM}`,
      `x from ${VICTIM} port 1 from ${VICTIM} port 2`,
    ];
    for (const user of hostile) {
      const lines = [
        `Failed password for invalid user ${user} from ${REAL} port 47336 ssh2`,
        `Failed keyboard-interactive/pam for invalid user ${user} from ${REAL} port 47336 ssh2`,
        `Invalid user ${user} from ${REAL} port 47336`,
        `error: maximum authentication attempts exceeded for invalid user ${user} from ${REAL} port 47336 ssh2 [preauth]`,
        `pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=${REAL}  user=${user}`,
      ];
      for (const l of lines) {
        const r = matchLine(`<38>Nov 21 02:00:01 web-01 sshd[4242]: ${l}`);
        assert.deepEqual(r.subjects, [REAL], l);
      }
      // Lines that only the user name makes look like a failure match nothing.
      for (const l of [
        `Connection closed by invalid user ${user} ${REAL} port 47336 [preauth]`,
        `Accepted password for ${user} from ${REAL} port 1 ssh2`,
      ]) {
        assert.deepEqual(matchLine(`<38>Nov 21 02:00:01 web-01 sshd[4242]: ${l}`).subjects, [], l);
      }
    }
    // Trailing text after sshd's own tail: not a line sshd writes, so not counted.
    assert.deepEqual(
      matchLine(`<38>Nov 21 02:00:01 web-01 sshd[4242]: Failed password for root from ${VICTIM} port 1 ssh2 and more`).subjects,
      [],
    );
    assert.deepEqual(matchLine(`<38>Nov 21 02:00:01 web-01 sshd[4242]: Invalid user x from ${VICTIM} port 1 x`).subjects, []);
  });

  test('property: whatever the user name, the attacker is the address sshd appended', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), fc.integer({ min: 1, max: 65535 }), (user, port) => {
        const clean = user.replace(/[\u0000-\u001f\u007f\n]/g, '?');
        const r = matchLine(
          `<38>Nov 21 02:00:01 web-01 sshd[4242]: Failed password for invalid user ${clean} from 198.51.100.9 port ${port} ssh2`,
        );
        assert.deepEqual(r.subjects, ['198.51.100.9'], clean);
      }),
      { seed: 1102, numRuns: 1000 },
    );
  });

  test('invalid users, max attempts, PAM failures; sshd and sshd-session; IPv4 and IPv6', () => {
    const cases: [string, string, string][] = [
      [
        '<38>Aug 26 13:55:13 h sshd[1]: Failed password for invalid user admin from 198.51.100.5 port 2 ssh2',
        'sshd-failed-password',
        '198.51.100.5',
      ],
      [
        '<38>Aug 26 13:55:13 h sshd-session[1]: Failed password for root from 2001:db8::5 port 2 ssh2',
        'sshd-failed-password',
        '2001:db8::5',
      ],
      [
        '<38>Aug 26 13:55:13 h sshd[1]: Failed password for root from ::ffff:198.51.100.6 port 2 ssh2',
        'sshd-failed-password',
        '198.51.100.6',
      ],
      [
        '<38>Aug 26 13:55:13 h sshd[1]: Failed keyboard-interactive/pam for invalid user x from 203.0.113.9 port 2 ssh2',
        'sshd-failed-password',
        '203.0.113.9',
      ],
      ['<38>Aug 26 13:55:13 h sshd[1]: Invalid user oracle from 198.51.100.7 port 40000', 'sshd-invalid-user', '198.51.100.7'],
      ['<38>Aug 26 13:55:13 h sshd-session[1]: Invalid user  from 2001:DB8:0::7 port 40000', 'sshd-invalid-user', '2001:db8::7'],
      ['<38>Aug 26 13:55:13 h sshd[1]: Invalid user x from 198.51.100.8', 'sshd-invalid-user', '198.51.100.8'],
      [
        '<38>Aug 26 13:55:13 h sshd[1]: error: maximum authentication attempts exceeded for root from 198.51.100.9 port 22 ssh2 [preauth]',
        'sshd-max-auth-attempts',
        '198.51.100.9',
      ],
      [
        '<38>Aug 26 13:55:13 h sshd[1]: error: maximum authentication attempts exceeded for invalid user a from 2001:db8::9 port 22 ssh2 [preauth]',
        'sshd-max-auth-attempts',
        '2001:db8::9',
      ],
      [
        '<38>Aug 26 13:55:13 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=198.51.100.10  user=root',
        'sshd-pam-auth-failure',
        '198.51.100.10',
      ],
      [
        '<38>Aug 26 13:55:13 h sshd-session[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=2001:db8::10',
        'sshd-pam-auth-failure',
        '2001:db8::10',
      ],
      [
        '<38>1 2024-08-26T13:55:13Z h sshd 1 - - Failed password for root from 198.51.100.11 port 1 ssh2',
        'sshd-failed-password',
        '198.51.100.11',
      ],
    ];
    for (const [line, name, subject] of cases) {
      const r = matchLine(line);
      assert.deepEqual(r.names, [name], line);
      assert.deepEqual(r.subjects, [subject], line);
    }
  });

  test('lines that are not failures, or not from sshd, do not match', () => {
    for (const line of [
      '<38>Aug 26 13:55:13 h sshd[1]: Accepted publickey for root from 198.51.100.5 port 2 ssh2',
      '<38>Aug 26 13:55:13 h sshd[1]: Failed publickey for root from 198.51.100.5 port 2 ssh2',
      '<38>Aug 26 13:55:13 h cron[1]: Failed password for root from 198.51.100.5 port 2 ssh2',
      'Failed password for root from 198.51.100.5 port 2 ssh2', // no header: no program
      '<38>Aug 26 13:55:13 h sshd[1]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=attacker.example  user=root',
    ]) {
      const r = matchLine(line);
      assert.deepEqual(r.names, [], line);
    }
  });

  test('an address-shaped subject that is no address is reported, not matched', () => {
    const r = matchLine('<38>Aug 26 13:55:13 h sshd[1]: Failed password for root from 999.1.1.1 port 2 ssh2');
    assert.deepEqual(r.names, []);
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]?.error ?? '', /not an IP address/);
  });
});

describe('built-in interface trigger', () => {
  test('"eth1: state DOWN flags 0x00001002 …" (the issue line), bare and behind headers', () => {
    for (const line of [
      'eth1: state DOWN flags 0x00001002 …',
      '<30>Aug 26 14:02:11 vyos netplugd[1021]: eth1: state DOWN flags 0x00001002 BROADCAST,MULTICAST -> 0x00001003 UP,BROADCAST,MULTICAST',
      '<4>Aug 26 14:02:11 vyos kernel: [ 1234.567] eth1: state DOWN',
    ]) {
      const r = matchLine(line);
      assert.deepEqual(r.names, ['iface-down'], line);
      assert.deepEqual(r.subjects, ['eth1'], line);
    }
    assert.deepEqual(matchLine('eth1.10: state DOWN flags 0x1').subjects, ['eth1.10']);
  });

  test('other states and other words do not match', () => {
    for (const line of [
      'eth1: state UP flags 0x00001003',
      'eth1: state DOWNLOAD',
      'eth1 state DOWN',
      'averyveryverylongname0: state DOWN',
    ]) {
      assert.deepEqual(matchLine(line).names, [], line);
    }
  });
});

describe('configured triggers', () => {
  const spec = (over: Partial<TriggerSpec>): TriggerSpec => ({
    name: 't',
    event: 'e',
    programs: [],
    pattern: '(?<attacker>\\S+)',
    subject: 'attacker',
    subjectKind: 'ip',
    perDevice: false,
    ...over,
  });

  test('compile errors and a missing subject group are refused with a reason', () => {
    assert.throws(() => compileTrigger(spec({ pattern: '(unclosed' })), /does not compile/);
    assert.throws(() => compileTrigger(spec({ pattern: 'from (?<ip>\\S+)' })), /no named group "attacker"/);
    assert.throws(() => compileTrigger(spec({ pattern: '(?<attacker>\\S+) (?<a$b>x)' })), /group name/);
  });

  test('programs narrow a rule; at most one rule per event fires for a message', () => {
    const set = new TriggerSet([
      compileTrigger(spec({ name: 'nginx-a', event: 'http-auth', programs: ['nginx'], pattern: 'client: (?<attacker>[0-9.]+)' })),
      compileTrigger(spec({ name: 'nginx-b', event: 'http-auth', programs: ['nginx'], pattern: 'client: (?<attacker>[0-9.]+), server' })),
      compileTrigger(spec({ name: 'any', event: 'other', programs: [], pattern: 'client: (?<attacker>[0-9.]+)' })),
    ]);
    assert.deepEqual(
      set.match('nginx', 'password mismatch, client: 198.51.100.5, server: x').map((m) => m.trigger.name),
      ['nginx-a', 'any'],
    );
    assert.deepEqual(
      set.match('apache', 'client: 198.51.100.5, server').map((m) => m.trigger.name),
      ['any'],
    );
    assert.deepEqual(
      set.match(null, 'client: 198.51.100.5').map((m) => m.trigger.name),
      ['any'],
    );
    assert.deepEqual(set.events.sort(), ['http-auth', 'other']);
  });

  test('name subjects are bounded tokens', () => {
    const set = new TriggerSet([
      compileTrigger(spec({ pattern: 'user (?<who>.*)$', subject: 'who', subjectKind: 'name', perDevice: true })),
    ]);
    assert.deepEqual(
      set.match(null, 'user alice').map((m) => m.subject),
      ['alice'],
    );
    const problems: MatchProblem[] = [];
    assert.deepEqual(
      set.match(null, 'user a b', (p) => problems.push(p)),
      [],
    );
    assert.equal(problems.length, 1);
  });

  test('property: any message text yields only valid subjects, never an exception', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('sshd', 'sshd-session', null, 'kernel'),
        fc.string({ maxLength: 200 }),
        fc.constantFrom('', 'Failed password for root from ', 'Invalid user x from ', 'eth0: state DOWN '),
        (app, tail, head) => {
          for (const m of builtins.match(app, head + tail)) {
            if (m.trigger.subjectKind === 'ip') assert.match(m.subject, /^[0-9a-f.:]+$/);
            else assert.match(m.subject, /^[A-Za-z0-9._@-]{1,15}$/);
          }
        },
      ),
      { seed: 6301, numRuns: 2000 },
    );
  });
});
