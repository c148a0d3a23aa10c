/**
 * The Debian package, as an operator gets it: scripts/package.sh builds it, and it is installed
 * with dpkg into a clean Debian root (packaging/clean-root.sh: debootstrap minbase, cached in
 * .cache/pkgroot) seen through an overlay, so every run starts from the same untouched root.
 * Everything that runs in the root runs in a network namespace of its own: the firewall the
 * installed befw writes, and the one the purge must leave alone, is the namespace's, never the
 * host's.
 */
import assert from 'node:assert/strict';
import { type SpawnSyncReturns, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VERSION } from '../../src/core/version.js';
import { ROOT } from '../helpers/sandbox.js';

const UNITS = ['befw.service', 'befw-early.service', 'befw-syslog.service', 'befw-responder.service'];

function run(cmd: string, args: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(cmd, args, { encoding: 'utf8', timeout: opts.timeoutMs ?? 60_000, input: opts.input, cwd: ROOT });
}

function ok(r: SpawnSyncReturns<string>, what: string): string {
  assert.equal(r.status, 0, `${what} failed (${r.status ?? r.signal}): ${r.stderr}${r.stdout}`);
  return r.stdout;
}

describe('Debian package in a clean root', () => {
  const dir = mkdtempSync(join(tmpdir(), 'befw-pkg-'));
  const merged = join(dir, 'root');
  const ns = `befwpkg-${process.pid}`;
  let deb = '';
  let mounted = false;
  const timings: string[] = [];

  /** A command inside the installed root, in the test's network namespace. */
  const inRoot = (args: readonly string[], opts?: { input?: string; timeoutMs?: number }): SpawnSyncReturns<string> =>
    run('ip', ['netns', 'exec', ns, 'chroot', merged, ...args], opts);
  const timed = <T>(what: string, f: () => T): T => {
    const t0 = Date.now();
    const r = f();
    timings.push(`${what} ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return r;
  };
  /** The namespace's firewall as the root's own tools list it. */
  const firewall = (): string =>
    [
      ok(inRoot(['iptables-save', '-t', 'filter']), 'iptables-save'),
      ok(inRoot(['ip6tables-save', '-t', 'filter']), 'ip6tables-save'),
      ok(inRoot(['ipset', 'save']), 'ipset save'),
    ]
      .join('\n')
      .split('\n')
      .filter((l) => !l.startsWith('#'))
      .map((l) => l.replace(/\[\d+:\d+\]/, ''))
      .join('\n');

  before(() => {
    // Built once, then cached (about two minutes the first time): scripts/install-deps.sh runs it.
    timed('clean root', () => ok(run('bash', ['packaging/clean-root.sh'], { timeoutMs: 600_000 }), 'packaging/clean-root.sh'));
    deb = timed('npm run package', () =>
      ok(run('bash', ['scripts/package.sh', '--no-build', '--out', join(dir, 'out')], { timeoutMs: 120_000 }), 'scripts/package.sh'),
    ).trim();
    assert.match(deb, new RegExp(`/befw_${VERSION.replace(/\./g, '\\.')}_[a-z0-9]+\\.deb$`));
    for (const d of ['upper', 'work', 'root']) mkdirSync(join(dir, d));
    const lower = join(ROOT, '.cache/pkgroot/root');
    ok(run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${lower},upperdir=${dir}/upper,workdir=${dir}/work`, merged]), 'overlay');
    mounted = true;
    ok(run('mount', ['-t', 'proc', 'proc', join(merged, 'proc')]), 'mount proc');
    ok(run('mount', ['--rbind', '/dev', join(merged, 'dev')]), 'bind /dev');
    ok(run('mount', ['--make-rslave', join(merged, 'dev')]), 'rslave /dev');
    for (const t of ['run', 'tmp']) ok(run('mount', ['-t', 'tmpfs', 'tmpfs', join(merged, t)]), `tmpfs /${t}`);
    ok(run('cp', [deb, join(merged, 'tmp')]), 'copy the package');
    ok(run('ip', ['netns', 'add', ns]), 'netns');
    ok(run('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']), 'lo up');
  });

  after(() => {
    if (mounted) run('umount', ['-R', '-l', merged]);
    run('ip', ['netns', 'del', ns]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('installs with dpkg (its dependencies, nodejs 20 included, present), with the files, links and modes it promises', () => {
    // The clean root has what apt would have installed for Depends: iptables, ipset, and nodejs
    // (>= 20), which Debian 12 itself does not have (packaging/clean-root.sh).
    assert.match(ok(inRoot(['node', '--version']), 'node --version'), /^v(2\d|[3-9]\d)\./);
    assert.equal(inRoot(['dpkg-query', '-W', 'befw']).status, 1, 'befw is not in the clean root yet');
    const r = timed('dpkg -i', () =>
      inRoot(['dpkg', '--force-unsafe-io', '-i', `/tmp/${deb.split('/').pop() ?? ''}`], { timeoutMs: 120_000 }),
    );
    ok(r, 'dpkg -i');
    const stat = ok(inRoot(['stat', '-c', '%a %U %n', '/var/lib/befw', '/etc/befw.conf', '/etc/befw', '/usr/lib/befw']), 'stat');
    assert.match(stat, /^700 root \/var\/lib\/befw$/m);
    assert.match(stat, /^600 root \/etc\/befw\.conf$/m);
    assert.match(stat, /^755 root \/etc\/befw$/m);
    assert.match(ok(inRoot(['dpkg-query', '-W', '-f=${Conffiles}', 'befw']), 'conffiles'), /^ \/etc\/befw\.conf [0-9a-f]{32}$/m);
    assert.match(ok(inRoot(['dpkg-query', '-W', '-f=${Depends}', 'befw']), 'depends'), /nodejs \(>= 20\)/);
    assert.equal(ok(inRoot(['readlink', '-f', '/usr/bin/befw']), 'readlink').trim(), '/usr/lib/befw/bin/befw');
    // Production dependencies only: the compiler and the linters stay out.
    const modules = readdirSync(join(merged, 'usr/lib/befw/node_modules'));
    for (const dev of ['typescript', 'eslint', 'prettier', 'fast-check', '@types']) assert.ok(!modules.includes(dev), dev);
    assert.ok(modules.includes('commander') && modules.includes('unix-dgram'));
    assert.ok(!existsSync(join(merged, 'usr/lib/befw/dist/test')) && !existsSync(join(merged, 'usr/lib/befw/dist/bench')));
    for (const f of ['usr/share/man/man1/befw.1.gz', 'usr/share/man/man1/befw-cli.1.gz', 'usr/share/man/man5/befw.conf.5.gz'])
      assert.ok(existsSync(join(merged, f)), f);
    assert.ok(existsSync(join(merged, 'usr/share/doc/befw/copyright')));
    assert.ok(existsSync(join(merged, 'usr/share/befw/templates/iptables/base.rules')), 'the example config names this path');
  });

  it('runs: befw --version, befw-cli, befw doctor, man, and bash completion', () => {
    assert.equal(ok(inRoot(['befw', '--version']), 'befw --version').trim(), VERSION);
    assert.match(ok(inRoot(['befw-cli', 'help']), 'befw-cli help'), /Commands: register/);
    // The clean root has no Consul: doctor says so with a FAIL line and exits 1, having run every check.
    const doctor = inRoot(['befw', 'doctor']);
    assert.match(doctor.stdout, /^OK +config +\/etc\/befw\.conf is valid/m);
    assert.match(doctor.stdout, /^FAIL +consul +cannot reach Consul at 127\.0\.0\.1:8500/m);
    assert.match(doctor.stdout, /^\d+ OK, \d+ WARN, \d+ FAIL$/m);
    assert.doesNotMatch(doctor.stderr, /TypeError|at .*\.js:\d+/);
    assert.match(ok(inRoot(['man', '-w', 'befw.conf']), 'man -w'), /befw\.conf\.5\.gz/);
    const completion = ok(
      inRoot([
        'bash',
        '-c',
        'source /usr/share/bash-completion/completions/befw; COMP_WORDS=(befw guard h); COMP_CWORD=2; _befw; echo "${COMPREPLY[*]}"',
      ]),
      'completion',
    );
    assert.equal(completion.trim(), 'hold help');
  });

  it('its units pass systemd-analyze verify (which fails a unit whose man page is not installed)', () => {
    const units = UNITS.map((u) => `/lib/systemd/system/${u}`);
    const r = timed('systemd-analyze verify', () => inRoot(['systemd-analyze', 'verify', ...units]));
    assert.equal(r.status, 0, r.stderr);
    assert.doesNotMatch(r.stderr, /befw[a-z-]*\.service:/, r.stderr);
    const unit = readFileSync(join(merged, 'lib/systemd/system/befw.service'), 'utf8');
    assert.match(unit, /^ExecReload=\/usr\/bin\/befw reload -c \/etc\/befw\.conf$/m);
    const early = readFileSync(join(merged, 'lib/systemd/system/befw-early.service'), 'utf8');
    assert.match(early, /^DefaultDependencies=no$/m);
    assert.match(early, /^Before=network-pre\.target /m);
    assert.match(early, /^ExecStart=\/usr\/bin\/befw enforce-saved /m);
    // The check is live: the same unit naming a man page nobody installed fails it.
    writeFileSync(join(merged, 'tmp/befw-broken.service'), unit.replace('man:befw(1)', 'man:befw-not-installed(1)'));
    const bad = inRoot(['systemd-analyze', 'verify', '/tmp/befw-broken.service']);
    assert.notEqual(bad.status, 0);
    assert.match(bad.stderr, /befw-not-installed/);
  });

  it('enforces state.bin without Consul (befw enforce-saved), and a running agent rejects a bad reload with exit 1', async () => {
    const minimal = inRoot(['befw', 'enforce-saved', '--json']);
    assert.equal(minimal.status, 0, minimal.stderr);
    assert.equal((JSON.parse(minimal.stdout) as { kind: string }).kind, 'minimal');
    // A state.bin as the agent saves it, written with the installed code itself.
    const snapshot = {
      node: { name: 'pkg1', dc: 'dc1' },
      agentServices: [{ id: 'web', name: 'web', port: 8080, tags: ['befw'] }],
      fileServices: [],
      kv: [{ key: 'befw/$service$/web_tcp_8080/198.51.100.7', value: '-1' }],
      ipsetFiles: [],
      inputDiagnostics: [],
    };
    const script = `const { createFileStateStore } = await import('/usr/lib/befw/dist/src/state/stateStore.js');
await createFileStateStore('/var/lib/befw/state.bin').save({ savedAt: Date.now(), snapshot: ${JSON.stringify(snapshot)}, owned: [], fingerprint: 'pkg' });`;
    ok(inRoot(['node', '--input-type=module', '-e', script]), 'write state.bin');
    const saved = inRoot(['befw', 'enforce-saved', '--json']);
    assert.equal(saved.status, 0, saved.stderr);
    assert.equal((JSON.parse(saved.stdout) as { kind: string }).kind, 'saved');
    assert.match(ok(inRoot(['ipset', 'list', 'web_tcp_8080']), 'ipset list'), /^198\.51\.100\.7$/m);
    assert.match(ok(inRoot(['iptables', '-S', 'BEFW']), 'iptables -S'), /--dport 8080 -m set --match-set web_tcp_8080 src -j ACCEPT/);

    // ExecReload= is `befw reload`: its exit status is what systemctl reload reports.
    const agent = spawn('ip', ['netns', 'exec', ns, 'chroot', merged, 'befw', 'agent'], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const deadline = Date.now() + 20_000;
      while (!existsSync(join(merged, 'run/befw/befw.sock'))) {
        assert.ok(Date.now() < deadline && agent.exitCode === null, 'the installed agent did not open its control socket');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(inRoot(['befw', 'reload']).status, 0, 'a good config reloads');
      // Run by hand next to the agent, enforce-saved refuses instead of fighting it.
      const twice = inRoot(['befw', 'enforce-saved']);
      assert.equal(twice.status, 1);
      assert.match(twice.stderr, /another befw agent runs on this node: pid \d+/);
      const conf = join(merged, 'etc/befw.conf');
      const good = readFileSync(conf, 'utf8');
      writeFileSync(conf, `${good}\nbogus_key=1\n`);
      const bad = inRoot(['befw', 'reload']);
      writeFileSync(conf, good);
      assert.equal(bad.status, 1);
      assert.match(bad.stdout, /reload rejected: .*bogus_key/);
    } finally {
      agent.kill('SIGTERM');
      await new Promise((r) => (agent.exitCode === null ? agent.once('exit', r) : r(null)));
    }
  });

  it('purge removes its files and leaves the firewall exactly as it was', (t) => {
    const before = firewall();
    assert.match(before, /-A BEFW .*web_tcp_8080/);
    const scripts = join(dir, 'control');
    ok(run('dpkg-deb', ['-e', deb, scripts]), 'dpkg-deb -e');
    for (const s of ['postinst', 'prerm', 'postrm']) {
      const code = readFileSync(join(scripts, s), 'utf8')
        .split('\n')
        .filter((l) => !/^\s*#/.test(l));
      // A firewall tool as a command word (not inside a path such as /etc/befw.ipset.d).
      for (const l of code) assert.doesNotMatch(l, /(?<![\w./-])(iptables|ip6tables|ipset|nft|xtables)[a-z-]*(?![\w./-])/, `${s}: ${l}`);
    }
    const r = timed('dpkg --purge', () => inRoot(['dpkg', '--force-unsafe-io', '--purge', 'befw']));
    ok(r, 'dpkg --purge');
    for (const f of ['etc/befw.conf', 'var/lib/befw', 'usr/lib/befw', 'usr/bin/befw', 'run/befw'])
      assert.ok(!existsSync(join(merged, f)), `${f} left after purge`);
    assert.equal(firewall(), before);
    t.diagnostic(`timings: ${timings.join(', ')}`);
  });
});
