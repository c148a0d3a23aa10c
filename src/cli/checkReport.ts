/**
 * `befw check` output: what differs between the kernel and the plan, set by set and chain by
 * chain, naming the members and rules (at most DRIFT_LIST_MAX of each, with the counts), and
 * what the agent did about it.
 */
import type { CheckAnswer } from '../agent/controlProtocol.js';
import type { Drift } from '../dataplane/dataplane.js';

function where(d: Drift): string {
  const what =
    d.set !== undefined ? `set ${d.set}` : d.chain !== undefined ? `chain ${d.chain}` : d.what === 'jump' ? 'INPUT jump' : d.what;
  return `${what}${d.family === undefined ? '' : ` (IPv${d.family})`}`;
}

function listed(label: string, items: readonly string[] | undefined, count: number | undefined): string[] {
  if (items === undefined || items.length === 0) return [];
  const more = (count ?? items.length) - items.length;
  return [...items.map((x) => `      ${label} ${x}`), ...(more > 0 ? [`      ${label} ... and ${more} more`] : [])];
}

export function formatDrift(d: Drift): string[] {
  const at = where(d);
  return [
    // nft's details already start with the chain they are about.
    d.detail.startsWith(at) ? `  ${d.detail}` : `  ${at}: ${d.detail}`,
    ...listed('missing', d.missing, d.missingCount),
    ...listed('extra  ', d.extra, d.extraCount),
    ...listed('rule missing', d.rulesMissing, undefined),
    ...listed('rule extra  ', d.rulesExtra, undefined),
  ];
}

export function formatDrifts(drifts: readonly Drift[]): string[] {
  if (drifts.length === 0) return ['kernel matches the plan'];
  return [`kernel differs from the plan (${drifts.length}):`, ...drifts.flatMap(formatDrift)];
}

/** The check's findings, then the repair: started by the agent, or done and checked again. */
export function formatCheck(a: CheckAnswer): string {
  const out = formatDrifts(a.drifts);
  const r = a.repair ?? null;
  if (r === null) return out.join('\n');
  if (r.state === 'started') {
    out.push('the agent is repairing this now (befw check --repair waits for the repair and checks again)');
  } else {
    out.push(`repair: ${r.outcome}`);
    out.push(
      ...(r.remaining.length === 0 ? ['after the repair: kernel matches the plan'] : ['after the repair:', ...formatDrifts(r.remaining)]),
    );
  }
  return out.join('\n');
}

/**
 * Exit status: 0 the kernel matched, 1 it differed (a finding, as docs/cli.md has it; exit 2 is
 * kept for usage errors). Whether --repair fixed it is in the output.
 */
export function checkExitCode(a: CheckAnswer): number {
  return a.drifts.length === 0 ? 0 : 1;
}
