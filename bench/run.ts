/**
 * `npm run bench`: runs the benchmark scenarios, prints a table and writes it as JSON to
 * bench/results/latest.json. Figures only: nothing here passes or fails on a time.
 *   BENCH_ONLY=plan|propagation|stream|single|cold|backends|syslog|fleet   run one scenario (or name it as the
 *   first argument: `npm run bench -- fleet`)
 *   BENCH_NO_CONSUL=1 skip the parts that need root and a Consul binary
 * `fleet` (the fan-out benchmark, ~6 minutes and up to 5 GB of memory) runs only when named.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { benchFleet, fleetExtrapolation, fleetTable, fleetTargets } from './fleet.js';
import { backendRows, backendsTable, benchBackends } from './backends.js';
import {
  type ColdApplyResult,
  type DeltaBySize,
  benchColdApply,
  benchDeltaBySize,
  benchPropagation,
  benchSingleChange,
  benchStream,
} from './live.js';
import { benchPlan } from './plan.js';
import { benchSyslogReaction, benchSyslogThroughput } from './syslog.js';

interface Row {
  scenario: string;
  figure: string;
  value: string;
  note: string;
}

async function main(): Promise<void> {
  const only = process.argv[2] ?? process.env.BENCH_ONLY;
  const withConsul = process.env.BENCH_NO_CONSUL === undefined;
  const rows: Row[] = [];
  const raw: Record<string, unknown> = {};

  if (only === undefined || only === 'plan') {
    const p = await benchPlan(withConsul);
    raw.plan = p;
    rows.push({
      scenario: 'plan',
      figure: 'compile 100 services / 100,000 clients (in-process, median of 7)',
      value: `${p.compileMsMedian.toFixed(0)} ms`,
      note: `${p.clients} members`,
    });
    if (p.cliMsMedian !== null) {
      rows.push({
        scenario: 'plan',
        figure: '`befw plan --json` end to end against Consul (median of 5)',
        value: `${p.cliMsMedian.toFixed(0)} ms`,
        note: 'process start + Consul read + compile + JSON',
      });
    }
  }

  const want = (name: string): boolean => withConsul && (only === undefined ? name !== 'fleet' : only === name);
  const f = (n: number, digits = 1): string => n.toFixed(digits);

  if (want('propagation')) {
    const p = await benchPropagation();
    raw.propagation = p;
    rows.push({
      scenario: 'propagation',
      figure: `KV PUT -> member in kernel, ${p.changes} changes, ${p.baseMembers} members: p50`,
      value: `${f(p.p50)} ms`,
      note: 'target <= 20 ms',
    });
    rows.push({ scenario: 'propagation', figure: 'same: p99', value: `${f(p.p99)} ms`, note: `target <= 100 ms; max ${f(p.max)} ms` });
  }

  if (want('stream')) {
    const p = await benchStream();
    raw.stream = p;
    rows.push({
      scenario: 'stream',
      figure: `${p.changes} grants at 20/s to one set, each PUT -> member in kernel: p50`,
      value: `${f(p.p50)} ms`,
      note: 'target <= 20 ms',
    });
    rows.push({ scenario: 'stream', figure: 'same: p99', value: `${f(p.p99)} ms`, note: `target <= 100 ms; max ${f(p.max)} ms` });
  }
  if (want('single')) {
    const deltas = benchDeltaBySize();
    raw.deltaBySize = deltas;
    for (const d of deltas) {
      rows.push({
        scenario: 'single',
        figure: `one member added to a ${d.size}-member set: driver apply (median of 20)`,
        value: `${f(d.applyMsMedian, 2)} ms`,
        note: `raw ipset add ${f(d.rawAddMsMedian, 2)} ms; ratio ${f(d.ratio, 2)}x (target <= 3x)`,
      });
    }
    const s = await benchSingleChange();
    raw.single = s;
    rows.push({
      scenario: 'single',
      figure: `same in the running agent, ${s.setSize} members, Consul re-read around it`,
      value: `${f(s.applyMsMedian, 2)} ms`,
      note: `raw ipset add ${f(s.rawAddMsMedian, 2)} ms; ratio ${f(s.ratio, 2)}x`,
    });
    rows.push({
      scenario: 'single',
      figure: 'same change end to end (KV PUT -> kernel), p50',
      value: `${f(s.endToEndP50)} ms`,
      note: `max ${f(s.endToEndMax)} ms; Consul alone needs ~300 ms to list 65,000 keys`,
    });
  }
  if (want('cold')) {
    const c = await benchColdApply();
    raw.cold = c;
    rows.push({
      scenario: 'cold',
      figure: `cold apply of ${c.members} members over ${c.sets} sets: sets`,
      value: `${f(c.agentSetsMs, 0)} ms`,
      note: `raw ipset restore ${f(c.rawRestoreMs, 0)} ms; ratio ${f(c.ratioSets, 2)}x (target <= 1.3x)`,
    });
    rows.push({
      scenario: 'cold',
      figure: 'same, whole apply (sets + both chains + cleanup)',
      value: `${f(c.agentTotalMs, 0)} ms`,
      note: `ratio ${f(c.ratioTotal, 2)}x`,
    });
    rows.push({
      scenario: 'integrity',
      figure: `idle agent CPU, ${c.members} members in ${c.sets} sets, default settings`,
      value: `${f(c.idleCpuShareDefault * 100, 2)} %`,
      note: 'of one core, agent + tools; quick check every 3 s, full member check every 300 s (none in the 30 s window); target < 1 %',
    });
    rows.push({
      scenario: 'integrity',
      figure: 'same with the full member check every 60 s',
      value: `${f(c.idleCpuShare * 100, 2)} %`,
      note: `of one core, agent + tools; full member check every 60 s here (default 300 s); quick check ${f(c.quickCheckMs)} ms, full ${f(c.fullCheckMs)} ms wall; target < 1 %`,
    });
    rows.push({
      scenario: 'memory',
      figure: `agent RSS with ${c.members} members (after apply)`,
      value: `${f(c.rssMb, 0)} MB`,
      note: `7 s after; ${f(c.rss2sMb, 0)} MB at 2 s; peak ${f(c.peakRssMb, 0)} MB; target <= 120 MB`,
    });
  }

  if (want('syslog')) {
    const t = await benchSyslogThroughput();
    raw.syslogThroughput = t;
    rows.push({
      scenario: 'syslog',
      figure: `parser, LF-framed TCP, built-in triggers, ${t.messages.toLocaleString('en')} lines`,
      value: `${f(t.perCpuSecond, 0)}/s`,
      note: `per CPU-second of the parser process (all threads); wall clock ${f(t.perSecond, 0)}/s; target >= 100,000/s`,
    });
    const r = await benchSyslogReaction();
    raw.syslogReaction = r;
    rows.push({
      scenario: 'syslog',
      figure: `logger line -> attacker refused on the node, ${r.rounds} bans: p50`,
      value: `${f(r.p50)} ms`,
      note: `via HAProxy, parser, beanstalkd, responder, Consul, agent; includes logger's start; max ${f(r.max)} ms`,
    });
    rows.push({
      scenario: 'syslog',
      figure: 'same: p99',
      value: `${f(r.p99)} ms`,
      note: `target <= 250 ms; parser line -> ban written p50 ${f(r.lineToActionP50)} / p99 ${f(r.lineToActionP99)} ms`,
    });
  }

  if (want('backends')) {
    // Both firewall backends side by side, each against its raw tool (the iptables figures of the
    // `single` and `cold` scenarios above are reused when they ran).
    const b = await benchBackends({
      ...(raw.cold === undefined ? {} : { cold: raw.cold as ColdApplyResult }),
      ...(raw.deltaBySize === undefined ? {} : { deltaBySize: raw.deltaBySize as DeltaBySize[] }),
    });
    raw.backends = b;
    process.stdout.write(`\n${backendsTable(b)}\n\n`);
    rows.push(...backendRows(b));
  }

  if (want('fleet')) {
    const t0 = Date.now();
    const r = await benchFleet();
    raw.fleet = r;
    process.stdout.write(`\n${fleetTable(r)}\n\n${fleetExtrapolation(r)}\n\n`);
    for (const t of fleetTargets(r)) rows.push({ scenario: 'fleet', ...t });
    rows.push({
      scenario: 'fleet',
      figure: 'whole benchmark, wall clock',
      value: `${((Date.now() - t0) / 1000).toFixed(0)} s`,
      note: `${r.keys.toLocaleString('en')} keys written in ${(r.loadMs / 1000).toFixed(1)} s`,
    });
  }

  const w = [11, 70, 10];
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
