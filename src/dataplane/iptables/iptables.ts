/**
 * iptables/ip6tables: read the filter table once (`-save`), write the BEFW chain in one
 * `-restore --noflush --wait` transaction, or the whole base table when installing it.
 */
import type { IpFamily } from '../dataplane.js';
import { CHAIN } from './render.js';
import { type CommandRunner, runChecked } from '../exec.js';

export interface IptablesTools {
  readonly save: string;
  readonly restore: string;
}

/** Which iptables: the nf_tables flavour (`iptables-nft`) or the legacy x_tables one. */
export type Flavour = 'nft' | 'legacy';
export type ToolSet = Readonly<Record<IpFamily, IptablesTools>>;

/**
 * The tools of one backend, named explicitly (`iptables-nft-restore`, not `iptables-restore`), so
 * that every call goes to the same backend even if the host's alternatives change meanwhile.
 */
export function toolsFor(backend: Flavour): ToolSet {
  return {
    4: { save: `iptables-${backend}-save`, restore: `iptables-${backend}-restore` },
    6: { save: `ip6tables-${backend}-save`, restore: `ip6tables-${backend}-restore` },
  };
}

export class BackendError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BackendError';
  }
}

/**
 * The backend the host uses: the one `iptables` (the alternatives link) reports. Rules written by
 * the other backend would live in a separate ruleset that packets also traverse, so befw never
 * mixes: it follows the host, or the backend configured with `iptables_backend=`.
 */
export async function detectBackend(runner: CommandRunner, preference: 'auto' | Flavour): Promise<{ backend: Flavour; how: string }> {
  if (preference !== 'auto') {
    const r = await runner.run(`iptables-${preference}`, ['--version']);
    if (r.code !== 0) throw new BackendError(`iptables_backend=${preference} but iptables-${preference} does not run: ${r.stderr.trim()}`);
    return { backend: preference, how: 'configured' };
  }
  const r = await runner.run('iptables', ['--version']);
  if (r.code !== 0) throw new BackendError(`cannot run iptables --version: ${r.stderr.trim() || 'not installed'}`);
  if (r.stdout.includes('nf_tables')) return { backend: 'nft', how: r.stdout.trim() };
  if (r.stdout.includes('legacy')) return { backend: 'legacy', how: r.stdout.trim() };
  throw new BackendError(`cannot tell the iptables backend from "${r.stdout.trim()}"; set iptables_backend=nft or legacy`);
}

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

export async function readFilter(runner: CommandRunner, tools: ToolSet, family: IpFamily): Promise<FilterState> {
  const r = await runChecked(runner, tools[family].save, ['-t', 'filter']);
  return parseFilterSave(r.stdout);
}

/** `--noflush`: only the chains the text declares are replaced. `--wait` queues behind the xtables lock. */
export async function restoreChain(runner: CommandRunner, tools: ToolSet, family: IpFamily, text: string): Promise<void> {
  await runChecked(runner, tools[family].restore, ['--noflush', '--wait'], { input: text });
}

/** Replaces the whole filter table (base install). */
export async function restoreTable(runner: CommandRunner, tools: ToolSet, family: IpFamily, text: string): Promise<void> {
  await runChecked(runner, tools[family].restore, ['--wait'], { input: text });
}
