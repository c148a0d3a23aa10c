import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { suspiciousRemovals } from '../../src/core/blastRadius.js';
import type { Plan, PlanSet } from '../../src/core/types.js';
import { STATE_VERSION, decodeState, encodeState } from '../../src/state/stateStore.js';
import { Packr } from 'msgpackr';

const plan = (sets: Record<string, string[]>): Plan => ({
  sets: Object.entries(sets).map(([name, members]): PlanSet => ({ name, family: 'inet', members: [...members].sort(), maxelem: 65536 })),
  rules: [],
  fingerprint: '',
  nextExpiry: null,
  services: [],
  setViews: [],
  diagnostics: [],
});
const members = (n: number, from = 0): string[] => Array.from({ length: n }, (_, i) => `198.51.100.${from + i}/32`);

describe('blast-radius guard rule', () => {
  it('flags a set losing more than the share of its members', () => {
    const r = suspiciousRemovals(plan({ a: members(20) }), plan({ a: members(9) }), { share: 0.5, minMembers: 10 });
    assert.deepEqual(r, [{ set: 'a', before: 20, removed: 11 }]);
  });

  it('lets exactly half, or fewer, go through', () => {
    assert.deepEqual(suspiciousRemovals(plan({ a: members(20) }), plan({ a: members(10) }), { share: 0.5, minMembers: 10 }), []);
  });

  it('flags a small set being emptied, but not a single member going', () => {
    assert.equal(suspiciousRemovals(plan({ a: members(3) }), plan({ a: [] })).length, 1);
    assert.deepEqual(suspiciousRemovals(plan({ a: members(1) }), plan({ a: [] })), []);
    assert.deepEqual(
      suspiciousRemovals(plan({ a: members(5) }), plan({ a: members(2) })),
      [],
      'small sets are only guarded against emptying',
    );
  });

  it('counts a set that vanished (its service went away) as emptied', () => {
    assert.deepEqual(suspiciousRemovals(plan({ a: members(4), b: members(2) }), plan({ b: members(2) })), [
      { set: 'a', before: 4, removed: 4 },
    ]);
  });

  it('is not fooled by additions hiding removals', () => {
    const r = suspiciousRemovals(plan({ a: members(20) }), plan({ a: [...members(5), ...members(30, 100)] }));
    assert.deepEqual(r, [{ set: 'a', before: 20, removed: 15 }]);
  });
});

describe('state.bin envelope', () => {
  const state = {
    savedAt: 1_700_000_000_000,
    owned: ['web_tcp_80', 'web_tcp_80_v6'],
    fingerprint: 'abc',
    snapshot: {
      node: { name: 'n', dc: 'dc1' },
      agentServices: [],
      fileServices: [],
      kv: [{ key: 'befw/$service$/web_tcp_80/198.51.100.1', value: '-1' }],
      ipsetFiles: [],
      inputDiagnostics: [],
    },
  };

  it('round-trips', () => {
    const r = decodeState(encodeState(state));
    assert.equal(r.kind, 'ok');
    assert.deepEqual(r.kind === 'ok' ? r.state : null, state);
  });

  it('rejects a truncated file at every length', () => {
    const buf = encodeState(state);
    for (let n = 0; n < buf.length; n += Math.max(1, Math.floor(buf.length / 50))) {
      assert.equal(decodeState(buf.subarray(0, n)).kind, 'invalid', `truncated to ${n} bytes`);
    }
  });

  it('rejects any flipped byte in the payload by its checksum', () => {
    const buf = encodeState(state);
    let caught = 0;
    for (let i = buf.length - 40; i < buf.length; i++) {
      const bad = Buffer.from(buf);
      bad[i] = (bad[i] ?? 0) ^ 0x55;
      if (decodeState(bad).kind === 'invalid') caught++;
    }
    assert.equal(caught, 40);
  });

  it('rejects a file whose checksum is right but whose snapshot has the wrong shape', () => {
    const shapes: [string, unknown][] = [
      ['a service without a name', { ...state.snapshot, agentServices: [{ id: 'web', port: 80, tags: [] }] }],
      ['a port out of range', { ...state.snapshot, agentServices: [{ id: 'w', name: 'w', port: 70000, tags: [] }] }],
      ['a tag that is not a string', { ...state.snapshot, agentServices: [{ id: 'w', name: 'w', port: 80, tags: [1] }] }],
      ['a KV value that is a number', { ...state.snapshot, kv: [{ key: 'k', value: 5 }] }],
      [
        'an unknown mode',
        { ...state.snapshot, fileServices: [{ file: 'f', name: 'f', port: 1, protocol: 'tcp', mode: 'open', ports: [] }] },
      ],
      ['no node', { ...state.snapshot, node: undefined }],
      ['trap ports that are not ports', { ...state.snapshot, trapPorts: ['22'] }],
    ];
    for (const [what, snapshot] of shapes) {
      const r = decodeState(encodeState({ ...state, snapshot } as never));
      assert.equal(r.kind, 'invalid', what);
      assert.match(r.kind === 'invalid' ? r.reason : '', /^snapshot/, what);
    }
    assert.equal(decodeState(encodeState({ ...state, owned: [1] } as never)).kind, 'invalid');
  });

  it('rejects a newer version and foreign files', () => {
    const packr = new Packr({ useRecords: false });
    const payload = packr.pack(state);
    const future = packr.pack({ magic: 'befw-state', version: STATE_VERSION + 1, sha256: 'x', payload });
    const r = decodeState(Buffer.from(future));
    assert.equal(r.kind, 'invalid');
    assert.match(r.kind === 'invalid' ? r.reason : '', /newer/);
    assert.equal(decodeState(Buffer.from('{"hello":1}')).kind, 'invalid');
    assert.equal(decodeState(Buffer.alloc(0)).kind, 'invalid');
  });
});
