/**
 * Thresholds and de-duplication, like fail2ban's maxretry within findtime: an event for a subject
 * becomes a job when `maxRetry` occurrences fall within `findTime`; after that, the same subject
 * yields no further job for `dedup` (a burst of 500 failed logins is one job, not 100).
 * Occurrences are weighted: rsyslog's "message repeated 4 times" counts 4 (capped by the caller).
 *
 * Evidence: each occurrence says whether it came over a transport that cannot be forged (TCP from
 * the device or a trusted proxy) or over UDP, with the actions the sending device allows for UDP.
 * A job is trustworthy only if the trusted occurrences alone reach the threshold; otherwise it is
 * marked spoofable and carries the actions every UDP contributor allows (their intersection).
 * A spoofable job does not de-duplicate trusted evidence: a forged "eth1 down" must not silence
 * the router's own report over TCP.
 *
 * Pure: the caller passes the time. Memory is bounded: at most `maxTracked` subjects are held.
 * Under a flood of decoy subjects the tracker keeps the ones closest to their threshold: entries
 * are kept in levels by progress (a quarter of the threshold per level, de-duplication on top),
 * least recently seen first within a level, and a new subject evicts from the lowest level that
 * has anyone. A subject one attempt short of a ban, or one being de-duplicated, is evicted only
 * once no subject with less progress is left.
 */

export interface ThresholdRule {
  readonly maxRetry: number;
  readonly findTimeMs: number;
}

export type Observation =
  | { readonly kind: 'counting'; readonly count: number }
  | {
      readonly kind: 'fire';
      readonly count: number;
      readonly firstSeenMs: number;
      /** The trusted occurrences alone did not reach the threshold. */
      readonly spoofable: boolean;
      /** For a spoofable job: the actions every UDP contributor allows. */
      readonly udpActions: readonly string[];
    }
  | { readonly kind: 'suppressed'; readonly firedAtMs: number };

interface Entry {
  readonly key: string;
  /** Occurrence times, weights and UDP policies (null: trusted), oldest first, all within findTime. */
  times: number[];
  weights: number[];
  udp: (readonly string[] | null)[];
  sum: number;
  trusted: number;
  firedAtMs: number | null;
  /** The last job rested on UDP lines: it does not de-duplicate evidence that cannot be forged. */
  firedSpoofable: boolean;
  lastMs: number;
  rule: ThresholdRule;
  level: number;
}

const LEVELS = 5;
const DEDUP_LEVEL = LEVELS - 1;

function levelOf(e: Entry): number {
  if (e.firedAtMs !== null) return DEDUP_LEVEL;
  return Math.min(DEDUP_LEVEL - 1, Math.floor((4 * e.sum) / e.rule.maxRetry));
}

function intersect(lists: readonly (readonly string[] | null)[]): readonly string[] {
  let out: readonly string[] | null = null;
  for (const l of lists) {
    if (l === null) continue;
    out = out === null ? l : out.filter((a) => l.includes(a));
  }
  return out ?? [];
}

export class ThresholdTracker {
  private readonly entries = new Map<string, Entry>();
  /** Per level, keys in least-recently-seen order (a Map keeps insertion order). */
  private readonly levels: Map<string, Entry>[] = Array.from({ length: LEVELS }, () => new Map<string, Entry>());
  evicted = 0;

  constructor(
    private readonly dedupMs: number,
    private readonly maxTracked: number,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** Entries per level, lowest first (for stats). */
  get perLevel(): number[] {
    return this.levels.map((l) => l.size);
  }

  /**
   * One occurrence of `key`. `udpActions` null: it came over a transport that cannot be forged;
   * else the actions the sending device allows for UDP.
   */
  observe(key: string, rule: ThresholdRule, weight: number, nowMs: number, udpActions: readonly string[] | null = null): Observation {
    let e = this.entries.get(key);
    if (e === undefined) {
      if (this.entries.size >= this.maxTracked) this.evictOne();
      e = {
        key,
        times: [],
        weights: [],
        udp: [],
        sum: 0,
        trusted: 0,
        firedAtMs: null,
        firedSpoofable: false,
        lastMs: nowMs,
        rule,
        level: 0,
      };
      this.entries.set(key, e);
    }
    const result = this.count(e, rule, weight, nowMs, udpActions);
    // Seen now: the most recent of its level.
    this.levels[e.level]?.delete(key);
    e.level = levelOf(e);
    this.levels[e.level]?.set(key, e);
    return result;
  }

  private count(e: Entry, rule: ThresholdRule, weight: number, nowMs: number, udpActions: readonly string[] | null): Observation {
    e.lastMs = nowMs;
    if (e.firedAtMs !== null) {
      // Forged datagrams must not silence the real thing: after a job that rested on UDP lines,
      // trusted occurrences count again (and make their own job at the threshold).
      const trustedAfterSpoofable = e.firedSpoofable && udpActions === null;
      if (nowMs - e.firedAtMs < this.dedupMs && !trustedAfterSpoofable) return { kind: 'suppressed', firedAtMs: e.firedAtMs };
      e.firedAtMs = null;
      e.firedSpoofable = false;
    }
    // Drop occurrences that fell out of the window.
    let drop = 0;
    while (drop < e.times.length && nowMs - (e.times[drop] as number) >= rule.findTimeMs) {
      e.sum -= e.weights[drop] as number;
      if (e.udp[drop] === null) e.trusted -= e.weights[drop] as number;
      drop++;
    }
    if (drop > 0) {
      e.times.splice(0, drop);
      e.weights.splice(0, drop);
      e.udp.splice(0, drop);
    }
    e.times.push(nowMs);
    e.weights.push(weight);
    e.udp.push(udpActions);
    e.sum += weight;
    if (udpActions === null) e.trusted += weight;
    if (e.sum >= rule.maxRetry) {
      const spoofable = e.trusted < rule.maxRetry;
      const fired: Observation = {
        kind: 'fire',
        count: e.sum,
        firstSeenMs: e.times[0] as number,
        spoofable,
        udpActions: spoofable ? intersect(e.udp) : [],
      };
      e.times = [];
      e.weights = [];
      e.udp = [];
      e.sum = 0;
      e.trusted = 0;
      e.firedAtMs = nowMs;
      e.firedSpoofable = spoofable;
      return fired;
    }
    return { kind: 'counting', count: e.sum };
  }

  /** Forgets every key whose subject (the text after the last NUL) is `subject`: an operator's unban. */
  forgetSubject(subject: string): number {
    let n = 0;
    for (const [k, e] of this.entries) {
      if (k.slice(k.lastIndexOf('\u0000') + 1) !== subject) continue;
      this.remove(e);
      n++;
    }
    return n;
  }

  /** Forgets subjects with nothing left in their window and no de-duplication running. */
  sweep(nowMs: number): number {
    let removed = 0;
    for (const e of [...this.entries.values()]) {
      const windowDone = nowMs - e.lastMs >= e.rule.findTimeMs;
      const dedupDone = e.firedAtMs === null || nowMs - e.firedAtMs >= this.dedupMs;
      if (windowDone && dedupDone) {
        this.remove(e);
        removed++;
      }
    }
    return removed;
  }

  private remove(e: Entry): void {
    this.entries.delete(e.key);
    this.levels[e.level]?.delete(e.key);
  }

  private evictOne(): void {
    for (const level of this.levels) {
      const first = level.values().next();
      if (first.done === true) continue;
      this.remove(first.value);
      this.evicted++;
      return;
    }
  }
}
