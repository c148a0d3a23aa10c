/**
 * Reading table `inet befw` back: `nft -j list table` (the one costly read: every element), and
 * the cheap reads (`list sets` without elements, `list chains` without rules) used when no
 * monitor can run and by the safety net.
 */
import { type CommandRunner, runChecked } from '../exec.js';
import { jsonElement } from './elements.js';
import { TABLE, TABLE_REF } from './naming.js';

export const NFT = 'nft';

export interface ReadSet {
  readonly type: string;
  readonly flags: readonly string[];
  readonly elements: readonly { readonly text: string; readonly timeout: boolean }[];
}

export interface ReadChain {
  /** Type, hook, priority and policy as JSON ("{}" for a regular chain). */
  readonly header: string;
  /** Each rule's expressions as JSON, in order. */
  readonly rules: readonly string[];
}

export interface ReadTable {
  readonly sets: ReadonlyMap<string, ReadSet>;
  readonly chains: ReadonlyMap<string, ReadChain>;
}

/** The `{"nftables": [...]}` line of nft's JSON output (a read through the launcher shell may carry stderr lines). */
function nftablesJson(text: string): unknown[] {
  const line = text.split('\n').find((l) => l.startsWith('{"nftables"'));
  if (line === undefined) throw new Error(`nft printed no JSON: ${text.slice(0, 300)}`);
  const parsed = JSON.parse(line) as { nftables?: unknown };
  if (!Array.isArray(parsed.nftables)) throw new Error('nft JSON without "nftables"');
  return parsed.nftables as unknown[];
}

type Obj = Record<string, unknown>;

function objects(items: readonly unknown[], kind: string): Obj[] {
  const out: Obj[] = [];
  for (const it of items) {
    const o = (it as Obj | null)?.[kind];
    if (typeof o === 'object' && o !== null) {
      const x = o as Obj;
      if (x.family === 'inet' && x.table === TABLE) out.push(x);
    }
  }
  return out;
}

export function parseTable(text: string): ReadTable {
  const items = nftablesJson(text);
  const sets = new Map<string, ReadSet>();
  for (const s of objects(items, 'set')) {
    const elements: { text: string; timeout: boolean }[] = [];
    for (const e of Array.isArray(s.elem) ? (s.elem as unknown[]) : []) {
      const el = jsonElement(e);
      if (el !== null) elements.push(el);
      else elements.push({ text: JSON.stringify(e), timeout: false });
    }
    sets.set(String(s.name), { type: String(s.type), flags: Array.isArray(s.flags) ? (s.flags as unknown[]).map(String) : [], elements });
  }
  const chains = new Map<string, { header: string; rules: string[] }>();
  for (const c of objects(items, 'chain')) {
    chains.set(String(c.name), { header: JSON.stringify({ type: c.type, hook: c.hook, prio: c.prio, policy: c.policy }), rules: [] });
  }
  for (const r of objects(items, 'rule')) chains.get(String(r.chain))?.rules.push(JSON.stringify(r.expr));
  return { sets, chains };
}

/** The whole table, or null when there is none. */
export async function readTable(runner: CommandRunner): Promise<ReadTable | null> {
  const r = await runner.run(NFT, ['-j', 'list', 'table', 'inet', TABLE]);
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr) || /No such file or directory/.test(r.stdout)) return null;
    throw new Error(`nft -j list table ${TABLE_REF} exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 500)}`);
  }
  return parseTable(r.stdout);
}

/** Set names and flags of the table, without elements (cheap); null when there is no table. */
export async function readSetHeaders(runner: CommandRunner): Promise<Map<string, { type: string; flags: string[] }> | null> {
  const r = await runner.run(NFT, ['-j', '-t', 'list', 'sets', 'table', 'inet', TABLE]);
  if (r.code !== 0) {
    if (/No such file or directory/.test(r.stderr + r.stdout)) return null;
    throw new Error(`nft list sets exited ${r.code}: ${(r.stderr || r.stdout).trim().slice(0, 500)}`);
  }
  const out = new Map<string, { type: string; flags: string[] }>();
  for (const s of objects(nftablesJson(r.stdout), 'set'))
    out.set(String(s.name), { type: String(s.type), flags: Array.isArray(s.flags) ? (s.flags as unknown[]).map(String) : [] });
  return out;
}

/** The table's chains (no rules: cheap), name -> hook or null. */
export async function readChains(runner: CommandRunner): Promise<Map<string, string | null>> {
  const r = await runChecked(runner, NFT, ['-j', 'list', 'chains']);
  const out = new Map<string, string | null>();
  for (const c of objects(nftablesJson(r.stdout), 'chain')) out.set(String(c.name), typeof c.hook === 'string' ? c.hook : null);
  return out;
}
