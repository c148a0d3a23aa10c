/**
 * The blocking-query loop against scripted Consul answers: index handling (first answer, going
 * backwards, 0), unchanged answers, errors with jittered backoff, staleness, rate limiting.
 * Time is virtual: `sleep` advances a fake clock, so nothing here waits for real.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type BlockingAnswer, type BlockingQuery, BlockingWatch, type WatchOptions, nextIndex } from '../../src/consul/blockingWatch.js';

/** `tookMs`: how long the query blocked; by default the whole wait (nothing changed meanwhile). */
type Step = { answer: BlockingAnswer<string>; tookMs?: number } | { error: Error };

interface Run {
  queries: BlockingQuery[];
  data: { data: string; index: number; stale: boolean }[];
  errors: { message: string; attempt: number; retryInMs: number }[];
  resets: { sent: number; got: number; next: number }[];
  sleeps: number[];
  clock: number;
}

function answer(index: number, data: string, extra: Partial<BlockingAnswer<string>> = {}, tookMs?: number): Step {
  return { answer: { index, data, lastContactMs: 0, knownLeader: true, ...extra }, ...(tookMs === undefined ? {} : { tookMs }) };
}

/** Runs the watch over a script; it stops itself when the script runs out. */
async function runScript(script: Step[], opts: Partial<WatchOptions> = {}): Promise<Run> {
  const run: Run = { queries: [], data: [], errors: [], resets: [], sleeps: [], clock: 0 };
  let watch: BlockingWatch<string> | null = null;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const steps = [...script];
  const fetch = async (q: BlockingQuery): Promise<BlockingAnswer<string>> => {
    run.queries.push({ ...q });
    const step = steps.shift();
    if (step === undefined) {
      const stopping = watch?.stop();
      finish();
      await stopping;
      throw new Error('script done');
    }
    if ('error' in step) throw step.error;
    // A blocking query with an index takes its wait unless told otherwise; the first (index 0) returns at once.
    run.clock += step.tookMs ?? (q.index > 0 ? q.waitMs : 1);
    return step.answer;
  };
  watch = new BlockingWatch<string>(
    'test',
    fetch,
    {
      onData: (data, meta) => void run.data.push({ data, index: meta.index, stale: meta.stale }),
      onError: (err, meta) => run.errors.push({ message: err.message, ...meta }),
      onIndexReset: (meta) => run.resets.push(meta),
    },
    {
      waitMs: 300_000,
      maxStaleMs: 5000,
      burst: 1000,
      ratePerSec: 1000,
      backoffBaseMs: 250,
      backoffMaxMs: 30_000,
      random: () => 0.5,
      sleep: async (ms) => {
        run.sleeps.push(ms);
        run.clock += ms;
      },
      now: () => run.clock,
      ...opts,
    },
  );
  watch.start();
  await finished;
  return run;
}

describe('BlockingWatch.refresh', () => {
  it('cuts the query in flight short and reads again from index 0, reporting the answer', async () => {
    const queries: number[] = [];
    const data: string[] = [];
    let n = 0;
    let watch: BlockingWatch<string> | null = null;
    const fetch = (q: BlockingQuery): Promise<BlockingAnswer<string>> => {
      queries.push(q.index);
      n++;
      if (n === 1) return Promise.resolve({ index: 5, data: 'first', lastContactMs: 0, knownLeader: true });
      if (n === 2) {
        // Blocks until aborted, as a real blocking query would.
        setTimeout(() => watch?.refresh(), 10);
        return new Promise((_, reject) => q.signal.addEventListener('abort', () => reject(new Error('aborted'))));
      }
      if (n === 3) return Promise.resolve({ index: 5, data: 'again', lastContactMs: 0, knownLeader: true });
      const pending = new Promise<BlockingAnswer<string>>((_, reject) =>
        q.signal.addEventListener('abort', () => reject(new Error('stopped'))),
      );
      void watch?.stop();
      return pending;
    };
    const errors: string[] = [];
    watch = new BlockingWatch('t', fetch, { onData: (d) => void data.push(d), onError: (e) => errors.push(e.message) });
    watch.start();
    await new Promise((r) => setTimeout(r, 100));
    await watch.stop();
    assert.deepEqual(queries.slice(0, 3), [0, 5, 0]);
    assert.deepEqual(data, ['first', 'again'], 'the refreshed answer is reported although its index did not move');
    assert.deepEqual(errors, [], 'a refresh is not an error');
  });
});

