import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { type FramingProblem, StreamDeframer } from '../../src/reactor/syslog/framing.js';

interface Run {
  messages: string[];
  framings: string[];
  problems: [FramingProblem, boolean][];
  alive: boolean;
}

function run(chunks: readonly Buffer[], limits = { maxLineBytes: 64, maxMessageBytes: 64 }, end = true): Run {
  const r: Run = { messages: [], framings: [], problems: [], alive: true };
  const d = new StreamDeframer(limits, {
    message: (buf, s, e, framing) => {
      r.messages.push(buf.toString('utf8', s, e));
      r.framings.push(framing);
    },
    problem: (kind, fatal) => r.problems.push([kind, fatal]),
  });
  for (const c of chunks) {
    if (!d.push(c)) {
      r.alive = false;
      break;
    }
  }
  if (end && r.alive) d.end();
  return r;
}

const B = (s: string): Buffer => Buffer.from(s, 'utf8');
const octet = (m: string): string => `${Buffer.byteLength(m)} ${m}`;

describe('StreamDeframer: LF framing (RFC 6587 non-transparent)', () => {
  test('splits on LF and drops a CR before it', () => {
    const r = run([B('<13>one\n<13>two\r\n<13>three\n')]);
    assert.deepEqual(r.messages, ['<13>one', '<13>two', '<13>three']);
    assert.deepEqual(r.framings, ['lf', 'lf', 'lf']);
    assert.deepEqual(r.problems, []);
  });

  test('joins a line split across chunks, at every split point', () => {
    const text = '<13>Aug 26 13:55:13 vyos sshd[2755]: Failed password\n';
    for (let i = 1; i < text.length; i++) {
      const r = run([B(text.slice(0, i)), B(text.slice(i))], { maxLineBytes: 200, maxMessageBytes: 200 });
      assert.deepEqual(r.messages, [text.slice(0, -1)], `split at ${i}`);
    }
  });

  test('empty lines between messages are not messages', () => {
    assert.deepEqual(run([B('\n\r\n<13>a\n\n\n<13>b\n')]).messages, ['<13>a', '<13>b']);
  });

  test('a last line without LF is delivered at the end of the stream', () => {
    assert.deepEqual(run([B('<13>a\n<13>tail')]).messages, ['<13>a', '<13>tail']);
  });

  test('a line longer than the limit is skipped to its LF and reported; the stream stays in step', () => {
    const long = 'x'.repeat(100);
    const r = run([B(`<13>ok\n${long}\n<13>after\n`)]);
    assert.deepEqual(r.messages, ['<13>ok', '<13>after']);
    assert.deepEqual(r.problems, [['line-too-long', false]]);
    const split = run([B(`<13>${'y'.repeat(40)}`), B('z'.repeat(40)), B('z'.repeat(40)), B('\n<13>after\n')]);
    assert.deepEqual(split.messages, ['<13>after']);
    assert.deepEqual(split.problems, [['line-too-long', false]]);
  });

  test('digits not followed by a space start an LF line (no PRI), not a length', () => {
    const r = run([B('2024-08-26 eth1: state DOWN\n12\n')]);
    assert.deepEqual(r.messages, ['2024-08-26 eth1: state DOWN', '12']);
  });

  test('a line starting with 0 is a line', () => {
    assert.deepEqual(run([B('0 zero\n')]).messages, ['0 zero']);
  });
});

describe('StreamDeframer: octet counting (RFC 6587 §3.4.1)', () => {
  test('reads MSGLEN SP MSG frames, back to back, with LFs inside messages', () => {
    const msgs = ['<13>1 - host app - - - first', '<13>with\nnewline', '<13>ünïcödé'];
    const r = run([B(msgs.map(octet).join(''))]);
    assert.deepEqual(r.messages, msgs);
    assert.deepEqual(r.framings, ['octet', 'octet', 'octet']);
  });

  test('frames split across chunks at every point', () => {
    const stream = B([octet('<13>alpha'), octet('<13>beta gamma')].join(''));
    for (let i = 1; i < stream.length; i++) {
      const r = run([stream.subarray(0, i), stream.subarray(i)]);
      assert.deepEqual(r.messages, ['<13>alpha', '<13>beta gamma'], `split at ${i}`);
    }
  });

  test('mixes with LF framing frame by frame', () => {
    const r = run([B(`${octet('<13>a')}<13>b\n${octet('<13>c')}`)]);
    assert.deepEqual(r.messages, ['<13>a', '<13>b', '<13>c']);
    assert.deepEqual(r.framings, ['octet', 'lf', 'octet']);
  });

  test('a frame above the message limit is skipped whole and reported', () => {
    const big = 'x'.repeat(100);
    const r = run([B(`${octet(big)}${octet('<13>next')}`)]);
    assert.deepEqual(r.messages, ['<13>next']);
    assert.deepEqual(r.problems, [['message-too-large', false]]);
  });

  test('a length of ten digits is fatal: the stream cannot be resynchronised', () => {
    const r = run([B('1234567890 x')]);
    assert.equal(r.alive, false);
    assert.deepEqual(r.problems, [['bad-octet-count', true]]);
  });

  test('a frame cut short by the end of the stream is reported, not delivered', () => {
    const r = run([B('20 <13>short')]);
    assert.deepEqual(r.messages, []);
    assert.deepEqual(r.problems, [['bad-octet-count', true]]);
  });
});

describe('StreamDeframer: properties', () => {
  const message = fc
    .string({ unit: fc.constantFrom(...'abc <>:[]0123456789-\t'.split('')), minLength: 1, maxLength: 50 })
    .filter((s) => !s.startsWith(' '));
  const framed = fc.array(fc.tuple(message, fc.boolean()), { minLength: 1, maxLength: 20 });

  test('any chunking of any mix of frames gives the same messages', () => {
    fc.assert(
      fc.property(framed, fc.array(fc.nat({ max: 2000 }), { maxLength: 10 }), (frames, cuts) => {
        // An LF-framed message must not contain LF and must not look like an octet count.
        const usable = frames.map(([m, oct]) => [oct ? m : m.replace(/^[0-9]+/, 'n'), oct] as const).filter(([m]) => m.trim() !== '');
        const stream = B(usable.map(([m, oct]) => (oct ? octet(m) : `${m}\n`)).join(''));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const chunks: Buffer[] = [];
        let at = 0;
        for (const p of points) {
          chunks.push(stream.subarray(at, p));
          at = p;
        }
        chunks.push(stream.subarray(at));
        const r = run(chunks, { maxLineBytes: 1000, maxMessageBytes: 1000 });
        assert.deepEqual(
          r.messages,
          usable.map(([m]) => m.replace(/\r$/, '')),
        );
      }),
      { seed: 6001, numRuns: 300 },
    );
  });

  test('arbitrary bytes never throw, never exceed the limits, and fatal means stopped', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }), (arrays) => {
        const r = run(
          arrays.map((a) => Buffer.from(a)),
          { maxLineBytes: 64, maxMessageBytes: 64 },
        );
        for (const m of r.messages) assert.ok(Buffer.byteLength(m) <= 64 * 3);
        if (!r.alive) assert.ok(r.problems.some(([, fatal]) => fatal));
      }),
      { seed: 6002, numRuns: 500 },
    );
  });
});
