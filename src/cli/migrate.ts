/**
 * `befw migrate check`: reads what the node's BEFW and befw would both read (the config file, the
 * service and `.ipset` files, BEFW's rule templates, the local Consul agent's services and the
 * befw/ tree) and prints every entry the two enforce differently, with the fix for each
 * (core/migrate.ts decides). Exit 1 when something differs.
 *
 * The config is read as leniently as the check needs: a line befw refuses is itself a difference,
 * and the check goes on without it, so a BEFW config can be checked before it is edited.
 */
import { readFile, readdir } from 'node:fs/promises';
import { dirname, isAbsolute, join } from 'node:path';
import type { Command } from 'commander';
import { readSnapshot } from '../agent/inputs/snapshot.js';
import { compileOptions } from '../agent/reconciler.js';
import { type Config, ConfigError, DEFAULT_CONFIG_PATH, parseConfig } from '../config/config.js';
import { loadTemplates, resolveToken } from '../config/load.js';
import { createConsulApi } from '../consul/client.js';
import { compile } from '../core/compile.js';
import {
  type BefwRelease,
  type ChainRulesByFamily,
  type Difference,
  type MigrateReport,
  type RefusedConfigLine,
  type ServiceRuleLine,
  type TextFile,
  migrateCheck,
  readLegacyConfig,
} from '../core/migrate.js';
import { isBefwTemplateJson, translateBefwTemplates } from '../dataplane/iptables/befwTemplates.js';
import { DEFAULT_SERVICE_TEMPLATE, parseServiceTemplate } from '../dataplane/iptables/templates.js';
import { kernelNamesFor } from '../dataplane/iptables/setNames.js';
import { UsageError } from './access/errors.js';

/** BEFW reads its rule templates from here when the config names none (befw/const.go:21). */
const LEGACY_RULES_PATH = '/etc/befw.rules.json';
const MAX_FILE_BYTES = 1024 * 1024;

interface CheckOpts {
  readonly config: string;
  readonly release?: string;
  readonly json?: boolean;
}

/** parseConfig, leaving out each line it refuses (each one reported); a problem without a line stops. */
export function parseConfigLeniently(text: string, file: string): { config: Config; refused: RefusedConfigLine[] } {
  const lines = text.split('\n');
  const refused: RefusedConfigLine[] = [];
  for (let tries = 0; tries <= lines.length; tries++) {
    try {
      return { config: parseConfig(lines.join('\n'), file), refused };
    } catch (err) {
      if (!(err instanceof ConfigError) || err.line === null) throw err;
      const raw = lines[err.line - 1] ?? '';
      const eq = raw.indexOf('=');
      refused.push({
        line: err.line,
        key: eq < 0 ? raw.trim() : raw.slice(0, eq).trim(),
        value: eq < 0 ? '' : raw.slice(eq + 1).trim(),
        reason: err.reason,
      });
      lines[err.line - 1] = '';
    }
  }
  throw new ConfigError(file, null, null, 'too many refused lines');
}

/** The line of the config that sets `key` (null: none). */
function lineOfKey(text: string | null, key: string): number | null {
  const i = (text ?? '').split('\n').findIndex((l) => l.trim().startsWith(`${key}=`) || l.trim().startsWith(`${key} =`));
  return i < 0 ? null : i + 1;
}

async function readSmall(path: string): Promise<string | null> {
  try {
    const text = await readFile(path, 'utf8');
    return text.length > MAX_FILE_BYTES ? null : text;
  } catch {
    return null;
  }
}

async function readServiceTexts(dir: string): Promise<TextFile[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.endsWith('.json')).sort();
  } catch {
    return [];
  }
  const out: TextFile[] = [];
  for (const n of names) {
    const file = join(dir, n);
    const text = await readSmall(file);
    if (text !== null) out.push({ file, text });
  }
  return out;
}

interface OurRules {
  readonly lines: ServiceRuleLine[];
  readonly chainRules?: { readonly head: ChainRulesByFamily; readonly tail: ChainRulesByFamily };
}

/** befw's rule template: its `rules=` as the agent reads it (a refusal is reported), else the built-in one. */
async function serviceRules(config: Config, refused: RefusedConfigLine[]): Promise<OurRules> {
  const builtIn = { lines: [...DEFAULT_SERVICE_TEMPLATE.lines] };
  if (config.rulesTemplate === null) return builtIn;
  try {
    const rules = (await loadTemplates({ ...config, baseRules: null })).rules;
    if (rules === null) return builtIn;
    const t = isBefwTemplateJson(rules.text)
      ? translateBefwTemplates(rules.text, rules.file)
      : parseServiceTemplate(rules.text, rules.file);
    const empty = { 4: [], 6: [] };
    return { lines: [...t.lines], chainRules: { head: t.head ?? empty, tail: t.tail ?? empty } };
  } catch (err) {
    const reason = err instanceof ConfigError ? err.reason : err instanceof Error ? err.message : String(err);
    refused.push({
      line: lineOfKey(await readSmall(config.file), 'rules'),
      key: 'rules',
      value: config.rulesTemplate,
      reason,
    });
    return builtIn;
  }
}

