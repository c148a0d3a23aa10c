/**
 * Applies a plan to the kernel in the order that never lets a packet see a half state:
 * sets first (so every rule's set exists and is full), then the BEFW chain of each family in one
 * transaction together with the INPUT jump if it is missing, then the sets nothing references.
 *
 * The driver remembers what it last wrote. A later apply is a delta: `add`/`del` lines for the
 * members that changed, in one `ipset restore`; the chain is rewritten only when its text
 * changes (so its counters survive membership changes); the kernel is listed only when a set must
 * be created or rebuilt. A full apply (the first one, a periodic resync, or after any failure or
 * drift) rebuilds every set through a temporary set and rewrites the chain, which proves the
 * kernel equals the plan whatever happened to it meanwhile.
 */
import { performance } from 'node:perf_hooks';
import { maxelemFor } from '../../core/compile.js';
import { logicalOf } from '../../core/planSets.js';
import type { Plan, PlanSet } from '../../core/types.js';
import {
  ApplyError,
  type ApplyStep,
  type Dataplane,
  type Drift,
  type IpFamily,
  type Takeover,
  memberDiff,
  ruleDiff,
} from '../dataplane.js';
import { type CommandRunner, runChecked } from '../exec.js';
import {
  type AppliedSet,
  IPSET,
  type KernelSetHeader,
  buildSetScript,
  destroySets,
  ipsetMembers,
  listSetHeaders,
  needsRebuild,
  restoreSets,
} from './ipset.js';
import { type ToolSet, readFilter, restoreChain, restoreTable } from './iptables.js';
import { renderBaseRestore, renderChainRestore } from './render.js';
import { type KernelNames, assignKernelNames, kernelNamesFor, v6Name } from './setNames.js';
import type { BaseTemplate, ServiceTemplate } from './templates.js';

export { ApplyError } from '../dataplane.js';
export type { ApplyInput, ApplyReport, Dataplane, Drift } from '../dataplane.js';

export interface IptablesOptions {
  /** The per-service rule template (`rules=`, or the built-in one). */
  readonly template: ServiceTemplate;
  /** The base ruleset (`base_rules=`), installed with the chain filled in by the first apply; null: only the chain and the jump. */
  readonly base: BaseTemplate | null;
  /**
   * Removes what an nftables run left (table inet befw, BEFW's or befw's), once the plan is in:
   * null when nft is not installed (then no such table can have been written by it).
   */
  readonly dropNftTable?: (() => Promise<'removed' | 'absent'>) | null;
}

/** The plan's sets as ipset sees them: kernel names, and a /0 split in halves (hash:net cannot hold it). */
function kernelSets(plan: Plan, names: KernelNames): PlanSet[] {
  return plan.sets.map((s) => ({
    name: names.set(logicalOf(s), s.family),
    family: s.family,
    members: ipsetMembers(s.members),
    maxelem: s.maxelem,
  }));
}

/** Count and two order-independent sums of per-member hashes: a set's contents in 3 numbers. */
interface MemberDigest {
  count: number;
  sum: number;
  mix: number;
}

function newDigest(): MemberDigest {
  return { count: 0, sum: 0, mix: 0 };
}

/** Adds text[from, to) + suffix (`ipset save` prints hosts without their /32 or /128). */
function addMember(d: MemberDigest, text: string | Uint8Array, from: number, to: number, suffix: string): void {
  let h1 = 0x811c9dc5;
  let h2 = 0x9e3779b9;
  const step = (c: number): void => {
    h1 = Math.imul(h1 ^ c, 0x01000193);
    h2 = Math.imul(h2 ^ c, 0x85ebca6b) ^ (h2 >>> 13);
  };
  if (typeof text === 'string') for (let i = from; i < to; i++) step(text.charCodeAt(i));
  else for (let i = from; i < to; i++) step(text[i] as number);
  for (let i = 0; i < suffix.length; i++) step(suffix.charCodeAt(i));
  d.count++;
  d.sum = (d.sum + (h1 >>> 0)) >>> 0;
  d.mix = (d.mix + Math.imul(h2 ^ (h2 >>> 16), 0x7feb352d)) >>> 0;
}

