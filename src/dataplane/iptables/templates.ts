/**
 * Operator templates for iptables text (`templates/iptables/`), parsed and validated once at
 * load so that a bad template stops the agent at start rather than half-way through an apply.
 *
 * service template: one rule per line for each port of each service.
 *   placeholders {SET} (kernel set of the family), {NAME} (logical set name), {PROTO}, {PORT}
 *   a line may start with `enforcing:` or `default:` to be written only in that mode
 *   every rule must append to BEFW (`-A BEFW ...`)
 *
 * base template: a whole `*filter` table, installed at start when `base_rules=` is set.
 *   {ICMP} becomes `icmp` or `ipv6-icmp`; it must declare `:BEFW` and jump to it from INPUT.
 *   The agent fills the BEFW chain into the same transaction, so installing the base never
 *   leaves a moment with an empty BEFW chain.
 */
import type { Mode } from '../../core/types.js';

export interface ServiceTemplateLine {
  readonly only: Mode | null;
  readonly text: string;
}

export interface FamilyLines {
  readonly 4: readonly string[];
  readonly 6: readonly string[];
}

export interface ServiceTemplate {
  readonly lines: readonly ServiceTemplateLine[];
  /** Rules of chain BEFW after the static sets, before the services (BEFW's `header`). */
  readonly head?: FamilyLines;
  /** Rules of chain BEFW after the services (BEFW's `footer`). */
  readonly tail?: FamilyLines;
  /** What the operator should know about the translation (logged at start). */
  readonly notes?: readonly string[];
}

export interface BaseTemplate {
  readonly text: string;
}

export class TemplateError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
  ) {
    super(`${file}:${line}: ${message}`);
    this.name = 'TemplateError';
  }
}

const SERVICE_PLACEHOLDERS = new Set(['SET', 'NAME', 'PROTO', 'PORT']);
const BASE_PLACEHOLDERS = new Set(['ICMP']);
// What a rule line may contain: iptables words, quoted comments, no shell or control characters.
const RULE_TEXT = /^[A-Za-z0-9 _.,:/!{}"'=+-]+$/;

function checkPlaceholders(text: string, allowed: Set<string>, file: string, line: number): void {
  for (const m of text.matchAll(/\{([^}]*)\}/g)) {
    if (!allowed.has(m[1] ?? ''))
      throw new TemplateError(file, line, `unknown placeholder {${m[1]}}; known: ${[...allowed].map((p) => `{${p}}`).join(' ')}`);
  }
}

// Commands and table switches: a rule line appends one rule to BEFW and does nothing else.
const COMMANDS = new Set(['-A', '-I', '-D', '-R', '-N', '-X', '-F', '-P', '-E', '-Z', '-L', '-S', '-t']);
const LONG_COMMANDS =
  /^--(?:append|insert|delete|replace|new-chain|delete-chain|flush|policy|rename-chain|zero|list|list-rules|table)(?:=|$)/;
// Jumping to BEFW loops; jumping to a built-in chain re-enters the ruleset from the top.
const NO_JUMP = new Set(['BEFW', 'INPUT', 'OUTPUT', 'FORWARD', 'PREROUTING', 'POSTROUTING']);

/** The words of a rule as iptables-restore splits them (quotes grouped and removed). */
function ruleWords(body: string): string[] {
  return [...body.matchAll(/"([^"]*)"|'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2] ?? m[3] ?? '');
}

/** The target of a jump word (`-j X`, `-jX`, `--jump X`, `--jump=X`, and the same for goto), or null. */
function jumpTarget(words: readonly string[], i: number): string | null {
  const w = words[i] ?? '';
  if (w === '-j' || w === '-g' || w === '--jump' || w === '--goto') return words[i + 1] ?? '';
  const attached = /^(?:-[jg](.+)|--(?:jump|goto)=(.*))$/.exec(w);
  return attached === null ? null : (attached[1] ?? attached[2] ?? '');
}

/**
 * A rule line of chain BEFW: iptables words only, one command (the leading `-A BEFW`), no table
 * switch, and never a jump back into BEFW or to a built-in chain (a loop iptables-restore refuses,
 * which would leave the node with no BEFW chain at every apply).
 */
