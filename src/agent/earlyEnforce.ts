/**
 * Boot-time enforcement without Consul (`befw enforce-saved`, run by befw-early.service before
 * the network is up): state.bin goes into the kernel exactly as the agent's first step puts it
 * there (Reconciler.enforceSaved: expiries judged against now, the safety net when the state is
 * missing or invalid), and the process exits. Nothing here reads Consul or starts a watch; the
 * agent, started later, takes over from what this left.
 *
 * It takes the node lock like the agent: run by hand next to a running agent, it refuses instead
 * of fighting it.
 */
import type { Config } from '../config/config.js';
import { loadTemplates } from '../config/load.js';
import { processRunner } from '../dataplane/exec.js';
import { BACKENDS } from '../dataplane/registry.js';
import type { Logger } from '../log/logger.js';
import { createFileStateStore } from '../state/stateStore.js';
import { takeNodeLock } from './nodeLock.js';
import { type Outcome, Reconciler } from './reconciler.js';

export type EarlyKind = 'saved' | 'minimal' | 'kept' | 'failed';

export interface EarlyResult {
  /** saved: state.bin enforced; minimal: the safety net's minimal plan; kept: a BEFW chain found and kept; failed: see detail. */
  readonly kind: EarlyKind;
  readonly fingerprint: string | null;
  readonly detail: string;
}

/** Enforces state.bin once and returns what went into the kernel; throws when it cannot start. */
export async function enforceSavedOnce(config: Config, log: Logger): Promise<EarlyResult> {
  const lock = await takeNodeLock();
  try {
    const templates = await loadTemplates(config);
    const backend = await BACKENDS[config.firewall.backend].prepare({
      runner: processRunner,
      ...templates,
      iptablesTools: config.iptablesBackend,
    });
    try {
      const reconciler = new Reconciler({
        source: () => Promise.reject(new Error('no Consul at boot: enforce-saved reads state.bin only')),
        requestReread: () => undefined,
        dataplane: backend.dataplane,
        store: createFileStateStore(config.statePath),
        config,
        log,
        now: () => Date.now(),
      });
      const outcome = await reconciler.enforceSaved();
      // Enforcing re-saves the state it read; let that finish before the process ends.
      await reconciler.flushSaves();
      return outcome === null ? await keptOrFailed(backend.dataplane.hasChain.bind(backend.dataplane)) : describe(outcome);
    } finally {
      backend.dataplane.close();
    }
  } finally {
    await lock.release();
  }
}

/** No outcome: the safety net kept an existing chain, or could not look at the kernel at all. */
async function keptOrFailed(hasChain: () => Promise<boolean>): Promise<EarlyResult> {
  try {
    if (await hasChain())
      return { kind: 'kept', fingerprint: null, detail: 'no valid state.bin: the BEFW chain found was kept, management networks ensured' };
    return { kind: 'failed', fingerprint: null, detail: 'no valid state.bin and no BEFW chain after the safety net' };
  } catch (err) {
    return { kind: 'failed', fingerprint: null, detail: `cannot inspect the kernel: ${(err as Error).message}` };
  }
}

function describe(outcome: Outcome): EarlyResult {
  switch (outcome.kind) {
    case 'applied':
    case 'unchanged':
      return outcome.source === 'saved'
        ? { kind: 'saved', fingerprint: outcome.plan.fingerprint, detail: 'state.bin enforced' }
        : { kind: 'minimal', fingerprint: outcome.plan.fingerprint, detail: 'no valid state.bin: minimal plan (rules_allow, rules_deny)' };
    case 'apply-failed':
      return {
        kind: 'failed',
        fingerprint: outcome.plan.fingerprint,
        detail: `apply failed${outcome.rolledBack ? ' (rolled back)' : ''}: ${outcome.error.message}`,
      };
    case 'held':
    case 'read-failed':
      // Neither comes out of enforceSaved (the guard and the inputs belong to Consul passes).
      return { kind: 'failed', fingerprint: null, detail: `unexpected outcome ${outcome.kind}` };
  }
}
