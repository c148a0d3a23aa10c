/**
 * Human output for `befw plan` and `befw show`. Every time the CLI prints goes through the helpers
 * re-exported here from core/timeText.ts (shared with the agent's `befw status` text): ISO 8601 in
 * UTC to the second, `2025-06-30T18:00:00Z`, with "in 1h19m" or "2s ago" beside it where the
 * distance matters. JSON carries the same ISO text, or Unix seconds where that is what Consul holds.
 */
import { portText } from '../core/services.js';
import type { Diagnostic, EffectiveMember, Plan } from '../core/types.js';
import { formatDuration, formatTime, formatWhen } from '../core/timeText.js';

export { formatDuration, formatTime, formatWhen };

function expiryText(m: EffectiveMember, nowMs: number): string {
  if (m.expiresAt === null) return 'never expires';
  return `expires ${formatWhen(m.expiresAt, nowMs)}`;
}

function diagnosticLines(diags: readonly Diagnostic[]): string[] {
  if (diags.length === 0) return [];
  return [
    '',
    `Diagnostics (${diags.length}):`,
    ...diags.map((d) => `  ${d.severity.padEnd(7)} ${d.code.padEnd(16)} ${d.subject}: ${d.message}`),
  ];
}

/** The plan's sets and members, then what the backend would write (`rendered`), then the diagnostics. */
export function formatPlan(plan: Plan, backend: string, rendered: string): string {
  const out: string[] = [`Plan ${plan.fingerprint}`, '', 'Sets:'];
  for (const s of plan.sets) {
    out.push(`  ${s.name} (${s.family}, maxelem ${s.maxelem}): ${s.members.length} member(s)`);
    for (const m of s.members) out.push(`    ${m}`);
  }
  out.push('', `As the ${backend} backend writes it:`);
  out.push(
    ...rendered
      .trimEnd()
      .split('\n')
      .map((l) => `  ${l}`),
  );
  out.push('', `Next expiry: ${plan.nextExpiry === null ? 'none' : formatTime(plan.nextExpiry)}`);
  out.push(...diagnosticLines(plan.diagnostics));
  return out.join('\n');
}

export function formatShow(plan: Plan, nowMs: number): string {
  const out: string[] = [];
  const views = new Map(plan.setViews.map((v) => [v.logical, v]));
  if (plan.services.length === 0) out.push('No befw services on this node.');
  for (const s of plan.services) {
    const ports = s.ports.map((p) => `${portText(p)}/${p.proto}`).join(', ');
    const view = views.get(s.set);
    out.push(`${s.name}  set ${s.set}  ports ${ports}  mode ${s.mode}`);
    const members = view?.members ?? [];
    // "(no clients)" alone reads as closed; only an enforcing service is (default and observe let everyone on to INPUT).
    if (members.length === 0)
      out.push(
        s.mode === 'enforcing'
          ? '  (no clients: everyone else is dropped)'
          : `  (no clients; mode ${s.mode}: not filtered by befw, open to everyone the rest of INPUT lets in)`,
      );
    for (const m of members) out.push(`  ${m.cidr.padEnd(24)} ${expiryText(m, nowMs)}  via ${m.via.join(', ')}`);
  }
  for (const v of plan.setViews.filter((x) => x.kind === 'static')) {
    out.push('', `static set ${v.logical}: ${v.members.length} member(s)`);
    for (const m of v.members) {
      const none = m.shadowedBy === undefined ? '' : `  NO EFFECT: ${m.shadowedBy} accepts it first`;
      out.push(`  ${m.cidr.padEnd(24)} ${expiryText(m, nowMs)}  via ${m.via.join(', ')}${none}`);
    }
  }
  for (const v of plan.setViews.filter((x) => x.kind === 'protected')) {
    const what = v.logical.endsWith('consul') ? 'Consul peers (on Consul ports only)' : 'management networks and protect=';
    out.push('', `protected: ${what}, accepted ahead of every deny: ${v.members.length} member(s)`);
    for (const m of v.members) out.push(`  ${m.cidr}`);
  }
  out.push(...diagnosticLines(plan.diagnostics));
  return out.join('\n');
}
