/**
 * BEFW compatibility, one row per behaviour of Wargaming's BEFW: a config line, a KV entry, a
 * service file, an `.ipset` file or a registration, with BEFW's verdict as its source gives it
 * (the file and lines are in each row) and befw's. Every row is run through befw's own parser or
 * compiler, and through `befw migrate check` (core/migrate.ts), which must report a difference
 * exactly where the two verdicts differ. BEFW's shipped configs, recreated in
 * test/fixtures/befw/, must parse and plan.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { dirname, join } from 'node:path';
import { readFileSync } from 'node:fs';
import { BEFW_API_HELP, BEFW_API_NOT_FOUND, befwApiReply } from '../../src/agent/befwApi.js';
import { parseServiceFile, readIpsetFiles, readServiceFiles } from '../../src/agent/inputs/localFiles.js';
import { compileOptions } from '../../src/agent/reconciler.js';
import { formatBefwShow, parseBefwCliArgs } from '../../src/cli/befwCli.js';
import { buildRegistration } from '../../src/cli/access/service.js';
import { parseConfigLeniently } from '../../src/cli/migrate.js';
import { type Config, ConfigError, DEFAULT_BEFW_API_PATH, parseConfig } from '../../src/config/config.js';
import { loadConfig, loadTemplates } from '../../src/config/load.js';
import { compile } from '../../src/core/compile.js';
import {
  type BefwRelease,
  type Difference,
  type MigrateInput,
  goParseCidr,
  legacyKernelName,
  legacyKeyNet,
  migrateCheck,
  portVerdicts,
  readLegacyServiceFile,
  readLegacyTemplates,
} from '../../src/core/migrate.js';
import { expiryOf, logicalOf } from '../../src/core/planSets.js';
import type { AgentService, CompileOptions, KvPair, Plan, Snapshot } from '../../src/core/types.js';
import { DEFAULT_SERVICE_TEMPLATE, type ServiceTemplate, TemplateError } from '../../src/dataplane/iptables/templates.js';
import { translateBefwTemplates } from '../../src/dataplane/iptables/befwTemplates.js';
import { chainRuleLines } from '../../src/dataplane/iptables/render.js';
import { BACKENDS } from '../../src/dataplane/registry.js';

const NOW = 1_800_000_000_000;
const T = NOW / 1000;
const NODE = { name: 'ed-web-01', dc: 'dc1' };
const WEB: AgentService = { id: 'web', name: 'web', port: 8080, tags: ['befw'] };
const MGMT = { family: 4 as const, cidr: '203.0.113.0/24', prefix: 24 };
const OPTIONS: CompileOptions = { customSets: [], managementNets: [MGMT] };
const FIXTURES = new URL('../../../test/fixtures/befw/', import.meta.url).pathname;

function snapshot(kv: readonly KvPair[], extra: Partial<Snapshot> = {}): Snapshot {
  return { node: NODE, agentServices: [WEB], fileServices: [], kv, ipsetFiles: [], inputDiagnostics: [], ...extra };
}

function check(snap: Snapshot, over: Partial<MigrateInput> = {}, options: CompileOptions = OPTIONS): readonly Difference[] {
  return migrateCheck(
    {
      snapshot: snap,
      options,
      configText: 'dc=dc1\nset.rules_allow=203.0.113.0/24\n',
      refusedConfigLines: [],
      serviceFiles: [],
      legacyRules: null,
      serviceRules: DEFAULT_SERVICE_TEMPLATE.lines,
      agentDatacenter: 'dc1',
      release: 'name-port',
      ...over,
    },
    NOW,
  ).differences.filter((d) => !d.subject.startsWith('set.rules_allow '));
}

/** Enforced now in the logical set `set`: 'forever', 'until', or 'no'. */
function verdict(plan: Plan, set: string, cidr: string): 'forever' | 'until' | 'no' {
  for (const s of plan.sets) {
    if (logicalOf(s) !== set || !s.members.includes(cidr)) continue;
    return expiryOf(s, cidr) === null ? 'forever' : 'until';
  }
  return 'no';
}

// -----------------------------------------------------------------------------------------------

type ConfigOutcome = { readonly ok: (c: Config) => void } | { readonly error: RegExp };

interface ConfigRow {
  readonly line: string;
  /** What BEFW does with the line, and where its source says so. */
  readonly befw: string;
  readonly source: string;
  readonly ours: ConfigOutcome;
}

const CONF = '/srv/befw/befw.conf';

