/**
 * The guard that waits. A new plan that loosens the firewall or removes much at once (see
 * core/holdBack.ts for what counts) is not applied until the inputs have given that same plan for
 * `guard_hold` seconds; meanwhile the plan with those removals put back is enforced, so additions
 * and tightening are not delayed. A read that looks like a glitch (Consul came back empty, an
 * index went backwards, a half-written file) rarely stays the same for a minute; a real change
 * does, and an operator can release it at once (`befw guard release`).
 *
 * While the inputs are suspect (the KV index just went backwards: a snapshot restore or a server
 * that lost its data; or the tree shrank by most of its keys) every removal waits, however
 * small, and five times longer.
 * `befw guard hold` holds every removal, however small, until released or for a given time.
 */
import { type GuardOptions } from '../core/blastRadius.js';
import { type Loosening, holdBack, loosenings } from '../core/holdBack.js';
import type { Plan } from '../core/types.js';
import type { Logger } from '../log/logger.js';

/** How much longer a hold lasts while the inputs are suspect. */
export const SUSPECT_FACTOR = 5;

export interface Hold {
  /** Fingerprint of the plan that waits. */
  readonly fingerprint: string;
  readonly since: number;
  /** When it goes in if the inputs stay the same; null: only when released. */
  readonly until: number | null;
  /** One line per loosening step, for status and logs. */
  readonly reasons: readonly string[];
  /** Why the hold is longer than guard_hold, if it is. */
  readonly suspect: string | null;
  readonly manual: boolean;
}

export interface GuardStatus {
  readonly holding: Hold | null;
  /** `befw guard hold` in force: every removal waits; null until: until released. */
  readonly manual: { readonly until: number | null } | null;
}

export type GuardDecision =
  | { readonly kind: 'pass'; readonly confirmed: Hold | null }
  | { readonly kind: 'hold'; readonly enforce: Plan; readonly hold: Hold; readonly fresh: boolean };

export interface GuardDeps {
  readonly options: () => GuardOptions;
  /** guard_hold in ms; 0 applies loosening at once (unless an operator holds). */
  readonly holdMs: () => number;
  readonly log: Logger;
  readonly now: () => number;
}

function describe(l: Loosening): string {
  switch (l.kind) {
    case 'rule-removed':
      return `rule goes away: ${l.rule}`;
    case 'mass-removal':
      return `${l.removal.set}: ${l.removal.removed} of ${l.removal.before} members removed`;
    case 'removal':
      return `${l.set}: ${l.removed} member(s) removed`;
  }
}

export class Guard {
  private hold: Hold | null = null;
  private manual: { until: number | null } | null = null;
  /** Released by an operator: this fingerprint goes in at the next pass. */
  private released: string | null = null;

  constructor(private readonly deps: GuardDeps) {}

  get status(): GuardStatus {
    return { holding: this.hold, manual: this.manual };
  }

  /** When the guard wants to look again by itself (a hold that ends), or null. */
  get wakeAt(): number | null {
    const ends = [this.hold?.until ?? null, this.manual?.until ?? null].filter((x): x is number => x !== null);
    return ends.length === 0 ? null : Math.min(...ends);
  }

  /** `befw guard release`: the plan that waits goes in at the next pass; a manual hold ends. */
  release(): Hold | null {
    const h = this.hold;
    this.released = h?.fingerprint ?? null;
    this.manual = null;
    this.deps.log.warn({ event: 'guard-released', held: h }, 'operator released the guard');
    return h;
  }

  /** `befw guard hold [--for]`: every removal waits until released (or for `ms`). */
  holdAll(ms: number | null): void {
    this.manual = { until: ms === null ? null : this.deps.now() + ms };
    this.deps.log.warn({ event: 'guard-hold', until: this.manual.until }, 'operator holds every removal');
  }

  /**
   * `last` is the plan in force, `baseline()` the previous inputs compiled for now (expiries
   * discounted; only computed when `last` suggests a loosening), `next` the new plan.
   */
  decide(last: Plan, baseline: () => Plan, next: Plan, suspect: string | null): GuardDecision {
    const now = this.deps.now();
    if (this.manual?.until !== undefined && this.manual.until !== null && now >= this.manual.until) this.manual = null;
    // While the inputs look wrong (an index that went backwards, a tree that lost most of its
    // keys), every removal waits, however small: a Consul that came back empty must not lift
    // even a single deny.
    const everything = this.manual !== null || suspect !== null;
    const opts = this.deps.options();
    if (loosenings(last, next, opts, everything).length === 0) return this.pass(null);
    const base = baseline();
    const steps = loosenings(base, next, opts, everything);
    if (steps.length === 0) return this.pass(null);
    if (this.manual === null && this.deps.holdMs() === 0) return this.pass(null);
    if (this.released === next.fingerprint) return this.pass(this.hold);

    let fresh = false;
    if (this.hold?.fingerprint !== next.fingerprint) {
      fresh = true;
      const ms = this.deps.holdMs() * (suspect === null ? 1 : SUSPECT_FACTOR);
      this.hold = {
        fingerprint: next.fingerprint,
        since: now,
        until: this.manual !== null ? this.manual.until : now + ms,
        reasons: steps.map(describe),
        suspect,
        manual: this.manual !== null,
      };
      this.deps.log.warn(
        { event: 'guard-held', until: this.hold.until, reasons: this.hold.reasons.slice(0, 20), suspect, fingerprint: next.fingerprint },
        'change loosens the firewall or removes much at once; it waits until the inputs hold steady',
      );
    }
    const hold = this.hold;
    if (hold.until !== null && now >= hold.until) {
      this.deps.log.warn(
        { event: 'guard-confirmed', heldMs: now - hold.since, reasons: hold.reasons.slice(0, 20) },
        'the change held steady; applying',
      );
      return this.pass(hold);
    }
    return { kind: 'hold', enforce: holdBack(base, next), hold, fresh };
  }

  private pass(confirmed: Hold | null): GuardDecision {
    if (this.hold !== null && confirmed === null) {
      this.deps.log.info({ event: 'guard-cleared', fingerprint: this.hold.fingerprint }, 'the held change is gone from the inputs');
    }
    this.hold = null;
    this.released = null;
    return { kind: 'pass', confirmed };
  }
}
