#!/usr/bin/env node
// Runs the compiled tests (dist/test) with node's test runner.
//   node test/run.mjs              unit + integration
//   node test/run.mjs unit         unit tests only (no root, no Consul needed)
//   node test/run.mjs integration  integration tests only
// Integration tests need root (network namespaces, ipset, iptables) and a Consul binary
// (CONSUL_BIN, else .cache/consul/consul, else consul on PATH): scripts/install-deps.sh sets
// both up. They fail, rather than skip, when those are missing, so CI can never pass by skipping.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const which = process.argv[2] ?? 'all';
const kinds = which === 'all' ? ['unit', 'integration'] : [which];

function find(dir) {
  let out = [];
  let names;
  try {
    names = readdirSync(dir).sort();
  } catch {
    return out;
  }
  for (const n of names) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) out = out.concat(find(p));
    else if (n.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = kinds.flatMap((k) => find(join(root, 'dist', 'test', k)));
if (files.length === 0) {
  console.error(`no test files for "${which}" under dist/test; run npm run build first`);
  process.exit(1);
}
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=2', ...files], { stdio: 'inherit', cwd: root });
process.exit(r.status ?? 1);