describe('nextIndex', () => {
  it('follows the answer, resets when it goes backwards, never sends below 1', () => {
    assert.equal(nextIndex(0, 10), 10);
    assert.equal(nextIndex(10, 12), 12);
    assert.equal(nextIndex(10, 10), 10);
    assert.equal(nextIndex(10, 4), 0);
    assert.equal(nextIndex(0, 0), 1);
    assert.equal(nextIndex(5, Number.NaN), 0);
  });
});

describe('BlockingWatch against scripted answers', () => {
  it('starts at index 0, then blocks on the index it was given, with a stale read and the wait', async () => {
    const run = await runScript([answer(7, 'a'), answer(9, 'b')]);
    assert.deepEqual(
      run.queries.slice(0, 3).map((q) => [q.index, q.stale, q.waitMs]),
      [
        [0, true, 300_000],
        [7, true, 300_000],
        [9, true, 300_000],
      ],
    );
    assert.deepEqual(run.data, [
      { data: 'a', index: 7, stale: true },
      { data: 'b', index: 9, stale: true },
    ]);
  });

  it('treats an unchanged index (the wait ran out) as normal: no data event, same index again', async () => {
    const run = await runScript([answer(7, 'a'), answer(7, 'a'), answer(7, 'a'), answer(8, 'c')]);
    assert.deepEqual(
      run.data.map((d) => d.data),
      ['a', 'c'],
    );
    assert.deepEqual(run.queries.map((q) => q.index).slice(0, 4), [0, 7, 7, 7]);
    assert.equal(run.errors.length, 0);
    assert.deepEqual(run.sleeps, [], 'no sleep between queries');
  });

  it('resets to 0 when the index goes backwards (snapshot restore) and reports the new data', async () => {
    const run = await runScript([answer(50, 'a'), answer(20, 'restored'), answer(21, 'next')]);
    assert.deepEqual(run.queries.map((q) => q.index).slice(0, 3), [0, 50, 0]);
    assert.deepEqual(run.resets[0], { sent: 50, got: 20, next: 0 });
    assert.deepEqual(
      run.data.map((d) => d.data),
      ['a', 'restored', 'next'],
    );
  });

  it('never sends an index below 1 back to Consul', async () => {
    const run = await runScript([answer(0, 'zero'), answer(0, 'zero'), answer(3, 'three')]);
    assert.deepEqual(run.queries.map((q) => q.index).slice(0, 3), [0, 1, 0]);
    assert.equal(run.data[0]?.data, 'zero');
  });

  it('backs off with full jitter on errors, growing exponentially, and resets after an answer', async () => {
    const e = (): Step => ({ error: new Error('connection refused') });
    const run = await runScript([e(), e(), e(), answer(4, 'ok'), e()]);
    assert.deepEqual(
      run.errors.map((x) => [x.attempt, x.retryInMs]),
      [
        [1, 125],
        [2, 250],
        [3, 500],
        [1, 125],
      ],
    );
    assert.deepEqual(run.sleeps.filter((s) => s > 0).slice(0, 3), [125, 250, 500]);
    assert.equal(run.data.length, 1);
  });

  it('asks without blocking after an error, so a Consul back unchanged is seen at once', async () => {
    const run = await runScript([answer(7, 'a'), { error: new Error('connection refused') }, answer(7, 'a')]);
    assert.deepEqual(run.queries.map((q) => q.index).slice(0, 3), [0, 7, 0]);
    assert.deepEqual(
      run.data.map((d) => d.data),
      ['a', 'a'],
    );
  });

  it('caps the backoff', async () => {
    const script: Step[] = Array.from({ length: 12 }, () => ({ error: new Error('x') }));
    const run = await runScript(script, { random: () => 0.999 });
    const last = run.errors[run.errors.length - 1];
    assert.ok(last !== undefined && last.retryInMs <= 30_000 && last.retryInMs > 29_000, String(last?.retryInMs));
  });

  it('re-reads consistently when a stale answer is too old or knows no leader', async () => {
    const run = await runScript([
      answer(5, 'old', { lastContactMs: 60_000 }),
      answer(6, 'fresh'),
      answer(7, 'x', { knownLeader: false }),
      answer(8, 'y'),
    ]);
    assert.deepEqual(
      run.queries.slice(0, 4).map((q) => [q.index, q.stale, q.waitMs]),
      [
        [0, true, 300_000],
        [0, false, 0],
        [6, true, 300_000],
        [0, false, 0],
      ],
    );
    assert.deepEqual(
      run.data.map((d) => [d.data, d.stale]),
      [
        ['fresh', false],
        ['y', false],
      ],
    );
  });

  it('re-reads from 0 when an unchanged answer comes back early (a snapshot restore abandoned the store)', async () => {
    const run = await runScript([answer(8, 'a'), answer(8, 'a', {}, 300), answer(7, 'restored'), answer(7, 'restored')]);
    assert.deepEqual(run.queries.map((q) => q.index).slice(0, 4), [0, 8, 0, 7]);
    assert.deepEqual(
      run.data.map((d) => d.data),
      ['a', 'restored'],
    );
    assert.deepEqual(run.resets[0], { sent: 8, got: 8, next: 0 });
  });

  it('never delays a stream of real changes below the progress rate', async () => {
    const script = Array.from({ length: 30 }, (_, i) => answer(i + 1, `v${i}`, {}, 0));
    const run = await runScript(script, {});
    assert.deepEqual(
      run.sleeps.filter((s) => s > 0),
      [],
    );
    assert.equal(run.clock, 0);
  });

  it('rate-limits a loop that spins instead of sleeping before each query', async () => {
    const script = Array.from({ length: 30 }, (_, i) => answer(i + 1, `v${i}`, {}, 0));
    const run = await runScript(script, { burst: 5, ratePerSec: 10, progressBurst: 5, progressRatePerSec: 10 });
    // The first 5 queries go at once; the rest are spaced by the refill rate (100 ms).
    assert.equal(run.sleeps.filter((s) => s > 0).length >= 20, true, `sleeps: ${run.sleeps.join(',')}`);
    assert.ok(run.sleeps.every((s) => s <= 100));
    assert.ok(run.clock >= 2400 && run.clock <= 2700, `virtual time ${run.clock}`);
  });
});

