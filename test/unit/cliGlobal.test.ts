import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hoistConfig } from '../../src/cli/main.js';

const N = ['node', 'befw'];

test('-c before the command moves behind it (befw -c FILE status), anything else is left alone', () => {
  assert.deepEqual(hoistConfig([...N, '-c', '/x.conf', 'status', '--json']), [...N, 'status', '--json', '-c', '/x.conf']);
  assert.deepEqual(hoistConfig([...N, '--config=/x.conf', 'client', 'add', 'web_tcp_8080', '198.51.100.7', '--ttl', '2h']), [
    ...N,
    'client',
    'add',
    'web_tcp_8080',
    '198.51.100.7',
    '--ttl',
    '2h',
    '--config=/x.conf',
  ]);
  assert.deepEqual(hoistConfig([...N, 'status', '-c', '/y.conf']), [...N, 'status', '-c', '/y.conf']);
  assert.deepEqual(hoistConfig([...N, '-c', '/x.conf', 'syslog', '--test', 'a', '--', '-c']), [
    ...N,
    'syslog',
    '--test',
    'a',
    '-c',
    '/x.conf',
    '--',
    '-c',
  ]);
});
