import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { createLogger, journaldStream } from '../../src/log/logger.js';

function sink(): { lines: string[]; stream: Writable } {
  const lines: string[] = [];
  return {
    lines,
    stream: new Writable({
      write(chunk: Buffer, _e, done) {
        lines.push(chunk.toString());
        done();
      },
    }),
  };
}

test('levels are names, one JSON event a line', () => {
  const s = sink();
  createLogger('info', s.stream).warn({ event: 'x' }, 'm');
  const e = JSON.parse(s.lines[0] ?? '') as { level: string; event: string };
  assert.equal(e.level, 'warn');
  assert.equal(e.event, 'x');
});

test('under journald each line carries its syslog priority', () => {
  const s = sink();
  const log = createLogger('debug', journaldStream(s.stream));
  log.error('e');
  log.warn('w');
  log.info('i');
  log.debug('d');
  assert.deepEqual(
    s.lines.map((l) => l.slice(0, 3)),
    ['<3>', '<4>', '<6>', '<7>'],
  );
  assert.doesNotThrow(() => JSON.parse(s.lines[0]?.slice(3) ?? ''));
});