describe('BlockingWatch: answers whose data did not change', () => {
  it('count as no progress: a storm of unrelated writes cannot make a watch spin faster than the idle rate', async () => {
    let index = 0;
    const sleeps: number[] = [];
    let clock = 0;
    const asked: number[] = [];
    const w = new BlockingWatch<string>(
      'empty prefix',
      async (q) => {
        asked.push(q.index);
        if (asked.length >= 40) w.stop().catch(() => undefined);
        index++;
        return { index, data: 'same', lastContactMs: 0, knownLeader: true };
      },
      { onData: (_d) => asked.length <= 1, onError: () => undefined },
      {
        waitMs: 60_000,
        maxStaleMs: 5000,
        burst: 5,
        ratePerSec: 10,
        progressBurst: 100,
        progressRatePerSec: 100,
        backoffBaseMs: 250,
        backoffMaxMs: 5000,
        random: () => 0.5,
        sleep: async (ms) => {
          sleeps.push(ms);
          clock += ms;
        },
        now: () => clock,
      },
    );
    w.start();
    for (let i = 0; i < 10_000 && asked.length < 40; i++) await new Promise((r) => setImmediate(r));
    await w.stop();
    // After the first answer, every answer with the same data takes an idle token (10 a second).
    assert.ok(sleeps.filter((s) => s > 0).length >= 30, `sleeps: ${sleeps.join(',')}`);
  });
});
