import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_TTL_SECONDS, parseDuration, parseIsoTime, parseTime, rejectExpiry, resolveExpiry } from '../../src/cli/duration.js';
import { UsageError } from '../../src/cli/access/errors.js';

// A fixed "now" with a fractional second, so rounding is visible: 2025-06-30T12:00:00.750Z.
const NOW_MS = Date.UTC(2025, 5, 30, 12, 0, 0, 750);
const NOW_S = Math.floor(NOW_MS / 1000);

function usage(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof UsageError, `expected a UsageError, got ${String(err)}`);
    assert.match(err.message, pattern);
    return true;
  });
}

describe('parseDuration', () => {
  test('every unit', () => {
    assert.equal(parseDuration('30s'), 30);
    assert.equal(parseDuration('15m'), 900);
    assert.equal(parseDuration('2h'), 7200);
    assert.equal(parseDuration('7d'), 604_800);
    assert.equal(parseDuration('2w'), 1_209_600);
    assert.equal(parseDuration('1s'), 1);
  });

  test('compound durations: each unit once, largest first', () => {
    assert.equal(parseDuration('1h30m'), 5400);
    assert.equal(parseDuration('1w2d12h'), 604_800 + 2 * 86_400 + 12 * 3600);
    assert.equal(parseDuration('2d'), 172_800);
    assert.equal(parseDuration('90s'), 90);
    assert.equal(parseDuration('1h0m30s'), 3630);
    assert.equal(parseDuration('90m'), 5400);
  });

  test('garbage is refused with the wrong part named', () => {
    usage(() => parseDuration('1h30x'), /^--ttl "1h30x": unknown unit "x"; units are s, m, h, d and w$/);
    usage(() => parseDuration('2hours'), /unknown unit "hours"/);
    usage(() => parseDuration('2H'), /unknown unit "H"/);
    usage(() => parseDuration('2y'), /unknown unit "y"/);
    usage(() => parseDuration('2 h'), /unknown unit " h"/);
    usage(() => parseDuration('2'), /"2" has no unit; add s, m, h, d or w \(e\.g\. 2s\)/);
    usage(() => parseDuration('1h30'), /"30" has no unit/);
    usage(() => parseDuration('1.5h'), /whole numbers only: write 1h30m, not 1\.5h/);
    usage(() => parseDuration('30m1h'), /"h" out of place: write each unit once, largest first/);
    usage(() => parseDuration('1h1h'), /"h" out of place/);
    usage(() => parseDuration('0s'), /is zero/);
    usage(() => parseDuration('0h0m'), /is zero/);
    usage(() => parseDuration('02h'), /no leading zeros/);
    usage(() => parseDuration(''), /empty/);
    for (const bad of ['h', ' 2h', '-1h', '+2h', '２h', 'e3s']) usage(() => parseDuration(bad), /a number first, then a unit/);
    for (const bad of ['2h ', '2h\n', '1e3s']) usage(() => parseDuration(bad), /unknown unit/);
    usage(() => parseDuration('5x', '--for'), /^--for "5x": unknown unit "x"/);
  });

  test('caps at 3650 days and says to use --forever', () => {
    assert.equal(parseDuration('3650d'), MAX_TTL_SECONDS);
    assert.equal(parseDuration('521w'), 521 * 604_800);
    usage(() => parseDuration('3651d'), /longer than 3650d; use --forever/);
    usage(() => parseDuration('9999999999w'), /longer than 3650d/);
  });

  test('property: a compound duration is the sum of its parts', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 99 }), { minLength: 5, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        (ns, use) => {
          const units = ['w', 'd', 'h', 'm', 's'] as const;
          const size = { w: 604_800, d: 86_400, h: 3600, m: 60, s: 1 } as const;
          const parts = units.filter((_, i) => use[i] === true);
          if (parts.length === 0) return;
          const text = parts.map((u) => `${ns[units.indexOf(u)]}${u}`).join('');
          const want = parts.reduce((sum, u) => sum + (ns[units.indexOf(u)] as number) * size[u], 0);
          assert.equal(parseDuration(text), want, text);
        },
      ),
    );
  });

  test('property: any accepted text is n times its unit, positive and capped', () => {
    const units = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 } as const;
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom('s', 'm', 'h', 'd', 'w'), (n, u) => {
        const want = n * units[u];
        if (want > MAX_TTL_SECONDS) assert.throws(() => parseDuration(`${n}${u}`), UsageError);
        else assert.equal(parseDuration(`${n}${u}`), want);
      }),
    );
  });

  test('property: arbitrary strings either parse to a positive integer or throw a UsageError', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          const v = parseDuration(s);
          assert.ok(Number.isSafeInteger(v) && v > 0 && v <= MAX_TTL_SECONDS);
        } catch (err) {
          assert.ok(err instanceof UsageError);
        }
      }),
    );
  });
});

