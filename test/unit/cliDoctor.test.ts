import { describe, test } from 'node:test';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { type Check, type HostView, formatChecks, moduleState, runDoctor, summarizeSave } from '../../src/cli/doctor.js';
import type { CommandResult } from '../../src/dataplane/exec.js';

const ok = (stdout: string): CommandResult => ({ code: 0, stdout, stderr: '' });
const missing: CommandResult = { code: -1, stdout: '', stderr: 'spawn x ENOENT' };

const NFT_SAVE_WITH_BEFW = [
  '*filter',
  ':INPUT ACCEPT [0:0]',
  ':BEFW - [0:0]',
  '-A INPUT -j BEFW',
  '-A BEFW -m set --match-set rules_allow src -j ACCEPT',
  'COMMIT',
].join('\n');

/** A scripted host: commands answer from `answers` (missing otherwise), files from `files`. */
function host(answers: Record<string, CommandResult>, files: Record<string, string> = {}, calls: string[] = []): HostView {
  return {
    run: async (cmd, args) => {
      calls.push([cmd, ...args].join(' '));
      return answers[[cmd, ...args].join(' ')] ?? missing;
    },
    readText: async (p) => files[p] ?? null,
    exists: async (p) => p in files,
    kernelRelease: '6.1.0-test',
  };
}

const find = (checks: readonly Check[], area: string, text: RegExp): Check | undefined =>
  checks.find((c) => c.area === area && text.test(c.message));

// Doctor never contacts Consul in these tests: the config does not exist.
const NO_CONFIG = '/nonexistent/befw.conf';

describe('summarizeSave', () => {
  test('counts rules and finds the chain and set matches', () => {
    assert.deepEqual(summarizeSave(NFT_SAVE_WITH_BEFW), { rules: 2, hasChain: true, usesSets: true });
    assert.deepEqual(summarizeSave(''), { rules: 0, hasChain: false, usesSets: false });
    assert.deepEqual(summarizeSave('*filter\n:BEFWX - [0:0]\n-A INPUT -j BEFWX\nCOMMIT\n'), { rules: 1, hasChain: false, usesSets: false });
  });
});

describe('moduleState', () => {
  const none = { procModules: null, builtin: null, dep: null, sysModule: false };
  test('loaded, built in, present, loadable, unknown', () => {
    assert.equal(moduleState('xt_set', { ...none, procModules: 'xt_set 16384 2 - Live 0x0\nip_set 57344 2 xt_set, Live 0x0\n' }), 'loaded');
    assert.equal(moduleState('ip_set', { ...none, procModules: 'xt_set 16384 2 ip_set, Live 0x0\n' }), null);
    assert.equal(moduleState('ip_set_hash_net', { ...none, builtin: 'kernel/net/netfilter/ipset/ip_set_hash_net.ko\n' }), 'built in');
    assert.equal(moduleState('xt_set', { ...none, sysModule: true }), 'present');
    assert.equal(
      moduleState('nft_compat', { ...none, dep: 'kernel/net/netfilter/nft_compat.ko.xz: kernel/net/netfilter/x_tables.ko.xz\n' }),
      'loadable',
    );
    // A module named only as another's dependency is a module file on disk all the same.
    assert.equal(
      moduleState('x_tables', { ...none, dep: 'kernel/net/netfilter/nft_compat.ko.xz: kernel/net/netfilter/x_tables.ko.xz\n' }),
      'loadable',
    );
    assert.equal(moduleState('xt_set', { ...none, dep: 'kernel/net/netfilter/xt_sets.ko: \n' }), null);
    assert.equal(moduleState('xt_set', none), null);
  });
});

