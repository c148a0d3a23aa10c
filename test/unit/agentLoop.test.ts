/**
 * The AgentLoop on fake timers (node:test mock.timers: setTimeout, setInterval and Date) with a
 * scripted reconciler, recording inputs, a recording outcome sink and a fake kernel check: time
 * moves only when a test moves it, so each timer is checked to the millisecond.
 */
import assert from 'node:assert/strict';
import { type TestContext, describe, it } from 'node:test';
import { AgentLoop, COALESCE_MAX_MS, type LoopInputs, type LoopReconciler, type LoopTiming } from '../../src/agent/agentLoop.js';
import type { OutcomeSink } from '../../src/agent/outcomeRecorder.js';
import type { Outcome } from '../../src/agent/reconciler.js';
import { compile } from '../../src/core/compile.js';
import type { Plan } from '../../src/core/types.js';
import type { Drift } from '../../src/dataplane/iptables/driver.js';
import { recordingLog } from '../helpers/recordingLog.js';

const PLAN: Plan = compile(
  { node: { name: 'n1', dc: 'dc1' }, agentServices: [], fileServices: [], kv: [], ipsetFiles: [], inputDiagnostics: [] },
  { customSets: [], managementNets: [] },
  0,
  { views: false },
);
const UNCHANGED: Outcome = { kind: 'unchanged', plan: PLAN, source: 'consul' };
const FAILED: Outcome = { kind: 'apply-failed', error: new Error('ipset restore: exit 1'), plan: PLAN, rolledBack: true };
const DRIFT: Drift = { what: 'set-members', set: 'rules_allow', detail: '1 member missing' };

/** Lets pending promise callbacks run (setImmediate is not faked). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

function fakeTime(t: TestContext): (ms: number) => Promise<void> {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: 0 });
  return async (ms) => {
    await flush();
    for (let i = 0; i < ms; i++) {
      t.mock.timers.tick(1);
      await flush();
    }
  };
}

class FakeReconciler implements LoopReconciler {
  nextExpiry: number | null = null;
  readonly calls: { at: number; reason: string; full: boolean }[] = [];
  readonly repairs: (readonly Drift[])[] = [];
  /** Outcomes of the coming reconciles, in turn; then UNCHANGED. */
  readonly outcomes: Outcome[] = [];
  /** The next expiry after each coming reconcile, in turn; then null. */
  readonly expiries: (number | null)[] = [];
  /** While set, a reconcile waits for it. */
  gate: Promise<void> | null = null;
  running = false;

  async enforceSaved(): Promise<Outcome | null> {
    return null;
  }

  async reconcile(reason: string, full = false): Promise<Outcome> {
    this.running = true;
    this.calls.push({ at: Date.now(), reason, full });
    try {
      if (this.gate !== null) await this.gate;
      this.nextExpiry = this.expiries.shift() ?? null;
      return this.outcomes.shift() ?? UNCHANGED;
    } finally {
      this.running = false;
    }
  }

  async repair(drifts: readonly Drift[]): Promise<Outcome | null> {
    this.repairs.push(drifts);
    return UNCHANGED;
  }
}

class FakeInputs implements LoopInputs {
  kvSize = 0;
  readonly counts = { start: 0, stop: 0, reread: 0, invalidate: 0 };
  start(): void {
    this.counts.start++;
  }
  async stop(): Promise<void> {
    this.counts.stop++;
  }
  invalidate(): void {
    this.counts.invalidate++;
  }
  reread(): void {
    this.counts.reread++;
  }
}

class RecordingSink implements OutcomeSink {
  readonly started: (Outcome | null)[] = [];
  readonly recorded: { kind: string; reasons: string[] }[] = [];
  drifts = 0;
  recordStart(outcome: Outcome | null): void {
    this.started.push(outcome);
  }
  record(outcome: Outcome, reasons: ReadonlySet<string>): void {
    this.recorded.push({ kind: outcome.kind, reasons: [...reasons].sort() });
  }
  drift(): void {
    this.drifts++;
  }
}

interface Rig {
  loop: AgentLoop;
  reconciler: FakeReconciler;
  inputs: FakeInputs;
  sink: RecordingSink;
  checks: { at: number; members: boolean; duringReconcile: boolean }[];
  /** What the coming kernel checks find, in turn; then nothing. */
  verifyScript: Drift[][];
  resyncs: { count: number };
  logged: ReturnType<typeof recordingLog>;
}

const QUIET_TIMING: LoopTiming = { resyncMs: 3_600_000, integrityMs: 3_600_000, integrityFullMs: 3_600_000 };

