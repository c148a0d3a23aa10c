/**
 * Loading what the config points at: the file itself, the ACL token and the template files
 * (`rules=`, `base_rules=`). Templates are read here and parsed by the backend they belong to
 * (src/dataplane/iptables/templates.ts). Each failure names the file; the token's value never
 * appears in an error.
 */
import { readFile, stat } from 'node:fs/promises';
import { type Config, ConfigError, parseConfig } from './config.js';

export async function loadConfig(path: string): Promise<Config> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(path, null, null, `cannot read: ${(err as Error).message}`);
  }
  return parseConfig(text, path);
}

/** Environment variables consulted, in order, when the config names no token. */
export const TOKEN_ENV = ['BEFW_CONSUL_TOKEN', 'CONSUL_HTTP_TOKEN'] as const;

export async function resolveToken(config: Config, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  if (config.token !== null) return config.token;
  if (config.tokenFile !== null) {
    const path = config.tokenFile;
    let st;
    try {
      st = await stat(path);
    } catch (err) {
      throw new ConfigError(config.file, null, 'token_file', `cannot read ${path}: ${(err as Error).message}`);
    }
    if ((st.mode & 0o077) !== 0)
      throw new ConfigError(config.file, null, 'token_file', `${path} is readable by group or others; chmod 600 it`);
    const token = (await readFile(path, 'utf8')).trim();
    if (!/^[A-Za-z0-9._-]{1,256}$/.test(token)) throw new ConfigError(config.file, null, 'token_file', `${path} does not hold a token`);
    return token;
  }
  for (const name of TOKEN_ENV) {
    const v = env[name];
    if (v !== undefined && v !== '') return v;
  }
  return null;
}

export interface TemplateFile {
  readonly file: string;
  readonly text: string;
}

/** The template files the config names, as read (null: not configured). */
export interface Templates {
  /** `rules=`: the per-service rule template. */
  readonly rules: TemplateFile | null;
  /** `base_rules=`: the base ruleset. */
  readonly base: TemplateFile | null;
}

async function readTemplate(config: Config, key: string, path: string): Promise<TemplateFile> {
  try {
    return { file: path, text: await readFile(path, 'utf8') };
  } catch (err) {
    throw new ConfigError(config.file, null, key, `cannot read template ${path}: ${(err as Error).message}`);
  }
}

export async function loadTemplates(config: Config): Promise<Templates> {
  return {
    rules: config.rulesTemplate === null ? null : await readTemplate(config, 'rules', config.rulesTemplate),
    base: config.baseRules === null ? null : await readTemplate(config, 'base_rules', config.baseRules),
  };
}
