import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, symlinkSync, truncateSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { ipsetDir, serviceDir } from '../../src/agent/inputs/localFiles.js';

const root = mkdtempSync(join(tmpdir(), 'befw-localfiles-'));
after(() => rmSync(root, { recursive: true, force: true }));

let n = 0;
function dir(): string {
  const d = join(root, String(n++));
  execFileSync('mkdir', ['-p', d]);
  return d;
}

/** Writes a file that looks settled: last written a minute ago. */
function settled(path: string, text: string): void {
  writeFileSync(path, text);
  const t = new Date(Date.now() - 60_000);
  utimesSync(path, t, t);
}

const WEB = JSON.stringify({ name: 'web', port: 8080, mode: 'enforcing' });

describe('local files: only regular files, capped, never blocking', () => {
  test('a FIFO is refused at once instead of blocking the read', async () => {
    const d = dir();
    execFileSync('mkfifo', [join(d, 'web.json')]);
    const started = Date.now();
    const r = await serviceDir(d).read(Date.now());
    assert.ok(Date.now() - started < 1000);
    assert.deepEqual(r.items, []);
    assert.equal(r.diagnostics[0]?.code, 'bad-service-file');
    assert.match(r.diagnostics[0]?.message ?? '', /a FIFO; only regular files are read; not enforced/);
  });

  test('a symlink to /dev/zero is refused without reading it', async () => {
    const d = dir();
    symlinkSync('/dev/zero', join(d, 'rules_allow.ipset'));
    const r = await ipsetDir(d).read(Date.now());
    assert.deepEqual(r.items, []);
    assert.match(r.diagnostics[0]?.message ?? '', /a device; only regular files are read/);
  });

  test('a file over the cap is refused with the cap named; the others are still read', async () => {
    const d = dir();
    const big = join(d, 'big.json');
    writeFileSync(big, '');
    truncateSync(big, 2 * 1024 * 1024); // sparse: 2 MiB of zeros
    settled(join(d, 'web.json'), WEB);
    const r = await serviceDir(d).read(Date.now());
    assert.deepEqual(
      r.items.map((s) => s.name),
      ['web'],
    );
    assert.equal(r.diagnostics.length, 1);
    assert.equal(r.diagnostics[0]?.subject, big);
    assert.match(r.diagnostics[0]?.message ?? '', /larger than the cap of 1048576 bytes/);
  });

  test('a symlink to a regular file is followed', async () => {
    const d = dir();
    const target = join(dir(), 'real.json');
    settled(target, WEB);
    symlinkSync(target, join(d, 'web.json'));
    const r = await serviceDir(d).read(Date.now());
    assert.deepEqual(
      r.items.map((s) => s.name),
      ['web'],
    );
  });
});

describe('local files: settled, last good version kept', () => {
  test('a file being written is not taken until it settles; its last good version stays', async () => {
    const d = dir();
    const f = join(d, 'web.json');
    settled(f, WEB);
    const files = serviceDir(d);
    assert.equal((await files.read(Date.now())).items[0]?.mode, 'enforcing');
    // Half-written just now: not taken, the enforcing version stays, and a re-read is asked for.
    writeFileSync(f, '{"name":"web","port":8080,"mo');
    const half = await files.read(Date.now());
    assert.equal(half.items[0]?.mode, 'enforcing');
    assert.deepEqual(half.diagnostics, []);
    assert.equal(half.retryInMs, 1000);
    // Unchanged at the next look: taken, and being invalid it is reported, the last good kept.
    const again = await files.read(Date.now());
    assert.equal(again.items[0]?.mode, 'enforcing');
    assert.equal(again.diagnostics[0]?.code, 'bad-service-file');
    assert.match(again.diagnostics[0]?.message ?? '', /not JSON.*; last good version kept$/);
  });

  test('a file moved into place (written earlier) is taken at once', async () => {
    const d = dir();
    const tmp = join(dir(), 'x');
    settled(tmp, JSON.stringify({ name: 'db', port: 5432 }));
    execFileSync('mv', [tmp, join(d, 'db.json')]);
    const r = await serviceDir(d).read(Date.now());
    assert.deepEqual(
      r.items.map((s) => s.name),
      ['db'],
    );
    assert.equal(r.retryInMs, null);
  });

  test('a truncated service file never turns an enforcing service into nothing', async () => {
    const d = dir();
    const f = join(d, 'web.json');
    settled(f, WEB);
    const files = serviceDir(d);
    await files.read(Date.now());
    settled(f, '');
    const r = await files.read(Date.now());
    assert.equal(r.items.length, 1);
    assert.equal(r.items[0]?.mode, 'enforcing');
    assert.match(r.diagnostics[0]?.message ?? '', /last good version kept/);
  });

  test('a file that is gone is gone', async () => {
    const d = dir();
    const f = join(d, 'web.json');
    settled(f, WEB);
    const files = serviceDir(d);
    await files.read(Date.now());
    rmSync(f);
    assert.deepEqual((await files.read(Date.now())).items, []);
  });

  test('an unreadable directory keeps the last good files and says so', async () => {
    const d = dir();
    settled(join(d, 'web.json'), WEB);
    const files = serviceDir(d);
    await files.read(Date.now());
    rmSync(d, { recursive: true });
    writeFileSync(d, 'not a directory');
    const r = await files.read(Date.now());
    assert.deepEqual(
      r.items.map((s) => s.name),
      ['web'],
    );
    assert.equal(r.diagnostics[0]?.code, 'unreadable-dir');
  });

  test('a missing directory is an empty one', async () => {
    const r = await serviceDir(join(root, 'nope')).read(Date.now());
    assert.deepEqual(r, { items: [], diagnostics: [], retryInMs: null });
  });
});
