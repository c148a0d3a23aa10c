/**
 * ipset names for logical sets (the iptables backend's naming: the plan itself only knows logical
 * names). ipset names hold at most 31 characters, and every set has an
 * IPv6 twin `<name>_v6`, so a kernel base name holds at most 28. Longer logical names become
 * `<first 19 characters>-<8 hex digits of a hash>`: stable across runs and nodes, readable, and
 * checked for collisions against every other name in the plan.
 */
import { hash53 } from '../../core/hash.js';
import { logicalOf } from '../../core/planSets.js';
import type { ChainRule, PlanSet, SetFamily } from '../../core/types.js';

export const IPSET_NAME_MAX = 31;
export const V6_SUFFIX = '_v6';
export const BASE_NAME_MAX = IPSET_NAME_MAX - V6_SUFFIX.length;
const KEEP = BASE_NAME_MAX - 9;

export function v6Name(kernelBase: string): string {
  return `${kernelBase}${V6_SUFFIX}`;
}

/** Maps each logical name to a unique kernel base name. Deterministic for the same set of names. */
export function assignKernelNames(logical: readonly string[]): Map<string, string> {
  const sorted = [...new Set(logical)].sort();
  const out = new Map<string, string>();
  const taken = new Set<string>();
  // Names that fit keep themselves and claim their slot first, so a shortened name never
  // displaces a name an operator can see in Consul.
  for (const name of sorted) {
    if (name.length <= BASE_NAME_MAX) {
      out.set(name, name);
      taken.add(name);
    }
  }
  for (const name of sorted) {
    if (name.length <= BASE_NAME_MAX) continue;
    let salt = 0;
    let candidate: string;
    do {
      candidate = `${name.slice(0, KEEP)}-${hash53(name, salt).slice(-8)}`;
      salt++;
    } while (taken.has(candidate));
    out.set(name, candidate);
    taken.add(candidate);
  }
  return out;
}

/** Kernel names of one plan's sets: the ipset name of each logical set's half. */
export interface KernelNames {
  set(logical: string, family: SetFamily): string;
}

const namesCache = new WeakMap<object, KernelNames>();

/**
 * The ipset names for a plan: every logical set the plan holds or its rules reference gets a
 * base name (assignKernelNames over all of them, so collisions are checked plan-wide), and its
 * IPv6 half that base name plus `_v6`.
 */
export function kernelNamesFor(plan: { readonly sets: readonly PlanSet[]; readonly rules: readonly ChainRule[] }): KernelNames {
  const known = namesCache.get(plan.sets);
  if (known !== undefined) return known;
  const logical = new Set<string>(plan.sets.map(logicalOf));
  for (const r of plan.rules) if (r.kind !== 'loopback' && r.kind !== 'trap') logical.add(r.set);
  const base = assignKernelNames([...logical]);
  const names: KernelNames = {
    set: (l, family) => {
      const b = base.get(l) ?? l;
      return family === 'inet' ? b : v6Name(b);
    },
  };
  namesCache.set(plan.sets, names);
  return names;
}
