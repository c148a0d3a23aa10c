import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type AppliedSet, type KernelSetHeader, buildSetScript, parseIpsetListTerse } from '../../src/dataplane/iptables/ipset.js';
import { diffSorted } from '../../src/core/sortedDiff.js';
import type { PlanSet } from '../../src/core/types.js';

const set = (name: string, members: string[], maxelem = 65536, family: 'inet' | 'inet6' = 'inet'): PlanSet => ({
  name,
  family,
  members,
  maxelem,
});
const header = (name: string, over: Partial<KernelSetHeader> = {}): KernelSetHeader => ({
  name,
  type: 'hash:net',
  family: 'inet',
  maxelem: 65536,
  references: 1,
  entries: 0,
  ...over,
});
const applied = (s: PlanSet): [string, AppliedSet] => [s.name, { family: s.family, maxelem: s.maxelem, members: s.members }];

describe('diffSorted', () => {
  it('finds additions and removals in one walk', () => {
    const adds: string[] = [];
    const dels: string[] = [];
    diffSorted(
      ['a', 'c', 'd', 'f'],
      ['b', 'c', 'f', 'g'],
      (m) => adds.push(m),
      (m) => dels.push(m),
    );
    assert.deepEqual(adds, ['b', 'g']);
    assert.deepEqual(dels, ['a', 'd']);
  });
});

describe('buildSetScript', () => {
  it('creates and fills a set the kernel does not have, without a temporary set', () => {
    const s = buildSetScript([set('web_tcp_80', ['198.51.100.0/24'])], new Map());
    assert.equal(s.script, 'create web_tcp_80 hash:net family inet maxelem 65536\nadd web_tcp_80 198.51.100.0/24\n');
    assert.deepEqual(s.created, ['web_tcp_80']);
  });

  it('rebuilds an existing set through a temporary set and swaps it in', () => {
    const s = buildSetScript([set('web_tcp_80', ['198.51.100.1/32'])], new Map([['web_tcp_80', header('web_tcp_80')]]));
    assert.equal(
      s.script,
      'create ~befw0 hash:net family inet maxelem 65536\nadd ~befw0 198.51.100.1/32\nswap ~befw0 web_tcp_80\ndestroy ~befw0\n',
    );
    assert.deepEqual(s.swapped, ['web_tcp_80']);
  });

  it('writes one line for a one-member change to a large set it applied before', () => {
    const big = Array.from({ length: 65000 }, (_, i) => `198.18.${i >> 8}.${i & 255}/32`).sort();
    const before = set('big', big, 131072);
    const after = set('big', [...big, '203.0.113.9/32'].sort(), 131072);
    const s = buildSetScript([after], new Map(), new Map([applied(before)]));
    assert.equal(s.script, 'add big 203.0.113.9/32\n');
    assert.equal(s.added, 1);
    const removal = buildSetScript([before], new Map(), new Map([applied(after)]));
    assert.equal(removal.script, 'del big 203.0.113.9/32\n');
  });

  it('writes nothing when nothing changed', () => {
    const a = set('a', ['198.51.100.1/32']);
    assert.equal(buildSetScript([{ ...a, members: [...a.members] }], new Map(), new Map([applied(a)])).script, '');
  });

  it('rebuilds when the size limit changes, and destroys leftover temporary sets first', () => {
    const before = set('a', ['198.51.100.1/32'], 65536);
    const after = set('a', ['198.51.100.1/32'], 131072);
    const kernel = new Map([
      ['a', header('a')],
      ['~befw3', header('~befw3', { references: 0 })],
    ]);
    const s = buildSetScript([after], kernel, new Map([applied(before)]));
    assert.ok(s.script.startsWith('destroy ~befw3\ncreate ~befw0 hash:net family inet maxelem 131072\n'), s.script);
    assert.deepEqual(s.swapped, ['a']);
  });

  it('replaces an unreferenced set of another type, refuses a referenced one', () => {
    const plan = [set('a', [])];
    const free = buildSetScript(plan, new Map([['a', header('a', { type: 'hash:ip', references: 0 })]]));
    assert.equal(free.script, 'destroy a\ncreate a hash:net family inet maxelem 65536\n');
    assert.throws(() => buildSetScript(plan, new Map([['a', header('a', { type: 'hash:ip', references: 2 })]])), /referenced 2 time/);
  });
});

describe('parseIpsetListTerse', () => {
  it('reads names, types, families, limits and references', () => {
    const text = [
      'Name: web_tcp_80',
      'Type: hash:net',
      'Revision: 7',
      'Header: family inet6 hashsize 1024 maxelem 131072 bucketsize 12 initval 0xd8236e32',
      'Size in memory: 1312',
      'References: 2',
      'Number of entries: 1',
      '',
      'Name: b',
      'Type: hash:ip',
      'Revision: 6',
      'Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x863ea6c6',
      'Size in memory: 216',
      'References: 0',
      'Number of entries: 0',
    ].join('\n');
    assert.deepEqual(parseIpsetListTerse(text), [
      { name: 'web_tcp_80', type: 'hash:net', family: 'inet6', maxelem: 131072, references: 2, entries: 1 },
      { name: 'b', type: 'hash:ip', family: 'inet', maxelem: 65536, references: 0, entries: 0 },
    ]);
  });
});
