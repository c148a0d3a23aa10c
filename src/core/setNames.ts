/**
 * Kernel names for logical sets. ipset names hold at most 31 characters, and every set has an
 * IPv6 twin `<name>_v6`, so a kernel base name holds at most 28. Longer logical names become
 * `<first 19 characters>-<8 hex digits of a hash>`: stable across runs and nodes, readable, and
 * checked for collisions against every other name in the plan.
 */
import { hash53 } from './hash.js';

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