/** Digests of applied member lists, kept per list: a list is only digested once. */
const digests = new WeakMap<readonly string[], MemberDigest>();

function digestOf(members: readonly string[]): MemberDigest {
  const known = digests.get(members);
  if (known !== undefined) return known;
  const d = newDigest();
  for (const m of members) addMember(d, m, 0, m.length, '');
  digests.set(members, d);
  return d;
}

const FAMILIES: readonly IpFamily[] = [4, 6];

/** The members of `names` in `ipset save` text, hosts with their /32 or /128 as befw writes them. */
function membersOf(save: string, names: ReadonlySet<string>): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let current: { list: string[]; suffix: string; prefix: string } | null = null;
  for (const line of save.split('\n')) {
    if (line.startsWith('create ')) {
      const [, name = '', , , family = ''] = line.split(' ');
      current = null;
      if (!names.has(name)) continue;
      const list: string[] = [];
      out.set(name, list);
      // `create NAME hash:net family inet6 ...`: the family is the word after `family`.
      const v6 = family === 'inet6' || line.includes(' family inet6');
      current = { list, suffix: v6 ? '/128' : '/32', prefix: `add ${name} ` };
    } else if (current !== null && line.startsWith(current.prefix)) {
      const member = line.slice(current.prefix.length).split(' ')[0] ?? '';
      current.list.push(member.includes('/') ? member : member + current.suffix);
    }
  }
  return out;
}

/** The BEFW chain of `family` differs from what was written: which rules. */
function chainDrift(family: IpFamily, applied: readonly string[], kernel: readonly string[]): Drift {
  const d = ruleDiff(applied, kernel);
  const what =
    d.missing.length === 0 && d.extra.length === 0
      ? 'same rules in another order'
      : `${d.missing.length} rule(s) missing, ${d.extra.length} not applied`;
  return {
    what: 'chain',
    family,
    chain: 'BEFW',
    detail: `${kernel.length} rules, ${applied.length} applied: ${what}`,
    rulesMissing: d.missing,
    rulesExtra: d.extra,
  };
}

async function step<T>(name: ApplyStep, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new ApplyError(name, err);
  }
}

