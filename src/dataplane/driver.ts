/**
 * Applies a plan to the kernel in the order that never lets a packet see a half state:
 * sets first (so every rule's set exists and is full), then the BEFW chain of each family in one
 * transaction together with the INPUT jump if it is missing, then the sets nothing references.
 */
import { performance } from 'node:perf_hooks';
import { type IpFamily, renderBaseRestore, renderChainRestore } from '../rules/render.js';
import type { BaseTemplate, ServiceTemplate } from '../rules/templates.js';
import type { Plan } from '../rules/types.js';
import type { CommandRunner } from './exec.js';
import { buildSetScript, destroySets, listSetHeaders, restoreSets } from './ipset.js';
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
}

export interface ApplyReport {
  readonly created: readonly string[];
  readonly swapped: readonly string[];
  readonly destroyed: readonly string[];
  readonly notDestroyed: readonly { name: string; error: string }[];
  readonly jumpInserted: readonly IpFamily[];
  readonly members: number;
  readonly ms: { readonly sets: number; readonly chain: number; readonly cleanup: number; readonly total: number };
}

export interface Dataplane {
  apply(input: ApplyInput): Promise<ApplyReport>;
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
  return {
    async apply({ plan, owned, template, base }) {
      const t0 = performance.now();
      const kernel = await step('read-kernel', () => listSetHeaders(runner));
      const sets = await step('sets', async () => {
        const s = buildSetScript(plan.sets, kernel);
        await restoreSets(runner, s.script);
        return s;
      });
      const t1 = performance.now();

      const jumpInserted: IpFamily[] = [];
      await step('chain', async () => {
        for (const family of FAMILIES) {
          if (base !== null) {
            await restoreTable(runner, family, renderBaseRestore(base, plan.rules, family, template));
            continue;
          }
          const filter = await readFilter(runner, family);
          if (!filter.hasJump) jumpInserted.push(family);
          await restoreChain(runner, family, renderChainRestore(plan.rules, family, template, !filter.hasJump));
        }
      });
      const t2 = performance.now();

      const planned = new Set(plan.sets.map((s) => s.name));
      const orphans = owned.filter((n) => !planned.has(n) && kernel.has(n));
      const cleanup = await step('cleanup', () => destroySets(runner, orphans));
      const t3 = performance.now();

      return {
        created: sets.created,
        swapped: sets.swapped,
        destroyed: cleanup.destroyed,
        notDestroyed: cleanup.failed,
        jumpInserted,
        members: plan.sets.reduce((n, s) => n + s.members.length, 0),
        ms: { sets: t1 - t0, chain: t2 - t1, cleanup: t3 - t2, total: t3 - t0 },
      };
    },
  };
}
