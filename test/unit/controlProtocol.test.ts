/**
 * The control protocol's two checks of what crosses the socket: the agent accepts only a known
 * command, and the CLI accepts only an answer of the asked command's shape (or a failure).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type ControlHandlers,
  dispatch,
  encodeRequest,
  isAnswerTo,
  isControlFailure,
  parseRequest,
} from '../../src/agent/controlProtocol.js';

describe('control protocol', () => {
  it('a request line round-trips, and anything else is refused with the list of commands', () => {
    assert.deepEqual(parseRequest(encodeRequest({ cmd: 'reload' }).trimEnd()), { cmd: 'reload' });
    for (const line of ['', 'nope', '{"cmd":"rm -rf"}', '{"cmd":["status"]}', '["status"]', 'null', '{"cmd":"toString"}']) {
      assert.deepEqual(
        parseRequest(line),
        { ok: false, error: 'unknown command; expected one of status, reload, check, guard-release, guard-hold' },
        line,
      );
    }
  });

  it('dispatches each command to its own handler', async () => {
    const handlers: ControlHandlers = {
      status: () => Promise.reject(new Error('not this one')),
      reload: async () => ({ ok: true, config: '/etc/befw.conf' }),
      check: async () => ({ ok: true, drifts: [] }),
      'guard-release': () => Promise.reject(new Error('not this one')),
      'guard-hold': async (req) => ({ ok: true, guard: { holding: null, manual: { until: req.seconds ?? null } } }),
    };
    assert.deepEqual(await dispatch(handlers, { cmd: 'reload' }), { ok: true, config: '/etc/befw.conf' });
    assert.deepEqual(await dispatch(handlers, { cmd: 'check' }), { ok: true, drifts: [] });
    assert.deepEqual(await dispatch(handlers, { cmd: 'guard-hold', seconds: 60 }), {
      ok: true,
      guard: { holding: null, manual: { until: 60 } },
    });
  });

  it('only guard-hold takes seconds, and only a sane number of them', () => {
    assert.deepEqual(parseRequest('{"cmd":"guard-hold","seconds":3600}'), { cmd: 'guard-hold', seconds: 3600 });
    for (const line of [
      '{"cmd":"guard-hold","seconds":0}',
      '{"cmd":"guard-hold","seconds":1.5}',
      '{"cmd":"guard-hold","seconds":"9"}',
      '{"cmd":"status","seconds":5}',
    ]) {
      assert.equal(isControlFailure(parseRequest(line)), true, line);
    }
  });

  it('tells an answer of the right shape from a failure and from anything else', () => {
    assert.equal(isAnswerTo('reload', { ok: false, error: 'bad', config: '/c' }), true);
    assert.equal(isAnswerTo('reload', { ok: 'yes', config: '/c' }), false);
    assert.equal(isAnswerTo('check', { ok: false, drifts: [{ what: 'jump', detail: 'missing' }] }), true);
    assert.equal(isAnswerTo('check', { ok: false, error: 'cannot read the kernel' }), false);
    assert.equal(isControlFailure({ ok: false, error: 'cannot read the kernel' }), true);
    assert.equal(isAnswerTo('status', { ok: false, error: 'x' }), false);
    assert.equal(isAnswerTo('status', { ok: true, version: '1', pid: 1, startedAt: 0 }), false, 'fields missing');
    assert.equal(
      isAnswerTo('status', {
        ok: true,
        version: '1',
        pid: 1,
        startedAt: 0,
        consul: {},
        stats: {},
        sets: [],
        diagnostics: [],
        lastReload: null,
      }),
      true,
    );
    assert.equal(isAnswerTo('status', 'ok'), false);
    assert.equal(isControlFailure(null), false);
  });
});