describe('parseIsoTime', () => {
  test('UTC and offsets', () => {
    assert.equal(parseIsoTime('2025-06-30T18:00:00Z'), Date.UTC(2025, 5, 30, 18));
    assert.equal(parseIsoTime('2025-06-30T18:00Z'), Date.UTC(2025, 5, 30, 18));
    assert.equal(parseIsoTime('2025-06-30 18:00:00z'), Date.UTC(2025, 5, 30, 18));
    assert.equal(parseIsoTime('2025-06-30T20:00:00+02:00'), Date.UTC(2025, 5, 30, 18));
    assert.equal(parseIsoTime('2025-06-30T20:00+0200'), Date.UTC(2025, 5, 30, 18));
    assert.equal(parseIsoTime('2025-06-30T13:30:00-04:30'), Date.UTC(2025, 5, 30, 18));
    assert.equal(parseIsoTime('2025-06-30T18:00:00.250Z'), Date.UTC(2025, 5, 30, 18, 0, 0, 250));
    assert.equal(parseIsoTime('2024-02-29T00:00:00Z'), Date.UTC(2024, 1, 29));
  });

  test('a zone is required: local times are ambiguous across a fleet', () => {
    usage(() => parseIsoTime('2025-06-30T18:00:00'), /expected an ISO 8601 time with a zone/);
    usage(() => parseIsoTime('2025-06-30'), /expected an ISO 8601 time with a zone/);
  });

  test('impossible dates are errors, not rolled over', () => {
    usage(() => parseIsoTime('2025-02-29T00:00:00Z'), /not a real date and time/);
    usage(() => parseIsoTime('2025-13-01T00:00:00Z'), /not a real date and time/);
    usage(() => parseIsoTime('2025-06-31T00:00:00Z'), /not a real date and time/);
    usage(() => parseIsoTime('2025-06-30T24:00:00Z'), /not a real date and time/);
    usage(() => parseIsoTime('2025-06-30T18:60:00Z'), /not a real date and time/);
    usage(() => parseIsoTime('2025-06-30T18:00:00+24:00'), /bad zone offset/);
  });

  test('garbage', () => {
    for (const bad of ['tomorrow', '1751306400', '', '2025-06-30T18:00:00Z; rm -rf /', '30/06/2025 18:00']) {
      usage(() => parseIsoTime(bad), /^--until ".*": expected an ISO 8601 time/s);
    }
  });
});

