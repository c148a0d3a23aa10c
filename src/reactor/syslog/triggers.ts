/**
 * Triggers: named rules that turn a syslog message into an event. A rule is a regular expression
 * with named groups, optionally limited to some programs (APP-NAME / TAG); the group named by
 * `subject` says what the event is about (the attacker's address, an interface name) and is what
 * thresholds count and de-duplication keys on. Built-in rules cover sshd's failures and an
 * interface going down; the config adds more.
 *
 * Rules are indexed by program so a message only meets the rules that can match it: at 100,000
 * messages a second most lines are from programs no rule names. Per message, at most one rule per
 * event type fires, so overlapping rules never count one attempt twice.
 */
import { printable } from '../../core/address.js';
import { CanonicalIpCache } from '../../core/netMatch.js';
import { OBSERVE_TRIGGERS } from './observeAggregate.js';
import { PORT_SCAN_TRIGGERS } from './portScan.js';
import { LEASE_TRIGGERS } from './leaseTriggers.js';

export type SubjectKind = 'ip' | 'name';

export interface TriggerSpec {
  readonly name: string;
  readonly event: string;
  /** Programs the rule applies to; empty: every message. */
  readonly programs: readonly string[];
  readonly pattern: string;
  /** Named group the event is about. */
  readonly subject: string;
  /** 'ip': the subject must be one IP address (canonicalised); 'name': a short token. */
  readonly subjectKind: SubjectKind;
  /** Count and de-duplicate per sending device (an interface name means nothing across devices). */
  readonly perDevice: boolean;
  /** A state report (a DHCP ACK, a RADIUS login): every line is a job, no threshold, no de-duplication. */
  readonly everyLine?: boolean;
  /** Only lines of this syslog facility count (0: kern, which userland cannot claim through the node's rsyslog imklog). */
  readonly facility?: number;
  /** Count an occurrence only when this group's value is new for the subject within the window (port-scan: distinct ports). */
  readonly distinct?: string;
}

export interface Trigger extends TriggerSpec {
  readonly regex: RegExp;
}

export interface TriggerMatch {
  readonly trigger: Trigger;
  readonly subject: string;
  /** The regular expression's named groups, as matched (see matchFields). */
  readonly groups: Readonly<Record<string, string | undefined>>;
}

/**
 * The job fields of a match: every named group that matched, capped in length, the subject in
 * its canonical form. Built only for the matches that become jobs, not for every line.
 */
export function matchFields(m: TriggerMatch): Record<string, string> {
  const fields: Record<string, string> = {};
  for (const [k, v] of Object.entries(m.groups)) {
    if (typeof v === 'string') fields[k] = v.length > MAX_FIELD ? v.slice(0, MAX_FIELD) : v;
  }
  fields[m.trigger.subject] = m.subject;
  return fields;
}

export type MatchProblem = { readonly trigger: string; readonly error: string };

/** The address shapes sshd prints (IPv4, IPv6, IPv4-mapped IPv6); validated afterwards. */
const ADDR = '[0-9A-Fa-f.:]{2,45}';
/** OpenSSH's programs: sshd; sshd-session (9.8+); sshd-auth (10.0+). */
const SSHD = ['sshd', 'sshd-session', 'sshd-auth'];
/**
 * A user name as sshd logs it: attacker-controlled text (sshd prints at most 100 characters,
 * vis-encoded: up to 400). It may itself hold "from ADDR port N": every pattern below is anchored
 * at both ends, so the address is the one sshd appended after the name, never one inside it.
 */
const USER = '(?<user>.{0,400}?)';
/** sshd's own tail of a line: " port N", optionally " ssh2", optionally " [preauth]", nothing after. */
const PORT_TAIL = ' port [0-9]{1,5}';
const END = '(?: \\[preauth\\])?[ \\t]*$';

