/**
 * Alias (group) expansion. An alias member may be an address or another alias; a grant through
 * an alias lasts while every link of the chain is unexpired, so the effective expiry is the
 * minimum along the path.
 *
 * Cycles: the live alias-to-alias edges are split into strongly connected components first, and
 * every edge inside a cycle is dropped and reported. What remains is a DAG, so each alias is
 * expanded once and memoised: linear work whatever graph a hostile writer builds, and the same
 * answer whichever grant asks first.
 */
import type { Net } from './address.js';
import { type Grant, isLive } from './kvLayout.js';
import type { Diagnostic } from './types.js';

export interface Expanded {
  readonly net: Net;
  /** Unix seconds, null never. */
  readonly expiry: number | null;
  /** Alias names walked, outermost first. */
  readonly path: readonly string[];
}

export function minExpiry(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

export class AliasResolver {
  private readonly members = new Map<string, Grant[]>();
  private readonly memo = new Map<string, readonly Expanded[]>();
  private readonly cyclic = new Set<string>();
  private readonly missingReported = new Set<string>();
  readonly diagnostics: Diagnostic[] = [];

  constructor(aliasGrants: readonly Grant[], nowMs: number) {
    for (const g of aliasGrants) {
      if (!isLive(g.expiry, nowMs)) continue;
      const list = this.members.get(g.target) ?? [];
      list.push(g);
      this.members.set(g.target, list);
    }
    this.findCycles();
  }

  /** Every live address an alias grants, with its effective expiry. */
  expand(alias: string, referencedBy: string): readonly Expanded[] {
    if (!this.members.has(alias)) {
      if (!this.missingReported.has(alias)) {
        this.missingReported.add(alias);
        this.diagnostics.push({
          severity: 'warning',
          code: 'unknown-alias',
          subject: referencedBy,
          message: `alias ${alias} has no live members at this node's scopes`,
        });
      }
      return [];
    }
    return this.walk(alias);
  }

  private walk(alias: string): readonly Expanded[] {
    const cached = this.memo.get(alias);
    if (cached !== undefined) return cached;
    const out: Expanded[] = [];
    this.memo.set(alias, out); // DAG after findCycles, so no re-entry; guards anyway
    for (const g of this.members.get(alias) ?? []) {
      if (g.addr.kind === 'net') {
        out.push({ net: g.addr.net, expiry: g.expiry, path: [alias] });
        continue;
      }
      if (this.cyclic.has(edgeKey(alias, g.addr.alias))) continue;
      for (const e of this.expand(g.addr.alias, g.key)) {
        out.push({ net: e.net, expiry: minExpiry(g.expiry, e.expiry), path: [alias, ...e.path] });
      }
    }
    return out;
  }

  /** Tarjan's SCC, iterative so a long chain of aliases cannot overflow the stack. */
  private findCycles(): void {
    const names = [...this.members.keys()].sort();
    const edges = (n: string): string[] =>
      (this.members.get(n) ?? []).flatMap((g) => (g.addr.kind === 'alias' && this.members.has(g.addr.alias) ? [g.addr.alias] : []));
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const onStack = new Set<string>();
    const stack: string[] = [];
    let counter = 0;
    const component = new Map<string, number>();
    let compId = 0;

    for (const root of names) {
      if (index.has(root)) continue;
      const work: { node: string; next: number; succ: string[] }[] = [];
      const push = (n: string): void => {
        index.set(n, counter);
        low.set(n, counter);
        counter++;
        stack.push(n);
        onStack.add(n);
        work.push({ node: n, next: 0, succ: edges(n) });
      };
      push(root);
      while (work.length > 0) {
        const top = work[work.length - 1]!;
        if (top.next < top.succ.length) {
          const s = top.succ[top.next++]!;
          if (!index.has(s)) push(s);
          else if (onStack.has(s)) low.set(top.node, Math.min(low.get(top.node)!, index.get(s)!));
          continue;
        }
        work.pop();
        const parent = work[work.length - 1];
        if (parent !== undefined) low.set(parent.node, Math.min(low.get(parent.node)!, low.get(top.node)!));
        if (low.get(top.node) === index.get(top.node)) {
          let w: string;
          do {
            w = stack.pop()!;
            onStack.delete(w);
            component.set(w, compId);
          } while (w !== top.node);
          compId++;
        }
      }
    }

    for (const n of names) {
      for (const g of this.members.get(n) ?? []) {
        if (g.addr.kind !== 'alias' || !this.members.has(g.addr.alias)) continue;
        if (component.get(n) !== component.get(g.addr.alias) && n !== g.addr.alias) continue;
        this.cyclic.add(edgeKey(n, g.addr.alias));
        this.diagnostics.push({
          severity: 'error',
          code: 'alias-cycle',
          subject: g.key,
          message: `${n} -> ${g.addr.alias} closes an alias cycle; this member is skipped`,
        });
      }
    }
  }
}

function edgeKey(from: string, to: string): string {
  return `${from}\u0000${to}`;
}
