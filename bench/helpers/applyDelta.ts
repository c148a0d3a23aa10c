/**
 * Runs inside a fresh network namespace: the real dataplane driver of one backend on the real
 * kernel, without Consul. For each set size it applies a plan with one set of N members (a full
 * apply), then adds one member at a time and times the driver's apply; the raw tool (`ipset add`,
 * or `nft add element`, of one member into the same set) is timed from the same process, so both
 * pay the same process-start cost.
 *   node applyDelta.js iptables|nft SIZE...
 * Prints {"sizes":[{size, applyMs:[...], rawMs:[...]}]}.
 */
import { performance } from 'node:perf_hooks';
import { maxelemFor } from '../../src/core/compile.js';
import type { Plan, PlanSet } from '../../src/core/types.js';
import type { Dataplane } from '../../src/dataplane/dataplane.js';
import { createPrewarmedRunner, processRunner } from '../../src/dataplane/exec.js';
import { BACKENDS, type BackendName } from '../../src/dataplane/registry.js';
import { createNftDataplane } from '../../src/dataplane/nft/driver.js';
import { TABLE_REF, nftSetName } from '../../src/dataplane/nft/naming.js';

const backend = process.argv[2] as BackendName;
const sizes = process.argv.slice(3).map(Number);
const RUNS = 20;

function planWith(name: string, members: string[]): Plan {
  const sets: PlanSet[] = [
    { name, family: 'inet', members, maxelem: maxelemFor(70_000) },
    { name: `${name}_v6`, family: 'inet6', members: [], maxelem: maxelemFor(0) },
  ];
  return {
    sets,
    rules: [{ kind: 'service', service: name, set: name, proto: 'tcp', port: '443', mode: 'enforcing' }],
    fingerprint: String(members.length),
    nextExpiry: null,
    services: [],
    setViews: [],
    diagnostics: [],
  };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const out: { size: number; applyMs: number[]; rawMs: number[] }[] = [];
const runner = createPrewarmedRunner(BACKENDS[backend].prewarm);

async function dataplane(): Promise<Dataplane> {
  if (backend === 'nft') return createNftDataplane(runner, { watch: null, now: Date.now, retireIptables: null });
  return (await BACKENDS.iptables.prepare({ runner, rules: null, base: null, iptablesTools: 'auto' })).dataplane;
}

function rawAdd(name: string, i: number): [string, string[]] {
  if (backend === 'nft')
    return ['nft', ['add', 'element', ...TABLE_REF.split(' '), nftSetName(name, 'inet', 'hosts'), `{ 198.51.100.${i + 10} }`]];
  return ['ipset', ['add', name, `198.51.100.${i + 10}`]];
}

for (const size of sizes) {
  const name = `s${size}`;
  const dp = await dataplane();
  const members = Array.from({ length: size }, (_, i) => `198.18.${i >> 8}.${i & 255}/32`).sort();
  await dp.apply({ plan: planWith(name, members), owned: [] });
  const applyMs: number[] = [];
  let current = members;
  for (let i = 0; i < RUNS; i++) {
    current = [...current, `203.0.113.${i + 10}/32`].sort();
    await sleep(20);
    const t0 = performance.now();
    const report = await dp.apply({ plan: planWith(name, current), owned: [] });
    applyMs.push(performance.now() - t0);
    if (report.mode !== 'delta' || report.added !== 1) throw new Error(`expected a one-member delta, got ${JSON.stringify(report)}`);
  }
  const rawMs: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    await sleep(20);
    const [cmd, args] = rawAdd(name, i);
    const t0 = performance.now();
    const r = await processRunner.run(cmd, args);
    rawMs.push(performance.now() - t0);
    if (r.code !== 0) throw new Error(r.stderr);
  }
  dp.close();
  out.push({ size, applyMs, rawMs });
}
runner.close();
process.stdout.write(`${JSON.stringify({ sizes: out })}\n`);