function rig(timing: Partial<LoopTiming> = {}): Rig {
  const reconciler = new FakeReconciler();
  const inputs = new FakeInputs();
  const sink = new RecordingSink();
  const checks: Rig['checks'] = [];
  const verifyScript: Drift[][] = [];
  const resyncs = { count: 0 };
  const logged = recordingLog();
  const loop = new AgentLoop({
    reconciler,
    inputs,
    verify: async ({ members }) => {
      checks.push({ at: Date.now(), members, duringReconcile: reconciler.running });
      return verifyScript.shift() ?? [];
    },
    recorder: sink,
    log: logged.log,
    timing: { ...QUIET_TIMING, ...timing },
    onResync: () => resyncs.count++,
    random: () => 0.5,
  });
  return { loop, reconciler, inputs, sink, checks, verifyScript, resyncs, logged };
}

describe('AgentLoop: start and stop', () => {
  it('enforces the saved state first, then starts the inputs', async (t) => {
    fakeTime(t);
    const r = rig();
    await r.loop.start();
    assert.deepEqual(r.sink.started, [null]);
    assert.equal(r.inputs.counts.start, 1);
    await r.loop.stop();
    assert.equal(r.inputs.counts.stop, 1);
  });

  it('after stop, no timer fires and pokes are ignored', async (t) => {
    const advance = fakeTime(t);
    const r = rig({ resyncMs: 1000, integrityMs: 500 });
    r.reconciler.nextExpiry = 2000;
    await r.loop.start();
    await r.loop.stop();
    r.loop.poke('kv');
    await advance(5000);
    assert.deepEqual(r.reconciler.calls, []);
    assert.deepEqual(r.checks, []);
    assert.equal(r.inputs.counts.reread, 0);
  });
});

describe('AgentLoop: triggers', () => {
  it('coalesces a burst of input changes into one reconcile carrying every reason', async (t) => {
    const advance = fakeTime(t);
    const r = rig();
    await r.loop.start();
    r.loop.poke('kv');
    r.loop.poke('services');
    r.loop.poke('kv');
    await advance(COALESCE_MAX_MS);
    assert.equal(r.reconciler.calls.length, 1);
    assert.deepEqual(r.sink.recorded, [{ kind: 'unchanged', reasons: ['kv', 'services'] }]);
    await r.loop.stop();
  });

  it('the expiry timer fires a reconcile at the expiry second, and re-arms for the next one', async (t) => {
    const advance = fakeTime(t);
    const r = rig();
    r.reconciler.nextExpiry = 10_000;
    r.reconciler.expiries.push(25_000);
    await r.loop.start();
    await advance(10_000);
    assert.equal(r.reconciler.calls.length, 0, 'nothing before the expiry second');
    await advance(10);
    assert.equal(r.reconciler.calls.length, 1);
    const first = r.reconciler.calls[0];
    assert.equal(first?.reason, 'expiry');
    assert.ok(first !== undefined && first.at > 10_000 && first.at <= 10_010, `fired at ${first?.at}`);
    await advance(25_000 - 10_010);
    assert.equal(r.reconciler.calls.length, 1, 'the next expiry is not due yet');
    await advance(10);
    assert.equal(r.reconciler.calls[1]?.reason, 'expiry');
    await advance(60_000);
    assert.equal(r.reconciler.calls.length, 2, 'no expiry left, no timer');
    await r.loop.stop();
  });

  it('a failed apply is retried after 1 s, 2 s, 4 s; a success resets the backoff', async (t) => {
    const advance = fakeTime(t);
    const r = rig();
    r.reconciler.outcomes.push(FAILED, FAILED, FAILED, UNCHANGED, FAILED);
    await r.loop.start();
    r.loop.poke('kv');
    await advance(1 + 1000 + 1 + 2000 + 1 + 4000 + 1);
    const at = r.reconciler.calls.map((c) => c.at);
    assert.deepEqual(
      r.reconciler.calls.map((c) => c.reason),
      ['kv', 'retry', 'retry', 'retry'],
    );
    const gaps = at.slice(1).map((a, i) => a - (at[i] ?? 0));
    for (const [i, delay] of [1000, 2000, 4000].entries()) {
      const gap = gaps[i] ?? -1;
      assert.ok(gap >= delay && gap <= delay + COALESCE_MAX_MS, `retry ${i + 1} came ${gap} ms later, wanted ${delay}`);
    }
    assert.deepEqual(
      r.logged.named('retry-scheduled').map((e) => e.inMs),
      [1000, 2000, 4000],
    );
    r.loop.poke('kv');
    await advance(2);
    assert.deepEqual(
      r.logged.named('retry-scheduled').map((e) => e.inMs),
      [1000, 2000, 4000, 1000],
      'backoff starts over',
    );
    await r.loop.stop();
  });

  it('the resync re-reads everything, tells the registrar, reconciles, and makes the next check full', async (t) => {
    const advance = fakeTime(t);
    // Jitter is 0.9-1.1 times the interval; random() = 0.5 puts the resync at 10.5 s exactly.
    const r = rig({ resyncMs: 10_500, integrityMs: 1000 });
    await r.loop.start();
    await advance(10_499);
    assert.equal(r.inputs.counts.reread, 0);
    assert.equal(r.checks.length, 10);
    assert.ok(
      r.checks.every((c) => !c.members),
      'cheap checks only until the resync',
    );
    await advance(1);
    assert.equal(r.inputs.counts.reread, 1);
    assert.equal(r.resyncs.count, 1);
    await advance(COALESCE_MAX_MS);
    assert.deepEqual(
      r.reconciler.calls.map((c) => c.reason),
      ['resync'],
    );
    await advance(450);
    assert.equal(r.checks[10]?.members, true, 'the check after a resync compares members');
    await advance(1000);
    assert.equal(r.checks[11]?.members, false, 'and only that one');
    await advance(10_500);
    assert.equal(r.inputs.counts.reread, 2, 'the resync re-arms itself');
    await r.loop.stop();
  });

  it('a rebuild reconciles in full and re-reads what has no watch', async (t) => {
    const advance = fakeTime(t);
    const r = rig();
    await r.loop.start();
    r.loop.poke('rebuild');
    await advance(2);
    assert.deepEqual(r.reconciler.calls[0], { at: 1, reason: 'rebuild', full: true });
    assert.equal(r.inputs.counts.invalidate, 1);
    await r.loop.stop();
  });
});

