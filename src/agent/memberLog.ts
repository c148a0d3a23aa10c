/**
 * The node's own record of who got access when: each set member an apply adds, removes or
 * renews, logged at info with the set, the address, the KV keys that name it and its expiry
 * before and after. Capped per apply (MAX_LINES, then one summary line), so a change of 20,000
 * keys cannot flood the journal; the first plan after a start is a summary only (every member
 * would be "added"). Audit records (befw-audit/) are never read here: they are the CLI's.
 */
import { type MemberChange, keysNaming, memberChanges, namingId } from '../core/audit.js';
import { formatTime } from '../core/timeText.js';
import { printable } from '../core/address.js';
import { parseKv } from '../core/kvLayout.js';
import type { KvPair, NodeIdentity, Plan } from '../core/types.js';
import type { Logger } from '../log/logger.js';

export const MAX_LINES = 100;

function expiryText(e: number | null | undefined): string {
  if (e === undefined) return '-';
  return e === null ? 'never' : formatTime(e * 1000);
}

export function logMemberChanges(
  log: Logger,
  prev: Plan | null,
  next: Plan,
  input: { readonly kv: readonly KvPair[]; readonly node: NodeIdentity } | null,
  nowMs: number,
): void {
  if (prev === null) {
    const members = next.sets.reduce((n, s) => n + s.members.length, 0);
    log.info({ event: 'members-initial', sets: next.sets.length, members }, 'first plan: members not listed one by one');
    return;
  }
  if (prev.fingerprint === next.fingerprint) return;
  const d = memberChanges(prev, next, nowMs, MAX_LINES);
  const total = d.added + d.removed + d.renewed;
  if (total === 0) return;
  const keys = keysNaming(input?.kv ?? [], d.changes);
  // Only keys this node reads (not another datacenter's or node's), printable whatever they hold.
  const ours = (k: string): boolean => input !== null && parseKv([{ key: k, value: '-1' }], input.node).grants.length > 0;
  for (const c of d.changes)
    line(
      log,
      c,
      (keys.get(namingId(c)) ?? []).filter(ours).map((k) => printable(k, 200)),
    );
  if (total > d.changes.length)
    log.info(
      {
        event: 'members-changed',
        added: d.added,
        removed: d.removed,
        renewed: d.renewed,
        logged: d.changes.length,
        notLogged: total - d.changes.length,
      },
      `member changes: ${total - d.changes.length} more not logged one by one`,
    );
}

function line(log: Logger, c: MemberChange, keys: readonly string[]): void {
  const from = expiryText(c.oldExpiry);
  const to = expiryText(c.newExpiry);
  log.info(
    { event: 'member', change: c.change, set: c.set, address: c.member, keys, expiry: { from, to } },
    `${c.set} ${c.change} ${c.member} (expiry ${from} -> ${to})`,
  );
}