describe('runDoctor (host side)', () => {
  test('nft host with BEFW in use, clean legacy side: tools and kernel OK; no config is a FAIL', async () => {
    const calls: string[] = [];
    const checks = await runDoctor(
      NO_CONFIG,
      host(
        {
          'ipset --version': ok('ipset v7.17, protocol version: 7\n'),
          'ipset list -t': ok('Name: web_tcp_8080\nType: hash:net\n'),
          'iptables --version': ok('iptables v1.8.9 (nf_tables)\n'),
          'iptables-nft-save -t filter': ok(NFT_SAVE_WITH_BEFW),
          'ip6tables-nft-save -t filter': ok(NFT_SAVE_WITH_BEFW),
          'iptables-legacy-save -t filter': ok(''),
          'ip6tables-legacy-save -t filter': ok(''),
        },
        {},
        calls,
      ),
    );
    assert.ok(find(checks, 'config', /cannot read/)?.status === 'FAIL');
    assert.equal(find(checks, 'consul', /not checked/)?.status, 'FAIL');
    assert.equal(find(checks, 'backend', /nf_tables/)?.status, 'OK');
    assert.equal(find(checks, 'tools', /iptables \(IPv4\) usable; filter table has 2 rule\(s\), chain BEFW present/)?.status, 'OK');
    for (const m of ['ip_set', 'ip_set_hash_net', 'xt_set', 'nf_tables'])
      assert.equal(find(checks, 'kernel', new RegExp(`^${m}: in use`))?.status, 'OK', m);
    assert.equal(find(checks, 'kernel', /^nft_compat: not seen/)?.status, 'WARN');
    assert.equal(checks.filter((c) => c.area === 'backend' && c.status === 'WARN').length, 0);
    // Only read-only invocations.
    for (const c of calls)
      assert.match(c, /^(ipset (--version|list -t)|ip6?tables(-(nft|legacy)-save -t filter| --version)|nft list tables)$/, c);
  });

  test('rules left in the other backend are a WARN, a BEFW chain there is named', async () => {
    const checks = await runDoctor(
      NO_CONFIG,
      host({
        'ipset --version': ok('ipset v7.17\n'),
        'ipset list -t': ok(''),
        'iptables --version': ok('iptables v1.8.9 (legacy)\n'),
        'iptables-legacy-save -t filter': ok('*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n'),
        'ip6tables-legacy-save -t filter': ok(''),
        'iptables-nft-save -t filter': ok('*filter\n-A INPUT -s 198.51.100.0/24 -j DROP\n-A INPUT -j ACCEPT\nCOMMIT\n'),
        'ip6tables-nft-save -t filter': ok(NFT_SAVE_WITH_BEFW),
      }),
    );
    assert.equal(find(checks, 'backend', /iptables backend legacy/)?.status, 'OK');
    assert.equal(find(checks, 'backend', /the nft backend also holds 2 iptables rule\(s\)/)?.status, 'WARN');
    assert.equal(find(checks, 'backend', /a BEFW chain exists in the nft backend \(ip6tables\)/)?.status, 'WARN');
    // Legacy kernels need ip_tables, not nf_tables.
    assert.ok(find(checks, 'kernel', /^ip_tables:/) !== undefined);
    assert.equal(find(checks, 'kernel', /^nf_tables:/), undefined);
  });

  test('missing tools and an unknown backend are FAILs', async () => {
    const checks = await runDoctor(NO_CONFIG, host({ 'iptables --version': ok('iptables v1.4.21\n') }));
    assert.equal(find(checks, 'tools', /ipset does not run/)?.status, 'FAIL');
    assert.equal(find(checks, 'backend', /cannot tell the iptables backend/)?.status, 'FAIL');
  });

  test('module evidence from /proc/modules and /lib/modules', async () => {
    const checks = await runDoctor(
      NO_CONFIG,
      host(
        {
          'ipset --version': ok('ipset v7.17\n'),
          'ipset list -t': ok(''),
          'iptables --version': ok('iptables v1.8.9 (nf_tables)\n'),
          'iptables-nft-save -t filter': ok(''),
          'ip6tables-nft-save -t filter': ok(''),
        },
        {
          '/proc/modules': 'nf_tables 286720 0 - Live 0x0\n',
          '/lib/modules/6.1.0-test/modules.builtin': 'kernel/net/netfilter/nft_compat.ko\n',
          '/lib/modules/6.1.0-test/modules.dep':
            'kernel/net/netfilter/ipset/ip_set_hash_net.ko.zst: kernel/net/netfilter/ipset/ip_set.ko.zst\nkernel/net/netfilter/xt_set.ko.zst: kernel/net/netfilter/ipset/ip_set.ko.zst\n',
        },
      ),
    );
    assert.equal(find(checks, 'kernel', /^ip_set_hash_net: loadable/)?.status, 'OK');
    assert.equal(find(checks, 'kernel', /^xt_set: loadable/)?.status, 'OK');
    assert.equal(find(checks, 'kernel', /^nft_compat: built in/)?.status, 'OK');
    assert.equal(find(checks, 'kernel', /^nf_tables: in use/)?.status, 'OK');
  });
});