export function checkChainRule(body: string, file: string, line: number): void {
  if (!RULE_TEXT.test(body)) throw new TemplateError(file, line, 'rule contains characters iptables rules do not need');
  const words = ruleWords(body);
  words.forEach((w, i) => {
    if (i > 0 && (COMMANDS.has(w) || LONG_COMMANDS.test(w)))
      throw new TemplateError(file, line, `"${w}": a rule line appends one rule to BEFW, with no other command or table`);
    const target = jumpTarget(words, i);
    if (target !== null && NO_JUMP.has(target.toUpperCase()))
      throw new TemplateError(file, line, `a rule may not jump back into BEFW or to a built-in chain (${target})`);
  });
}

export function parseServiceTemplate(text: string, file: string): ServiceTemplate {
  const lines: ServiceTemplateLine[] = [];
  let sawSet = false;
  text.split('\n').forEach((raw, i) => {
    const n = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    let only: Mode | null = null;
    let body = trimmed;
    const m = /^(enforcing|default):\s*(.*)$/.exec(trimmed);
    if (m) {
      only = m[1] as Mode;
      body = m[2] ?? '';
    }
    checkChainRule(body, file, n);
    if (!body.startsWith('-A BEFW ')) throw new TemplateError(file, n, 'every rule must start with "-A BEFW "');
    checkPlaceholders(body, SERVICE_PLACEHOLDERS, file, n);
    if (body.includes('{SET}')) sawSet = true;
    lines.push({ only, text: body });
  });
  if (!sawSet) throw new TemplateError(file, 0, 'no rule uses {SET}: clients would never be matched');
  return { lines };
}

export function parseBaseTemplate(text: string, file: string): BaseTemplate {
  const lines = text.split('\n');
  let table = false;
  let declares = false;
  let jumps = false;
  let commit = false;
  lines.forEach((raw, i) => {
    const n = i + 1;
    const l = raw.trim();
    if (l === '' || l.startsWith('#')) return;
    if (l.startsWith('*')) {
      if (l !== '*filter') throw new TemplateError(file, n, 'only the filter table belongs in the base template');
      table = true;
      return;
    }
    if (!table) throw new TemplateError(file, n, 'rules before "*filter"');
    if (l === 'COMMIT') {
      commit = true;
      return;
    }
    if (commit) throw new TemplateError(file, n, 'text after COMMIT');
    if (!RULE_TEXT.test(l) && !/^:[A-Za-z0-9_-]+ (ACCEPT|DROP|-) \[[0-9]+:[0-9]+\]$/.test(l)) {
      throw new TemplateError(file, n, 'line contains characters iptables rules do not need');
    }
    checkPlaceholders(l, BASE_PLACEHOLDERS, file, n);
    if (/^:BEFW\s/.test(l)) declares = true;
    // Any command on BEFW, not just -A: an `-I BEFW 1 -j ACCEPT` would sit in front of every
    // service rule the agent writes into the same transaction.
    if (/^(?:-[A-Z]|--[a-z-]+)\s+BEFW\b/.test(l))
      throw new TemplateError(file, n, "the BEFW chain is the agent's: leave its rules out of the base");
    if (/^-[AI] INPUT\b.*-j BEFW\b/.test(l)) jumps = true;
  });
  if (!table) throw new TemplateError(file, 0, 'no "*filter" table');
  if (!commit) throw new TemplateError(file, 0, 'no COMMIT');
  if (!declares) throw new TemplateError(file, 0, 'the BEFW chain is not declared (":BEFW - [0:0]")');
  if (!jumps) throw new TemplateError(file, 0, 'INPUT never jumps to BEFW ("-A INPUT -j BEFW")');
  return { text };
}

/** The service template used when none is configured; also shipped as templates/iptables/service.rules. */
export const DEFAULT_SERVICE_TEMPLATE = parseServiceTemplate(
  ['-A BEFW -p {PROTO} --dport {PORT} -m set --match-set {SET} src -j ACCEPT', 'enforcing: -A BEFW -p {PROTO} --dport {PORT} -j DROP'].join(
    '\n',
  ),
  '(built-in)',
);
