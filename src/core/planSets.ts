/**
 * How the plan names the two halves of a logical set. The plan is backend-neutral: a set is the
 * logical name an operator writes in Consul keys and the config (`web_tcp_8080`, `rules_allow`,
 * `befw~protect`) plus a family; its IPv6 half is called `<logical>_v6` in the plan, the name
 * status, metrics and the guard have always shown. What a backend calls it in the kernel (ipset's
 * 31-character names, nftables identifiers) is the backend's business.
 */
import type { PlanSet, SetFamily } from './types.js';

export const V6_SUFFIX = '_v6';

/** The plan's name for one family's half of a logical set. */
export function planSetName(logical: string, family: SetFamily): string {
  return family === 'inet' ? logical : `${logical}${V6_SUFFIX}`;
}

/** The logical set a plan set belongs to. */
export function logicalOf(set: Pick<PlanSet, 'name' | 'family'>): string {
  return set.family === 'inet6' && set.name.endsWith(V6_SUFFIX) ? set.name.slice(0, -V6_SUFFIX.length) : set.name;
}

/**
 * A plan set. `expiring` lists the members that leave at a set second, in member order, with
 * that second (Unix seconds); it is left out when no member expires, so plans without expiry
 * look as they always did.
 */
export function planSet(
  logical: string,
  family: SetFamily,
  members: readonly string[],
  maxelem: number,
  expiring?: { readonly expiring: readonly string[]; readonly at: readonly number[] },
): PlanSet {
  const base = { name: planSetName(logical, family), family, members, maxelem };
  return expiring === undefined || expiring.expiring.length === 0
    ? base
    : { ...base, expiring: { members: expiring.expiring, at: expiring.at } };
}

/** Unix second at which `member` of `set` leaves, or null when it never does (binary search). */
export function expiryOf(set: PlanSet, member: string): number | null {
  const e = set.expiring;
  if (e === undefined) return null;
  let lo = 0;
  let hi = e.members.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const m = e.members[mid] as string;
    if (m === member) return e.at[mid] ?? null;
    if (m < member) lo = mid + 1;
    else hi = mid - 1;
  }
  return null;
}
