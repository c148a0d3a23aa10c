/**
 * What happens to one received message: decode, parse (RFC 5424 / 3164, repeats unwrapped into
 * the same program only, their count capped), check the hostname against the device's config,
 * match the triggers, drop subjects the config protects (and special-purpose addresses such as
 * loopback), count against the event's threshold (remembering which occurrences came over UDP),
 * and when it is crossed (and not already reported for this subject) make a job. No sockets here:
 * the listeners feed it, the queue producer takes the jobs, and tests and the benchmark drive it
 * directly.
 */
import { randomUUID } from 'node:crypto';
import { printable } from '../../core/address.js';
import type { JobDevice, JobEvidence, ReactorJob } from '../queue/job.js';
import type { DevicePolicy } from '../config/reactorConfig.js';
import { JOB_VERSION } from '../queue/job.js';
import { NEVER_TARGETED, type NetSet } from '../../core/netMatch.js';
import { type ParserConfig, thresholdFor } from '../config/reactorConfig.js';
import { parseSyslog } from './syslogMessage.js';
import { type Observation, ThresholdTracker } from './thresholds.js';
import { matchFields } from './triggers.js';
import { DistinctValues } from './portScan.js';
import { OBSERVED_EVENT, ObserveAggregator } from './observeAggregate.js';
import { GRANTING_EVENTS } from './leaseTriggers.js';

export interface ParserCounters {
  received: number;
  bytes: number;
  malformed: number;
  matched: number;
  badSubject: number;
  ignored: number;
  suppressed: number;
  /** Lines of an event their device may not produce (DevicePolicy.events). */
  refusedEvent: number;
  jobs: number;
  /** Malformed input by reason (framing, PROXY, syslog, connection limits). */
  readonly problems: Record<string, number>;
}

export function newCounters(): ParserCounters {
  return {
    received: 0,
    bytes: 0,
    malformed: 0,
    matched: 0,
    badSubject: 0,
    ignored: 0,
    suppressed: 0,
    refusedEvent: 0,
    jobs: 0,
    problems: Object.create(null) as Record<string, number>,
  };
}

export interface Problem {
  readonly reason: string;
  readonly detail: string;
  readonly device: string | null;
  readonly listener: string;
  readonly sample?: string;
}

export interface Sender extends Omit<JobDevice, 'hostname' | 'name'> {
  /** The device's entry in the config (already found to allow it). */
  readonly policy: DevicePolicy;
}

/** A device's events: those it lists, or (none listed) every event that does not grant access. */
export function mayProduce(policy: DevicePolicy, event: string): boolean {
  return policy.events === undefined || policy.events === null ? !GRANTING_EVENTS.includes(event) : policy.events.has(event);
}

export class SyslogPipeline {
  readonly counters = newCounters();
  private readonly tracker: ThresholdTracker;
  private readonly ignoredMemo = new Map<string, boolean>();
  /** Distinct values per subject for triggers that count them (port-scan: ports). */
  private readonly distinct: DistinctValues;
  /** Observe-mode sightings summed between flushes (observeAggregate.ts). */
  private readonly observed: ObserveAggregator<{ device: JobDevice; evidence: JobEvidence }>;

  constructor(
    private readonly parser: ParserConfig,
    /** Subjects never queued: the config's protect list, trusted proxies, routers, queue servers. */
    private readonly protect: NetSet,
    private readonly emit: (job: ReactorJob) => void,
    private readonly report: (p: Problem) => void,
    private readonly parserId: string,
  ) {
    this.tracker = new ThresholdTracker(parser.dedupMs, parser.maxTracked);
    this.distinct = new DistinctValues(parser.maxTracked);
    this.observed = new ObserveAggregator(parser.maxTracked);
  }

  get tracked(): number {
    return this.tracker.size;
  }

  get evicted(): number {
    return this.tracker.evicted;
  }

  get trackedPerLevel(): number[] {
    return this.tracker.perLevel;
  }

  /** An operator's unban: counting and de-duplication of `subject` start again. */
  forget(subject: string): number {
    this.distinct.forget(subject);
    return this.tracker.forgetSubject(subject);
  }

  /** Counts a problem found outside the pipeline (framing, PROXY header, limits) the same way. */
  problem(p: Problem): void {
    this.counters.malformed++;
    this.counters.problems[p.reason] = (this.counters.problems[p.reason] ?? 0) + 1;
    this.report(p);
  }

  handleBuffer(buf: Buffer, start: number, end: number, sender: Sender, nowMs: number): void {
    this.counters.bytes += end - start;
    this.handleText(buf.toString('utf8', start, end), sender, nowMs);
  }

