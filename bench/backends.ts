/**
 * The two firewall backends side by side (issue 13): the same scenarios on iptables + ipset and on
 * nftables, each against its raw tool, in one run:
 *   - cold apply of 100,000 members over 200 sets (100 services, IPv4 and IPv6): the agent's
 *     apply against `ipset restore` of the same sets / `nft -f` of the same transaction text;
 *   - one member added to a 65,000-member set: the driver's apply against one `ipset add` /
 *     `nft add element` from the same process;
 *   - the idle agent's CPU with 100,000 members (integrity checks included), default settings and
 *     with the full member check every 60 s;
 *   - the agent's RSS after the apply.
 * Results of the iptables-only scenarios (`single`, `cold`) of the same run are reused.
 */
import { type ColdApplyResult, type DeltaBySize, benchColdApply, benchDeltaBySize } from './live.js';

export type BackendName = 'iptables' | 'nft';

export interface BackendFigures {
  readonly cold: ColdApplyResult;
  readonly delta: DeltaBySize;
}

export type BackendsResult = Record<BackendName, BackendFigures>;

export async function benchBackends(reuse: { cold?: ColdApplyResult; deltaBySize?: readonly DeltaBySize[] } = {}): Promise<BackendsResult> {
  const out: Partial<BackendsResult> = {};
  for (const backend of ['iptables', 'nft'] as const) {
    const reused = backend === 'iptables' ? reuse.deltaBySize?.find((d) => d.size === 65_000) : undefined;
    const delta = reused ?? benchDeltaBySize([65_000], backend)[0];
    if (delta === undefined) throw new Error(`no one-member figure for ${backend}`);
    const cold = backend === 'iptables' && reuse.cold !== undefined ? reuse.cold : await benchColdApply(backend);
    out[backend] = { cold, delta };
  }
  return out as BackendsResult;
}

interface Line {
  readonly figure: string;
  readonly iptables: string;
  readonly nft: string;
  readonly target: string;
}

function lines(r: BackendsResult): Line[] {
  const f = (n: number, d = 1): string => n.toFixed(d);
  const both = (g: (x: BackendFigures) => string): { iptables: string; nft: string } => ({ iptables: g(r.iptables), nft: g(r.nft) });
  const members = r.nft.cold.members.toLocaleString('en');
  return [
    {
      figure: `cold apply, ${members} members over ${r.nft.cold.sets} sets: agent (sets)`,
      ...both((x) => `${f(x.cold.agentSetsMs, 0)} ms`),
      target: '',
    },
    { figure: '  raw tool (ipset restore | nft -f, same sets)', ...both((x) => `${f(x.cold.rawRestoreMs, 0)} ms`), target: '' },
    { figure: '  ratio', ...both((x) => `${f(x.cold.ratioSets, 2)}x`), target: '<= 1.3x' },
    { figure: '  whole apply (sets + rules + cleanup)', ...both((x) => `${f(x.cold.agentTotalMs, 0)} ms`), target: '' },
    { figure: 'one member added to a 65,000-member set: driver apply', ...both((x) => `${f(x.delta.applyMsMedian, 2)} ms`), target: '' },
    { figure: '  raw tool (ipset add | nft add element)', ...both((x) => `${f(x.delta.rawAddMsMedian, 2)} ms`), target: '' },
    { figure: '  ratio', ...both((x) => `${f(x.delta.ratio, 2)}x`), target: '<= 3x' },
    {
      figure: `idle integrity CPU, ${members} members, default settings`,
      ...both((x) => `${f(x.cold.idleCpuShareDefault * 100, 2)} %`),
      target: '< 0.5 %',
    },
    { figure: '  same, full member check every 60 s', ...both((x) => `${f(x.cold.idleCpuShare * 100, 2)} %`), target: '' },
    {
      figure: '  quick check / full check (wall, median)',
      ...both((x) => `${f(x.cold.quickCheckMs)} / ${f(x.cold.fullCheckMs)} ms`),
      target: '',
    },
    { figure: `agent RSS with ${members} members`, ...both((x) => `${f(x.cold.rssMb, 0)} MB`), target: '<= 120 MB' },
  ];
}

/** The side-by-side table, as printed by `npm run bench`. */
export function backendsTable(r: BackendsResult): string {
  const rows = lines(r);
  const w = [Math.max(...rows.map((x) => x.figure.length)), 16, 16];
  const line = (a: string, b: string, c: string, d: string): string =>
    `${a.padEnd(w[0] ?? 0)}  ${b.padStart(w[1] ?? 0)}  ${c.padStart(w[2] ?? 0)}  ${d}`;
  return [line('backends', 'iptables + ipset', 'nftables', 'target'), ...rows.map((x) => line(x.figure, x.iptables, x.nft, x.target))].join(
    '\n',
  );
}

/** The same figures as rows of the main table. */
export function backendRows(r: BackendsResult): { scenario: string; figure: string; value: string; note: string }[] {
  return lines(r).map((x) => ({
    scenario: 'backends',
    figure: x.figure.trim(),
    value: `${x.iptables} | ${x.nft}`,
    note: x.target === '' ? 'iptables | nft' : `iptables | nft; target ${x.target}`,
  }));
}
