/**
 * The Coalescer on fake timers (node:test mock.timers, setTimeout and Date): time only moves when
 * a test moves it, so the quiet period and the max delay are checked to the millisecond and
 * nothing here waits for the real clock.
 */
import assert from 'node:assert/strict';
import { type TestContext, describe, it } from 'node:test';
import { Coalescer } from '../../src/agent/coalescer.js';

const unexpected = (err: unknown): void => assert.fail(String(err));

/** Lets pending promise callbacks run (setImmediate is not faked). */
const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Fake clock helpers for one test: `advance` moves time 1 ms at a time, letting promises run in between. */
function fakeClock(t: TestContext): {
  advance(ms: number): Promise<void>;
  sleep(ms: number): Promise<void>;
  drive<T>(p: Promise<T>, maxMs?: number): Promise<T>;
} {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const advance = async (ms: number): Promise<void> => {
    await flush();
    for (let i = 0; i < ms; i++) {
      t.mock.timers.tick(1);
      await flush();
    }
  };
  return {
    advance,
    sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
    /** Advances time until `p` settles (at most `maxMs`), and returns it. */
    async drive(p, maxMs = 10_000) {
      let settled = false;
      p.then(
        () => (settled = true),
        () => (settled = true),
      );
      await flush();
      for (let i = 0; i < maxMs && !settled; i++) await advance(1);
      assert.ok(settled, `still pending after ${maxMs} ms of fake time`);
      return p;
    },
  };
}

describe('Coalescer', () => {
  it('turns a burst into one run carrying every reason', async (t) => {
    const clock = fakeClock(t);
    const runs: string[][] = [];
    const at: number[] = [];
    const c = new Coalescer<string>(
      { quietMs: 20, maxDelayMs: 1000 },
      async (r) => {
        at.push(Date.now());
        runs.push([...r].sort());
      },
      unexpected,
    );
    c.poke('kv');
    c.poke('kv');
    c.poke('files');
    await clock.advance(5);
    c.poke('services');
    await clock.advance(19);
    assert.deepEqual(runs, [], 'still inside the quiet period of the last poke');
    await clock.advance(1);
    await clock.drive(c.idle());
    assert.deepEqual(runs, [['files', 'kv', 'services']]);
    assert.deepEqual(at, [25], 'quietMs after the last poke');
  });

  it('never delays a run past maxDelay after the first poke, however long the burst', async (t) => {
    const clock = fakeClock(t);
    const runs: number[] = [];
    const t0 = Date.now();
    const c = new Coalescer<string>({ quietMs: 30, maxDelayMs: 80 }, async () => void runs.push(Date.now() - t0), unexpected);
    const end = Date.now() + 200;
    while (Date.now() < end) {
      c.poke('kv');
      await clock.advance(10);
    }
    await clock.drive(c.idle());
    assert.ok(runs.length >= 2, `runs at ${runs.join(',')}`);
    assert.ok((runs[0] ?? 0) < 80 + 40, `first run at ${runs[0]} ms`);
    // Pokes every 10 ms: a run at each max delay after the first poke of its burst, and one
    // quiet period after the last poke (190 ms).
    assert.deepEqual(runs, [80, 160, 220]);
  });

  it('does not overlap runs: a poke during a run schedules exactly one more', async (t) => {
    const clock = fakeClock(t);
    let active = 0;
    let maxActive = 0;
    let count = 0;
    const c = new Coalescer<string>(
      { quietMs: 1, maxDelayMs: 5 },
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        count++;
        await clock.sleep(30);
        active--;
      },
      unexpected,
    );
    c.poke('a');
    await clock.advance(10);
    assert.equal(active, 1, 'the first run is in progress');
    c.poke('b');
    c.poke('c');
    await clock.advance(10);
    assert.equal(count, 1, 'no second run while the first one lasts');
    await clock.drive(c.idle());
    assert.equal(maxActive, 1);
    assert.equal(count, 2);
  });

  it('reports a run that throws and keeps working', async (t) => {
    const clock = fakeClock(t);
    const errors: unknown[] = [];
    let n = 0;
    const c = new Coalescer<string>(
      { quietMs: 1, maxDelayMs: 5 },
      async () => {
        n++;
        if (n === 1) throw new Error('boom');
      },
      (e) => errors.push(e),
    );
    c.poke('x');
    await clock.advance(10);
    c.poke('y');
    await clock.advance(10);
    await clock.drive(c.idle());
    assert.equal(n, 2);
    assert.equal((errors[0] as Error).message, 'boom');
    assert.equal(errors.length, 1);
  });

  it('runs an exclusive task between runs, never during one, and holds pokes until it is done', async (t) => {
    const clock = fakeClock(t);
    const log: string[] = [];
    const c = new Coalescer<string>(
      { quietMs: 1, maxDelayMs: 5 },
      async () => {
        log.push('run-start');
        await clock.sleep(30);
        log.push('run-end');
      },
      unexpected,
    );
    c.poke('a');
    await clock.advance(5);
    const exclusive = c.runExclusive(async () => {
      log.push('check-start');
      c.poke('b');
      await clock.sleep(20);
      log.push('check-end');
      return 42;
    });
    assert.equal(await clock.drive(exclusive), 42);
    await clock.advance(10);
    await clock.drive(c.idle());
    assert.deepEqual(log, ['run-start', 'run-end', 'check-start', 'check-end', 'run-start', 'run-end']);
  });
});
