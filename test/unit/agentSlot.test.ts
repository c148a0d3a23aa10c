/**
 * Reload (AgentSlot) with a fake agent factory: every step that can fail (reading the config,
 * preparing the agent, starting it) is made to fail in turn, and the trace shows which agent runs
 * afterwards. The rule under test: nothing touches the running agent until its replacement is
 * prepared, and a failed reload leaves an agent running and says why.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AgentHandle, PreparedAgent } from '../../src/agent/agent.js';
import { AgentSlot, type AgentSlotDeps } from '../../src/agent/agentSlot.js';
import { agentStatus } from '../../src/agent/status.js';
import { type Config, ConfigError, parseConfig } from '../../src/config/config.js';
import { recordingLog } from '../helpers/recordingLog.js';

const PATH = '/test/befw.conf';

function config(text = ''): Config {
  return parseConfig(text, PATH);
}

/** A config told apart by its state path (the only thing the fakes look at). */
function named(name: string): Config {
  return config(`state=/test/${name}.bin`);
}

const nameOf = (c: Config): string => c.statePath.replace(/^\/test\/|\.bin$/g, '');

function fakeHandle(name: string, trace: string[]): AgentHandle {
  return {
    done: Promise.resolve(),
    status: () =>
      agentStatus({
        startedAt: 0,
        backend: { name: 'iptables', description: 'iptables + ipset, nf_tables tools' },
        inputs: { consulHealth: { reachable: true, lastAnswerAt: null, lastError: null, lastContactMs: null }, kvPrefixes: [] },
        reconciler: {
          stats: {
            applies: 0,
            applyFailures: 0,
            rollbacks: 0,
            repairs: 0,
            held: 0,
            lastApplyAt: null,
            lastResult: null,
            lastSuccessAt: null,
          },
          lastSource: null,
          lastPlan: null,
          guardStatus: { holding: null, manual: null },
          stateSave: { failingSince: null, lastError: null },
        },
        recorder: { ready: true },
        loop: { healthy: true },
        staleAfterMs: 900_000,
        now: 0,
      }),
    check: async () => ({ drifts: [], repair: null }),
    rebuild: () => undefined,
    guardRelease: () => ({ ok: true, guard: { holding: null, manual: null }, released: null }),
    guardHold: () => ({ ok: true, guard: { holding: null, manual: { until: null } } }),
    stop: async () => {
      trace.push(`stop ${name}`);
    },
  };
}

interface Rig {
  deps: AgentSlotDeps;
  trace: string[];
  /** What the next loadConfig() returns or throws, in turn. */
  configs: (Config | Error)[];
  /** Agent names whose prepare() / start() fails, and with what. */
  failPrepare: Map<string, unknown>;
  failStart: Map<string, unknown>;
  fatal: unknown[];
  swapped: string[];
  logged: ReturnType<typeof recordingLog>;
  /** While set, prepare() waits for it. */
  gate: Promise<void> | null;
}

function rig(): Rig {
  const trace: string[] = [];
  const handles = new WeakMap<AgentHandle, string>();
  const r: Omit<Rig, 'deps'> = {
    trace,
    configs: [],
    failPrepare: new Map(),
    failStart: new Map(),
    fatal: [],
    swapped: [],
    logged: recordingLog(),
    gate: null,
  };
  let built = 0;
  const deps: AgentSlotDeps = {
    configPath: PATH,
    loadConfig: async (path) => {
      assert.equal(path, PATH);
      trace.push('load');
      const next = r.configs.shift();
      if (next === undefined) throw new Error('test script has no more configs');
      if (next instanceof Error) throw next;
      return next;
    },
    prepare: async (c): Promise<PreparedAgent> => {
      const name = nameOf(c);
      trace.push(`prepare ${name}`);
      if (r.gate !== null) await r.gate;
      if (r.failPrepare.has(name)) throw r.failPrepare.get(name);
      const id = `${name}#${++built}`;
      return {
        start: async () => {
          trace.push(`start ${id}`);
          if (r.failStart.has(name)) throw r.failStart.get(name);
          const h = fakeHandle(id, trace);
          handles.set(h, id);
          return h;
        },
        discard: () => trace.push(`discard ${id}`),
      };
    },
    log: r.logged.log,
    onSwap: () => trace.push('RELOADING=1'),
    onSwapped: (agent) => r.swapped.push(handles.get(agent) ?? '?'),
    onFatal: (err) => r.fatal.push(err),
    now: () => 42,
  };
  // The same object: tests change the script (configs, failures, gate) while the slot runs.
  return Object.assign(r, { deps });
}

async function opened(r: Rig, name = 'old'): Promise<AgentSlot> {
  const slot = await AgentSlot.open(r.deps, named(name));
  r.trace.length = 0;
  return slot;
}

