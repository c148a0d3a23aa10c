/**
 * How a failed command ends: one line on stderr (or one JSON object under --json), nothing on
 * stdout, exit 2 for usage errors and 1 for the rest; plus the old `deny ADDR --rm` spelling,
 * the one time format, the defaults without a file, and the mode-change refusal.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { AccessError, RefusedError, UsageError } from '../../src/cli/access/errors.js';
import { legacyStaticSetArgs } from '../../src/cli/access/staticSets.js';
import { buildRegistration, checkModeChange } from '../../src/cli/access/service.js';
import { type ConfigSourceEnv, loadCliConfig } from '../../src/cli/configSource.js';
import { EXIT_FAILURE, EXIT_USAGE, describeError, errorJson, errorLine, wantsJson } from '../../src/cli/errors.js';
import { main } from '../../src/cli/main.js';
import { ConfigError } from '../../src/config/config.js';
import { ConsulError } from '../../src/consul/connection.js';
import { formatDuration, formatTime, formatWhen } from '../../src/core/timeText.js';

interface Ran {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs main() in-process with stdout and stderr captured. */
async function run(...args: string[]): Promise<Ran> {
  const out = process.stdout.write.bind(process.stdout);
  const err = process.stderr.write.bind(process.stderr);
  let stdout = '';
  let stderr = '';
  // The CLI writes strings; the test runner's own reports (binary frames) pass through.
  const capture =
    (real: typeof out, append: (s: string) => void): typeof out =>
    (chunk: string | Uint8Array, ...rest: unknown[]) => {
      if (typeof chunk !== 'string') return (real as (c: Uint8Array, ...r: unknown[]) => boolean)(chunk, ...rest);
      append(chunk);
      return true;
    };
  process.stdout.write = capture(out, (s) => (stdout += s));
  process.stderr.write = capture(err, (s) => (stderr += s));
  process.exitCode = undefined;
  try {
    const code = await main(['node', 'befw', ...args]);
    return { code, stdout, stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    process.exitCode = undefined;
  }
}

function oneLine(r: Ran): string {
  assert.equal(r.stdout, '', 'nothing on stdout on failure');
  const lines = r.stderr.split('\n');
  assert.equal(lines.length, 2, `one line and its newline: ${JSON.stringify(r.stderr)}`);
  assert.equal(lines[1], '');
  return lines[0] as string;
}

describe('error reports', () => {
  test('a usage error is one line ending with the help to try, exit 2', () => {
    const r = describeError(new UsageError('--ttl "1h30x"', 'unknown unit "x"'), 'befw client add');
    assert.equal(r.exitCode, EXIT_USAGE);
    assert.equal(errorLine(r), 'befw: error: --ttl "1h30x": unknown unit "x" (try befw client add --help)');
  });

  test('runtime failures exit 1 and have no help hint; config errors say so', () => {
    for (const e of [
      new RefusedError('no node x'),
      new AccessError('befw/a', 'lost a race'),
      new ConsulError('kv list', null, new Error('ECONNREFUSED')),
      new Error('boom'),
    ]) {
      const r = describeError(e, 'befw client add');
      assert.equal(r.exitCode, EXIT_FAILURE, e.message);
      assert.match(errorLine(r), /^befw: error: [^\n]*[^)]$/);
    }
    const c = describeError(new ConfigError('/etc/befw.conf', 3, 'dc', 'bad'), 'befw plan');
    assert.equal(errorLine(c), 'befw: config error: /etc/befw.conf:3 (dc): bad');
  });

  test('messages with newlines or control characters stay on one printable line', () => {
    const line = errorLine(describeError(new Error('first\nsecond\u001b[31m'), null));
    assert.equal(line.split('\n').length, 1);
    assert.doesNotMatch(line, /[\u0000-\u001f]/);
    assert.match(line, /first second\\x1b\[31m/);
  });

  test('JSON: one object with kind, message, command, exit code and the details', () => {
    const j = JSON.parse(errorJson(describeError(new UsageError('--ttl "5x"', 'unknown unit "x"'), 'befw deny add'))) as {
      error: Record<string, unknown>;
    };
    assert.deepEqual(j, {
      error: {
        kind: 'usage',
        message: '--ttl "5x": unknown unit "x"',
        command: 'befw deny add',
        exitCode: 2,
        subject: '--ttl "5x"',
        reason: 'unknown unit "x"',
      },
    });
    const cfg = JSON.parse(
      errorJson(describeError(new ConfigError('/f', 1, 'a', 'x', [{ file: '/f', line: 2, key: 'b', reason: 'y' }]), 'befw plan')),
    ) as { error: { kind: string; problems: unknown[] } };
    assert.equal(cfg.error.kind, 'config');
    assert.deepEqual(cfg.error.problems, [
      { file: '/f', line: 1, key: 'a', reason: 'x' },
      { file: '/f', line: 2, key: 'b', reason: 'y' },
    ]);
  });

  test('--json is seen anywhere before --', () => {
    assert.equal(wantsJson(['node', 'befw', 'client', 'ls', '--json']), true);
    assert.equal(wantsJson(['node', 'befw', 'syslog', '--', '--json']), false);
    assert.equal(wantsJson(['node', 'befw', 'client', 'ls']), false);
  });
});

describe('main(): every failure through one place', () => {
  test('a bad --ttl: one line, exit 2, nothing contacted', async () => {
    const r = await run('client', 'add', 'web_tcp_8080', '198.51.100.7', '--ttl', '1h30x', '-c', '/nonexistent/befw.conf');
    assert.equal(r.code, 2);
    assert.equal(oneLine(r), 'befw: error: --ttl "1h30x": unknown unit "x"; units are s, m, h, d and w (try befw client add --help)');
  });

  test('the same under --json: one JSON object on stderr, stdout empty', async () => {
    const r = await run('client', 'add', 'web_tcp_8080', '198.51.100.7', '--ttl', '1h30x', '--json', '-c', '/nonexistent/befw.conf');
    assert.equal(r.code, 2);
    const j = JSON.parse(oneLine(r)) as { error: { kind: string; command: string; exitCode: number } };
    assert.deepEqual([j.error.kind, j.error.command, j.error.exitCode], ['usage', 'befw client add', 2]);
  });

  test("commander's own errors: no help dump, the command named", async () => {
    const unknown = await run('client', 'add', '--frob');
    assert.equal(unknown.code, 2);
    assert.equal(oneLine(unknown), "befw: error: unknown option '--frob' (try befw client add --help)");
    const typo = await run('clinet', 'ls');
    assert.equal(typo.code, 2);
    assert.match(oneLine(typo), /^befw: error: unknown command 'clinet' \(Did you mean client\?\) \(try befw --help\)$/);
    const missing = await run('deny', 'rm');
    assert.equal(missing.code, 2);
    assert.match(oneLine(missing), /missing required argument 'addr' \(try befw deny rm --help\)$/);
    const json = await run('deny', 'rm', '--json');
    assert.equal(json.code, 2);
    assert.equal((JSON.parse(oneLine(json)) as { error: { command: string } }).error.command, 'befw deny rm');
  });

  test('an option parser failing (--at) names its command', async () => {
    const r = await run('plan', '--at', 'tomorrow', '-c', '/nonexistent/befw.conf');
    assert.equal(r.code, 2);
    assert.match(oneLine(r), /^befw: error: --at "tomorrow": expected now, .* \(try befw plan --help\)$/);
  });

  test('a missing explicit config is a runtime failure: exit 1, no help hint', async () => {
    const r = await run('deny', 'rm', '198.51.100.7', '-c', '/nonexistent/befw.conf');
    assert.equal(r.code, 1);
    assert.match(oneLine(r), /^befw: config error: \/nonexistent\/befw\.conf: cannot read: ENOENT/);
    const j = await run('deny', '198.51.100.7', '--rm', '--json', '-c', '/nonexistent/befw.conf');
    assert.equal(j.code, 1);
    const e = (JSON.parse(oneLine(j)) as { error: { kind: string; command: string } }).error;
    assert.deepEqual([e.kind, e.command], ['config', 'befw deny rm'], 'the old spelling runs deny rm');
  });

  test('help and version are not errors', async () => {
    const help = await run('deny', '--help');
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: befw deny \[options\] \[command\]/);
    assert.match(help.stdout, /\n {2}add \[options\] <addr>/);
    assert.match(help.stdout, /\n {2}rm \[options\] <addr>/);
    assert.match(help.stdout, /\n {2}ls \[options\]/);
    assert.equal((await run('--version')).code, 0);
  });
});