const CONFIG_ROWS: readonly ConfigRow[] = [
  {
    line: 'address=127.0.0.1:8500',
    befw: 'Consul agent address',
    source: 'befw/config.go:91',
    ours: { ok: (c) => assert.deepEqual(c.consul, { host: '127.0.0.1', port: 8500, secure: false }) },
  },
  { line: 'dc=eu', befw: 'datacenter of befw/', source: 'befw/config.go:92', ours: { ok: (c) => assert.equal(c.dc, 'eu') } },
  {
    line: 'token=00000000-0000-4000-8000-00000000b3f0',
    befw: 'ACL token',
    source: 'befw/config.go:93',
    ours: { ok: (c) => assert.equal(c.token, '00000000-0000-4000-8000-00000000b3f0') },
  },
  {
    line: 'nodename=Server.example.org',
    befw: 'node name',
    source: 'befw/config.go:97',
    ours: { ok: (c) => assert.equal(c.nodeName, 'Server.example.org') },
  },
  { line: 'nodedc=eu', befw: 'node datacenter', source: 'befw/config.go:98', ours: { ok: (c) => assert.equal(c.nodeDc, 'eu') } },
  {
    line: 'services=services',
    befw: 'services directory, relative to its working directory',
    source: 'befw/config.go:95',
    ours: { ok: (c) => assert.equal(c.servicesDir, '/srv/befw/services') },
  },
  {
    line: 'ipsets=../ipsets',
    befw: 'ipsets directory',
    source: 'befw/config.go:94',
    ours: { ok: (c) => assert.equal(c.ipsetsDir, '/srv/ipsets') },
  },
  {
    line: 'rules=rules.json',
    befw: 'JSON rule templates',
    source: 'befw/config.go:96',
    ours: { ok: (c) => assert.equal(c.rulesTemplate, '/srv/befw/rules.json') },
  },
  {
    line: 'state=run/state.bin',
    befw: '(befw only)',
    source: '-',
    ours: { ok: (c) => assert.equal(c.statePath, '/srv/befw/run/state.bin') },
  },
  { line: 'token_file=token', befw: '(befw only)', source: '-', ours: { ok: (c) => assert.equal(c.tokenFile, '/srv/befw/token') } },
  {
    line: 'consul_timeout_sec=300',
    befw: 'timeout of a Consul request',
    source: 'befw/config.go:99; befw/state.go:66',
    ours: { ok: (c) => assert.equal(c.consulTimeout, 300) },
  },
  {
    line: 'consulwatch_timeout_sec=600',
    befw: 'the longest wait for a change before a full refresh',
    source: 'befw/config.go:100; befw/watcher.go:164',
    ours: { ok: (c) => assert.equal(c.resyncInterval, 600) },
  },
  {
    line: 'consulwatch_timeout_sec=600\nresync_interval=60',
    befw: '(resync_interval is befw only)',
    source: '-',
    ours: { error: /not both/ },
  },
  {
    line: 'nids=true',
    befw: 'NFLOG trap ports that log port scans',
    source: 'befw/config.go:101; befw/fwiptables.go:326-331',
    ours: {
      ok: (c) => {
        assert.equal(c.nids, true);
        // befw writes the trap rule (core/trap.ts): 15 ports by default, as BEFW.
        assert.deepEqual(c.nidsPorts, { kind: 'count', count: 15 });
        assert.deepEqual(c.warnings, []);
      },
    },
  },
  {
    line: 'nids=0',
    befw: 'off (Go ParseBool)',
    source: 'befw/config.go:157-166',
    ours: {
      ok: (c) => {
        assert.equal(c.nids, false);
        assert.deepEqual(c.warnings, []);
      },
    },
  },
  { line: 'nids=yes', befw: 'ignored: not a Go bool, off', source: 'befw/config.go:160-163', ours: { error: /expected one of/ } },
  {
    line: 'firewall=nft',
    befw: 'nftables',
    source: 'befw/config.go:103-114',
    ours: { ok: (c) => assert.equal(c.firewall.backend, 'nft') },
  },
  {
    line: 'set.rules_allow=203.0.113.0/24;2001:db8:ffff::/48',
    befw: 'management networks, enforced only after a failed refresh',
    source: 'befw/config.go:121-125; befw/state.go:243-255, 510-525',
    ours: {
      ok: (c) =>
        assert.deepEqual(
          c.managementNets.map((n) => n.cidr),
          ['203.0.113.0/24', '2001:db8:ffff::/48'],
        ),
    },
  },
  {
    line: 'set.blocklist=5;DROP',
    befw: 'a static set with its rule at priority 5',
    source: 'befw/config.go:126-143',
    ours: { ok: (c) => assert.deepEqual(c.customSets, [{ name: 'blocklist', priority: 5, target: 'DROP' }]) },
  },
  {
    line: 'set.monitor=NOOP',
    befw: 'a set without a rule, priority from 3 on',
    source: 'befw/config.go:129-131; befw/fwiptables.go:336-338',
    ours: { ok: (c) => assert.deepEqual(c.customSets, [{ name: 'monitor', priority: 3, target: 'NOOP' }]) },
  },
  // BEFW's set.NAME takes any iptables target and any integer priority (befw/config.go:126-143,
  // befw/fwiptables.go:210-224 writes `-I BEFW {PRIORITY} ... -j {TARGET}`).
  {
    line: 'set.audit=4;LOG',
    befw: 'a LOG rule for the set',
    source: 'befw/config.go:126-143',
    ours: { ok: (c) => assert.deepEqual(c.customSets, [{ name: 'audit', priority: 4, target: 'LOG' }]) },
  },
  {
    line: 'set.trace=NFLOG',
    befw: 'an NFLOG rule (group 0) for the set',
    source: 'befw/config.go:129-131; befw/const.go:23',
    ours: { ok: (c) => assert.deepEqual(c.customSets, [{ name: 'trace', priority: 3, target: 'NFLOG' }]) },
  },
  {
    line: 'set.office=6;OFFICE',
    befw: 'a jump to the user chain OFFICE',
    source: 'befw/config.go:133-136',
    ours: { ok: (c) => assert.deepEqual(c.customSets, [{ name: 'office', priority: 6, target: 'chain:OFFICE' }]) },
  },
  {
    line: 'set.skip=1;RETURN',
    befw: 'inserted at position 1, ahead of rules_allow',
    source: 'befw/fwiptables.go:210-224; befw/const.go:23',
    ours: { ok: (c) => assert.match(c.warnings.join('\n'), /set\.skip=1;RETURN: priority 1 comes after rules_allow/) },
  },
  {
    line: 'fail=1',
    befw: 'LogError panics at every refresh: BEFW runs on its last state',
    source: 'befw/config.go:116-118',
    ours: { error: /nobody has edited/ },
  },
  { line: 'colour=blue', befw: 'ignored', source: 'befw/config.go:91-101', ours: { error: /unknown key/ } },
  { line: 'just words', befw: 'ignored (no "=")', source: 'befw/config.go:85', ours: { error: /key=value/ } },
  { line: 'dc=a\ndc=b', befw: 'the last one wins', source: 'befw/config.go:87', ours: { error: /duplicate/ } },
  {
    line: '',
    befw: "BEFW's API on /var/run/befw/api.sock",
    source: 'befw/const.go:81',
    ours: { ok: (c) => assert.equal(c.befwApi, DEFAULT_BEFW_API_PATH) },
  },
  { line: 'befw_api=off', befw: '(befw only)', source: '-', ours: { ok: (c) => assert.equal(c.befwApi, null) } },
  {
    line: 'befw_api=run/api.sock',
    befw: '(befw only)',
    source: '-',
    ours: { ok: (c) => assert.equal(c.befwApi, '/srv/befw/run/api.sock') },
  },
];

describe('BEFW compatibility: config lines', () => {
  for (const row of CONFIG_ROWS) {
    test(`${JSON.stringify(row.line)}: BEFW ${row.befw} [${row.source}]`, () => {
      const ours = row.ours;
      if ('ok' in ours) ours.ok(parseConfig(row.line, CONF));
      else
        assert.throws(
          () => parseConfig(row.line, CONF),
          (e: unknown) => e instanceof ConfigError && ours.error.test(e.reason),
        );
    });
  }

  test('a BEFW config befw refuses in part is checked line by line', () => {
    const { config, refused } = parseConfigLeniently('dc=dc1\ncolour=blue\nset.audit=4;L.OG\nnodename=x\n', CONF);
    assert.equal(config.nodeName, 'x');
    assert.deepEqual(
      refused.map((r) => [r.line, r.key]),
      [
        [2, 'colour'],
        [3, 'set.audit'],
      ],
    );
  });
});

// -----------------------------------------------------------------------------------------------

type Enforced = 'forever' | 'until' | 'no';

interface KvRow {
  readonly what: string;
  readonly pairs: readonly KvPair[];
  /** The entry and set the row is about. */
  readonly set: string;
  readonly cidr: string;
  readonly befw: Enforced;
  readonly source: string;
  readonly ours: Enforced;
  /** Differences befw makes on purpose (README): reported, marked deliberate. */
  readonly deliberate?: boolean;
}

const W = 'befw/$service$/web_tcp_8080';
const ALIAS_MEMBER = { key: 'befw/$alias$/$ops$/198.51.100.40', value: '-1' };

