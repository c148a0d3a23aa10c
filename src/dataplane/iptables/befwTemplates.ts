/**
 * BEFW's `rules=` JSON templates (befw/fwiptables.go:60-70, 190-272) translated into befw's rule
 * model, so a node keeps the rules its BEFW config gave it:
 *
 *   rule_service    -> the service lines for default mode     ({NAME} -> {SET}, {PORTS} -> {PORT})
 *   rule_service_e  -> the service lines for enforcing mode
 *   header / footer -> rules of chain BEFW after the static sets / after the services (IPv4)
 *   header6/footer6 -> the same for IPv6 (BEFW does not fall back to header/footer there)
 *   static_set      -> checked: befw writes the static sets itself, so only BEFW's form translates
 *   nids_line       -> checked: befw writes its own trap rule for nids=true
 *
 * BEFW fills the templates it finds over its built-in ones (befw/fwiptables.go:329-338); a key
 * left out keeps BEFW's built-in text, which for rule_service_e refuses no one. befw fills a
 * missing rule_service_e with its own enforcing rules instead (non-clients dropped): the safe side,
 * and `befw migrate check` names the difference. Anything that cannot be translated is an error
 * naming the template, the line and the placeholder.
 */
import { goField, portVerdicts } from '../../core/migrate.js';
import {
  DEFAULT_SERVICE_TEMPLATE,
  type FamilyLines,
  type ServiceTemplate,
  type ServiceTemplateLine,
  TemplateError,
  checkChainRule,
} from './templates.js';

const KEYS = ['header', 'footer', 'rule_service', 'rule_service_e', 'static_set', 'nids_line', 'header6', 'footer6'] as const;
type Key = (typeof KEYS)[number];

/** The parts of a header or footer that BEFW needs to make a restore file and befw makes itself. */
const FRAME = [/^\*filter$/, /^:BEFW\s+(?:-|ACCEPT|DROP)\s+\[\d+:\d+\]$/, /^-F\s+BEFW$/, /^COMMIT$/];

// BEFW's static_set (befw/const.go:23), the only form whose meaning befw's own static rules keep.
const STATIC_FORMS = ['-I BEFW {PRIORITY} -m set --match-set {NAME} src -j {TARGET}', '-A BEFW -m set --match-set {NAME} src -j {TARGET}'];

/** `--set` is the old spelling of `--match-set` (BEFW's multiport built-in uses it). */
function modernSetMatch(rule: string): string {
  return rule.replace(/(-m set\s+(?:!\s+)?)--set\s/g, '$1--match-set ');
}

function ruleLines(text: string): { line: number; text: string }[] {
  return text
    .split('\n')
    .map((raw, i) => ({ line: i + 1, text: raw.trim().replace(/\s+/g, ' ') }))
    .filter((l) => l.text !== '' && !l.text.startsWith('#'));
}

function fail(file: string, key: Key, line: number, message: string): never {
  throw new TemplateError(file, line, `${key}: ${message}`);
}

function noPlaceholders(file: string, key: Key, line: number, rule: string, allowed: readonly string[]): void {
  for (const m of rule.matchAll(/\{([^}]*)\}/g)) {
    if (allowed.includes(m[1] ?? '')) continue;
    const known = allowed.length === 0 ? 'none here' : allowed.map((p) => `{${p}}`).join(' ');
    fail(file, key, line, `placeholder {${m[1]}} cannot be translated in ${key} (known: ${known})`);
  }
}

/** Header or footer: the frame BEFW needs is dropped, rules appended to BEFW are kept. */
function chainRules(file: string, key: Key, text: string): string[] {
  const out: string[] = [];
  for (const { line, text: l } of ruleLines(text)) {
    if (FRAME.some((re) => re.test(l))) continue;
    if (!l.startsWith('-A BEFW ')) {
      fail(
        file,
        key,
        line,
        `"${l}": only rules appended to chain BEFW ("-A BEFW ...") translate; put rules of other chains or tables into base_rules=`,
      );
    }
    noPlaceholders(file, key, line, l, []);
    checkChainRule(l, file, line);
    out.push(modernSetMatch(l));
  }
  return out;
}