export const BUILTIN_TRIGGERS: Readonly<Record<string, readonly TriggerSpec[]>> = {
  sshd: [
    {
      name: 'sshd-failed-password',
      event: 'ssh-auth-failure',
      programs: SSHD,
      pattern: `^Failed (?:password|keyboard-interactive/pam|keyboard-interactive) for (?:invalid user )?${USER} from (?<attacker>${ADDR})${PORT_TAIL} ssh2${END}`,
      subject: 'attacker',
      subjectKind: 'ip',
      perDevice: false,
    },
    {
      name: 'sshd-invalid-user',
      event: 'ssh-auth-failure',
      programs: SSHD,
      pattern: `^Invalid user ${USER} from (?<attacker>${ADDR})(?:${PORT_TAIL})?${END}`,
      subject: 'attacker',
      subjectKind: 'ip',
      perDevice: false,
    },
    {
      name: 'sshd-max-auth-attempts',
      event: 'ssh-auth-failure',
      programs: SSHD,
      pattern: `^error: maximum authentication attempts exceeded for (?:invalid user )?${USER} from (?<attacker>${ADDR})${PORT_TAIL} ssh2${END}`,
      subject: 'attacker',
      subjectKind: 'ip',
      perDevice: false,
    },
    {
      name: 'sshd-pam-auth-failure',
      event: 'ssh-auth-failure',
      programs: SSHD,
      // pam_unix's own fields, each without spaces, then rhost (set by sshd) and, last, the user.
      pattern: `^pam_unix\\((?:sshd|sshd-session|sshd-auth):auth\\): authentication failure; logname=\\S* uid=[0-9]{1,10} euid=[0-9]{1,10} tty=\\S* ruser=\\S* rhost=(?<attacker>${ADDR})(?: {1,2}user=(?<user>.{0,400}))?[ \\t]*$`,
      subject: 'attacker',
      subjectKind: 'ip',
      perDevice: false,
    },
  ],
  'iface-down': [
    {
      name: 'iface-down',
      event: 'iface-down',
      programs: [],
      // "eth1: state DOWN flags 0x00001002 ..." (netplugd and friends), optionally after a kernel time stamp.
      pattern:
        '^(?:\\[\\s*[0-9]+\\.[0-9]+\\]\\s*)?(?<iface>[A-Za-z0-9][A-Za-z0-9._@-]{0,14}): state DOWN(?: flags 0x[0-9a-fA-F]{1,8}(?: [^\\n]{0,200})?)?[ \\t]*$',
      subject: 'iface',
      subjectKind: 'name',
      perDevice: true,
    },
  ],
  // befw's trap ports (nids=true) and observe mode: kernel lines the node's rsyslog forwards.
  'port-scan': PORT_SCAN_TRIGGERS,
  observe: OBSERVE_TRIGGERS,
  ...LEASE_TRIGGERS,
};

export const BUILTIN_GROUPS = Object.keys(BUILTIN_TRIGGERS);
/** Groups on when the config names none: the lease groups grant access and must be asked for. */
export const DEFAULT_BUILTIN_GROUPS = BUILTIN_GROUPS.filter((g) => !(g in LEASE_TRIGGERS));

const NAME_SUBJECT = /^[A-Za-z0-9._:@/-]{1,64}$/;
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,31}$/;
const MAX_FIELD = 256;

/** Compiles a rule; throws with a readable reason (the config loader adds where it came from). */
export function compileTrigger(spec: TriggerSpec): Trigger {
  let regex: RegExp;
  try {
    regex = new RegExp(spec.pattern, 'u');
  } catch (err) {
    throw new Error(`pattern does not compile: ${(err as Error).message}`, { cause: err });
  }
  if (!new RegExp(`\\(\\?<${spec.subject}>`).test(spec.pattern))
    throw new Error(`pattern has no named group "${spec.subject}" (the subject)`);
  // Group names become job field names: keep them to what every consumer accepts.
  const groups = [...spec.pattern.matchAll(/\(\?<([^>=!][^>]*)>/g)].map((g) => g[1] ?? '');
  const bad = groups.find((g) => !FIELD_NAME.test(g));
  if (bad !== undefined) throw new Error(`group name "${bad}" must be letters, digits and "_" (at most 32)`);
  if (groups.length > 16) throw new Error('at most 16 named groups');
  if (spec.distinct !== undefined && !groups.includes(spec.distinct))
    throw new Error(`pattern has no named group "${spec.distinct}" (distinct)`);
  return { ...spec, regex };
}

export class TriggerSet {
  private readonly byProgram = new Map<string, readonly Trigger[]>();
  private readonly anyProgram: readonly Trigger[];
  private readonly addresses = new CanonicalIpCache();

  constructor(readonly triggers: readonly Trigger[]) {
    this.anyProgram = triggers.filter((t) => t.programs.length === 0);
    const programs = new Set(triggers.flatMap((t) => t.programs));
    for (const p of programs) {
      this.byProgram.set(
        p,
        triggers.filter((t) => t.programs.length === 0 || t.programs.includes(p)),
      );
    }
  }

  get events(): string[] {
    return [...new Set(this.triggers.map((t) => t.event))];
  }

  /**
   * Matches of one message. A match whose subject is not acceptable (not an address where one is
   * required, an over-long name) is reported through `problems` instead.
   */
  match(app: string | null, msg: string, problems?: (p: MatchProblem) => void): readonly TriggerMatch[] {
    const list = (app === null ? undefined : this.byProgram.get(app)) ?? this.anyProgram;
    if (list.length === 0) return NO_MATCHES;
    let out: TriggerMatch[] | null = null;
    for (const t of list) {
      if (out !== null && out.some((m) => m.trigger.event === t.event)) continue;
      const m = t.regex.exec(msg);
      if (m === null) continue;
      const groups = m.groups ?? {};
      const raw = groups[t.subject];
      if (raw === undefined) continue;
      let subject: string | null;
      if (t.subjectKind === 'ip') subject = this.addresses.get(raw);
      else subject = NAME_SUBJECT.test(raw) ? raw : null;
      if (subject === null) {
        problems?.({
          trigger: t.name,
          error: `subject "${printable(raw, 64)}" is not ${t.subjectKind === 'ip' ? 'an IP address' : 'a valid name'}`,
        });
        continue;
      }
      (out ??= []).push({ trigger: t, subject, groups });
    }
    return out ?? NO_MATCHES;
  }
}

const NO_MATCHES: readonly TriggerMatch[] = Object.freeze([]);
