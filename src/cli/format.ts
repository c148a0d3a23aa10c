/**
 * Human output for `befw plan` and `befw show`. JSON output is the plan itself.
 */
import { portText } from '../core/services.js';
import type { Diagnostic, EffectiveMember, Plan } from '../core/types.js';

export function formatDuration(ms: number): string {
  if (ms <= 0) return 'expired';
  const s = Math.floor(ms / 1000);
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const parts: string[] = [];
  let rest = s;
  for (const [size, label] of units) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)}${label}`);
      rest %= size;
    }
  }
  return parts.length === 0 ? '<1s' : parts.join('');
}

function expiryText(m: EffectiveMember, nowMs: number): string {
  if (m.expiresAt === null) return 'never expires';
  return `expires ${new Date(m.expiresAt).toISOString()} (in ${formatDuration(m.expiresAt - nowMs)})`;
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
  out.push('', `Next expiry: ${plan.nextExpiry === null ? 'none' : new Date(plan.nextExpiry).toISOString()}`);
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
    if (members.length === 0) out.push('  (no clients)');
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