describe('AgentSlot: reload', () => {
  it('prepares the new agent before it stops the old one, then starts it', async () => {
    const r = rig();
    const slot = await opened(r);
    r.configs.push(named('new'));
    const answer = await slot.reload();
    assert.deepEqual(answer, { ok: true, config: PATH });
    assert.deepEqual(r.trace, ['load', 'prepare new', 'RELOADING=1', 'stop old#1', 'start new#2']);
    assert.equal(nameOf(slot.config), 'new');
    assert.deepEqual(r.swapped, ['new#2']);
    assert.deepEqual(slot.lastReload, { at: 42, ok: true });
    assert.equal(r.logged.named('reload').length, 1);
  });

  it('a config that does not parse is rejected; the old agent is not touched', async () => {
    const r = rig();
    const slot = await opened(r);
    const old = slot.agent;
    r.configs.push(new ConfigError(PATH, 3, 'bogus_key', 'unknown key'));
    const answer = await slot.reload();
    assert.equal(answer.ok, false);
    assert.match(answer.error ?? '', /befw\.conf:3 \(bogus_key\): unknown key/);
    assert.deepEqual(r.trace, ['load']);
    assert.equal(slot.agent, old);
    assert.equal(r.logged.named('reload-rejected').length, 1);
    assert.equal(r.logged.named('reload').length, 0);
  });

  it('a template that cannot be read (prepare fails) is rejected; the old agent runs on', async () => {
    const r = rig();
    const slot = await opened(r);
    const old = slot.agent;
    r.configs.push(named('new'));
    r.failPrepare.set('new', new ConfigError(PATH, null, 'rules', 'cannot read template /nope: ENOENT'));
    const answer = await slot.reload();
    assert.deepEqual(answer, { ok: false, error: `${PATH} (rules): cannot read template /nope: ENOENT`, config: PATH });
    assert.deepEqual(r.trace, ['load', 'prepare new'], 'no RELOADING=1, no stop');
    assert.equal(slot.agent, old);
    assert.equal(nameOf(slot.config), 'old');
    assert.deepEqual(slot.lastReload, { at: 42, ok: false, error: answer.error });
    const [event] = r.logged.named('reload-rejected');
    assert.equal(event?.err, answer.error);
  });

  it('a backend that cannot be detected (a plain Error, or not even one) is rejected too', async () => {
    const r = rig();
    const slot = await opened(r);
    r.configs.push(named('new'), named('newer'));
    r.failPrepare.set('new', new Error('cannot run iptables --version: not installed'));
    r.failPrepare.set('newer', 'a string');
    assert.deepEqual(await slot.reload(), { ok: false, error: 'cannot run iptables --version: not installed', config: PATH });
    assert.deepEqual(await slot.reload(), { ok: false, error: 'a string', config: PATH });
    assert.equal(nameOf(slot.config), 'old');
    assert.ok(!r.trace.some((s) => s.startsWith('stop')));
  });

  it('a new agent that fails to start is replaced by one from the old config', async () => {
    const r = rig();
    const slot = await opened(r);
    r.configs.push(named('new'));
    r.failStart.set('new', new Error('state.bin: EIO'));
    const answer = await slot.reload();
    assert.deepEqual(answer, { ok: false, error: 'state.bin: EIO', config: PATH });
    assert.deepEqual(r.trace, ['load', 'prepare new', 'RELOADING=1', 'stop old#1', 'start new#2', 'prepare old', 'start old#3']);
    assert.equal(nameOf(slot.config), 'old');
    assert.deepEqual(r.swapped, ['old#3']);
    assert.deepEqual(r.fatal, []);
  });

  it('when no agent can start at all, says so (the daemon then exits)', async () => {
    const r = rig();
    const slot = await opened(r);
    r.configs.push(named('new'));
    r.failStart.set('new', new Error('state.bin: EIO'));
    r.failStart.set('old', new Error('state.bin: EIO again'));
    const answer = await slot.reload();
    assert.equal(answer.ok, false);
    assert.equal(r.fatal.length, 1);
    assert.equal(r.logged.named('reload-failed').length, 1);
  });

  it('reloads run one at a time, and stop waits for the one in progress', async () => {
    const r = rig();
    const slot = await opened(r);
    r.configs.push(named('a'), named('b'));
    let release: () => void = () => undefined;
    r.gate = new Promise((resolve) => (release = resolve));
    const first = slot.reload();
    const second = slot.reload();
    const stopped = slot.stop();
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(r.trace, ['load', 'prepare a']);
    r.gate = null;
    release();
    assert.deepEqual(await first, { ok: true, config: PATH });
    assert.deepEqual(await second, { ok: true, config: PATH });
    await stopped;
    assert.deepEqual(r.trace, [
      'load',
      'prepare a',
      'RELOADING=1',
      'stop old#1',
      'start a#2',
      'load',
      'prepare b',
      'RELOADING=1',
      'stop a#2',
      'start b#3',
      'stop b#3',
    ]);
  });

  it('a reload fired and forgotten (SIGHUP) never rejects, whatever fails', async () => {
    const r = rig();
    const slot = await opened(r);
    const unhandled: unknown[] = [];
    const onUnhandled = (err: unknown): void => void unhandled.push(err);
    process.on('unhandledRejection', onUnhandled);
    try {
      r.configs.push(new Error('EACCES'), named('new'), named('newer'));
      r.failPrepare.set('new', new Error('no backend'));
      r.failStart.set('newer', new Error('EIO'));
      for (let i = 0; i < 3; i++) void slot.reload();
      await slot.stop();
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(unhandled, []);
      assert.equal(r.logged.named('reload-rejected').length, 3);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
