/**
 * The guard's two pure halves: which parts of a new plan loosen the firewall or remove much at
 * once (`loosenings`), and the plan to enforce while those parts wait (`holdBack`): the new plan
 * with the waiting removals put back, so additions and tightening pass at once and only the
 * loosening waits.
 *
 * Loosening, against the previous plan recompiled for now (so expiries never count):
 *   - a chain rule that goes away: a DROP/REJECT set's rule, an enforcing service's ports (its
 *     DROP goes with them) or a whole service;
 *   - an enforcing service switching to default mode (its DROP goes);
 *   - mass removal from a set (see blastRadius.ts: emptied, or most of a sizeable set).
 * When `everything` is set (an operator's `befw guard hold`), every removal waits.
 */
import { type SuspiciousRemoval, type GuardOptions, suspiciousRemovals } from './blastRadius.js';
import { hash53 } from './hash.js';
import { diffSorted } from './sortedDiff.js';
import { type ChainRule, type Plan, type PlanSet, targetText } from './types.js';

export type Loosening =
  | { readonly kind: 'rule-removed'; readonly rule: string }
  | { readonly kind: 'mass-removal'; readonly removal: SuspiciousRemoval }
  | { readonly kind: 'removal'; readonly set: string; readonly removed: number };

const ruleKey = (r: ChainRule): string => JSON.stringify(r);

export function describeRule(r: ChainRule): string {
  switch (r.kind) {
    case 'loopback':
      return 'loopback accept';
    case 'peers':
      return `Consul peers ${r.proto}`;
    case 'static':
      return `${r.set} ${targetText(r.target)}`;
    case 'service':
      return `${r.service} ${r.port}/${r.proto} ${r.mode}`;
    case 'trap':
      return `trap ports ${r.ports.join(',')}`;
  }
}

/** Every loosening step from `baseline` to `next`; empty when `next` may go in at once. */
export function loosenings(baseline: Plan, next: Plan, opts: GuardOptions, everything = false): Loosening[] {
  const out: Loosening[] = [];
  const nextRules = new Set(next.rules.map(ruleKey));
  for (const r of baseline.rules) {
    if (nextRules.has(ruleKey(r))) continue;
    // Only rules that refuse or accept someone matter; the protected paths never go.
    if (r.kind === 'static' || r.kind === 'service') out.push({ kind: 'rule-removed', rule: describeRule(r) });
  }
  if (everything) {
    const after = new Map(next.sets.map((s) => [s.name, s.members]));
    for (const s of baseline.sets) {
      let removed = 0;
      diffSorted(
        s.members,
        after.get(s.name) ?? [],
        () => undefined,
        () => removed++,
      );
      if (removed > 0) out.push({ kind: 'removal', set: s.name, removed });
    }
    return out;
  }
  for (const removal of suspiciousRemovals(baseline, next, opts)) out.push({ kind: 'mass-removal', removal });
  return out;
}

function union(a: readonly string[], b: readonly string[]): string[] {
  const out: string[] = [];
  // Both are sorted and unique: a merge keeps them so.
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    const x = a[i];
    const y = b[j];
    if (y === undefined || (x !== undefined && x < y)) {
      out.push(x as string);
      i++;
    } else if (x === undefined || y < x) {
      out.push(y);
      j++;
    } else {
      out.push(x);
      i++;
      j++;
    }
  }
  return out;
}

function maxelem(count: number, was: number): number {
  let m = Math.max(65536, was);
  while (m < count * 2) m *= 2;
  return m;
}

/**
 * The plan to enforce while `next`'s loosening waits: `next` with every member and rule of
 * `baseline` that `next` drops put back. Rules come back right after the rule they followed in
 * `baseline`, so a waiting DROP still sits behind its service's ACCEPT.
 */
export function holdBack(baseline: Plan, next: Plan): Plan {
  const before = new Map(baseline.sets.map((s) => [s.name, s]));
  const sets: PlanSet[] = next.sets.map((s) => {
    const b = before.get(s.name);
    if (b === undefined) return s;
    const members = union(b.members, s.members);
    return members.length === s.members.length ? s : { ...s, members, maxelem: maxelem(members.length, s.maxelem) };
  });
  const have = new Set(next.sets.map((s) => s.name));
  for (const b of baseline.sets) if (!have.has(b.name)) sets.push(b);
  sets.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));

  const rules = [...next.rules];
  const keys = rules.map(ruleKey);
  let prev: string | null = null;
  for (const r of baseline.rules) {
    const k = ruleKey(r);
    if (!keys.includes(k)) {
      const at = prev === null ? 0 : keys.indexOf(prev) + 1;
      rules.splice(at, 0, r);
      keys.splice(at, 0, k);
    }
    prev = k;
  }
  return {
    ...next,
    sets,
    rules,
    fingerprint: hash53(JSON.stringify({ sets, rules })),
    nextExpiry: [baseline.nextExpiry, next.nextExpiry]
      .filter((x): x is number => x !== null)
      .reduce<number | null>((m, x) => (m === null || x < m ? x : m), null),
  };
}