function release(text: string | undefined, config: Config): BefwRelease {
  if (text === undefined) return config.setNaming;
  if (text === 'name-port' || text === 'id-first-tag') return text;
  throw new UsageError(`--release "${text}"`, 'expected name-port (BEFW up to 0.1.12) or id-first-tag (later BEFW)');
}

export async function runMigrateCheck(opts: CheckOpts): Promise<MigrateReport> {
  let text: string;
  try {
    text = await readFile(opts.config, 'utf8');
  } catch (err) {
    throw new ConfigError(opts.config, null, null, `cannot read: ${(err as Error).message}`);
  }
  const { config, refused } = parseConfigLeniently(text, opts.config);
  const rel = release(opts.release, config);
  const token = await resolveToken(config);
  const consul = createConsulApi({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000 });
  const [snapshot, self, serviceFiles, rules] = await Promise.all([
    readSnapshot(consul, config),
    consul.self(),
    readServiceTexts(config.servicesDir),
    serviceRules(config, refused),
  ]);
  // BEFW reads `rules=` relative to its working directory; befw reads every path next to the config.
  const legacyRulesValue = readLegacyConfig(text).kv.get('rules');
  const legacyRulesPath =
    legacyRulesValue === undefined
      ? LEGACY_RULES_PATH
      : isAbsolute(legacyRulesValue)
        ? legacyRulesValue
        : join(dirname(opts.config), legacyRulesValue);
  const legacyText = await readSmall(legacyRulesPath);
  const options = compileOptions(config);
  const now = Date.now();
  const names = config.firewall.backend === 'iptables' ? kernelNamesFor(compile(snapshot, options, now)) : null;
  return migrateCheck(
    {
      snapshot,
      options,
      configText: text,
      refusedConfigLines: refused,
      serviceFiles,
      legacyRules: legacyText === null ? null : { file: legacyRulesPath, text: legacyText },
      serviceRules: rules.lines,
      ...(rules.chainRules === undefined ? {} : { chainRules: rules.chainRules }),
      agentDatacenter: self.datacenter,
      release: rel,
      ...(names === null ? {} : { kernelName: (l: string) => names.set(l, 'inet') }),
    },
    now,
  );
}

function formatDifference(d: Difference): string {
  return [
    `[${d.kind}] ${d.subject}${d.deliberate ? '  (befw differs on purpose)' : ''}`,
    `  befw:  ${d.befw}`,
    `  BEFW:  ${d.legacy}  [${d.source}]`,
    `  fix:   ${d.fix}`,
  ].join('\n');
}

export function formatMigrateReport(r: MigrateReport): string {
  const out = [
    `befw migrate check: node ${r.node.name} (${r.node.dc}), against BEFW ${r.release === 'id-first-tag' ? 'id-first-tag (later releases, HEAD)' : 'name-port (up to 0.1.12)'}`,
    `checked ${r.checked.kvEntries} KV entries, ${r.checked.services} services, ${r.checked.serviceFiles} service files, ${r.checked.ipsetFiles} .ipset files`,
    '',
  ];
  if (r.differences.length === 0) out.push('No differences: BEFW and befw enforce the same on this node.');
  else {
    out.push(`${r.differences.length} difference(s):`, '');
    for (const d of r.differences) out.push(formatDifference(d), '');
  }
  if (r.notes.length > 0) out.push('Notes (not differences in what is enforced now):', ...r.notes.map((n) => `  - ${n}`));
  return out.join('\n').trimEnd();
}

export function registerMigrateCommands(program: Command): void {
  const migrate = program.command('migrate').description('moving a node from BEFW to befw');
  migrate
    .command('check')
    .description(
      'list every entry BEFW and befw would enforce differently on this node, with the fix for each; exit 1 when something differs',
    )
    .option('-c, --config <file>', "befw.conf to use (BEFW's own config works: lines befw refuses are reported)", DEFAULT_CONFIG_PATH)
    .option(
      '--release <naming>',
      'the BEFW release the fleet runs: name-port (up to 0.1.12) or id-first-tag (later); default: set_naming of the config',
    )
    .option('--json', 'print the report as JSON')
    .action(async (opts: CheckOpts) => {
      const report = await runMigrateCheck(opts);
      process.stdout.write(`${opts.json === true ? JSON.stringify(report, null, 2) : formatMigrateReport(report)}\n`);
      if (report.differences.length > 0) process.exitCode = 1;
    });
}