export function createDataplane(runner: CommandRunner, tools: ToolSet, opts: IptablesOptions): Dataplane {
  const { template } = opts;
  let baseInstalled = opts.base === null;
  let adopted = false;
  let applied = new Map<string, AppliedSet>();
  let chainText: Record<IpFamily, string> | null = null;
  /** The BEFW chain as the kernel printed it back after our last write, per family. */
  let chainCanon: Record<IpFamily, readonly string[]> | null = null;

  const forget = (): void => {
    applied = new Map();
    chainText = null;
    chainCanon = null;
  };

  const verify = async ({ members }: { readonly members: boolean }): Promise<Drift[]> => {
    if (applied.size === 0 || chainCanon === null) return [];
    const drifts: Drift[] = [];
    const headers = await listSetHeaders(runner);
    for (const [name, a] of applied) {
      const h = headers.get(name);
      if (h === undefined) drifts.push({ what: 'set-missing', set: name, detail: 'set is gone' });
      else if (h.type !== 'hash:net' || h.family !== a.family)
        drifts.push({ what: 'set-type', set: name, detail: `${h.type} ${h.family}` });
      else if (h.entries !== a.members.length)
        drifts.push({ what: 'set-count', set: name, detail: `${h.entries} entries, ${a.members.length} applied` });
    }
    const canon = chainCanon;
    for (const family of FAMILIES) {
      const f = await readFilter(runner, tools, family);
      if (!f.hasJump) drifts.push({ what: 'jump', family, detail: 'INPUT does not jump to BEFW' });
      const want = canon[family];
      if (f.chainRules.length !== want.length || f.chainRules.some((l, i) => l !== want[i])) {
        drifts.push(chainDrift(family, want, f.chainRules));
      }
    }
    if (!members) return drifts;
    // With members, a set whose count differs is named member by member instead.
    const byMembers = await verifyMembers();
    const named = new Set(byMembers.map((d) => d.set));
    return [...drifts.filter((d) => d.what !== 'set-count' || !named.has(d.set)), ...byMembers];
  };

  /**
   * One `ipset save` for all sets; each applied set must hold exactly its members. Compared as a
   * count plus two order-independent sums of member hashes, computed straight from the saved text
   * (no string per member): the check runs on a timer against sets of 100,000 members.
   */
  const verifyMembers = async (): Promise<Drift[]> => {
    const r = await runChecked(runner, IPSET, ['save']);
    // Bytes, not a string: indexing a multi-megabyte string built from chunks is slow in V8.
    const text = Buffer.from(r.stdout, 'latin1');
    const kernel = new Map<string, MemberDigest>();
    let current: { name: string; digest: MemberDigest; suffix: string } | null = null;
    const NL = 10;
    const SP = 32;
    const SLASH = 47;
    for (let pos = 0; pos < text.length;) {
      let eol = text.indexOf(NL, pos);
      if (eol < 0) eol = text.length;
      if (text[pos] === 0x63 /* c */ && text.toString('latin1', pos, pos + 7) === 'create ') {
        const nameEnd = text.indexOf(SP, pos + 7);
        const name = text.toString('latin1', pos + 7, nameEnd);
        const a = applied.get(name);
        current = a === undefined ? null : { name, digest: newDigest(), suffix: a.family === 'inet' ? '/32' : '/128' };
        if (current !== null) kernel.set(name, current.digest);
      } else if (current !== null && text[pos] === 0x61 /* a */) {
        const from = pos + 4 + current.name.length + 1;
        let to = from;
        let slash = false;
        for (; to < eol && text[to] !== SP; to++) if (text[to] === SLASH) slash = true;
        addMember(current.digest, text, from, to, slash ? '' : current.suffix);
      }
      pos = eol + 1;
    }
    const differ: string[] = [];
    for (const [name, a] of applied) {
      const got = kernel.get(name);
      const want = digestOf(a.members);
      // A set that is gone is the header check's finding.
      if (got !== undefined && (got.count !== want.count || got.sum !== want.sum || got.mix !== want.mix)) differ.push(name);
    }
    if (differ.length === 0) return [];
    // Only now, for the sets that differ: their members as strings, to say which ones.
    const lists = membersOf(r.stdout, new Set(differ));
    return differ.map((name) => {
      const a = applied.get(name);
      const d = memberDiff(a?.members ?? [], lists.get(name) ?? []);
      const parts = [`${lists.get(name)?.length ?? 0} members in the kernel, ${a?.members.length ?? 0} applied`];
      if (d.missingCount > 0)
        parts.push(`${d.missingCount} missing (${d.missing.slice(0, 3).join(', ')}${d.missingCount > 3 ? ', ...' : ''})`);
      if (d.extraCount > 0) parts.push(`${d.extraCount} not applied (${d.extra.slice(0, 3).join(', ')}${d.extraCount > 3 ? ', ...' : ''})`);
      return { what: 'set-members' as const, set: name, detail: parts.join('; '), ...d };
    });
  };

  /**
   * After the plan is in (sets, chain and jump): the nftables table `inet befw` an earlier nft run
   * or BEFW's nft provider left goes. Until then both enforce, so nobody refused gets in between;
   * a frozen `rules_deny` in it would otherwise keep rejecting whatever Consul says.
   */
  const takeOver = async (): Promise<Takeover> => {
    const drop = opts.dropNftTable ?? null;
    if (drop === null) {
      adopted = true;
      return { removed: [], failed: [] };
    }
    try {
      const r = await drop();
      adopted = true;
      return { removed: r === 'removed' ? ['nftables table inet befw'] : [], failed: [] };
    } catch (err) {
      return { removed: [], failed: [{ what: 'nftables table inet befw', error: (err as Error).message }] };
    }
  };

  return {
    forget,
    verify,
    async hasChain() {
      for (const family of FAMILIES) if ((await readFilter(runner, tools, family)).hasChain) return true;
      return false;
    },
    async ensureMembers(sets) {
      const lines: string[] = [];
      for (const s of sets) {
        const base = assignKernelNames([logicalOf(s)]).get(logicalOf(s)) ?? logicalOf(s);
        const name = s.family === 'inet' ? base : v6Name(base);
        const members = ipsetMembers(s.members);
        lines.push(`create ${name} hash:net family ${s.family} maxelem ${maxelemFor(members.length)}`);
        for (const m of members) lines.push(`add ${name} ${m}`);
      }
      await restoreSets(runner, `${lines.join('\n')}\n`);
    },
    close() {
      // Nothing runs beside the agent for this backend.
    },
    async apply({ plan, owned, full = false, adopt = false }) {
      const t0 = performance.now();
      const base = baseInstalled ? null : opts.base;
      if (full || base !== null) forget();
      const delta = applied.size > 0;
      const names = kernelNamesFor(plan);
      const wanted = kernelSets(plan, names);
      // A failure below leaves the kernel somewhere between the old and the new plan: whatever
      // was believed is no longer known, so the next attempt must be full.
      try {
        const kernel: ReadonlyMap<string, KernelSetHeader> = needsRebuild(wanted, applied)
          ? await step('read-kernel', () => listSetHeaders(runner))
          : new Map();
        const sets = buildSetScript(wanted, kernel, applied);
        const tScript = performance.now();
        await step('sets', () => restoreSets(runner, sets.script));
        const t1 = performance.now();

        const jumpInserted: IpFamily[] = [];
        const text: Record<IpFamily, string> = {
          4: renderChainRestore(plan.rules, 4, template, false, names),
          6: renderChainRestore(plan.rules, 6, template, false, names),
        };
        let chainWritten = false;
        await step('chain', async () => {
          for (const family of FAMILIES) {
            if (base !== null) {
              await restoreTable(runner, tools, family, renderBaseRestore(base, plan.rules, family, template, names));
              chainWritten = true;
              continue;
            }
            if (chainText !== null && chainText[family] === text[family]) continue;
            const filter = await readFilter(runner, tools, family);
            if (!filter.hasJump) jumpInserted.push(family);
            await restoreChain(runner, tools, family, renderChainRestore(plan.rules, family, template, !filter.hasJump, names));
            chainWritten = true;
          }
          // Read the chain back as the kernel prints it: the integrity check compares with this.
          if (chainWritten || chainCanon === null) {
            const back = await Promise.all(FAMILIES.map((f) => readFilter(runner, tools, f)));
            chainCanon = { 4: back[0]?.chainRules ?? [], 6: back[1]?.chainRules ?? [] };
          }
        });
        chainText = text;
        if (base !== null) baseInstalled = true;
        const t2 = performance.now();

        const planned = new Set(wanted.map((s) => s.name));
        const orphans = owned.filter((n) => !planned.has(n));
        const cleanup = await step('cleanup', () => destroySets(runner, orphans));
        const t3 = performance.now();

        applied = new Map(wanted.map((s) => [s.name, { family: s.family, maxelem: s.maxelem, members: s.members }]));
        const takeover = adopt && !adopted ? await takeOver() : null;
        return {
          mode: delta ? 'delta' : 'full',
          created: sets.created,
          swapped: sets.swapped,
          added: sets.added,
          deleted: sets.deleted,
          chainWritten,
          destroyed: cleanup.destroyed,
          notDestroyed: cleanup.failed,
          jumpInserted,
          members: plan.sets.reduce((n, s) => n + s.members.length, 0),
          owned: [...planned, ...cleanup.failed.map((f) => f.name)],
          takeover,
          ms: { script: tScript - t0, sets: t1 - t0, chain: t2 - t1, cleanup: t3 - t2, total: t3 - t0 },
        };
      } catch (err) {
        forget();
        throw err;
      }
    },
  };
}