describe('allow/deny: the old spelling', () => {
  const N = ['node', 'befw'];
  test('ADDR [...] becomes add, ADDR --rm becomes rm; the new spelling is left alone', () => {
    assert.deepEqual(legacyStaticSetArgs([...N, 'deny', '198.51.100.7', '--ttl', '2h']), [
      ...N,
      'deny',
      'add',
      '198.51.100.7',
      '--ttl',
      '2h',
    ]);
    assert.deepEqual(legacyStaticSetArgs([...N, 'deny', '--ttl', '2h', '198.51.100.7']), [
      ...N,
      'deny',
      'add',
      '--ttl',
      '2h',
      '198.51.100.7',
    ]);
    assert.deepEqual(legacyStaticSetArgs([...N, 'allow', '198.51.100.7', '--rm', '--dc', 'dc1']), [
      ...N,
      'allow',
      'rm',
      '198.51.100.7',
      '--dc',
      'dc1',
    ]);
    assert.deepEqual(
      legacyStaticSetArgs([...N, 'deny', '--dc', 'ls', 'x']),
      [...N, 'deny', 'add', '--dc', 'ls', 'x'],
      'a value is not a subcommand',
    );
    for (const same of [
      [...N, 'deny', 'add', '198.51.100.7', '--ttl', '2h'],
      [...N, 'deny', 'rm', '198.51.100.7'],
      [...N, 'deny', 'ls', '--json'],
      [...N, 'deny', '--help'],
      [...N, 'deny'],
      [...N, 'client', '198.51.100.7', '--rm'],
    ])
      assert.deepEqual(legacyStaticSetArgs(same), same);
  });
});

