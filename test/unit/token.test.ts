/**
 * The ACL token: from token_file (which must be private), else the config, else the environment;
 * never from the command line, never in an error message.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parseConfig } from '../../src/config/config.js';
import { resolveToken } from '../../src/config/load.js';

const SECRET = 'b1e2f3a4-0000-4000-8000-c0ffee000001';
const dir = mkdtempSync(join(tmpdir(), 'befw-token-'));

function tokenFile(mode: number, text = `${SECRET}\n`): string {
  const p = join(dir, `token-${mode.toString(8)}-${Math.random().toString(16).slice(2)}`);
  writeFileSync(p, text);
  chmodSync(p, mode);
  return p;
}

describe('ACL token', () => {
  it('reads a 0600 token_file', async () => {
    const config = parseConfig(`token_file=${tokenFile(0o600)}`, 'befw.conf');
    assert.equal(await resolveToken(config, {}), SECRET);
  });

  it('refuses a token_file others can read, without printing the token', async () => {
    const config = parseConfig(`token_file=${tokenFile(0o644)}`, 'befw.conf');
    await assert.rejects(resolveToken(config, {}), (err: Error) => {
      assert.match(err.message, /readable by group or others/);
      assert.ok(!err.message.includes(SECRET));
      return true;
    });
  });

  it('refuses a token_file that holds something else, without echoing it', async () => {
    const config = parseConfig(`token_file=${tokenFile(0o600, 'not a token; rm -rf /')}`, 'befw.conf');
    await assert.rejects(resolveToken(config, {}), (err: Error) => !err.message.includes('rm -rf'));
  });

  it('falls back to the environment, BEFW_CONSUL_TOKEN first', async () => {
    const config = parseConfig('', 'befw.conf');
    assert.equal(await resolveToken(config, { CONSUL_HTTP_TOKEN: 'b', BEFW_CONSUL_TOKEN: 'a' }), 'a');
    assert.equal(await resolveToken(config, { CONSUL_HTTP_TOKEN: 'b' }), 'b');
    assert.equal(await resolveToken(config, {}), null);
  });

  it('does not put a bad inline token into the config error', () => {
    assert.throws(
      () => parseConfig(`token=${SECRET} extra`, 'befw.conf'),
      (err: Error) => !err.message.includes(SECRET),
    );
  });
});
