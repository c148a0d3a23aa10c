/**
 * Alias (group) expansion. An alias member may be an address or another alias; a grant through
 * an alias lasts while every link of the chain is unexpired, so the effective expiry is the
 * minimum along the path.
 *
 * Cycles: the live alias-to-alias edges are split into strongly connected components first, and
 * every edge inside a cycle is dropped and reported. What remains is a DAG, so each alias is
 * expanded once and memoised, iteratively (a chain of thousands of aliases must not overflow the
 * stack), and each alias keeps one entry per address: a diamond, where every alias names the next
 * one twice, would otherwise double the list at every level. Work stays polynomial whatever graph
 * a hostile writer builds, and the answer is the same whichever grant asks first.
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

/** Alias path as a shared linked list: a parent reuses its child's path instead of copying it. */
interface PathLink {
  readonly alias: string;
  readonly next: PathLink | null;
  readonly length: number;
}

interface Entry {
  readonly net: Net;
  readonly expiry: number | null;
  readonly path: PathLink;
}

function pathArray(p: PathLink | null): string[] {
  const out: string[] = [];
  for (let l = p; l !== null; l = l.next) out.push(l.alias);
  return out;
}

/**
 * Whether `a` replaces `b` for the same address: it stays longer (the address stays while any
 * path does); on a tie the shorter, then the alphabetically first path, so grant order never shows.
 */
function outlasts(a: Entry, b: Entry): boolean {
  if (a.expiry !== b.expiry) return a.expiry === null || (b.expiry !== null && a.expiry > b.expiry);
  if (a.path.length !== b.path.length) return a.path.length < b.path.length;
  for (let x: PathLink | null = a.path, y: PathLink | null = b.path; x !== null && y !== null; x = x.next, y = y.next) {
    if (x.alias !== y.alias) return x.alias < y.alias;
  }
  return false;
}

export function minExpiry(a: number | null, b: number | null): number | null {
  if (a === null) return b;
  if (b === null) return a;
  return Math.min(a, b);
}

export class AliasResolver {
  private readonly members = new Map<string, Grant[]>();
  private readonly memo = new Map<string, readonly Entry[]>();
  private readonly output = new Map<string, readonly Expanded[]>();
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
      this.reportMissing(alias, referencedBy);
      return [];
    }
    const done = this.output.get(alias);
    if (done !== undefined) return done;
    const out = this.walk(alias).map((e) => ({ net: e.net, expiry: e.expiry, path: pathArray(e.path) }));
    this.output.set(alias, out);
    return out;
  }

  private reportMissing(alias: string, referencedBy: string): void {
    if (this.missingReported.has(alias)) return;
    this.missingReported.add(alias);
    this.diagnostics.push({
      severity: 'warning',
      code: 'unknown-alias',
      subject: referencedBy,
      message: `alias ${alias} has no live members at this node's scopes`,
    });
  }

  /** The aliases `alias` refers to that are followed: live, known, and not closing a cycle. */
  private children(alias: string): string[] {
    return (this.members.get(alias) ?? []).flatMap((g) =>
      g.addr === 'alias' && this.members.has(g.alias) && !this.cyclic.has(edgeKey(alias, g.alias)) ? [g.alias] : [],
    );
  }

  /** Post-order over the DAG with an explicit stack: every child is memoised before its parent. */
  private walk(root: string): readonly Entry[] {
    const stack: { alias: string; childrenPushed: boolean }[] = [{ alias: root, childrenPushed: false }];
    while (stack.length > 0) {
      const top = stack[stack.length - 1]!;
      if (this.memo.has(top.alias)) {
        stack.pop();
        continue;
      }
      if (!top.childrenPushed) {
        top.childrenPushed = true;
        for (const child of this.children(top.alias)) {
          if (!this.memo.has(child)) stack.push({ alias: child, childrenPushed: false });
        }
        continue;
      }
      stack.pop();
      this.memo.set(top.alias, this.combine(top.alias));
    }
    return this.memo.get(root) ?? [];
  }

  /** One alias's entries from its own members and its children's (already memoised) entries. */
  private combine(alias: string): Entry[] {
    const best = new Map<string, Entry>();
    const offer = (e: Entry): void => {
      const cur = best.get(e.net.cidr);
      if (cur === undefined || outlasts(e, cur)) best.set(e.net.cidr, e);
    };
    const self: PathLink = { alias, next: null, length: 1 };
    for (const g of this.members.get(alias) ?? []) {
      if (g.addr === 'net') {
        offer({ net: g, expiry: g.expiry, path: self });
        continue;
      }
      const ref = g.alias;
      if (this.cyclic.has(edgeKey(alias, ref))) continue;
      if (!this.members.has(ref)) {
        this.reportMissing(ref, g.key);
        continue;
      }
      for (const e of this.memo.get(ref) ?? []) {
        offer({ net: e.net, expiry: minExpiry(g.expiry, e.expiry), path: { alias, next: e.path, length: e.path.length + 1 } });
      }
    }
    return [...best.values()];
  }

  /** Tarjan's SCC, iterative so a long chain of aliases cannot overflow the stack. */
  private findCycles(): void {
    const names = [...this.members.keys()].sort();
    const edges = (n: string): string[] =>
      (this.members.get(n) ?? []).flatMap((g) => (g.addr === 'alias' && this.members.has(g.alias) ? [g.alias] : []));
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
        if (g.addr !== 'alias' || !this.members.has(g.alias)) continue;
        if (component.get(n) !== component.get(g.alias) && n !== g.alias) continue;
        this.cyclic.add(edgeKey(n, g.alias));
        this.diagnostics.push({
          severity: 'error',
          code: 'alias-cycle',
          subject: g.key,
          message: `${n} -> ${g.alias} closes an alias cycle; this member is skipped`,
        });
      }
    }
  }
}

function edgeKey(from: string, to: string): string {
  return `${from}\u0000${to}`;
}
