/**
 * iptables/ip6tables: read the filter table once (`-save`), write the BEFW chain in one
 * `-restore --noflush --wait` transaction, or the whole base table when installing it.
 */
import { CHAIN, type IpFamily } from '../rules/render.js';
import { type CommandRunner, runChecked } from './exec.js';

export interface IptablesTools {
  readonly save: string;
  readonly restore: string;
}

export const TOOLS: Readonly<Record<IpFamily, IptablesTools>> = {
  4: { save: 'iptables-save', restore: 'iptables-restore' },
  6: { save: 'ip6tables-save', restore: 'ip6tables-restore' },
};

export interface FilterState {
  readonly hasChain: boolean;
  readonly hasJump: boolean;
  /** The BEFW chain's rules as `-save` prints them. */
  readonly chainRules: readonly string[];
}

export function parseFilterSave(text: string): FilterState {
  const lines = text.split('\n');
  let inFilter = false;
  let hasChain = false;
  let hasJump = false;
  const chainRules: string[] = [];
  for (const l of lines) {
    if (l.startsWith('*')) inFilter = l === '*filter';
    if (!inFilter) continue;
    if (l.startsWith(`:${CHAIN} `)) hasChain = true;
    if (l === `-A INPUT -j ${CHAIN}`) hasJump = true;
    if (l.startsWith(`-A ${CHAIN} `)) chainRules.push(l);
  }
  return { hasChain, hasJump, chainRules };
}

export async function readFilter(runner: CommandRunner, family: IpFamily): Promise<FilterState> {
  const r = await runChecked(runner, TOOLS[family].save, ['-t', 'filter']);
  return parseFilterSave(r.stdout);
}

/** `--noflush`: only the chains the text declares are replaced. */
export async function restoreChain(runner: CommandRunner, family: IpFamily, text: string): Promise<void> {
  await runChecked(runner, TOOLS[family].restore, ['--noflush', '--wait'], { input: text });
}

/** Replaces the whole filter table (base install). */
export async function restoreTable(runner: CommandRunner, family: IpFamily, text: string): Promise<void> {
  await runChecked(runner, TOOLS[family].restore, ['--wait'], { input: text });
}
