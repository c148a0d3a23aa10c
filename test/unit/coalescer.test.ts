import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Coalescer } from '../../src/agent/coalescer.js';

const unexpected = (err: unknown): void => assert.fail(String(err));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('Coalescer', () => {
  it('turns a burst into one run carrying every reason', async () => {
    const runs: string[][] = [];
    const c = new Coalescer<string>({ quietMs: 20, maxDelayMs: 1000 }, async (r) => void runs.push([...r].sort()), unexpected);
    c.poke('kv');
    c.poke('kv');
    c.poke('files');
    await sleep(5);
    c.poke('services');
    await sleep(60);
    await c.idle();
    assert.deepEqual(runs, [['files', 'kv', 'services']]);
  });

  it('never delays a run past maxDelay after the first poke, however long the burst', async () => {
    const runs: number[] = [];
    const t0 = Date.now();
    const c = new Coalescer<string>({ quietMs: 30, maxDelayMs: 80 }, async () => void runs.push(Date.now() - t0), unexpected);
    const end = Date.now() + 200;
    while (Date.now() < end) {
      c.poke('kv');
      await sleep(10);
    }
    await c.idle();
    assert.ok(runs.length >= 2, `runs at ${runs.join(',')}`);
    assert.ok((runs[0] ?? 0) < 80 + 40, `first run at ${runs[0]} ms`);
  });

  it('does not overlap runs: a poke during a run schedules exactly one more', async () => {
    let active = 0;
    let maxActive = 0;
    let count = 0;
    const c = new Coalescer<string>(
      { quietMs: 1, maxDelayMs: 5 },
      async () => {
        active++;
        maxActive = Math.max(maxActive, active);
        count++;
        await sleep(30);
        active--;
      },
      unexpected,
    );
    c.poke('a');
    await sleep(10);
    c.poke('b');
    c.poke('c');
    await sleep(10);
    await c.idle();
    assert.equal(maxActive, 1);
    assert.equal(count, 2);
  });

  it('reports a run that throws and keeps working', async () => {
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
    await sleep(10);
    c.poke('y');
    await sleep(10);
    await c.idle();
    assert.equal(n, 2);
    assert.equal((errors[0] as Error).message, 'boom');
  });

  it('runs an exclusive task between runs, never during one, and holds pokes until it is done', async () => {
    const log: string[] = [];
    const c = new Coalescer<string>(
      { quietMs: 1, maxDelayMs: 5 },
      async () => {
        log.push('run-start');
        await sleep(30);
        log.push('run-end');
      },
      unexpected,
    );
    c.poke('a');
    await sleep(5);
    const exclusive = c.runExclusive(async () => {
      log.push('check-start');
      c.poke('b');
      await sleep(20);
      log.push('check-end');
      return 42;
    });
    assert.equal(await exclusive, 42);
    await sleep(10);
    await c.idle();
    assert.deepEqual(log, ['run-start', 'run-end', 'check-start', 'check-end', 'run-start', 'run-end']);
  });
});