function serviceLines(file: string, key: Key, text: string, mode: 'default' | 'enforcing'): ServiceTemplateLine[] {
  const out: ServiceTemplateLine[] = [];
  for (const { line, text: l } of ruleLines(text)) {
    if (!l.startsWith('-A BEFW ')) fail(file, key, line, `"${l}": every rule must start with "-A BEFW "`);
    noPlaceholders(file, key, line, l, ['NAME', 'PORT', 'PORTS', 'PROTO']);
    const rule = modernSetMatch(l).replaceAll('{NAME}', '{SET}').replaceAll('{PORTS}', '{PORT}');
    checkChainRule(rule, file, line);
    out.push({ only: mode, text: rule });
  }
  if (!out.some((l) => /--match-set \{SET\} src/.test(l.text)))
    fail(file, key, 0, 'no rule matches the service set ("-m set --match-set {NAME} src"): clients would never be accepted');
  return out;
}

function checkStatic(file: string, text: string): void {
  const rules = ruleLines(text).map((l) => modernSetMatch(l.text));
  if (rules.length === 1 && STATIC_FORMS.includes(rules[0] ?? '')) return;
  fail(
    file,
    'static_set',
    0,
    `befw writes the static sets itself ("-A BEFW -m set --match-set NAME src -j TARGET", in priority order); only BEFW's form "${STATIC_FORMS[0]}" translates`,
  );
}

function checkNids(file: string, text: string): void {
  for (const { line, text: l } of ruleLines(text)) {
    if (!l.startsWith('-A BEFW ')) fail(file, 'nids_line', line, `"${l}": every rule must start with "-A BEFW "`);
    noPlaceholders(file, 'nids_line', line, l, ['NIDSPORTS']);
  }
}

function fields(file: string, text: string): { values: Map<Key, string>; notes: string[] } {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new TemplateError(file, 0, `not JSON: ${(err as Error).message}`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new TemplateError(file, 0, 'not a JSON object of templates');
  const obj = json as Record<string, unknown>;
  const values = new Map<Key, string>();
  for (const key of KEYS) {
    const f = goField(obj, key);
    if (!f.found || f.value === null) continue;
    if (typeof f.value !== 'string')
      fail(file, key, 0, `must be a string of rules, not ${Array.isArray(f.value) ? 'an array' : typeof f.value}`);
    values.set(key, f.value);
  }
  const known = new Set<string>(KEYS);
  const notes = Object.keys(obj)
    .filter((k) => !known.has(k.toLowerCase()))
    .map((k) => `${file}: "${k}" is not one of BEFW's templates (${KEYS.join(', ')}); BEFW ignores it, and so does befw`);
  return { values, notes };
}

export function isBefwTemplateJson(text: string): boolean {
  return text.trimStart().startsWith('{');
}

export function translateBefwTemplates(text: string, file: string): ServiceTemplate {
  const { values, notes } = fields(file, text);
  const builtIn = (mode: 'default' | 'enforcing'): ServiceTemplateLine[] =>
    DEFAULT_SERVICE_TEMPLATE.lines.filter((l) => l.only === null || l.only === mode).map((l) => ({ only: mode, text: l.text }));
  const def = values.get('rule_service');
  const enf = values.get('rule_service_e');
  const lines = [
    ...(def === undefined ? builtIn('default') : serviceLines(file, 'rule_service', def, 'default')),
    ...(enf === undefined ? builtIn('enforcing') : serviceLines(file, 'rule_service_e', enf, 'enforcing')),
  ];
  if (enf === undefined)
    notes.push(
      `${file}: no rule_service_e: enforcing services get befw's rules (non-clients dropped), where BEFW's built-in one drops no one`,
    );
  else if (
    portVerdicts(
      lines.filter((l) => l.only === 'enforcing').map((l) => l.text),
      ['{SET}'],
    ).other === 'passed on'
  )
    notes.push(
      `${file}: rule_service_e refuses no one: enforcing services on this node are open to everyone, as under BEFW with this file`,
    );
  const staticSet = values.get('static_set');
  if (staticSet !== undefined) checkStatic(file, staticSet);
  const nids = values.get('nids_line');
  if (nids !== undefined) {
    checkNids(file, nids);
    notes.push(`${file}: nids_line is not used: befw writes its own trap rule when nids=true`);
  }
  const rules = (key: Key): readonly string[] => chainRules(file, key, values.get(key) ?? '');
  const head: FamilyLines = { 4: rules('header'), 6: rules('header6') };
  const tail: FamilyLines = { 4: rules('footer'), 6: rules('footer6') };
  for (const [key, list] of [
    ['header', head[4]],
    ['header6', head[6]],
  ] as const) {
    for (const r of list)
      if (/-j ACCEPT\b/.test(r) && !/--match-set/.test(r))
        notes.push(`${file}: ${key} accepts without a set match ("${r}"): open to every source on this node, as under BEFW`);
  }
  return { lines, head, tail, notes };
}
