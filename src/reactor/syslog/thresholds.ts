/**
 * Thresholds and de-duplication, like fail2ban's maxretry within findtime: an event for a subject
 * becomes a job when `maxRetry` occurrences fall within `findTime`; after that, the same subject
 * yields no further job for `dedup` (a burst of 500 failed logins is one job, not 100).
 * Occurrences are weighted: rsyslog's "message repeated 4 times" counts 4.
 *
 * Pure: the caller passes the time. Memory is bounded: at most `maxTracked` subjects are held;
 * beyond that the oldest-inserted is forgotten (and counted), and sweep() drops what has aged out.
 */

export interface ThresholdRule {
  readonly maxRetry: number;
  readonly findTimeMs: number;
}

export type Observation =
  | { readonly kind: 'counting'; readonly count: number }
  | { readonly kind: 'fire'; readonly count: number; readonly firstSeenMs: number }
  | { readonly kind: 'suppressed'; readonly firedAtMs: number };

interface Entry {
  /** Occurrence times and weights, oldest first, all within findTime of the newest. */
  times: number[];
  weights: number[];
  sum: number;
  firedAtMs: number | null;
  lastMs: number;
  rule: ThresholdRule;
}

export class ThresholdTracker {
  private readonly entries = new Map<string, Entry>();
  evicted = 0;

  constructor(
    private readonly dedupMs: number,
    private readonly maxTracked: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  observe(key: string, rule: ThresholdRule, weight: number, nowMs: number): Observation {
    let e = this.entries.get(key);
    if (e === undefined) {
      if (this.entries.size >= this.maxTracked) this.evictOldest();
      e = { times: [], weights: [], sum: 0, firedAtMs: null, lastMs: nowMs, rule };
      this.entries.set(key, e);
    }
    e.lastMs = nowMs;
    if (e.firedAtMs !== null) {
      if (nowMs - e.firedAtMs < this.dedupMs) return { kind: 'suppressed', firedAtMs: e.firedAtMs };
      e.firedAtMs = null;
    }
    // Drop occurrences that fell out of the window.
    let drop = 0;
    while (drop < e.times.length && nowMs - (e.times[drop] as number) >= rule.findTimeMs) {
      e.sum -= e.weights[drop] as number;
      drop++;
    }
    if (drop > 0) {
      e.times.splice(0, drop);
      e.weights.splice(0, drop);
    }
    e.times.push(nowMs);
    e.weights.push(weight);
    e.sum += weight;
    if (e.sum >= rule.maxRetry) {
      const count = e.sum;
      const firstSeenMs = e.times[0] as number;
      e.times = [];
      e.weights = [];
      e.sum = 0;
      e.firedAtMs = nowMs;
      return { kind: 'fire', count, firstSeenMs };
    }
    return { kind: 'counting', count: e.sum };
  }

  /** Forgets subjects with nothing left in their window and no de-duplication running. */
  sweep(nowMs: number): number {
    let removed = 0;
    for (const [k, e] of this.entries) {
      const windowDone = nowMs - e.lastMs >= e.rule.findTimeMs;
      const dedupDone = e.firedAtMs === null || nowMs - e.firedAtMs >= this.dedupMs;
      if (windowDone && dedupDone) {
        this.entries.delete(k);
        removed++;
      }
    }
    return removed;
  }

  private evictOldest(): void {
    const first = this.entries.keys().next();
    if (first.done !== true) {
      this.entries.delete(first.value);
      this.evicted++;
    }
  }
}