const KV_ROWS: readonly KvRow[] = [
  {
    what: 'an expiry in the future',
    pairs: [{ key: `${W}/198.51.100.20`, value: `${T + 3600}` }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'until',
    ours: 'until',
    source: 'befw/state.go:316-330',
  },
  {
    what: 'an expiry in the past',
    pairs: [{ key: `${W}/198.51.100.20`, value: `${T - 1}` }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'no',
    ours: 'no',
    source: 'befw/service.go:276-282',
  },
  {
    what: '-1 never expires',
    pairs: [{ key: `${W}/198.51.100.20`, value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/service.go:276-282',
  },
  {
    what: '0 has expired',
    pairs: [{ key: `${W}/198.51.100.20`, value: '0' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'no',
    ours: 'no',
    source: 'befw/service.go:276-282',
  },
  {
    what: 'a grant whose value is not an integer',
    pairs: [{ key: `${W}/198.51.100.20`, value: 'tomorrow' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'forever',
    ours: 'no',
    source: 'befw/state.go:324-327 (now+1h at every refresh)',
    deliberate: true,
  },
  {
    what: 'a grant with an empty value',
    pairs: [{ key: `${W}/198.51.100.20`, value: null }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'no',
    ours: 'no',
    source: 'befw/state.go:218-220',
  },
  {
    what: 'an expiry with a trailing newline',
    pairs: [{ key: `${W}/198.51.100.20`, value: `${T + 3600}\n` }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'forever',
    ours: 'until',
    source: 'befw/state.go:324-327 (Go ParseInt refuses it)',
  },
  {
    what: 'an expiry with a plus sign',
    pairs: [{ key: `${W}/198.51.100.20`, value: `+${T + 3600}` }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.20/32',
    befw: 'until',
    ours: 'no',
    source: 'befw/state.go:324 (Go ParseInt takes a sign)',
  },
  {
    what: 'a deny whose value is not an integer',
    pairs: [{ key: 'befw/$ipset$/rules_deny/198.51.100.66', value: 'junk' }],
    set: 'rules_deny',
    cidr: '198.51.100.66/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/state.go:388-389, 324-327',
  },
  {
    what: 'a deny with an empty value',
    pairs: [{ key: 'befw/$ipset$/rules_deny/198.51.100.66', value: null }],
    set: 'rules_deny',
    cidr: '198.51.100.66/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/state.go:388-389 (no empty check for static sets)',
  },
  {
    what: 'an allow with an empty value',
    pairs: [{ key: 'befw/$ipset$/rules_allow/198.51.100.67', value: null }],
    set: 'rules_allow',
    cidr: '198.51.100.67/32',
    befw: 'forever',
    ours: 'no',
    source: 'befw/state.go:388-389, 324-327',
    deliberate: true,
  },
  {
    what: 'local-datacenter scope (node name up to its first -)',
    pairs: [{ key: 'befw/$service$/ed/web_tcp_8080/198.51.100.21', value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.21/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/state.go:95-102, 337-338',
  },
  {
    what: 'local-datacenter node scope',
    pairs: [{ key: 'befw/$service$/ed/ed-web-01/web_tcp_8080/198.51.100.22', value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.22/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/state.go:337',
  },
  {
    what: 'datacenter scope',
    pairs: [{ key: 'befw/$service$/dc1/web_tcp_8080/198.51.100.23', value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.23/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/state.go:335',
  },
  {
    what: "another datacenter's scope",
    pairs: [{ key: 'befw/$service$/dc2/web_tcp_8080/198.51.100.23', value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.23/32',
    befw: 'no',
    ours: 'no',
    source: 'befw/state.go:332-341',
  },
  {
    what: 'node scope',
    pairs: [{ key: 'befw/$service$/dc1/ed-web-01/web_tcp_8080/198.51.100.24', value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.24/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/state.go:334',
  },
  {
    what: 'a network in two segments',
    pairs: [{ key: `${W}/198.51.100.0/28`, value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '198.51.100.0/28',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/static.go:96-99',
  },
  {
    what: 'an IPv6 address',
    pairs: [{ key: `${W}/2001:db8::7`, value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '2001:db8::7/128',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/static.go:100-108',
  },
  {
    what: 'an IPv6 network',
    pairs: [{ key: `${W}/2001:db8:1::/64`, value: '-1' }],
    set: 'web_tcp_8080',
    cidr: '2001:db8:1::/64',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/static.go:96-99',
  },
  {
    what: 'an alias grant',
    pairs: [{ key: `${W}/$ops$`, value: '-1' }, ALIAS_MEMBER],
    set: 'web_tcp_8080',
    cidr: '198.51.100.40/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/state.go:210-215, 293-314',
  },
  {
    what: 'an alias grant with an empty value',
    pairs: [{ key: `${W}/$ops$`, value: null }, ALIAS_MEMBER],
    set: 'web_tcp_8080',
    cidr: '198.51.100.40/32',
    befw: 'forever',
    ours: 'no',
    source: 'befw/state.go:210-215 (alias before the empty check), 302-305',
    deliberate: true,
  },
  {
    what: 'an expired alias member',
    pairs: [
      { key: `${W}/$ops$`, value: '-1' },
      { key: 'befw/$alias$/$ops$/198.51.100.41', value: `${T - 60}` },
    ],
    set: 'web_tcp_8080',
    cidr: '198.51.100.41/32',
    befw: 'forever',
    ours: 'no',
    source: 'befw/alias.go:96-113 (a member value is never read)',
    deliberate: true,
  },
  {
    what: 'an alias member whose value is not an integer',
    pairs: [
      { key: `${W}/$ops$`, value: '-1' },
      { key: 'befw/$alias$/$ops$/198.51.100.42', value: 'junk' },
    ],
    set: 'web_tcp_8080',
    cidr: '198.51.100.42/32',
    befw: 'forever',
    ours: 'no',
    source: 'befw/alias.go:96-113',
    deliberate: true,
  },
  {
    what: 'an alias member with an empty value',
    pairs: [
      { key: `${W}/$ops$`, value: '-1' },
      { key: 'befw/$alias$/$ops$/198.51.100.43', value: null },
    ],
    set: 'web_tcp_8080',
    cidr: '198.51.100.43/32',
    befw: 'no',
    ours: 'no',
    source: 'befw/alias.go:104-106',
  },
  {
    what: 'an alias member at datacenter scope',
    pairs: [
      { key: `${W}/$ops$`, value: '-1' },
      { key: 'befw/$alias$/dc1/$ops$/198.51.100.44', value: '-1' },
    ],
    set: 'web_tcp_8080',
    cidr: '198.51.100.44/32',
    befw: 'no',
    ours: 'forever',
    source: 'befw/alias.go:97 (world scope only)',
  },
  {
    what: 'a nested alias',
    pairs: [
      { key: `${W}/$ops$`, value: '-1' },
      { key: 'befw/$alias$/$ops$/$oncall$', value: '-1' },
      { key: 'befw/$alias$/$oncall$/198.51.100.45', value: '-1' },
    ],
    set: 'web_tcp_8080',
    cidr: '198.51.100.45/32',
    befw: 'forever',
    ours: 'forever',
    source: 'befw/alias.go:55-60',
  },
  {
    what: 'a loopback address in rules_allow',
    pairs: [{ key: 'befw/$ipset$/rules_allow/127.0.0.1', value: '-1' }],
    set: 'rules_allow',
    cidr: '127.0.0.1/32',
    befw: 'forever',
    ours: 'no',
    source: 'befw/state.go:377-392',
    deliberate: true,
  },
  {
    what: 'a deny of a management network',
    pairs: [{ key: 'befw/$ipset$/rules_deny/203.0.113.5', value: '-1' }],
    set: 'rules_deny',
    cidr: '203.0.113.5/32',
    befw: 'forever',
    ours: 'no',
    source: 'befw/state.go:377-392 (no protected paths)',
    deliberate: true,
  },
];

describe('BEFW compatibility: KV entries', () => {
  for (const row of KV_ROWS) {
    test(`${row.what}: BEFW ${row.befw}, befw ${row.ours} [${row.source}]`, () => {
      const snap = snapshot(row.pairs);
      assert.equal(verdict(compile(snap, OPTIONS, NOW), row.set, row.cidr), row.ours, 'befw (compile)');
      const host = row.cidr.split('/')[0] ?? '';
      const about = check(snap).filter((d) => d.subject.includes(host) || row.pairs.some((p) => d.subject.startsWith(p.key)));
      if (row.befw === row.ours) assert.deepEqual(about, [], 'no difference expected');
      else {
        assert.equal(about.length, 1, `one difference expected, got ${JSON.stringify(about, null, 2)}`);
        assert.equal(about[0]?.deliberate, row.deliberate === true, 'deliberate');
        const text = `${about[0]?.legacy ?? ''}`;
        assert.match(text, row.befw === 'no' ? /not (granted|enforced)/ : row.befw === 'forever' ? /forever/ : /until/, 'BEFW verdict');
      }
    });
  }

  test('befw/.lock (befw-sync) is skipped silently', () => {
    const plan = compile(snapshot([{ key: 'befw/.lock', value: 'session' }]), OPTIONS, NOW);
    assert.deepEqual(
      plan.diagnostics.filter((d) => d.subject.includes('.lock')),
      [],
    );
  });

  test("BEFW's key reading: the last one or two segments", () => {
    assert.equal(legacyKeyNet(`${W}/198.51.100.7`)?.cidr, '198.51.100.7/32');
    assert.equal(legacyKeyNet(`${W}/198.51.100.0/24`)?.cidr, '198.51.100.0/24');
    assert.equal(legacyKeyNet(`${W}/2001:db8::/32`)?.cidr, '2001:db8::/32');
    assert.equal(legacyKeyNet(`${W}/010.1.1.1`), null);
    assert.equal(legacyKeyNet(`${W}/not-an-address`), null);
    assert.equal(goParseCidr('198.51.100.7'), null, 'net.ParseCIDR needs a prefix');
    assert.equal(goParseCidr('198.51.100.7/24')?.cidr, '198.51.100.0/24');
  });
});

// -----------------------------------------------------------------------------------------------

interface FileRow {
  readonly what: string;
  readonly json: string;
  /** BEFW: the set and mode it registers, or null when it skips the file. */
  readonly befw: { readonly set: string; readonly ports: string; readonly mode: string } | null;
  readonly source: string;
  readonly ours: { readonly set: string; readonly ports: string; readonly mode: string } | null;
}

const FILE_ROWS: readonly FileRow[] = [
  {
    what: "BEFW's own test service",
    json: '{"name":"MyName","mode":"enforcing","port":123,"protocol":"udp","ports":["33:44/tcp","42/tcp"]}',
    befw: { set: 'myname_udp_123', ports: '123/udp,33:44/tcp,42/tcp', mode: 'enforcing' },
    source: 'befw/service_test.go:104-137',
    ours: { set: 'myname_udp_123', ports: '123/udp,33:44/tcp,42/tcp', mode: 'enforcing' },
  },
  {
    what: 'object ports, a string range, no primary port',
    json: '{"name":"s","ports":[{"port":"1:42","protocol":"udp"}]}',
    befw: { set: 's_udp_1', ports: '1/udp,1:42/udp', mode: 'default' },
    source: 'befw/legacy.go:146-166, 180-197',
    ours: { set: 's_udp_1', ports: '1/udp,1:42/udp', mode: 'default' },
  },
  {
    what: 'a description, "TCP", a name with a space',
    json: '{"name":"web app","description":"x","port":8080,"protocol":"TCP"}',
    befw: { set: 'webapp_tcp_8080', ports: '8080/tcp', mode: 'default' },
    source: 'befw/service.go:201-208; befw/state.go:411-427',
    ours: { set: 'webapp_tcp_8080', ports: '8080/tcp', mode: 'default' },
  },
  {
    what: 'mode "Enforcing"',
    json: '{"name":"web","port":8080,"mode":"Enforcing"}',
    befw: { set: 'web_tcp_8080', ports: '8080/tcp', mode: 'default' },
    source: 'befw/service.go:285-292 (exact "enforcing" only)',
    ours: { set: 'web_tcp_8080', ports: '8080/tcp', mode: 'enforcing' },
  },
  {
    what: 'an unknown mode',
    json: '{"name":"web","port":8080,"mode":"strict"}',
    befw: { set: 'web_tcp_8080', ports: '8080/tcp', mode: 'default' },
    source: 'befw/service.go:285-292',
    ours: null,
  },
  {
    what: 'a number in "ports"',
    json: '{"name":"web","port":8080,"ports":[8443]}',
    befw: { set: 'web_tcp_8080', ports: '8080/tcp', mode: 'default' },
    source: 'befw/legacy.go:133-160 (only strings and objects are read)',
    ours: null,
  },
  { what: 'no port at all', json: '{"name":"web"}', befw: null, source: 'befw/legacy.go:186-189', ours: null },
  {
    what: 'a bad protocol',
    json: '{"name":"web","port":8080,"protocol":"xcp"}',
    befw: null,
    source: 'befw/service.go:201-208',
    ours: null,
  },
];

function portsOf(ports: readonly { proto: string; from: number; to: number }[]): string {
  return ports.map((p) => `${p.from === p.to ? p.from : `${p.from}:${p.to}`}/${p.proto}`).join(',');
}

describe('BEFW compatibility: service files', () => {
  for (const row of FILE_ROWS) {
    test(`${row.what}: BEFW ${row.befw === null ? 'skips it' : `${row.befw.set} ${row.befw.mode}`} [${row.source}]`, () => {
      const l = readLegacyServiceFile(row.json);
      if (row.befw === null) assert.equal(l.ok, false);
      else {
        assert.ok(l.ok, JSON.stringify(l));
        assert.equal(l.mode, row.befw.mode);
        assert.equal(portsOf(l.ports), row.befw.ports);
      }
      const file = '/etc/befw.service.d/x.json';
      const ours = parseServiceFile(row.json, file);
      if (row.ours === null) assert.equal(ours.service, undefined);
      else {
        const s = ours.service;
        assert.ok(s, JSON.stringify(ours.diagnostics));
        const plan = compile(snapshot([], { agentServices: [], fileServices: [s] }), OPTIONS, NOW);
        assert.equal(plan.services[0]?.set, row.ours.set);
        assert.equal(plan.services[0]?.mode, row.ours.mode);
        assert.equal(portsOf(plan.services[0]?.ports ?? []), row.ours.ports);
      }
      const snap = snapshot([], {
        agentServices: [],
        fileServices: ours.service === undefined ? [] : [ours.service],
        inputDiagnostics: ours.diagnostics,
      });
      const diffs = check(snap, { serviceFiles: [{ file, text: row.json }] }).filter((d) => d.kind === 'service-file');
      const same = JSON.stringify(row.befw) === JSON.stringify(row.ours);
      assert.equal(diffs.length, same ? 0 : 1, JSON.stringify(diffs, null, 2));
    });
  }

  test('a "protocol" that is not a string makes BEFW panic at every refresh', () => {
    const json = '{"name":"web","ports":[{"port":80,"protocol":null}]}';
    const l = readLegacyServiceFile(json);
    assert.ok(!l.ok && l.panics === true);
    const ours = parseServiceFile(json, '/f.json');
    const diffs = check(snapshot([], { agentServices: [], inputDiagnostics: ours.diagnostics }), {
      serviceFiles: [{ file: '/f.json', text: json }],
    });
    assert.match(diffs.map((d) => d.legacy).join('\n'), /panics/);
  });
});

// -----------------------------------------------------------------------------------------------

describe('BEFW compatibility: .ipset files', () => {
  const file = (text: string, set = 'trusted') => ({ file: `/etc/befw.ipset.d/${set}.ipset`, set, text });
  const rows: readonly { what: string; text: string; cidr: string; befw: boolean; ours: boolean; source: string }[] = [
    {
      what: 'whitespace-separated networks',
      text: '198.51.100.0/24 203.0.113.0/28',
      cidr: '203.0.113.0/28',
      befw: true,
      ours: true,
      source: 'befw/static.go:52-55',
    },
    {
      what: 'a plain address',
      text: '198.51.100.7\n',
      cidr: '198.51.100.7/32',
      befw: false,
      ours: true,
      source: 'befw/static.go:74 (net.ParseCIDR)',
    },
    {
      what: 'a network after #',
      text: '# 198.51.100.0/24\n',
      cidr: '198.51.100.0/24',
      befw: true,
      ours: false,
      source: 'befw/static.go:52-55 (no comments)',
    },
    { what: 'host bits', text: '198.51.100.7/24\n', cidr: '198.51.100.0/24', befw: true, ours: true, source: 'befw/static.go:74, 160-166' },
  ];
  for (const row of rows) {
    test(`${row.what}: BEFW ${row.befw ? 'a member' : 'skipped'}, befw ${row.ours ? 'a member' : 'skipped'} [${row.source}]`, () => {
      const snap = snapshot([], { ipsetFiles: [file(row.text)] });
      assert.equal(verdict(compile(snap, OPTIONS, NOW), 'trusted.ipset', row.cidr) !== 'no', row.ours);
      assert.equal(check(snap).filter((d) => d.kind === 'ipset-file').length, row.befw === row.ours ? 0 : 1);
    });
  }

  test('rules_allow.ipset is a set of its own, with no rule (BEFW: befw/static.go:57-84, fwiptables.go:333-348)', () => {
    const plan = compile(snapshot([], { ipsetFiles: [file('198.51.100.0/24', 'rules_allow')] }), OPTIONS, NOW);
    assert.equal(verdict(plan, 'rules_allow.ipset', '198.51.100.0/24'), 'forever');
    assert.equal(verdict(plan, 'rules_allow', '198.51.100.0/24'), 'no');
    assert.ok(!plan.rules.some((r) => 'set' in r && r.set === 'rules_allow.ipset'));
  });

  test('ipset_files=members: befw adds to rules_allow, BEFW does not', () => {
    const snap = snapshot([], { ipsetFiles: [file('198.51.100.0/24', 'rules_allow')] });
    const options = { ...OPTIONS, ipsetFiles: 'members' as const };
    assert.equal(verdict(compile(snap, options, NOW), 'rules_allow', '198.51.100.0/24'), 'forever');
    const d = check(snap, {}, options);
    assert.deepEqual(
      d.map((x) => x.kind),
      ['ipset-file'],
    );
    assert.match(d[0]?.fix ?? '', /ipset_files=befw/);
  });

  test('kernel names of long sets: BEFW cuts the parts, befw hashes', () => {
    assert.equal(legacyKernelName('averyveryverylongservicename_tcp_8080'), 'averyveryver_tcp_8080');
    assert.equal(legacyKernelName('short_tcp_80'), 'short_tcp_80');
  });
});

// -----------------------------------------------------------------------------------------------

interface RegistrationRow {
  readonly what: string;
  readonly service: AgentService;
  readonly release: BefwRelease;
  /** BEFW's set and ports for it. */
  readonly befw: { readonly set: string; readonly ports: string };
  readonly source: string;
  /** befw's, with set_naming= the release. */
  readonly ours: { readonly set: string; readonly ports: string } | null;
}

const REG_ROWS: readonly RegistrationRow[] = [
  {
    what: 'Port and the befw tag',
    service: WEB,
    release: 'name-port',
    befw: { set: 'web_tcp_8080', ports: '8080/tcp' },
    source: 'BEFW <= 0.1.12 (src/core/services.ts)',
    ours: { set: 'web_tcp_8080', ports: '8080/tcp' },
  },
  {
    what: "Port and the befw tag only (BEFW's demo and its befw-cli register)",
    service: WEB,
    release: 'id-first-tag',
    befw: { set: 'web', ports: '' },
    source: 'befw/state.go:161-171, 428-433 (ports from tags only)',
    ours: { set: 'web_tcp_8080', ports: '8080/tcp' },
  },
  {
    what: 'service ID and first port tag',
    service: { id: 'api-1', name: 'api', port: 9000, tags: ['befw', '9000/tcp'] },
    release: 'id-first-tag',
    befw: { set: 'api-1_tcp_9000', ports: '9000/tcp' },
    source: 'befw/state.go:183-197, 434-439',
    ours: { set: 'api-1_tcp_9000', ports: '9000/tcp' },
  },
  {
    what: 'Port 8080 with tag 8443/tcp',
    service: { id: 'web', name: 'web', port: 8080, tags: ['befw', '8443/tcp'] },
    release: 'id-first-tag',
    befw: { set: 'web_tcp_8443', ports: '8443/tcp' },
    source: 'befw/state.go:191',
    ours: { set: 'web_tcp_8443', ports: '8080/tcp,8443/tcp' },
  },
  {
    what: 'a bare port tag "8443"',
    service: { id: 'web', name: 'web', port: 8080, tags: ['befw', '8443'] },
    release: 'id-first-tag',
    befw: { set: 'web_tcp_8443', ports: '8443/tcp' },
    source: 'befw/service.go:192-233 (the protocol is optional)',
    ours: { set: 'web_tcp_8080', ports: '8080/tcp' },
  },
  {
    what: 'a port tag "8443/TCP"',
    service: { id: 'web', name: 'web', port: 8080, tags: ['befw', '8443/TCP'] },
    release: 'id-first-tag',
    befw: { set: 'web_tcp_8443', ports: '8443/tcp' },
    source: 'befw/service.go:201-208 (any case)',
    ours: { set: 'web_tcp_8080', ports: '8080/tcp' },
  },
  {
    what: 'Port 0 with a port tag',
    service: { id: 'web', name: 'web', port: 0, tags: ['befw', '8080/tcp'] },
    release: 'id-first-tag',
    befw: { set: 'web_tcp_8080', ports: '8080/tcp' },
    source: 'befw/state.go:191 (Port unused)',
    ours: null,
  },
  {
    what: "befw-cli register's registration",
    service: (() => {
      const r = buildRegistration('web', '8080/tcp', { port: ['8080/tcp'] });
      return { id: r.id, name: r.name, port: r.port, tags: r.tags };
    })(),
    release: 'id-first-tag',
    befw: { set: 'web_tcp_8080', ports: '8080/tcp' },
    source: 'befw/state.go:161-171',
    ours: { set: 'web_tcp_8080', ports: '8080/tcp' },
  },
];

describe('BEFW compatibility: registrations', () => {
  for (const row of REG_ROWS) {
    test(`${row.what} (${row.release}): BEFW set ${row.befw.set} [${row.source}]`, () => {
      const options = { ...OPTIONS, setNaming: row.release };
      const snap = snapshot([], { agentServices: [row.service] });
      const plan = compile(snap, options, NOW);
      if (row.ours === null) assert.equal(plan.services.length, 0);
      else {
        assert.equal(plan.services[0]?.set, row.ours.set);
        assert.equal(portsOf(plan.services[0]?.ports ?? []), row.ours.ports);
      }
      const diffs = check(snap, { release: row.release }, options).filter((d) => d.kind === 'service' || d.kind === 'service-port');
      if (JSON.stringify(row.befw) === JSON.stringify(row.ours)) assert.deepEqual(diffs, []);
      else assert.ok(diffs.length > 0, 'a difference is reported');
    });
  }

  test('set_naming differing from the release is the fix when it is enough', () => {
    const snap = snapshot([], { agentServices: [{ id: 'api-1', name: 'api', port: 9000, tags: ['befw', '9000/tcp'] }] });
    const d = check(snap, { release: 'id-first-tag' }).filter((x) => x.kind === 'service');
    assert.equal(d.length, 1);
    assert.match(d[0]?.fix ?? '', /^set_naming=id-first-tag/);
  });

  test('an enforcing service: BEFW passes others on (rule_service_e = rule_service), befw drops them', () => {
    const snap = snapshot([], { agentServices: [{ ...WEB, tags: ['befw', 'enforcing'] }] });
    const d = check(snap).filter((x) => x.kind === 'service-port');
    assert.equal(d.length, 1);
    assert.match(d[0]?.befw ?? '', /others dropped/);
    assert.match(d[0]?.legacy ?? '', /others passed on/);
  });
});

// -----------------------------------------------------------------------------------------------

describe('BEFW compatibility: rule templates', () => {
  test("BEFW's defaults: members accepted, the rest logged and passed on, in both modes (befw/const.go:31-36)", () => {
    const t = readLegacyTemplates(null);
    assert.deepEqual(portVerdicts(t.ruleService.split('\n'), ['{NAME}']), { member: 'accepted', other: 'passed on' });
    assert.deepEqual(portVerdicts(t.ruleServiceE.split('\n'), ['{NAME}']), { member: 'accepted', other: 'passed on' });
  });

  test("befw's default: members accepted; others passed on, dropped when enforcing", () => {
    const lines = (mode: 'default' | 'enforcing') =>
      DEFAULT_SERVICE_TEMPLATE.lines.filter((l) => l.only === null || l.only === mode).map((l) => l.text);
    assert.deepEqual(portVerdicts(lines('default'), ['{SET}']), { member: 'accepted', other: 'passed on' });
    assert.deepEqual(portVerdicts(lines('enforcing'), ['{SET}']), { member: 'accepted', other: 'dropped' });
  });

  test("the demo's rules.json: Consul's ports open to all, others of every service rejected", () => {
    const text = readFileSync(join(FIXTURES, 'demo/rules.json'), 'utf8');
    const d = check(snapshot([]), { legacyRules: { file: 'rules.json', text } });
    assert.ok(d.some((x) => x.kind === 'template' && x.subject.includes('8300,8301,8302,8500,8501,8600')));
    const port = d.find((x) => x.kind === 'service-port');
    assert.match(port?.legacy ?? '', /others rejected/);
    assert.match(port?.befw ?? '', /others passed on/);
  });

  test('a rules file that is not JSON: BEFW falls back to its built-in templates (befw/fwiptables.go:458-460)', () => {
    assert.match(readLegacyTemplates({ file: 'r', text: '-A BEFW -j ACCEPT' }).from, /built in/);
  });
});

// -----------------------------------------------------------------------------------------------

describe('BEFW compatibility: rules= JSON templates, translated (befw/fwiptables.go:60-70, 190-272)', () => {
  type Row = {
    readonly name: string;
    readonly json: Record<string, unknown>;
    readonly ok?: (t: ServiceTemplate) => void;
    readonly error?: RegExp;
  };
  const enforcing = (t: ServiceTemplate): string[] => t.lines.filter((l) => l.only === 'enforcing').map((l) => l.text);
  const defaults = (t: ServiceTemplate): string[] => t.lines.filter((l) => l.only === 'default').map((l) => l.text);
  const rows: readonly Row[] = [
    {
      name: 'rule_service becomes the default-mode lines; {NAME} is the set, {PORTS} the port',
      json: {
        rule_service:
          '\n# {NAME}\n-A BEFW -p {PROTO} -m multiport --dports {PORTS} -m set --match-set {NAME} src -j ACCEPT\n-A BEFW -p {PROTO} -m multiport --dports {PORTS} -j REJECT\n',
      },
      ok: (t) =>
        assert.deepEqual(defaults(t), [
          '-A BEFW -p {PROTO} -m multiport --dports {PORT} -m set --match-set {SET} src -j ACCEPT',
          '-A BEFW -p {PROTO} -m multiport --dports {PORT} -j REJECT',
        ]),
    },
    {
      name: "no rule_service_e: befw's enforcing rules (BEFW's built-in drops no one: const.go:31-36), with a note",
      json: {},
      ok: (t) => {
        assert.equal(portVerdicts(enforcing(t), ['{SET}']).other, 'dropped');
        assert.ok(t.notes?.some((n) => /no rule_service_e/.test(n)));
      },
    },
    {
      name: 'rule_service_e that refuses no one is kept, with a note',
      json: { rule_service_e: '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {NAME} src -j ACCEPT' },
      ok: (t) => assert.ok(t.notes?.some((n) => /refuses no one/.test(n))),
    },
    {
      name: 'the old --set spelling (const.go:27) becomes --match-set',
      json: { rule_service: '-A BEFW -p {PROTO} -m multiport --dports {PORTS} -m set --set {NAME} src -j ACCEPT' },
      ok: (t) => assert.match(defaults(t)[0] ?? '', /--match-set \{SET\} src/),
    },
    {
      name: 'header rules per family; header6 does not fall back to header (fwiptables.go:196-201)',
      json: { header: '*filter\n:BEFW - [0:0]\n-F BEFW\n-A BEFW -p tcp --dport 8500 -j ACCEPT\n' },
      ok: (t) => {
        assert.deepEqual(t.head, { 4: ['-A BEFW -p tcp --dport 8500 -j ACCEPT'], 6: [] });
        assert.ok(t.notes?.some((n) => /header accepts without a set match/.test(n)));
      },
    },
    {
      name: 'footer rules come after the services',
      json: { footer6: '-A BEFW -p udp --dport 53 -j DROP\nCOMMIT\n# /BEFW @ {DATE}' },
      ok: (t) => assert.deepEqual(t.tail, { 4: [], 6: ['-A BEFW -p udp --dport 53 -j DROP'] }),
    },
    {
      name: 'Go matches keys case-insensitively (encoding/json)',
      json: {
        Rule_Service:
          '-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {NAME} src -j ACCEPT\n-A BEFW -p {PROTO} --dport {PORT} -j DROP',
      },
      ok: (t) => assert.equal(portVerdicts(defaults(t), ['{SET}']).other, 'dropped'),
    },
    {
      name: "BEFW's own static_set form is accepted",
      json: { static_set: '\n-I BEFW {PRIORITY} -m set --match-set {NAME} src -j {TARGET}\n' },
      ok: () => undefined,
    },
    {
      name: "nids_line is checked and replaced by befw's trap rule",
      json: { nids_line: '-A BEFW -p tcp -m multiport --dports {NIDSPORTS} -j NFLOG --nflog-group 402' },
      ok: (t) => assert.ok(t.notes?.some((n) => /nids_line is not used/.test(n))),
    },
    {
      name: '{DATE} in a header rule',
      json: { header: '-A BEFW -m comment --comment {DATE} -j ACCEPT' },
      error: /header: placeholder \{DATE\} cannot be translated/,
    },
    {
      name: '{PRIORITY} in rule_service',
      json: { rule_service: '-I BEFW {PRIORITY} -m set --match-set {NAME} src -j ACCEPT' },
      error: /rule_service: "-I BEFW/,
    },
    {
      name: '{TARGET} in rule_service_e',
      json: { rule_service_e: '-A BEFW -m set --match-set {NAME} src -j {TARGET}' },
      error: /rule_service_e: placeholder \{TARGET\}/,
    },
    {
      name: 'a rule of another chain in the header',
      json: { header: '*filter\n-A INPUT -j ACCEPT' },
      error: /header: "-A INPUT -j ACCEPT": only rules appended to chain BEFW .*base_rules=/,
    },
    { name: 'another table in the footer', json: { footer: '*nat\n-A PREROUTING -j ACCEPT' }, error: /footer: "\*nat"/ },
    { name: 'a jump back into BEFW', json: { footer: '-A BEFW -j BEFW' }, error: /may not jump back into BEFW/ },
    { name: 'shell in a rule', json: { header: '-A BEFW -j ACCEPT; rm -rf /' }, error: /characters iptables rules do not need/ },
    {
      name: 'a static_set of another shape',
      json: { static_set: '-A BEFW -p tcp -m set --match-set {NAME} src -j {TARGET}' },
      error: /static_set: befw writes the static sets itself/,
    },
    {
      name: 'rule_service that never matches the set',
      json: { rule_service: '-A BEFW -p {PROTO} --dport {PORT} -j ACCEPT' },
      error: /rule_service: no rule matches the service set/,
    },
    {
      name: 'a template that is not a string',
      json: { header: ['-A BEFW -j ACCEPT'] },
      error: /header: must be a string of rules, not an array/,
    },
  ];
  for (const row of rows) {
    test(row.name, () => {
      const run = (): ServiceTemplate => translateBefwTemplates(JSON.stringify(row.json), 'rules.json');
      if (row.error !== undefined) assert.throws(run, (e: unknown) => e instanceof TemplateError && row.error!.test(e.message));
      else row.ok?.(run());
    });
  }

  test('not JSON, or not an object: an error naming the file', () => {
    assert.throws(() => translateBefwTemplates('{ nope', 'r.json'), /r\.json:0: not JSON/);
    assert.throws(() => translateBefwTemplates('["x"]', 'r.json'), /not a JSON object/);
  });

  test('the chain: static sets, then the header rules, then the services, then the footer rules', () => {
    const t = translateBefwTemplates(
      JSON.stringify({ header: '-A BEFW -p tcp --dport 8500 -j ACCEPT', footer: '-A BEFW -p tcp --dport 9 -j DROP' }),
      'rules.json',
    );
    const plan = compile(snapshot([{ key: 'befw/$ipset$/rules_deny/198.51.100.9', value: '-1' }]), OPTIONS, NOW);
    const lines = chainRuleLines(plan.rules, 4, t);
    const at = (re: RegExp): number => {
      const i = lines.findIndex((l) => re.test(l));
      assert.ok(i >= 0, `${String(re)} not in\n${lines.join('\n')}`);
      return i;
    };
    assert.ok(at(/rules_deny src -j (DROP|REJECT)/) < at(/--dport 8500 -j ACCEPT/), lines.join('\n'));
    assert.ok(at(/--dport 8500 -j ACCEPT/) < at(/web_tcp_8080 src -j ACCEPT/), lines.join('\n'));
    assert.equal(lines.at(-1), '-A BEFW -p tcp --dport 9 -j DROP');
  });
});

describe("BEFW's API socket and befw-cli", () => {
  const handlers = { reload: async () => ({ ok: true, config: '/etc/befw.conf' }) };
  const rows: readonly [string, string][] = [
    ['helo', 'Hello, '],
    ['helo world', 'Hello, world'],
    ['helo  two  spaces', 'Hello,  two  spaces'],
    ['  helo x\r', 'Hello, x'],
    ['help', BEFW_API_HELP],
    ['reload', 'ok'],
    ['clear_missing', 'ok'],
    ['HELO', BEFW_API_NOT_FOUND],
    ['', BEFW_API_NOT_FOUND],
    ['rm -rf /', BEFW_API_NOT_FOUND],
  ];
  for (const [line, reply] of rows) {
    test(`${JSON.stringify(line)} -> ${JSON.stringify(reply)} (befw/api.go:30-87)`, async () => {
      assert.equal(await befwApiReply(line, handlers), reply);
    });
  }

  test('a refused reload answers its reason on one line', async () => {
    const r = await befwApiReply('reload', { reload: async () => ({ ok: false, error: 'bad\nconfig', config: 'c' }) });
    assert.equal(r, 'bad config');
  });

  test("befw-cli takes Go's flags before the command", () => {
    assert.deepEqual(parseBefwCliArgs(['-config', '/x.conf', 'show']), { config: '/x.conf', args: ['show'], help: false });
    assert.deepEqual(parseBefwCliArgs(['--config=/y.conf', 'register', 'web', 'tcp', '80']), {
      config: '/y.conf',
      args: ['register', 'web', 'tcp', '80'],
      help: false,
    });
    assert.deepEqual(parseBefwCliArgs(['show', '-config', 'x']), { config: '/etc/befw.conf', args: ['show', '-config', 'x'], help: false });
    assert.ok('error' in parseBefwCliArgs(['-debug', 'show']));
  });

  test("show prints BEFW's layout (befw/run.go:92-114)", () => {
    assert.equal(
      formatBefwShow({ name: 'server', dc: 'eu' }, [{ set: 'ssh_tcp_22', members: ['198.51.100.0/24'] }]),
      'Node: server @ eu\n\n- Service: ssh_tcp_22\n--- 198.51.100.0/24\n\n\n',
    );
  });
});

// -----------------------------------------------------------------------------------------------

describe("BEFW's shipped configs (recreated in test/fixtures/befw/) parse and plan", () => {
  test('samples/befw.conf', async () => {
    const file = join(FIXTURES, 'samples/befw.conf');
    const config = await loadConfig(file);
    assert.equal(config.dc, 'consul');
    assert.equal(config.token, '00000000-0000-4000-8000-00000000b3f0');
    assert.equal(config.firewall.backend, 'nft');
    assert.equal(config.servicesDir, join(dirname(file), 'services'));
    // firewall=nft with BEFW's JSON templates: read, and named as unused by the nftables backend.
    const templates = await loadTemplates(config);
    assert.match(templates.rules?.text ?? '', /rule_service/);
    const files = await readServiceFiles(config.servicesDir);
    const ipsets = await readIpsetFiles(config.ipsetsDir);
    assert.deepEqual(files.diagnostics, []);
    const plan = compile(
      {
        node: { name: 'server', dc: 'consul' },
        agentServices: [],
        fileServices: files.services,
        kv: [],
        ipsetFiles: ipsets.files,
        inputDiagnostics: [],
      },
      compileOptions(config),
      NOW,
    );
    assert.deepEqual(
      plan.services.map((s) => [s.set, s.mode, portsOf(s.ports)]),
      [
        ['dns_udp_53', 'default', '53/udp'],
        ['webapp_tcp_8080', 'enforcing', '8080/tcp,30000:30010/udp,8443/tcp'],
      ],
    );
    assert.equal(verdict(plan, 'rules_allow.ipset', '203.0.113.0/28'), 'forever');
  });

  for (const json of ['samples/befw.rules.accept.json', 'samples/befw.rules.reject.json', 'demo/rules.json']) {
    test(`${json} is translated and planned`, async () => {
      const config = parseConfig(`rules=${json.split('/')[1] ?? ''}`, join(FIXTURES, json.split('/')[0] ?? '', 'befw.conf'));
      const files = await loadTemplates(config);
      assert.ok(files.rules !== null);
      const t = translateBefwTemplates(files.rules.text, files.rules.file);
      const plan = compile(snapshot([{ key: 'befw/$service$/web_tcp_8080/198.51.100.2', value: '-1' }]), OPTIONS, NOW);
      const text = BACKENDS.iptables.render(plan, files, NOW);
      assert.match(text, /-A BEFW -p tcp -m multiport --dports 8080 -m set --match-set web_tcp_8080 src -j ACCEPT/);
      assert.match(text, /-A BEFW -p tcp -m multiport --dports 8080 -j NFLOG --nflog-group 402/);
      // rule_allow / rule_deny are not BEFW template keys: named, and ignored as BEFW ignores them.
      assert.ok(t.notes?.some((n) => n.includes('"rule_allow" is not one of BEFW\'s templates')));
    });
  }

  test('demo/befw.conf', async () => {
    const file = join(FIXTURES, 'demo/befw.conf');
    const config = await loadConfig(file);
    assert.equal(config.dc, 'eu');
    assert.equal(config.nodeName, 'server');
    assert.equal(config.consulTimeout, 300);
    assert.equal(config.resyncInterval, 600);
    assert.equal(config.rulesTemplate, join(dirname(file), 'rules.json'));
    const files = await loadTemplates(config);
    assert.ok(files.rules !== null);
    const translated = translateBefwTemplates(files.rules.text, files.rules.file);
    // The demo registers ssh on 22 with the befw tag (demo/register.sh) and grants three networks.
    const snap: Snapshot = {
      node: { name: 'server', dc: 'eu' },
      agentServices: [{ id: 'ssh', name: 'ssh', port: 22, tags: ['befw'] }],
      fileServices: (await readServiceFiles(config.servicesDir)).services,
      kv: ['198.51.100.0/24', '203.0.113.0/24', '2001:db8:100::/48'].map((n) => ({ key: `befw/$service$/ssh_tcp_22/${n}`, value: '-1' })),
      ipsetFiles: (await readIpsetFiles(config.ipsetsDir)).files,
      inputDiagnostics: [],
    };
    const plan = compile(snap, compileOptions(config), NOW);
    assert.equal(plan.services[0]?.set, 'ssh_tcp_22');
    assert.equal(verdict(plan, 'ssh_tcp_22', '2001:db8:100::/48'), 'forever');
    const report = migrateCheck(
      {
        snapshot: snap,
        options: compileOptions(config),
        configText: readFileSync(file, 'utf8'),
        refusedConfigLines: [],
        serviceFiles: [],
        legacyRules: { file: config.rulesTemplate ?? '', text: readFileSync(config.rulesTemplate ?? '', 'utf8') },
        serviceRules: translated.lines,
        chainRules: { head: translated.head ?? { 4: [], 6: [] }, tail: translated.tail ?? { 4: [], 6: [] } },
        agentDatacenter: 'eu',
        release: 'name-port',
      },
      NOW,
    );
    // befw writes the demo's header and its rule_service as BEFW does: the two agents agree.
    assert.deepEqual(
      report.differences.map((d) => `${d.kind} ${d.subject}`),
      [],
    );
  });
});

describe('BEFW compatibility: no false differences', () => {
  test('entries both agents read alike give no difference (property)', () => {
    const scope = fc.constantFrom('', 'dc1/', 'ed/', 'dc1/ed-web-01/', 'ed/ed-web-01/');
    const value = fc.constantFrom('-1', `${T - 100}`, `${T + 100}`, `${T + 86400}`);
    const addr = fc.oneof(
      fc.integer({ min: 1, max: 254 }).map((i) => `198.51.100.${i}`),
      fc.integer({ min: 0, max: 15 }).map((i) => `198.51.100.${i * 16}/28`),
      fc.integer({ min: 1, max: 0xffff }).map((i) => `2001:db8::${i.toString(16)}`),
    );
    const entry = fc.oneof(
      fc.record({
        set: fc.constantFrom('$service$/SCOPEweb_tcp_8080', '$ipset$/SCOPErules_allow', '$ipset$/SCOPErules_deny'),
        scope,
        addr,
        value,
      }),
      fc.record({ set: fc.constant('$service$/SCOPEweb_tcp_8080'), scope, addr: fc.constantFrom('$ops$', '$dev$'), value }),
    );
    const member = fc.record({ alias: fc.constantFrom('$ops$', '$dev$'), addr });
    fc.assert(
      fc.property(fc.array(entry, { maxLength: 12 }), fc.array(member, { maxLength: 6 }), (entries, members) => {
        const kv = new Map<string, string>();
        for (const e of entries) kv.set(`befw/${e.set.replace('SCOPE', e.scope)}/${e.addr}`, e.value);
        for (const m of members) kv.set(`befw/$alias$/${m.alias}/${m.addr}`, '-1');
        const snap = snapshot([...kv].map(([key, v]) => ({ key, value: v })));
        const diffs = migrateCheck(
          {
            snapshot: snap,
            options: { customSets: [], managementNets: [] },
            configText: 'dc=dc1\n',
            refusedConfigLines: [],
            serviceFiles: [],
            legacyRules: null,
            serviceRules: DEFAULT_SERVICE_TEMPLATE.lines,
            agentDatacenter: 'dc1',
            release: 'name-port',
          },
          NOW,
        ).differences;
        assert.deepEqual(diffs, []);
      }),
      { numRuns: 300 },
    );
  });
});
