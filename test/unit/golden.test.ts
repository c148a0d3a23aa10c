/**
 * Golden tests: a fixed snapshot and a fixed `now` (test/fixtures/golden/<name>.input.json) are
 * compiled and rendered, and the results must equal the stored files byte for byte:
 *   <name>.plan.json                  the whole plan, JSON.stringify(plan, null, 2) + "\n"
 *   <name>.v4.rules / <name>.v6.rules  renderChainRestore with the built-in service template
 *   <name>.base.v4.rules / .base.v6.rules  renderBaseRestore with test/fixtures/golden/base.rules
 *   <name>.nft                          the nftables backend's full transaction (`nft -f` text)
 *
 * After an intended change, regenerate and review the diff before committing:
 *   npx tsc -p . && UPDATE_GOLDEN=1 node --test dist/test/unit/golden.test.js
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { type Net, parseNet } from '../../src/core/address.js';
import { compile } from '../../src/core/compile.js';
import { renderBaseRestore, renderChainRestore } from '../../src/dataplane/iptables/render.js';
import { kernelNamesFor } from '../../src/dataplane/iptables/setNames.js';
import { renderFull } from '../../src/dataplane/nft/render.js';
import { DEFAULT_SERVICE_TEMPLATE, parseBaseTemplate } from '../../src/dataplane/iptables/templates.js';
import type { CompileOptions, Snapshot, StaticSetConfig } from '../../src/core/types.js';

const DIR = new URL('../../../test/fixtures/golden/', import.meta.url);
const UPDATE = process.env.UPDATE_GOLDEN === '1';

interface GoldenInput extends Snapshot {
  readonly now: number;
  readonly options: {
    readonly customSets: readonly StaticSetConfig[];
    readonly managementNets: readonly string[];
    readonly ipsetFiles?: 'befw' | 'members';
  };
}

function load(name: string): { snapshot: Snapshot; options: CompileOptions; now: number } {
  const input = JSON.parse(readFileSync(new URL(`${name}.input.json`, DIR), 'utf8')) as GoldenInput;
  const managementNets: Net[] = input.options.managementNets.map((text) => {
    const r = parseNet(text);
    if (!r.ok) throw new Error(`fixture ${name}: bad management network ${text}`);
    return { family: r.value.family, cidr: r.value.cidr, prefix: r.value.prefix };
  });
  const snapshot: Snapshot = {
    node: input.node,
    agentServices: input.agentServices,
    fileServices: input.fileServices,
    kv: input.kv,
    ipsetFiles: input.ipsetFiles,
    inputDiagnostics: input.inputDiagnostics,
  };
  const ipsetFiles = input.options.ipsetFiles === undefined ? {} : { ipsetFiles: input.options.ipsetFiles };
  return { snapshot, options: { customSets: input.options.customSets, managementNets, ...ipsetFiles }, now: input.now };
}

function golden(file: string, actual: string): void {
  const url = new URL(file, DIR);
  if (UPDATE) {
    writeFileSync(url, actual);
    return;
  }
  assert.ok(existsSync(url), `${fileURLToPath(url)} is missing: run with UPDATE_GOLDEN=1 to create it, then review it`);
  const expected = readFileSync(url);
  // Text comparison first for a readable diff, then the bytes themselves.
  assert.equal(actual, expected.toString('utf8'), `${file} differs from the golden file (UPDATE_GOLDEN=1 regenerates it)`);
  assert.ok(Buffer.from(actual, 'utf8').equals(expected), `${file} differs byte for byte`);
}

const base = parseBaseTemplate(readFileSync(new URL('base.rules', DIR), 'utf8'), 'golden/base.rules');

for (const name of ['full', 'empty']) {
  describe(`golden: ${name}`, () => {
    const { snapshot, options, now } = load(name);
    const plan = compile(snapshot, options, now);

    test('plan', () => golden(`${name}.plan.json`, `${JSON.stringify(plan, null, 2)}\n`));
    const names = kernelNamesFor(plan);
    test('chain restore, IPv4 and IPv6', () => {
      golden(`${name}.v4.rules`, renderChainRestore(plan.rules, 4, DEFAULT_SERVICE_TEMPLATE, true, names));
      golden(`${name}.v6.rules`, renderChainRestore(plan.rules, 6, DEFAULT_SERVICE_TEMPLATE, true, names));
    });
    test('base restore, IPv4 and IPv6', () => {
      golden(`${name}.base.v4.rules`, renderBaseRestore(base, plan.rules, 4, DEFAULT_SERVICE_TEMPLATE, names));
      golden(`${name}.base.v6.rules`, renderBaseRestore(base, plan.rules, 6, DEFAULT_SERVICE_TEMPLATE, names));
    });
    test('nftables transaction', () => golden(`${name}.nft`, renderFull(plan, now).text));
    test('compiling again gives the same bytes', () => {
      assert.equal(JSON.stringify(compile(snapshot, options, now)), JSON.stringify(plan));
    });
  });
}

describe('golden: full, spot checks that do not depend on the stored files', () => {
  const { snapshot, options, now } = load('full');
  const plan = compile(snapshot, options, now);
  const members = (n: string): readonly string[] => plan.sets.find((s) => s.name === n)?.members ?? ['<missing set>'];

  test('what the fixture is meant to exercise', () => {
    assert.deepEqual(members('web_tcp_8080'), ['192.0.2.10/32', '192.0.2.11/32', '198.51.100.0/24', '198.51.100.2/32']);
    assert.deepEqual(members('web_tcp_8080_v6'), ['2001:db8:1::/64', '2001:db8::11/128']);
    assert.deepEqual(members('dns_udp_53'), ['0.0.0.0/0']);
    assert.deepEqual(members('dns_udp_53_v6'), ['::/0']);
    assert.deepEqual(members('api_tcp_9000'), ['203.0.113.6/32']);
    assert.deepEqual(members('legacyapp_tcp_8081'), ['198.51.100.0/24']);
    assert.deepEqual(members('rules_allow'), ['10.0.0.0/8', '10.1.2.3/32', '192.0.2.200/32']); // overlaps are not merged
    assert.deepEqual(members('rules_allow_v6'), ['2001:db8:ffff::/48']);
    assert.deepEqual(members('rules_deny'), ['203.0.113.0/28', '203.0.113.66/32', '203.0.113.77/32']);
    assert.deepEqual(members('rules_deny_v6'), ['2001:db8:bad::/48']);
    assert.deepEqual(members('blocklist'), ['198.18.0.0/15']);
    assert.deepEqual(members('partners'), ['100.64.0.0/10']);
    assert.deepEqual(members('monitor'), ['192.0.2.99/32']);
    assert.equal(plan.nextExpiry, (now / 1000 + 1) * 1000); // rules_allow/192.0.2.200
    const long = 'an-extremely-long-internal-service-name_tcp_7000';
    assert.deepEqual(members(long), ['192.0.2.70/32']);
    // ...and only the iptables backend shortens it, for ipset's 31 characters.
    assert.ok(kernelNamesFor(plan).set(long, 'inet').length <= 28);
    assert.deepEqual(
      plan.rules.filter((r) => r.kind === 'static').map((r) => r.set),
      ['befw~protect', 'rules_allow', 'rules_deny', 'blocklist', 'partners'],
    );
    assert.deepEqual(
      plan.rules
        .filter((r) => r.kind === 'service' && r.service === 'web_tcp_8080')
        .map((r) => (r.kind === 'service' ? `${r.port}/${r.proto} ${r.mode}` : '')),
      ['8080/tcp enforcing', '8443/tcp enforcing', '9090/tcp enforcing', '30000:30100/udp enforcing'],
    );
    const codes = plan.diagnostics.map((d) => d.code);
    for (const c of [
      'bad-service-file',
      'bad-port',
      'service-conflict',
      'bad-address',
      'bad-expiry',
      'unknown-kind',
      'bad-key',
      'host-bits',
      'alias-cycle',
      'unknown-alias',
      'unknown-set',
    ]) {
      assert.ok(codes.includes(c), `expected a ${c} diagnostic`);
    }
    for (const d of plan.diagnostics) assert.doesNotMatch(`${d.subject} ${d.message}`, /[\u0000-\u001f]/);
  });
});
