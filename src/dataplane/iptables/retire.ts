/**
 * Removing what an iptables run left, for a node that now runs another backend: the BEFW chain
 * (befw's, or BEFW's iptables provider's), every rule that jumps to it, and the ipsets it
 * matched or the agent applied before (state.bin's list). Run only once the new backend enforces
 * the whole plan, so nobody refused gets in between; a set something else still references is
 * left and reported, never forced.
 *
 * Both iptables flavours are looked at: nf_tables (iptables-nft) and legacy. The legacy tables are
 * read only when the kernel already has them (/proc/net/ip_tables_names): reading them otherwise
 * would load the legacy modules just to find nothing.
 */
import { readFile } from 'node:fs/promises';
import type { Takeover } from '../dataplane.js';
import { type CommandRunner } from '../exec.js';
import { destroySets, listSetHeaders } from './ipset.js';
import { type Flavour, toolsFor } from './iptables.js';
import { CHAIN } from './render.js';

export interface ChainLeftover {
  /** `-A <chain> ... -j BEFW` lines: the jumps to remove. */
  readonly jumps: readonly string[];
  /** ipsets the chain's rules match. */
  readonly sets: readonly string[];
  readonly hasChain: boolean;
}

/** The BEFW chain in an `iptables-save -t filter` dump: whether it is there, what jumps to it, what it matches. */
export function chainLeftover(save: string): ChainLeftover {
  let inFilter = false;
  let hasChain = false;
  const jumps: string[] = [];
  const sets = new Set<string>();
  for (const l of save.split('\n')) {
    if (l.startsWith('*')) inFilter = l === '*filter';
    if (!inFilter) continue;
    if (l.startsWith(`:${CHAIN} `)) hasChain = true;
    if (!l.startsWith('-A ')) continue;
    if (/ -[jg] BEFW(\s|$)/.test(l) && !l.startsWith(`-A ${CHAIN} `)) jumps.push(l);
    if (l.startsWith(`-A ${CHAIN} `)) for (const m of l.matchAll(/--match-set (\S+)/g)) sets.add(m[1] ?? '');
  }
  return { jumps, sets: [...sets], hasChain };
}

/** One `-restore --noflush` transaction: the jumps deleted, the chain flushed and deleted. */
export function removalScript(left: ChainLeftover): string {
  return ['*filter', ...left.jumps.map((j) => `-D${j.slice(2)}`), `-F ${CHAIN}`, `-X ${CHAIN}`, 'COMMIT', ''].join('\n');
}

async function legacyPresent(family: 4 | 6): Promise<boolean> {
  const text = await readFile(family === 4 ? '/proc/net/ip_tables_names' : '/proc/net/ip6_tables_names', 'utf8').catch(() => '');
  return text.split('\n').includes('filter');
}

export interface RetireOptions {
  /** Whether the legacy filter table of a family exists (tests replace it). */
  readonly legacyPresent?: (family: 4 | 6) => Promise<boolean>;
  /** Called with each process id of a write, before its input (the nft backend's generation watch). */
  readonly onSpawn?: (pid: number) => void;
}

export async function retireIptables(runner: CommandRunner, owned: readonly string[], o: RetireOptions = {}): Promise<Takeover> {
  const removed: string[] = [];
  const failed: { what: string; error: string }[] = [];
  const sets = new Set(owned);
  const legacy = o.legacyPresent ?? legacyPresent;
  for (const flavour of ['nft', 'legacy'] as const satisfies readonly Flavour[]) {
    for (const family of [4, 6] as const) {
      if (flavour === 'legacy' && !(await legacy(family))) continue;
      const tools = toolsFor(flavour)[family];
      const save = await runner.run(tools.save, ['-t', 'filter']);
      if (save.code !== 0) continue; // this flavour is not installed or not usable: nothing of ours can be there
      const left = chainLeftover(save.stdout);
      if (!left.hasChain) continue;
      for (const s of left.sets) sets.add(s);
      const what = `iptables-${flavour} chain ${CHAIN} (IPv${family}) and ${left.jumps.length} jump(s)`;
      const r = await runner.run(tools.restore, ['--noflush', '--wait'], {
        input: removalScript(left),
        ...(o.onSpawn === undefined ? {} : { onSpawn: o.onSpawn }),
      });
      if (r.code === 0) removed.push(what);
      else failed.push({ what, error: r.stderr.trim().slice(0, 500) || `exit ${r.code}` });
    }
  }
  if (sets.size > 0 && failed.length === 0) {
    const headers = await listSetHeaders(runner).catch(() => null);
    if (headers !== null) {
      const gone: string[] = [];
      for (const name of sets) {
        const h = headers.get(name);
        if (h === undefined) continue;
        if (h.references > 0) failed.push({ what: `ipset ${name}`, error: `still referenced ${h.references} time(s) by other rules` });
        else gone.push(name);
      }
      const d = await destroySets(runner, gone);
      removed.push(...d.destroyed.map((n) => `ipset ${n}`));
      failed.push(...d.failed.map((f) => ({ what: `ipset ${f.name}`, error: f.error })));
    }
  }
  return { removed, failed };
}
