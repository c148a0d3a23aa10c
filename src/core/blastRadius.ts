/**
 * The blast-radius guard: a plan that would empty a set, or remove most of a sizeable set, in one
 * step because of what a read returned (not because entries expired) is held back until a second,
 * independent read says the same.
 *
 * Why: the dangerous Consul answers are the ones that look valid. An ACL token that lost its
 * policy gets 200 OK with the entries filtered out; a server restored from an old snapshot
 * answers with yesterday's tree; a services read during an agent restart lists nothing. Each
 * looks like "delete everything", and acting on it opens enforcing services or drops every
 * client at once. A real mass delete survives a second read; a glitch usually does not.
 *
 * The rule, per kernel set (IPv4 and IPv6 counted separately):
 *   removed = members in `baseline` but not in `next`, where `baseline` is what the previous
 *             inputs give at the current time, so expiries never count as removals;
 *   suspicious when removed >= 2 and either
 *     - every member goes (removed == baseline size), or
 *     - the set had at least `minMembers` and removed / baseline > `share`.
 * A set that disappears from the plan (its service vanished) counts as losing all its members.
 */
import { diffSorted } from './sortedDiff.js';
import type { Plan } from './types.js';

export interface GuardOptions {
  /** Fraction of a set's members (0..1) above which a removal is suspicious. */
  readonly share: number;
  /** Sets smaller than this are only guarded against being emptied. */
  readonly minMembers: number;
}

export const DEFAULT_GUARD: GuardOptions = { share: 0.5, minMembers: 10 };

export interface SuspiciousRemoval {
  readonly set: string;
  readonly before: number;
  readonly removed: number;
}

export function suspiciousRemovals(baseline: Plan, next: Plan, opts: GuardOptions = DEFAULT_GUARD): SuspiciousRemoval[] {
  const nextSets = new Map(next.sets.map((s) => [s.name, s]));
  const out: SuspiciousRemoval[] = [];
  for (const before of baseline.sets) {
    const n = before.members.length;
    if (n < 2) continue;
    const after = nextSets.get(before.name);
    let removed = 0;
    if (after === undefined) removed = n;
    else
      diffSorted(
        before.members,
        after.members,
        () => undefined,
        () => removed++,
      );
    if (removed < 2) continue;
    if (removed === n || (n >= opts.minMembers && removed / n > opts.share)) out.push({ set: before.name, before: n, removed });
  }
  return out;
}