describe('one time format', () => {
  const NOW = Date.UTC(2025, 5, 30, 12, 0, 0, 750);
  test('ISO 8601 UTC to the second, with the distance beside it', () => {
    assert.equal(formatTime(Date.UTC(2025, 5, 30, 18, 0, 0, 999)), '2025-06-30T18:00:00Z');
    assert.equal(formatWhen(NOW + 4_740_000, NOW), '2025-06-30T13:19:00Z (in 1h19m)');
    assert.equal(formatWhen(NOW - 2000, NOW), '2025-06-30T11:59:58Z (2s ago)');
    assert.equal(formatWhen(NOW + 300, NOW), '2025-06-30T12:00:01Z (now)');
    assert.equal(formatDuration(90_061_000), '1d1h');
  });
});

describe('defaults without a file', () => {
  const fake = (files: Record<string, boolean>, env: NodeJS.ProcessEnv = {}): ConfigSourceEnv & { notes: string[] } => {
    const notes: string[] = [];
    return { env, notes, note: (l) => notes.push(l), exists: async (p) => files[p] === true };
  };

  test('no -c, no BEFW_CONFIG, no /etc/befw.conf: the local agent with defaults, said once', async () => {
    const src = fake({});
    const config = await loadCliConfig(undefined, src);
    assert.deepEqual(config.consul, { host: '127.0.0.1', port: 8500, secure: false });
    assert.equal(config.dc, null);
    await loadCliConfig(undefined, src);
    assert.equal(src.notes.length, 1);
    assert.match(src.notes[0] ?? '', /^befw: note: no \/etc\/befw\.conf .*127\.0\.0\.1:8500 with default settings$/);
  });

  test('a file named by -c or BEFW_CONFIG must exist: no silent defaults', async () => {
    await assert.rejects(loadCliConfig('/nonexistent/x.conf', fake({})), ConfigError);
    const src = fake({}, { BEFW_CONFIG: '/nonexistent/y.conf' });
    await assert.rejects(loadCliConfig(undefined, src), (e: unknown) => e instanceof ConfigError && e.file === '/nonexistent/y.conf');
    assert.equal(src.notes.length, 0);
  });

  test('an /etc/befw.conf that exists is read (and its errors reported), never replaced by defaults', async () => {
    await assert.rejects(loadCliConfig(undefined, fake({ '/etc/befw.conf': true })), ConfigError);
  });
});

describe('service register: a mode change needs --force', () => {
  const existing = (tags: string[]): { id: string; name: string; port: number; tags: string[] } => ({
    id: 'web',
    name: 'web',
    port: 8080,
    tags,
  });
  test('enforcing -> default is refused and says what opens; --force allows and reports it', () => {
    const reg = buildRegistration('web', '8080', {});
    assert.throws(
      () => checkModeChange(existing(['befw', 'enforcing']), reg, false),
      (e: unknown) =>
        e instanceof RefusedError &&
        /registered in enforcing mode; .* from enforcing to default mode: non-clients would no longer be dropped.*add --enforcing to keep it, or --force/.test(
          e.message,
        ),
    );
    assert.match(checkModeChange(existing(['befw', 'enforcing']), reg, true) ?? '', /^mode changed: changes web from enforcing to default/);
  });
  test('default -> enforcing likewise; the same mode passes silently', () => {
    const enforcing = buildRegistration('web', '8080', { enforcing: true });
    assert.throws(() => checkModeChange(existing(['befw']), enforcing, false), /every address that is not a client would be dropped/);
    assert.equal(checkModeChange(existing(['befw', 'enforcing']), enforcing, false), null);
    assert.equal(checkModeChange(existing(['befw']), buildRegistration('web', '8080', {}), false), null);
  });
});
