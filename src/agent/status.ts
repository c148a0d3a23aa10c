/**
 * The agent's status as `befw status`, /healthz, /readyz, /metrics and systemd see it, assembled
 * from the parts that own each figure: the inputs (the watches' Consul health), the contact probe
 * (when Consul last answered), the reconciler (plan, counters), the recorder (ready) and the loop
 * (healthy). The counters, uptime, readiness and contact live in AgentLife and survive a reload.
 * /healthz and /readyz answer from health() and readiness() below, and the metrics' befw_ready,
 * befw_consul_up and befw_problems from the same AgentStatus: they cannot disagree.
 */
import type { Diagnostic } from '../core/types.js';
import { formatTime } from '../core/timeText.js';
import type { Backend } from '../dataplane/registry.js';
import type { GuardStatus } from './guard.js';
import type { ConsulContact } from './agentLife.js';
import { CONTACT_STALE_MS } from './consulContact.js';
import type { ConsulHealth } from './inputs/watchedInputs.js';
import type { Reconciler, ReconcilerStats, StateSaveHealth } from './reconciler.js';

/** Diagnostic codes that mean a local file or directory could not be taken as it is. */
const FILE_PROBLEMS = new Set(['bad-service-file', 'bad-ipset-file', 'unreadable-dir']);
/** Diagnostic codes that count as a protected path kept out of a deny. */
export const PROTECTED_CODES = new Set(['protected-clipped', 'refused-address']);

/** Consul as the agent sees it. */
export interface ConsulStatus extends ConsulHealth {
  /**
   * Consul answered within CONTACT_STALE_MS, its last probe did not fail, and the watches are
   * not failing. A blocking query that is merely still open is not an answer: a hung Consul
   * turns this false within a probe interval and a request timeout.
   */
  readonly reachable: boolean;
  /** Unix ms of the last completed request (probe or watch answer); null: never. */
  readonly contactAt: number | null;
  /** How long ago that was, at the time of the status. */
  readonly sinceContactMs: number | null;
}

export interface AgentStatus {
  /** When the process started (a reload keeps it). */
  readonly startedAt: number;
  /** The firewall backend and what runs (`nft: nftables v1.0.6 ..., table inet befw`). */
  readonly backend: string;
  readonly consul: ConsulStatus;
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
  /** The contact probe's record; without it the watches alone say whether Consul is reachable. */
  readonly contact?: ConsulContact;
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
    out.push(`state.bin cannot be saved since ${formatTime(save.failingSince)}: ${save.lastError ?? 'unknown error'}`);
  }
  const last = p.reconciler.stats.lastSuccessAt;
  if (consulStatus(p).reachable && last !== null && p.now - last > p.staleAfterMs) {
    out.push(`no successful reconcile for ${Math.round((p.now - last) / 1000)} s`);
  }
  const files = diagnostics.filter((d) => FILE_PROBLEMS.has(d.code));
  if (files.length > 0) out.push(`${files.length} local file problem(s): ${files[0]?.subject ?? ''}${files.length > 1 ? ', ...' : ''}`);
  return out;
}

function consulStatus(p: StatusParts): ConsulStatus {
  const w = p.inputs.consulHealth;
  if (p.contact === undefined) {
    return { ...w, contactAt: w.lastAnswerAt, sinceContactMs: w.lastAnswerAt === null ? null : p.now - w.lastAnswerAt };
  }
  const at = p.contact.at;
  const since = at === null ? null : Math.max(0, p.now - at);
  return {
    ...w,
    // The last probe failing (a timeout: Consul hung) is as telling as no contact for a while.
    reachable: w.reachable && p.contact.error === null && since !== null && since <= CONTACT_STALE_MS,
    lastError: w.lastError ?? p.contact.error,
    contactAt: at,
    sinceContactMs: since,
  };
}

/** /healthz: 200 while no problem is reported. */
export function health(s: Pick<AgentStatus, 'problems'>): { ok: boolean; detail: string } {
  return { ok: s.problems.length === 0, detail: s.problems.length === 0 ? 'ok' : s.problems.join('; ') };
}

function contactText(c: ConsulStatus): string {
  if (c.sinceContactMs === null) return `Consul never reached${c.lastError === null ? '' : ` (${c.lastError})`}`;
  const ago = `Consul last contact ${Math.round(c.sinceContactMs / 1000)} s ago`;
  return c.reachable ? ago : `${ago}, NOT REACHED${c.lastError === null ? '' : ` (${c.lastError})`}`;
}

/**
 * /readyz and befw_ready: ready once the first apply is done — a plan (from Consul, state.bin or
 * the safety net) is in the kernel, or the kernel was kept as found when there was none. Consul
 * going away later does not make the node unready: the plan stays enforced. The detail says
 * what is enforced and when Consul last answered.
 */
export function readiness(s: Pick<AgentStatus, 'ready' | 'fingerprint' | 'lastSource' | 'consul' | 'guard'>): {
  ok: boolean;
  detail: string;
} {
  if (!s.ready) return { ok: false, detail: `not ready: the first apply is not done; ${contactText(s.consul)}` };
  const what =
    s.fingerprint === null
      ? 'kernel kept as found (no plan yet)'
      : `enforcing ${s.fingerprint} from ${s.lastSource === 'saved' ? 'state.bin' : (s.lastSource ?? 'an earlier run')}`;
  const h = s.guard.holding;
  const held = h === null ? '' : `; the guard holds a change until ${h.until === null ? 'released' : formatTime(h.until)}`;
  return { ok: true, detail: `ready: ${what}; ${contactText(s.consul)}${held}` };
}

export function agentStatus(p: StatusParts): AgentStatus {
  const plan = p.reconciler.lastPlan;
  return {
    startedAt: p.startedAt,
    backend: `${p.backend.name}: ${p.backend.description}`,
    consul: consulStatus(p),
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
