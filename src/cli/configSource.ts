/**
 * Which befw.conf an operator command reads. `-c FILE` and `BEFW_CONFIG` name one explicitly, and
 * then it must exist. Without either, /etc/befw.conf is read if it exists; if it does not, the
 * commands that only talk to Consul (client, alias, allow, deny, service, purge-expired, plan,
 * show) run with the defaults, against the local agent at 127.0.0.1:8500 (token from
 * BEFW_CONSUL_TOKEN or CONSUL_HTTP_TOKEN), and say so once on stderr. A laptop or a bastion
 * with a local Consul agent then needs no file to grant access.
 *
 * The agent never takes this path (`befw agent` keeps its -c default and fails without the
 * file): a daemon that enforces a firewall should not run on guesses about its datacenter,
 * management networks or state file.
 */
import { stat } from 'node:fs/promises';
import { type Config, parseConfig } from '../config/config.js';
import { loadConfig } from '../config/load.js';
import { wantsJson } from './errors.js';

export const SYSTEM_CONFIG_PATH = '/etc/befw.conf';

/** What `-c` says in --help for commands that can run without a file. */
export const CONFIG_OPTION_HELP = `befw.conf to use (default: $BEFW_CONFIG, else ${SYSTEM_CONFIG_PATH}; without either file: the local Consul agent with defaults)`;

export interface ConfigSourceEnv {
  readonly env: NodeJS.ProcessEnv;
  /** Where the one "using defaults" note goes (stderr). */
  readonly note: (line: string) => void;
  /** Whether a file exists (tests pass their own). */
  readonly exists: (path: string) => Promise<boolean>;
}

async function fileExists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (err) {
    // Only "not there" means defaults; a file we may not read is an error loadConfig reports.
    return (err as NodeJS.ErrnoException).code !== 'ENOENT';
  }
}

const REAL: ConfigSourceEnv = {
  env: process.env,
  // Under --json stderr carries exactly one JSON object on failure, and nothing else.
  note: (line) => {
    if (!wantsJson(process.argv.slice(2))) process.stderr.write(`${line}\n`);
  },
  exists: fileExists,
};

const noted = new WeakSet<ConfigSourceEnv>();

/** The config for an operator command: `-c` or BEFW_CONFIG if given (must exist), else /etc/befw.conf, else defaults. */
export async function loadCliConfig(explicit: string | undefined, src: ConfigSourceEnv = REAL): Promise<Config> {
  if (explicit !== undefined) return loadConfig(explicit);
  const fromEnv = src.env.BEFW_CONFIG;
  if (fromEnv !== undefined && fromEnv !== '') return loadConfig(fromEnv);
  if (await src.exists(SYSTEM_CONFIG_PATH)) return loadConfig(SYSTEM_CONFIG_PATH);
  const config = parseConfig('', SYSTEM_CONFIG_PATH);
  // Once per process: a command that opens Consul twice (--node's lookup, then the write) says it once.
  if (noted.has(src)) return config;
  noted.add(src);
  src.note(
    `befw: note: no ${SYSTEM_CONFIG_PATH} (and no -c or BEFW_CONFIG): using the local Consul agent at ${config.consul.host}:${config.consul.port} with default settings`,
  );
  return config;
}