  handleText(line: string, sender: Sender, nowMs: number): void {
    this.counters.received++;
    const parsed = parseSyslog(line);
    if (!parsed.ok) {
      this.problem({
        reason: 'bad-syslog',
        detail: parsed.error,
        device: sender.address,
        listener: sender.listener,
        sample: printable(line, 120),
      });
      return;
    }
    const m = parsed.value;
    const hostnames = sender.policy.hostnames;
    if (hostnames !== null && (m.hostname === null || !hostnames.has(m.hostname.toLowerCase()))) {
      this.problem({
        reason: 'hostname-mismatch',
        detail: `hostname ${m.hostname === null ? '(none)' : `"${printable(m.hostname, 64)}"`} is not one of device ${sender.policy.name}'s`,
        device: sender.address,
        listener: sender.listener,
        sample: printable(line, 120),
      });
      return;
    }
    if (m.repeatRefused === true) {
      this.problem({
        reason: 'repeat-program-mismatch',
        detail: `"message repeated" from ${m.app ?? 'no program'} wraps another program's line: not counted`,
        device: sender.address,
        listener: sender.listener,
        sample: printable(line, 120),
      });
      return;
    }
    const weight = Math.min(m.repeat, this.parser.maxRepeat);
    const udp = sender.transport === 'udp' ? sender.policy.udpActions : null;
    const matches = this.parser.triggers.match(m.app, m.msg, (p) => {
      this.counters.badSubject++;
      this.problem({
        reason: 'bad-subject',
        detail: `${p.trigger}: ${p.error}`,
        device: sender.address,
        listener: sender.listener,
        sample: printable(line, 120),
      });
    });
    for (const match of matches) {
      this.counters.matched++;
      const t = match.trigger;
      if (!mayProduce(sender.policy, t.event)) {
        // A granting line from a device not listed for it (an sshd host logging `Login OK`).
        this.counters.refusedEvent++;
        this.problem({
          reason: 'event-not-allowed',
          detail: `${t.name}: device ${sender.policy.name} may not produce event ${t.event}${GRANTING_EVENTS.includes(t.event) ? ' (it grants access: list it in the device\'s "events")' : ''}`,
          device: sender.address,
          listener: sender.listener,
          sample: printable(line, 120),
        });
        continue;
      }
      if (t.subjectKind === 'ip' && this.isIgnored(match.subject)) {
        this.counters.ignored++;
        continue;
      }
      if (t.facility !== undefined && (m.pri === null || m.pri >> 3 !== t.facility)) {
        // A kernel-shaped line that is not the kernel's (another program, a forged datagram).
        this.problem({
          reason: 'wrong-facility',
          detail: `${t.name}: only facility ${t.facility} lines count`,
          device: sender.address,
          listener: sender.listener,
          sample: printable(line, 120),
        });
        continue;
      }
      if (t.event === OBSERVED_EVENT) {
        const origin = { device: this.deviceOf(sender, m.hostname), evidence: { spoofable: udp !== null, udpActions: udp ?? [] } };
        const node = m.hostname === null ? null : printable(m.hostname, 64);
        this.observed.add(
          match.groups.set ?? '',
          match.subject,
          udp === null ? 'tcp' : sender.address,
          node,
          weight,
          nowMs,
          printable(line, 512),
          origin,
        );
        continue;
      }
      const distinctKey = t.perDevice ? `${t.event}\u0000${sender.address}\u0000${match.subject}` : `${t.event}\u0000${match.subject}`;
      // Distinct values (ports) count once per window, and a "message repeated" line adds nothing new.
      if (
        t.distinct !== undefined &&
        !this.distinct.isNew(distinctKey, match.groups[t.distinct] ?? '', nowMs, thresholdFor(this.parser, t.event).findTimeMs)
      )
        continue;
      // A state report (lease, login) is a job per line: nothing to count, nothing to de-duplicate.
      const o: Observation =
        t.everyLine === true
          ? { kind: 'fire', count: 1, firstSeenMs: nowMs, spoofable: udp !== null, udpActions: udp ?? [] }
          : this.tracker.observe(
              t.perDevice ? `${t.event}\u0000${sender.address}\u0000${match.subject}` : `${t.event}\u0000${match.subject}`,
              thresholdFor(this.parser, t.event),
              t.distinct === undefined ? weight : 1,
              nowMs,
              udp,
            );
      if (o.kind === 'suppressed') {
        this.counters.suppressed++;
        continue;
      }
      if (o.kind !== 'fire') continue;
      this.counters.jobs++;
      this.emit({
        v: JOB_VERSION,
        id: randomUUID(),
        event: t.event,
        trigger: t.name,
        subject: match.subject,
        fields: matchFields(match),
        count: o.count,
        device: this.deviceOf(sender, m.hostname),
        evidence: { spoofable: o.spoofable, udpActions: o.udpActions },
        firstSeenMs: o.firstSeenMs,
        lineReceivedMs: nowMs,
        queuedMs: Date.now(),
        parser: this.parserId,
        sample: printable(line, 512),
      });
    }
    this.flushObserved(nowMs);
  }

  private deviceOf(sender: Sender, hostname: string | null): JobDevice {
    return {
      address: sender.address,
      hostname: hostname === null ? null : printable(hostname, 255),
      via: sender.via,
      listener: sender.listener,
      name: sender.policy.name,
      transport: sender.transport,
    };
  }

  /** Observe-mode sums, once their flush is due: one job per tag, address and channel. */
  flushObserved(nowMs: number): void {
    for (const o of this.observed.due(nowMs)) {
      this.counters.jobs++;
      this.emit({
        v: JOB_VERSION,
        id: randomUUID(),
        event: OBSERVED_EVENT,
        trigger: 'observe',
        subject: o.address,
        fields: { set: o.tag, attacker: o.address, nodes: [...o.nodes].join(',').slice(0, 256) },
        count: o.count,
        device: o.origin.device,
        evidence: o.origin.evidence,
        firstSeenMs: o.firstMs,
        lineReceivedMs: o.lastMs,
        queuedMs: Date.now(),
        parser: this.parserId,
        sample: o.sample,
      });
    }
  }

  /** Protected and special-purpose addresses, remembered per address (bounded). */
  private isIgnored(address: string): boolean {
    const hit = this.ignoredMemo.get(address);
    if (hit !== undefined) return hit;
    const value = this.protect.has(address) || NEVER_TARGETED.has(address);
    if (this.ignoredMemo.size >= 65536) this.ignoredMemo.clear();
    this.ignoredMemo.set(address, value);
    return value;
  }

  sweep(nowMs: number): number {
    this.flushObserved(nowMs);
    this.distinct.sweep(nowMs, 3_600_000);
    return this.tracker.sweep(nowMs);
  }
}
