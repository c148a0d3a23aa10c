/**
 * The built-in `port-scan` trigger: kernel lines of befw's trap rule (core/trap.ts, `nids=true`)
 * and a counter of the distinct trap ports each source touched. BEFW counted more than 10
 * distinct ports from one source within 300 s as a scan and only logged it (befw/nids.go:237-262);
 * the reactor makes a job of it, and the configured actions run (by default a fleet-wide ban).
 *
 * What is believed: the line must be the kernel's (facility kern, program `kernel`: the node's
 * rsyslog forwards only what imklog read, see examples/reactor/rsyslog.conf), start with the
 * fixed prefix `befw-trap ` right after the optional kernel time stamp, and have the shape the
 * kernel's packet logger prints, field by field, anchored at both ends. SRC= and DPT= are read
 * from that shape only; no part of the line is text a remote party chose. Note what it cannot
 * tell: SRC is the packet's source address, and a SYN's source can be forged (see README,
 * "What an attacker can and cannot do").
 */
import { TRAP_LOG_PREFIX } from '../../core/trap.js';
import type { TriggerSpec } from './triggers.js';

/** syslog facility `kern`. */
export const KERN_FACILITY = 0;

/** An address as the kernel prints it: dotted IPv4, or IPv6 in full (eight groups of four). */
const KADDR = '[0-9A-Fa-f.:]{7,39}';
/** `[ 8941.611193] ` when the forwarder keeps the kernel's time stamp. */
export const KERNEL_STAMP = '(?:\\[\\s*[0-9]{1,10}\\.[0-9]{1,9}\\]\\s?)?';
/** IN=, OUT= and MAC= as nf_log prints them (MAC= only on interfaces with a link-layer header). */
const IFACES = 'IN=[A-Za-z0-9._@:-]{0,15} OUT=[A-Za-z0-9._@:-]{0,15} (?:MAC=[0-9a-f:]{0,160} )?';
/** IPv4's "LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=38776 DF " or IPv6's "LEN=80 TC=0 HOPLIMIT=64 FLOWLBL=289614 ". */
const IP_FIELDS = 'LEN=[0-9]{1,5} (?:[A-Z]{2,8}(?:=[0-9A-Fa-fx]{1,10})? ){0,8}';
/** TCP's fields after the ports: "WINDOW=64240 RES=0x00 SYN URGP=0" (and options when asked). */
const TCP_TAIL = '(?: [A-Z]{2,8}(?:=[0-9A-Fa-fx()]{1,40})?){0,16}';

/** The kernel-line body shared by trap and observe lines, after the prefix. */
export function kernelPacketPattern(prefix: string, protos: string): string {
  return `^${KERNEL_STAMP}${prefix}${IFACES}SRC=(?<attacker>${KADDR}) DST=(?<dst>${KADDR}) ${IP_FIELDS}PROTO=(?:${protos}) SPT=[0-9]{1,5} DPT=(?<port>[0-9]{1,5})${TCP_TAIL}[ \\t]*$`;
}

export const PORT_SCAN_TRIGGERS: readonly TriggerSpec[] = [
  {
    name: 'port-scan',
    event: 'port-scan',
    programs: ['kernel'],
    pattern: kernelPacketPattern(TRAP_LOG_PREFIX, 'TCP'),
    subject: 'attacker',
    subjectKind: 'ip',
    perDevice: false,
    facility: KERN_FACILITY,
    distinct: 'port',
  },
];

/** BEFW's threshold: more than 10 distinct ports within 300 s (befw/nids.go:239, 258). */
export const PORT_SCAN_THRESHOLD = { maxRetry: 11, findTimeMs: 300_000 } as const;

/** How many distinct values one subject keeps (more than any threshold needs). */
const MAX_VALUES = 64;

/**
 * Which values (ports) each subject showed within a window: an occurrence counts only when its
 * value is new for the subject. Bounded: at most `maxSubjects` subjects (the least recently seen
 * leaves first) and MAX_VALUES values each.
 */
export class DistinctValues {
  private readonly subjects = new Map<string, Map<string, number>>();
  evicted = 0;

  constructor(private readonly maxSubjects: number) {}

  get size(): number {
    return this.subjects.size;
  }

  /** True when `value` is new for `key` within `windowMs` (and records it). */
  isNew(key: string, value: string, nowMs: number, windowMs: number): boolean {
    let values = this.subjects.get(key);
    if (values === undefined) {
      if (this.subjects.size >= this.maxSubjects) {
        const oldest = this.subjects.keys().next();
        if (oldest.done !== true) {
          this.subjects.delete(oldest.value);
          this.evicted++;
        }
      }
      values = new Map();
    }
    // Seen now: the most recent subject.
    this.subjects.delete(key);
    this.subjects.set(key, values);
    for (const [v, at] of values) if (nowMs - at >= windowMs) values.delete(v);
    if (values.has(value)) return false;
    if (values.size >= MAX_VALUES) values.delete(values.keys().next().value as string);
    values.set(value, nowMs);
    return true;
  }

  forget(subjectSuffix: string): void {
    for (const k of [...this.subjects.keys()]) if (k.slice(k.lastIndexOf('\u0000') + 1) === subjectSuffix) this.subjects.delete(k);
  }

  sweep(nowMs: number, windowMs: number): void {
    for (const [k, values] of this.subjects) {
      for (const [v, at] of values) if (nowMs - at >= windowMs) values.delete(v);
      if (values.size === 0) this.subjects.delete(k);
    }
  }
}
