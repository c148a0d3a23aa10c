/**
 * The agent's status as `befw status`, /readyz and systemd see it, assembled from the parts that
 * own each figure: the inputs (Consul health), the reconciler (plan, counters), the recorder
 * (ready) and the loop (healthy).
 */
import type { Diagnostic } from '../core/types.js';
import type { Backend } from '../dataplane/iptables/iptables.js';
import type { ConsulHealth } from './inputs/watchedInputs.js';
import type { Reconciler, ReconcilerStats } from './reconciler.js';

export interface AgentStatus {
  readonly startedAt: number;
  readonly backend: Backend;
  readonly consul: ConsulHealth;
  readonly stats: ReconcilerStats;
  readonly lastSource: string | null;
  readonly fingerprint: string | null;
  readonly nextExpiry: number | null;
  readonly sets: readonly { name: string; family: string; members: number }[];
  readonly diagnostics: readonly Diagnostic[];
  /** Ready: the first apply is done (from Consul, state.bin or the safety net). */
  readonly ready: boolean;
  /** Not stuck: no reconcile has been running for minutes. */
  readonly healthy: boolean;
}

export interface StatusParts {
  readonly startedAt: number;
  readonly backend: Backend;
  readonly inputs: { readonly consulHealth: ConsulHealth };
  readonly reconciler: Pick<Reconciler, 'stats' | 'lastSource' | 'lastPlan'>;
  readonly recorder: { readonly ready: boolean };
  readonly loop: { readonly healthy: boolean };
}

export function agentStatus(p: StatusParts): AgentStatus {
  const plan = p.reconciler.lastPlan;
  return {
    startedAt: p.startedAt,
    backend: p.backend,
    consul: p.inputs.consulHealth,
    stats: { ...p.reconciler.stats },
    lastSource: p.reconciler.lastSource,
    fingerprint: plan?.fingerprint ?? null,
    nextExpiry: plan?.nextExpiry ?? null,
    sets: (plan?.sets ?? []).map((s) => ({ name: s.name, family: s.family, members: s.members.length })),
    diagnostics: plan?.diagnostics ?? [],
    ready: p.recorder.ready,
    healthy: p.loop.healthy,
  };
}