describe('AgentLoop: integrity check', () => {
  it('runs between reconciles, never during one', async (t) => {
    const advance = fakeTime(t);
    const r = rig({ integrityMs: 1000 });
    let release: () => void = () => undefined;
    r.reconciler.gate = new Promise((resolve) => (release = resolve));
    await r.loop.start();
    r.loop.poke('kv');
    await advance(5000);
    assert.equal(r.reconciler.calls.length, 1);
    assert.equal(r.checks.length, 0, 'no check while the reconcile runs');
    release();
    await advance(1);
    assert.equal(r.checks.length, 1, 'the check that waited runs once, right after');
    await advance(3000);
    assert.ok(r.checks.length >= 3);
    assert.ok(r.checks.every((c) => !c.duringReconcile));
    await r.loop.stop();
  });

  it('a reconcile poked during a check waits for it', async (t) => {
    const advance = fakeTime(t);
    const r = rig({ integrityMs: 1000 });
    await r.loop.start();
    await advance(999);
    r.loop.poke('kv');
    await advance(1);
    await advance(COALESCE_MAX_MS);
    assert.equal(r.checks.length, 1);
    assert.equal(r.reconciler.calls.length, 1);
    assert.ok(r.checks.every((c) => !c.duringReconcile));
    await r.loop.stop();
  });

  it('repairs drift and records the repair', async (t) => {
    const advance = fakeTime(t);
    const r = rig({ integrityMs: 1000 });
    r.verifyScript.push([DRIFT]);
    await r.loop.start();
    await advance(1000);
    assert.deepEqual(r.reconciler.repairs, [[DRIFT]]);
    assert.equal(r.sink.drifts, 1);
    assert.deepEqual(r.sink.recorded, [{ kind: 'unchanged', reasons: [] }]);
    await r.loop.stop();
  });

  it('befw check compares members, between reconciles, and drift it finds is repaired at once', async (t) => {
    const advance = fakeTime(t);
    const r = rig();
    await r.loop.start();
    // The periodic check's full comparison is an hour away (QUIET_TIMING): only this check sees it.
    r.verifyScript.push([DRIFT], [DRIFT]);
    const result = await r.loop.check();
    assert.deepEqual(result, { drifts: [DRIFT], repair: { state: 'started' } });
    await advance(0);
    assert.deepEqual(
      r.checks.map((c) => c.members),
      [true, true],
      'checked again, members included, right after the answer',
    );
    assert.deepEqual(r.reconciler.repairs, [[DRIFT]], 'repaired without waiting for the next tick');
    assert.equal(r.sink.drifts, 1);
    await r.loop.stop();
  });

  it('befw check with nothing to repair repairs nothing', async (t) => {
    const advance = fakeTime(t);
    const r = rig();
    await r.loop.start();
    assert.deepEqual(await r.loop.check(), { drifts: [], repair: null });
    await advance(0);
    assert.deepEqual(r.reconciler.repairs, []);
    assert.equal(r.checks.length, 1);
    await r.loop.stop();
  });

  it('befw check --repair answers after the repair and a second check', async (t) => {
    fakeTime(t);
    const r = rig();
    await r.loop.start();
    const left: Drift = { what: 'jump', family: 4, detail: 'INPUT does not jump to BEFW' };
    r.verifyScript.push([DRIFT], [left]);
    const result = await r.loop.check(true);
    assert.deepEqual(result, { drifts: [DRIFT], repair: { state: 'done', outcome: 'unchanged', remaining: [left] } });
    assert.deepEqual(r.reconciler.repairs, [[DRIFT]]);
    assert.deepEqual(r.sink.recorded, [{ kind: 'unchanged', reasons: [] }]);
    await r.loop.stop();
  });
});
