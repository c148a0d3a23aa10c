/**
 * Runs inside a namespace: times a command N times with the agent's own process runner, so the
 * raw tool and the agent pay the same process-start cost. Prints {"ms":[...]} on stdout.
 *   node timeCommand.js N [--stdin FILE] [--vary] CMD ARGS...
 * With --vary, "{i}" in the arguments becomes the run number (a different member each run).
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { processRunner } from '../../src/dataplane/exec.js';

const args = process.argv.slice(2);
const n = Number(args.shift());
let input: string | undefined;
if (args[0] === '--stdin') {
  args.shift();
  input = readFileSync(args.shift() ?? '', 'utf8');
}
const vary = args[0] === '--vary';
if (vary) args.shift();
const [cmd, ...rest] = args;
const ms: number[] = [];
for (let i = 0; i < n; i++) {
  const a = vary ? rest.map((x) => x.replaceAll('{i}', String(i))) : rest;
  const t0 = performance.now();
  const r = await processRunner.run(cmd ?? 'true', a, input === undefined ? {} : { input });
  ms.push(performance.now() - t0);
  if (r.code !== 0) {
    process.stderr.write(`${cmd} ${a.join(' ')}: ${r.stderr}\n`);
    process.exit(1);
  }
}
process.stdout.write(`${JSON.stringify({ ms })}\n`);
