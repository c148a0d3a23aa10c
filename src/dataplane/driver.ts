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
import { type IpFamily, renderBaseRestore, renderChainRestore } from '../rules/render.js';
import type { BaseTemplate, ServiceTemplate } from '../rules/templates.js';
import type { Plan } from '../rules/types.js';
import type { CommandRunner } from './exec.js';
import { type AppliedSet, type KernelSetHeader, buildSetScript, destroySets, listSetHeaders, needsRebuild, restoreSets } from './ipset.js';
import { readFilter, restoreChain, restoreTable } from './iptables.js';

export type ApplyStep = 'read-kernel' | 'sets' | 'chain' | 'cleanup';

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
  /** Kernel sets the agent applied before; those missing from the plan are destroyed. */
  readonly owned: readonly string[];
  readonly template: ServiceTemplate;
  /** Install this base table (with the chain filled in) instead of replacing the chain alone. */
  readonly base: BaseTemplate | null;
  /** Rebuild every set and rewrite the chain, whatever the driver believes is in the kernel. */
  readonly full?: boolean;
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
  /** `script`: deciding what to write (diff); `sets`: that plus running it. */
  readonly ms: { readonly script: number; readonly sets: number; readonly chain: number; readonly cleanup: number; readonly total: number };
}

export interface Dataplane {
  apply(input: ApplyInput): Promise<ApplyReport>;
  /** Drop what the driver believes is in the kernel: the next apply is full. */
  forget(): void;
}

const FAMILIES: readonly IpFamily[] = [4, 6];

async function step<T>(name: ApplyStep, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new ApplyError(name, err);
  }
}

export function createDataplane(runner: CommandRunner): Dataplane {
  let applied = new Map<string, AppliedSet>();
  let chainText: Record<IpFamily, string> | null = null;

  const forget = (): void => {
    applied = new Map();
    chainText = null;
  };

  return {
    forget,
    async apply({ plan, owned, template, base, full = false }) {
      const t0 = performance.now();
      if (full || base !== null) forget();
      const delta = applied.size > 0;
      // A failure below leaves the kernel somewhere between the old and the new plan: whatever
      // was believed is no longer known, so the next attempt must be full.
      try {
        const kernel: ReadonlyMap<string, KernelSetHeader> = needsRebuild(plan.sets, applied) ? await step('read-kernel', () => listSetHeaders(runner)) : new Map();
        const sets = buildSetScript(plan.sets, kernel, applied);
        const tScript = performance.now();
        await step('sets', () => restoreSets(runner, sets.script));
        const t1 = performance.now();

        const jumpInserted: IpFamily[] = [];
        const text: Record<IpFamily, string> = {
          4: renderChainRestore(plan.rules, 4, template, false),
          6: renderChainRestore(plan.rules, 6, template, false),
        };
        let chainWritten = false;
        await step('chain', async () => {
          for (const family of FAMILIES) {
            if (base !== null) {
              await restoreTable(runner, family, renderBaseRestore(base, plan.rules, family, template));
              chainWritten = true;
              continue;
            }
            if (chainText !== null && chainText[family] === text[family]) continue;
            const filter = await readFilter(runner, family);
            if (!filter.hasJump) jumpInserted.push(family);
            await restoreChain(runner, family, renderChainRestore(plan.rules, family, template, !filter.hasJump));
            chainWritten = true;
          }
        });
        chainText = text;
        const t2 = performance.now();

        const planned = new Set(plan.sets.map((s) => s.name));
        const orphans = owned.filter((n) => !planned.has(n));
        const cleanup = await step('cleanup', () => destroySets(runner, orphans));
        const t3 = performance.now();

        applied = new Map(plan.sets.map((s) => [s.name, { family: s.family, maxelem: s.maxelem, members: s.members }]));
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
          ms: { script: tScript - t0, sets: t1 - t0, chain: t2 - t1, cleanup: t3 - t2, total: t3 - t0 },
        };
      } catch (err) {
        forget();
        throw err;
      }
    },
  };
}