describe('runDoctor: which firewall backend runs, and why', () => {
  const withConfig = (text: string): string => {
    const dir = mkdtempSync(join(tmpdir(), 'befw-doctor-'));
    const file = join(dir, 'befw.conf');
    // Consul on a port nothing listens on: those checks fail fast and are not looked at here.
    writeFileSync(file, `address=127.0.0.1:1\nconsul_timeout_sec=1\n${text}\n`);
    return file;
  };

  test('firewall=nft: nft, the table, the monitor, and what the iptables backend left', async () => {
    const checks = await runDoctor(
      withConfig('firewall=nft\nrules=/etc/befw/service.rules'),
      host({
        'nft --version': ok('nftables v1.0.6 (Lester Gooch #5)\n'),
        'nft list tables': ok('table ip filter\ntable inet befw\n'),
        'xtables-monitor -h': ok('xtables-monitor 1.8.9 (nf_tables)\n'),
        'stdbuf --version': ok('stdbuf (GNU coreutils) 9.1\n'),
        'iptables-nft-save -t filter': ok(NFT_SAVE_WITH_BEFW),
        'ip6tables-nft-save -t filter': ok(''),
      }),
    );
    assert.equal(find(checks, 'backend', /^firewall backend nftables \(table inet befw\): firewall=nft$/)?.status, 'OK');
    assert.equal(find(checks, 'tools', /nftables v1\.0\.6 .*; table inet befw present/)?.status, 'OK');
    assert.equal(find(checks, 'integrity', /xtables-monitor/)?.status, 'OK');
    assert.equal(find(checks, 'config', /rules=\/etc\/befw\/service\.rules is an iptables template/)?.status, 'WARN');
    assert.equal(find(checks, 'backend', /a BEFW chain is in iptables-nft: left by the iptables backend/)?.status, 'WARN');
    assert.equal(find(checks, 'kernel', /^nf_tables: in use/)?.status, 'OK');
    assert.equal(find(checks, 'kernel', /^nft_reject_inet: in use/)?.status, 'OK');
    assert.equal(find(checks, 'tools', /ipset/), undefined, 'no ipset needed');
  });

  test('firewall=nftc7 is nft with a WARN; no nft is a FAIL', async () => {
    const checks = await runDoctor(withConfig('firewall=nftc7'), host({}));
    assert.equal(
      find(checks, 'backend', /firewall backend nftables .*firewall=nftc7; firewall=nftc7 .* runs as firewall=nft/)?.status,
      'WARN',
    );
    assert.equal(find(checks, 'tools', /nft does not run: .*install the nftables package/)?.status, 'FAIL');
  });

  test("iptables: BEFW's nft table left on the node is a WARN", async () => {
    const checks = await runDoctor(
      withConfig('firewall=iptables'),
      host({
        'ipset --version': ok('ipset v7.17\n'),
        'ipset list -t': ok(''),
        'iptables --version': ok('iptables v1.8.9 (nf_tables)\n'),
        'iptables-nft-save -t filter': ok(''),
        'ip6tables-nft-save -t filter': ok(''),
        'nft list tables': ok('table inet befw\n'),
      }),
    );
    assert.equal(find(checks, 'backend', /^firewall backend iptables \+ ipset \(chain BEFW\): firewall=iptables$/)?.status, 'OK');
    assert.equal(find(checks, 'backend', /table inet befw exists .*deletes it once its first real plan is in/)?.status, 'WARN');
  });
});

describe('formatChecks', () => {
  test('one line per check and a count', () => {
    const text = formatChecks([
      { area: 'tools', status: 'OK', message: 'a' },
      { area: 'acl', status: 'WARN', message: 'b' },
      { area: 'consul', status: 'FAIL', message: 'c' },
    ]);
    assert.equal(text, ['OK    tools       a', 'WARN  acl         b', 'FAIL  consul      c', '', '1 OK, 1 WARN, 1 FAIL'].join('\n'));
  });
});