describe('parseTime (--until, --at)', () => {
  test('now, relative, Unix seconds and ISO 8601', () => {
    assert.equal(parseTime('now', '--at', NOW_MS), NOW_MS);
    assert.equal(parseTime('+2h', '--at', NOW_MS), NOW_MS + 7_200_000);
    assert.equal(parseTime('-30m', '--at', NOW_MS), NOW_MS - 1_800_000);
    assert.equal(parseTime('+1h30m', '--at', NOW_MS), NOW_MS + 5_400_000);
    assert.equal(parseTime('1767225600', '--at', NOW_MS), 1_767_225_600_000);
    assert.equal(parseTime('0', '--at', NOW_MS), 0);
    assert.equal(parseTime('2025-06-30T18:00:00Z', '--at', NOW_MS), Date.UTC(2025, 5, 30, 18));
  });

  test('garbage and absurd values are refused, naming the option', () => {
    usage(() => parseTime('tomorrow', '--at', NOW_MS), /^--at "tomorrow": expected now, \+DURATION or -DURATION/);
    usage(() => parseTime('+2x', '--at', NOW_MS), /^--at "\+2x": unknown unit "x"/);
    usage(() => parseTime('+', '--at', NOW_MS), /^--at "\+": empty/);
    usage(() => parseTime('-1767225600', '--at', NOW_MS), /negative Unix time/);
    usage(() => parseTime('1767225600000', '--at', NOW_MS), /past the year 9999.*milliseconds given by mistake/);
    usage(() => parseTime('+3651d', '--until', NOW_MS), /longer than 3650d/);
    usage(() => parseTime('2025-06-30', '--until', NOW_MS), /expected an ISO 8601 time with a zone/);
    usage(() => parseTime('NOW', '--at', NOW_MS), /expected now/);
    usage(() => parseTime('', '--at', NOW_MS), /expected now/);
  });

  test('property: arbitrary strings give a finite time or a UsageError', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        try {
          assert.ok(Number.isFinite(parseTime(s, '--at', NOW_MS)));
        } catch (err) {
          assert.ok(err instanceof UsageError, String(err));
        }
      }),
    );
  });
});

describe('resolveExpiry', () => {
  test('--ttl is now (whole seconds, rounded down) plus the duration', () => {
    assert.deepEqual(resolveExpiry({ ttl: '2h' }, NOW_MS), { value: NOW_S + 7200, expiresAt: (NOW_S + 7200) * 1000 });
  });

  test('--forever writes -1', () => {
    assert.deepEqual(resolveExpiry({ forever: true }, NOW_MS), { value: -1, expiresAt: null });
  });

  test('--until writes that second', () => {
    assert.deepEqual(resolveExpiry({ until: '2025-06-30T18:00:00Z' }, NOW_MS), {
      value: Date.UTC(2025, 5, 30, 18) / 1000,
      expiresAt: Date.UTC(2025, 5, 30, 18),
    });
    // A fraction never extends the entry past the time asked for.
    assert.equal(resolveExpiry({ until: '2025-06-30T18:00:00.999Z' }, NOW_MS).value, Date.UTC(2025, 5, 30, 18) / 1000);
  });

  test('--until takes relative times and Unix seconds too', () => {
    assert.equal(resolveExpiry({ until: '+2h' }, NOW_MS).value, NOW_S + 7200);
    assert.equal(resolveExpiry({ until: '1893456000' }, NOW_MS).value, 1_893_456_000);
    usage(() => resolveExpiry({ until: '-30m' }, NOW_MS), /^--until "-30m": is not in the future \(now is 2025-06-30T12:00:00Z\)/);
    usage(() => resolveExpiry({ until: 'now' }, NOW_MS), /is not in the future/);
  });

  test('--until must be in the future', () => {
    usage(() => resolveExpiry({ until: '2025-06-30T12:00:00Z' }, NOW_MS), /is not in the future/);
    usage(() => resolveExpiry({ until: '2020-01-01T00:00:00Z' }, NOW_MS), /is not in the future/);
    assert.equal(resolveExpiry({ until: '2025-06-30T12:00:01Z' }, NOW_MS).value, NOW_S + 1);
  });

  test('exactly one of the three', () => {
    usage(() => resolveExpiry({}, NOW_MS), /say how long the entry lasts/);
    usage(() => resolveExpiry({ forever: false }, NOW_MS), /say how long/);
    usage(() => resolveExpiry({ ttl: '2h', forever: true }, NOW_MS), /^--ttl and --forever: choose one/);
    usage(() => resolveExpiry({ ttl: '2h', until: '2030-01-01T00:00:00Z' }, NOW_MS), /^--ttl and --until/);
  });

  test('rejectExpiry refuses any expiry option', () => {
    rejectExpiry({}, 'removal');
    usage(() => rejectExpiry({ ttl: '2h' }, 'removal'), /^--ttl: has no meaning with removal/);
    usage(() => rejectExpiry({ forever: true }, 'ls'), /^--forever: has no meaning with ls/);
  });
});
