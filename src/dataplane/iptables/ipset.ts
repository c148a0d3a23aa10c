/**
 * ipset: reading the kernel's sets (one `ipset list -t` for all headers) and writing one
 * `ipset restore` batch per apply. Set names and members in the batch come from the plan, which
 * only holds canonical CIDRs and validated names.
 */
import { kernelMembers, parseNet } from '../../core/address.js';
import { diffSorted } from '../../core/sortedDiff.js';
import type { PlanSet } from '../../core/types.js';
import { type CommandRunner, runChecked } from '../exec.js';

export const IPSET = 'ipset';
/** Temporary sets start with a character no planned set name can contain. */
export const TEMP_PREFIX = '~befw';

const splitCache = new WeakMap<readonly string[], readonly string[]>();

/** Whether a sorted member list holds a /0: `0.0.0.0/0` sorts first, `::/0` is found by bisection. */
function hasZero(members: readonly string[]): boolean {
  if (members[0] === '0.0.0.0/0') return true;
  let lo = 0;
  let hi = members.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = members[mid] as string;
    if (m === '::/0') return true;
    if (m < '::/0') lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/**
 * A plan set's members as hash:net can hold them: `0.0.0.0/0` becomes `0.0.0.0/1` and
 * `128.0.0.0/1` (`::/0`: `::/1` and `8000::/1`), kept sorted and unique. The same list comes back
 * for the same input, so an unchanged set is still recognised by identity.
 */
export function ipsetMembers(members: readonly string[]): readonly string[] {
  if (!hasZero(members)) return members;
  const known = splitCache.get(members);
  if (known !== undefined) return known;
  const out = new Set<string>();
  for (const m of members) {
    if (!m.endsWith('/0')) {
      out.add(m);
      continue;
    }
    const net = parseNet(m);
    if (net.ok) for (const half of kernelMembers({ family: net.value.family, cidr: net.value.cidr, prefix: 0 })) out.add(half);
  }
  const split = [...out].sort();
  splitCache.set(members, split);
  return split;
}

export interface KernelSetHeader {
  readonly name: string;
  readonly type: string;
  readonly family: string;
  readonly maxelem: number;
  readonly references: number;
  readonly entries: number;
}

/** Parses `ipset list -t` (terse: headers only). Runs every few seconds: plain line scanning. */
export function parseIpsetListTerse(text: string): KernelSetHeader[] {
  const out: KernelSetHeader[] = [];
  let cur: { name: string; type: string; family: string; maxelem: number; references: number; entries: number } | null = null;
  for (const line of text.split('\n')) {
    const colon = line.indexOf(': ');
    if (colon < 0) continue;
    const key = line.slice(0, colon);
    const value = line.slice(colon + 2);
    if (key === 'Name') {
      cur = { name: value, type: '', family: '', maxelem: 0, references: 0, entries: 0 };
      out.push(cur);
    } else if (cur === null) {
      continue;
    } else if (key === 'Type') {
      cur.type = value;
    } else if (key === 'Header') {
      const words = value.split(' ');
      const at = (w: string): string | undefined => words[words.indexOf(w) + 1];
      cur.family = words.includes('family') ? (at('family') ?? '') : '';
      cur.maxelem = words.includes('maxelem') ? Number(at('maxelem')) : 0;
    } else if (key === 'References') {
      cur.references = Number(value);
    } else if (key === 'Number of entries') {
      cur.entries = Number(value);
    }
  }
  return out;
}

export async function listSetHeaders(runner: CommandRunner): Promise<Map<string, KernelSetHeader>> {
  const r = await runChecked(runner, IPSET, ['list', '-t']);
  return new Map(parseIpsetListTerse(r.stdout).map((h) => [h.name, h]));
}

export class IncompatibleSetError extends Error {
  constructor(
    readonly set: string,
    readonly found: KernelSetHeader,
  ) {
    super(
      `set ${set} exists as ${found.type} family ${found.family} and is referenced ${found.references} time(s); cannot replace it with hash:net`,
    );
    this.name = 'IncompatibleSetError';
  }
}

function compatible(h: KernelSetHeader, s: PlanSet): boolean {
  return h.type === 'hash:net' && h.family === s.family;
}

export interface SetScript {
  readonly script: string;
  readonly created: string[];
  readonly swapped: string[];
  readonly added: number;
  readonly deleted: number;
}

/** Membership the driver last wrote to a set. */
export interface AppliedSet {
  readonly family: PlanSet['family'];
  readonly maxelem: number;
  readonly members: readonly string[];
}

/**
 * Lines that rebuild one set: a new set is created and filled in place (nothing references it
 * yet); an existing one is filled as a temporary set and swapped in, so packets see either the
 * old or the new membership, never a partial one.
 */
function rebuildLines(s: PlanSet, existing: KernelSetHeader | undefined, temp: string, lines: string[]): 'created' | 'swapped' {
  const header = `hash:net family ${s.family} maxelem ${s.maxelem}`;
  if (existing !== undefined && !compatible(existing, s)) {
    if (existing.references > 0) throw new IncompatibleSetError(s.name, existing);
    lines.push(`destroy ${s.name}`);
  }
  if (existing === undefined || !compatible(existing, s)) {
    lines.push(`create ${s.name} ${header}`);
    for (const m of s.members) lines.push(`add ${s.name} ${m}`);
    return 'created';
  }
  lines.push(`create ${temp} ${header}`);
  for (const m of s.members) lines.push(`add ${temp} ${m}`);
  lines.push(`swap ${temp} ${s.name}`, `destroy ${temp}`);
  return 'swapped';
}

/**
 * One restore batch that brings every planned set to its planned members.
 * `applied` is what the driver last wrote: a set found there with the same type and size limit
 * only gets `add`/`del` lines for the difference (a single-member change is one line, whatever
 * the set's size); any other set is rebuilt. Leftover temporary sets are destroyed first.
 * `kernel` must list the kernel's sets whenever a set is rebuilt.
 */
export function buildSetScript(
  sets: readonly PlanSet[],
  kernel: ReadonlyMap<string, KernelSetHeader>,
  applied: ReadonlyMap<string, AppliedSet> = new Map(),
): SetScript {
  const lines: string[] = [];
  const created: string[] = [];
  const swapped: string[] = [];
  let added = 0;
  let deleted = 0;
  for (const name of kernel.keys()) {
    if (name.startsWith(TEMP_PREFIX)) lines.push(`destroy ${name}`); // left by a crash mid-apply
  }
  let temp = 0;
  for (const s of sets) {
    const prev = applied.get(s.name);
    if (prev !== undefined && prev.family === s.family && prev.maxelem === s.maxelem) {
      if (prev.members === s.members) continue;
      diffSorted(
        prev.members,
        s.members,
        (m) => {
          lines.push(`add ${s.name} ${m}`);
          added++;
        },
        (m) => {
          lines.push(`del ${s.name} ${m}`);
          deleted++;
        },
      );
      continue;
    }
    const how = rebuildLines(s, kernel.get(s.name), `${TEMP_PREFIX}${temp++}`, lines);
    (how === 'created' ? created : swapped).push(s.name);
    added += s.members.length;
  }
  lines.push('');
  return { script: lines.length === 1 ? '' : lines.join('\n'), created, swapped, added, deleted };
}

/** Whether any planned set needs a rebuild (and so a listing of the kernel's sets). */
export function needsRebuild(sets: readonly PlanSet[], applied: ReadonlyMap<string, AppliedSet>): boolean {
  return sets.some((s) => {
    const prev = applied.get(s.name);
    return prev === undefined || prev.family !== s.family || prev.maxelem !== s.maxelem;
  });
}

/**
 * `-exist` makes an add of a present member or a del of a missing one a no-op: after drift the
 * batch still converges instead of failing half-way.
 */
export const RESTORE_ARGS: readonly string[] = ['-exist', 'restore'];

export async function restoreSets(runner: CommandRunner, script: string): Promise<void> {
  if (script === '') return;
  await runChecked(runner, IPSET, RESTORE_ARGS, { input: script });
}

/** Destroys sets one batch at a time; a set still referenced elsewhere is reported, not forced. */
export async function destroySets(
  runner: CommandRunner,
  names: readonly string[],
): Promise<{ destroyed: string[]; failed: { name: string; error: string }[] }> {
  if (names.length === 0) return { destroyed: [], failed: [] };
  const batch = await runner.run(IPSET, ['restore'], { input: names.map((n) => `destroy ${n}`).join('\n') + '\n' });
  if (batch.code === 0) return { destroyed: [...names], failed: [] };
  const destroyed: string[] = [];
  const failed: { name: string; error: string }[] = [];
  for (const n of names) {
    const r = await runner.run(IPSET, ['destroy', n]);
    // "does not exist" means an earlier line of the batch got it: that is the wanted outcome.
    if (r.code === 0 || /does not exist/.test(r.stderr)) destroyed.push(n);
    else failed.push({ name: n, error: r.stderr.trim() });
  }
  return { destroyed, failed };
}
