/**
 * The built-in `observe` trigger and the parser's side of `befw observed`: kernel lines of a
 * service in mode `observe` (core/observe.ts) name the service's tag, the non-client's address
 * and port. They are not thresholds: the parser sums sightings per (tag, address) for a few
 * seconds and then hands each sum on as one job (event `observed`), which the responder's
 * `observe` action merges into Consul (`befw-observed/<tag>/<addr>`).
 *
 * The same anchoring as port-scan.ts: facility kern, program `kernel`, the fixed word
 * `befw-obs:` then a tag of set-name characters, then the packet logger's own fields.
 * Bounded: at most `maxEntries` pending sums and MAX_PER_TAG per tag; past that, a new address is
 * refused (counted in `refused`) until the next flush, while the addresses already pending keep
 * counting. Refusing costs O(1) per line; replacing the lowest count meant a scan of every pending
 * sum per line, which a spray of addresses turned into a CPU sink. The kernel logs only completed
 * TCP handshakes (core/observe.ts), so filling a window takes real connections.
 */
import { OBSERVE_LOG_WORD, observedKey } from '../../core/observe.js';
import { KERN_FACILITY, kernelPacketPattern } from './portScan.js';
import type { TriggerSpec } from './triggers.js';

export const OBSERVED_EVENT = 'observed';

export const OBSERVE_TRIGGERS: readonly TriggerSpec[] = [
  {
    name: 'observe',
    event: OBSERVED_EVENT,
    programs: ['kernel'],
    pattern: kernelPacketPattern(`${OBSERVE_LOG_WORD}(?<set>[a-z0-9._~-]{1,19}) `, 'TCP'),
    subject: 'attacker',
    subjectKind: 'ip',
    perDevice: false,
    facility: KERN_FACILITY,
  },
];

/** How often pending sums become jobs. */
export const OBSERVE_FLUSH_MS = 5_000;
const MAX_PER_TAG = 1000;

export interface ObservedSum<D = unknown> {
  readonly tag: string;
  readonly address: string;
  count: number;
  /** Node names (the lines' HOSTNAME) that saw it, at most 8 per flush. */
  readonly nodes: Set<string>;
  readonly firstMs: number;
  lastMs: number;
  /** A sample line, for the job. */
  sample: string;
  /** Where the sightings came from (device and evidence), for the job. */
  readonly origin: D;
}

export class ObserveAggregator<D> {
  private pending = new Map<string, ObservedSum<D>>();
  private perTag = new Map<string, number>();
  private lastFlushMs: number | null = null;
  /** New addresses not taken because the window was full (per tag or in all). */
  refused = 0;

  constructor(private readonly maxEntries: number) {}

  get size(): number {
    return this.pending.size;
  }

  /**
   * One sighting. `channel` keeps sums apart that must not mix: lines over TCP (`tcp`) and each
   * UDP sender (its address), so a job over forgeable lines carries only that sender's evidence.
   */
  add(tag: string, address: string, channel: string, node: string | null, weight: number, nowMs: number, sample: string, origin: D): void {
    this.lastFlushMs ??= nowMs;
    const key = `${observedKey(tag, address)}\u0000${channel}`;
    const cur = this.pending.get(key);
    if (cur !== undefined) {
      cur.count += weight;
      cur.lastMs = nowMs;
      if (node !== null && cur.nodes.size < 8) cur.nodes.add(node);
      return;
    }
    const tagCount = this.perTag.get(tag) ?? 0;
    if (tagCount >= MAX_PER_TAG || this.pending.size >= this.maxEntries) {
      this.refused++;
      return;
    }
    this.pending.set(key, {
      tag,
      address,
      count: weight,
      nodes: new Set(node === null ? [] : [node]),
      firstMs: nowMs,
      lastMs: nowMs,
      sample,
      origin,
    });
    this.perTag.set(tag, tagCount + 1);
  }

  /** The pending sums when a flush is due (and forgets them); otherwise nothing. */
  due(nowMs: number, flushMs = OBSERVE_FLUSH_MS): ObservedSum<D>[] {
    if (this.lastFlushMs === null || nowMs - this.lastFlushMs < flushMs) return [];
    this.lastFlushMs = nowMs;
    const out = [...this.pending.values()];
    this.pending = new Map();
    this.perTag = new Map();
    if (out.length === 0) this.lastFlushMs = null;
    return out;
  }
}
