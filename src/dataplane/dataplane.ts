/**
 * The dataplane seam (Felix's model): the agent hands a backend-neutral plan (logical sets with
 * members and expiry, logical chain rules) to a `Dataplane`, and each backend renders it for its
 * own kernel interface, names its own kernel objects, reads the kernel back and repairs it. The
 * agent never sees ipset names, iptables text or nft text. Backends are registered in one map
 * (registry.ts).
 */
import type { Plan, SetFamily } from '../core/types.js';

export type IpFamily = 4 | 6;

export type ApplyStep = 'read-kernel' | 'sets' | 'chain' | 'transaction' | 'cleanup';

export class ApplyError extends Error {
  constructor(
    readonly step: ApplyStep,
    cause: unknown,
  ) {
    super(`apply failed at ${step}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'ApplyError';
  }
}

export interface ApplyInput {
  readonly plan: Plan;
  /** Kernel objects the agent applied before (last apply, or state.bin): those the plan no longer needs go. */
  readonly owned: readonly string[];
  /** Rebuild everything, whatever the driver believes is in the kernel. */
  readonly full?: boolean;
  /**
   * The plan is the node's real one (from Consul or state.bin, not the safety net): once it is in
   * the kernel, what the other backend or BEFW left there may be removed (takeover). The new
   * state is complete before anything old goes, so no refused client ever gets in between.
   */
  readonly adopt?: boolean;
}

/** What a takeover removed, or could not. */
export interface Takeover {
  readonly removed: readonly string[];
  readonly failed: readonly { readonly what: string; readonly error: string }[];
}

export interface ApplyReport {
  readonly mode: 'full' | 'delta';
  readonly created: readonly string[];
  readonly swapped: readonly string[];
  readonly added: number;
  readonly deleted: number;
  readonly chainWritten: boolean;
  readonly destroyed: readonly string[];
  readonly notDestroyed: readonly { name: string; error: string }[];
  readonly jumpInserted: readonly IpFamily[];
  readonly members: number;
  /** Kernel objects this backend owns after the apply (state.bin keeps them for the next start). */
  readonly owned: readonly string[];
  /** What this apply took over from the other backend or from BEFW; null when nothing was looked at. */
  readonly takeover: Takeover | null;
  /** `script`: deciding what to write (diff); `sets`: that plus running it. */
  readonly ms: { readonly script: number; readonly sets: number; readonly chain: number; readonly cleanup: number; readonly total: number };
}

export interface Drift {
  readonly what: 'table' | 'set-missing' | 'set-type' | 'set-count' | 'set-members' | 'chain' | 'jump';
  readonly family?: IpFamily;
  /** The kernel set (ipset name, or nft set name). */
  readonly set?: string;
  /** The kernel chain (iptables `BEFW`, or an nft chain name). */
  readonly chain?: string;
  readonly detail: string;
  /** set-members: what the plan has and the kernel lacks (at most DRIFT_LIST_MAX of them). */
  readonly missing?: readonly string[];
  readonly missingCount?: number;
  /** set-members: what the kernel has and the plan does not. */
  readonly extra?: readonly string[];
  readonly extraCount?: number;
  /** chain: rules as the kernel prints them, applied but gone / in the kernel but never applied. */
  readonly rulesMissing?: readonly string[];
  readonly rulesExtra?: readonly string[];
}

/** How many members or rules a drift names; the counts say how many there are in all. */
export const DRIFT_LIST_MAX = 20;

export interface MemberDiff {
  readonly missing: readonly string[];
  readonly missingCount: number;
  readonly extra: readonly string[];
  readonly extraCount: number;
}

/** Members of `want` not in `got` and the other way round, the lists sorted and cut at DRIFT_LIST_MAX. */
export function memberDiff(want: Iterable<string>, got: Iterable<string>): MemberDiff {
  const w = new Set(want);
  const g = new Set(got);
  const missing = [...w].filter((m) => !g.has(m));
  const extra = [...g].filter((m) => !w.has(m));
  return {
    missing: missing.sort().slice(0, DRIFT_LIST_MAX),
    missingCount: missing.length,
    extra: extra.sort().slice(0, DRIFT_LIST_MAX),
    extraCount: extra.length,
  };
}

/** Rules applied but not in the kernel, and rules in the kernel but not applied (as multisets; order aside). */
export function ruleDiff(applied: readonly string[], kernel: readonly string[]): { missing: string[]; extra: string[] } {
  const left = new Map<string, number>();
  for (const r of kernel) left.set(r, (left.get(r) ?? 0) + 1);
  const missing: string[] = [];
  for (const r of applied) {
    const n = left.get(r) ?? 0;
    if (n > 0) left.set(r, n - 1);
    else missing.push(r);
  }
  const extra = kernel.filter((r) => {
    const n = left.get(r) ?? 0;
    if (n === 0) return false;
    left.set(r, n - 1);
    return true;
  });
  return { missing: missing.slice(0, DRIFT_LIST_MAX), extra: extra.slice(0, DRIFT_LIST_MAX) };
}

/** Members for the safety net, by plan set name (`rules_allow`, `rules_allow_v6`). */
export interface EnsureSet {
  readonly name: string;
  readonly family: SetFamily;
  readonly members: readonly string[];
}

export interface Dataplane {
  apply(input: ApplyInput): Promise<ApplyReport>;
  /** Drop what the driver believes is in the kernel: the next apply is full. */
  forget(): void;
  /**
   * Compares the kernel with what the driver last applied; with `members`, every set's members
   * too. Empty when nothing was applied yet. Each backend decides how cheap the quick form is.
   */
  verify(opts: { readonly members: boolean }): Promise<Drift[]>;
  /** Whether this backend's chain is in the kernel now (left by an earlier run, say). */
  hasChain(): Promise<boolean>;
  /**
   * Adds networks to the rules_allow sets without touching anything else: the safety net when
   * there is neither Consul nor a valid state, and a chain from an earlier run is in place.
   */
  ensureMembers(sets: readonly EnsureSet[]): Promise<void>;
  /** Stops what the backend keeps running beside the agent (watchers); the kernel stays as it is. */
  close(): void;
}
