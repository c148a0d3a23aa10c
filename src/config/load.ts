/**
 * Loading what the config points at: the file itself, the ACL token and the iptables templates.
 * Each failure names the file; the token's value never appears in an error.
 */
import { readFile, stat } from 'node:fs/promises';
import {
  DEFAULT_SERVICE_TEMPLATE,
  type BaseTemplate,
  type ServiceTemplate,
  parseBaseTemplate,
  parseServiceTemplate,
} from '../core/templates.js';
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

export interface Templates {
  readonly service: ServiceTemplate;
  readonly base: BaseTemplate | null;
}

async function readTemplate(config: Config, key: string, path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw new ConfigError(config.file, null, key, `cannot read template ${path}: ${(err as Error).message}`);
  }
}

export async function loadTemplates(config: Config): Promise<Templates> {
  const service =
    config.rulesTemplate === null
      ? DEFAULT_SERVICE_TEMPLATE
      : parseServiceTemplate(await readTemplate(config, 'rules', config.rulesTemplate), config.rulesTemplate);
  const base =
    config.firewallTemplate === null
      ? null
      : parseBaseTemplate(await readTemplate(config, 'firewall', config.firewallTemplate), config.firewallTemplate);
  return { service, base };
}
