/**
 * The agent's status as `befw status`, /readyz and systemd see it, assembled from the parts that
 * own each figure: the inputs (Consul health), the reconciler (plan, counters), the recorder
 * (ready) and the loop (healthy).
 */
import type { Diagnostic } from '../core/types.js';
import type { Backend } from '../dataplane/registry.js';
import type { GuardStatus } from './guard.js';
import type { ConsulHealth } from './inputs/watchedInputs.js';
import type { Reconciler, ReconcilerStats, StateSaveHealth } from './reconciler.js';

/** Diagnostic codes that mean a local file or directory could not be taken as it is. */
const FILE_PROBLEMS = new Set(['bad-service-file', 'bad-ipset-file', 'unreadable-dir']);
/** Diagnostic codes that count as a protected path kept out of a deny. */
export const PROTECTED_CODES = new Set(['protected-clipped', 'refused-address']);

export interface AgentStatus {
  readonly startedAt: number;
  /** The firewall backend and what runs (`nft: nftables v1.0.6 ..., table inet befw`). */
  readonly backend: string;
  readonly consul: ConsulHealth;
  readonly stats: ReconcilerStats;
  readonly lastSource: string | null;
  readonly fingerprint: string | null;
  readonly nextExpiry: number | null;
  readonly sets: readonly { name: string; family: string; members: number }[];
  readonly diagnostics: readonly Diagnostic[];
  /** Ready: the first apply is done (from Consul, state.bin or the safety net). */
  readonly ready: boolean;
  /** Not stuck: no reconcile has been running for minutes (the systemd watchdog follows this). */
  readonly healthy: boolean;
  readonly guard: GuardStatus;
  readonly stateSave: StateSaveHealth;
  /** Entries kept out because they would cut a protected path. */
  readonly protectedClipped: number;
  /** What is wrong, one line each; empty when all is well (/healthz answers 503 otherwise). */
  readonly problems: readonly string[];
  /** The KV prefixes watched now (one blocking query each). */
  readonly kvPrefixes: readonly string[];
}

export interface StatusParts {
  readonly startedAt: number;
  readonly backend: Pick<Backend, 'name' | 'description'>;
  readonly inputs: { readonly consulHealth: ConsulHealth; readonly kvPrefixes: readonly string[] };
  readonly reconciler: Pick<Reconciler, 'stats' | 'lastSource' | 'lastPlan' | 'guardStatus' | 'stateSave'>;
  readonly recorder: { readonly ready: boolean };
  readonly loop: { readonly healthy: boolean };
  /** No successful pass for this long (ms) while triggers keep coming is a problem. */
  readonly staleAfterMs: number;
  readonly now: number;
}

function problems(p: StatusParts, diagnostics: readonly Diagnostic[]): string[] {
  const out: string[] = [];
  if (!p.loop.healthy) out.push('a reconcile has been running for minutes');
  const save = p.reconciler.stateSave;
  if (save.failingSince !== null) {
    out.push(`state.bin cannot be saved since ${new Date(save.failingSince).toISOString()}: ${save.lastError ?? 'unknown error'}`);
  }
  const last = p.reconciler.stats.lastSuccessAt;
  if (p.inputs.consulHealth.reachable && last !== null && p.now - last > p.staleAfterMs) {
    out.push(`no successful reconcile for ${Math.round((p.now - last) / 1000)} s`);
  }
  const files = diagnostics.filter((d) => FILE_PROBLEMS.has(d.code));
  if (files.length > 0) out.push(`${files.length} local file problem(s): ${files[0]?.subject ?? ''}${files.length > 1 ? ', ...' : ''}`);
  return out;
}

export function agentStatus(p: StatusParts): AgentStatus {
  const plan = p.reconciler.lastPlan;
  return {
    startedAt: p.startedAt,
    backend: `${p.backend.name}: ${p.backend.description}`,
    consul: p.inputs.consulHealth,
    stats: { ...p.reconciler.stats },
    lastSource: p.reconciler.lastSource,
    fingerprint: plan?.fingerprint ?? null,
    nextExpiry: plan?.nextExpiry ?? null,
    sets: (plan?.sets ?? []).map((s) => ({ name: s.name, family: s.family, members: s.members.length })),
    diagnostics: plan?.diagnostics ?? [],
    ready: p.recorder.ready,
    healthy: p.loop.healthy,
    guard: p.reconciler.guardStatus,
    stateSave: p.reconciler.stateSave,
    protectedClipped: (plan?.diagnostics ?? []).filter((d) => PROTECTED_CODES.has(d.code)).length,
    problems: problems(p, plan?.diagnostics ?? []),
    kvPrefixes: p.inputs.kvPrefixes,
  };
}
