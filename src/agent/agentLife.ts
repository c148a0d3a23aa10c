/**
 * What the process knows about itself that outlives a reload: when it started, its counters,
 * whether it has been ready, and when Consul last answered. The supervisor makes one and hands
 * it to every agent it builds, so `befw status`, /healthz, /readyz and /metrics read the same
 * figures before and after `befw reload` (a reload replaces the agent, not the process).
 */
import type { ReconcilerStats } from './reconciler.js';

/** The last completed request to the local Consul agent; an open blocking query is not one. */
export interface ConsulContact {
  /** Unix ms of the last successful answer; null: none yet. */
  at: number | null;
  /** Why the last attempt failed (cleared by the next success). */
  error: string | null;
}

export function newStats(): ReconcilerStats {
  return { applies: 0, applyFailures: 0, rollbacks: 0, repairs: 0, held: 0, lastApplyAt: null, lastResult: null, lastSuccessAt: null };
}

export class AgentLife {
  /** Unix ms the process started (uptime counts from here, not from the last reload). */
  readonly startedAt: number;
  readonly stats: ReconcilerStats = newStats();
  /** Ready once any agent of this process finished its first apply; a reload keeps the kernel, so it stays ready. */
  readonly readiness = { ready: false };
  readonly contact: ConsulContact = { at: null, error: null };

  constructor(private readonly now: () => number = Date.now) {
    this.startedAt = now();
  }

  contacted(): void {
    this.contact.at = this.now();
    this.contact.error = null;
  }

  contactFailed(err: unknown): void {
    this.contact.error = err instanceof Error ? err.message : String(err);
  }
}
