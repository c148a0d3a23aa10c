/**
 * `npm run bench`: runs the benchmark scenarios, prints a table and writes it as JSON to
 * bench/results/latest.json. Figures only: nothing here passes or fails on a time.
 *   BENCH_ONLY=plan   run one scenario
 *   BENCH_NO_CONSUL=1 skip the parts that need root and a Consul binary
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { benchPlan } from './plan.js';

interface Row {
  scenario: string;
  figure: string;
  value: string;
  note: string;
}

async function main(): Promise<void> {
  const only = process.env.BENCH_ONLY;
  const withConsul = process.env.BENCH_NO_CONSUL === undefined;
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};

  if (only === undefined || only === 'plan') {
    const p = await benchPlan(withConsul);
    raw.plan = p;
    rows.push({ scenario: 'plan', figure: 'compile 100 services / 100,000 clients (in-process, median of 7)', value: `${p.compileMsMedian.toFixed(0)} ms`, note: `${p.clients} members` });
    if (p.cliMsMedian !== null) {
      rows.push({ scenario: 'plan', figure: '`befw plan --json` end to end against Consul (median of 5)', value: `${p.cliMsMedian.toFixed(0)} ms`, note: 'process start + Consul read + compile + JSON' });
    }
  }

  const w = [8, 70, 10];
  const line = (r: Row): string => `${r.scenario.padEnd(w[0]!)} ${r.figure.padEnd(w[1]!)} ${r.value.padStart(w[2]!)}  ${r.note}`;
  process.stdout.write(`${line({ scenario: 'scenario', figure: 'figure', value: 'value', note: 'note' })}\n`);
  for (const r of rows) process.stdout.write(`${line(r)}\n`);
  const dir = new URL('../../bench/results/', import.meta.url).pathname;
  mkdirSync(dir, { recursive: true });
  writeFileSync(`${dir}latest.json`, `${JSON.stringify({ at: new Date().toISOString(), rows, raw }, null, 2)}\n`);
  process.stdout.write(`\nwritten to bench/results/latest.json\n`);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
