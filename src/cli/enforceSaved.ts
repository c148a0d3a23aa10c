/**
 * `befw enforce-saved`: put state.bin into the kernel and exit, without Consul. befw-early.service
 * runs it at boot before the network is up, so a node never has a window with no rules; the agent
 * (befw.service, after the network and Consul) takes over from there. Exit 1 when nothing could
 * be enforced, so the unit shows it.
 */
import type { Command } from 'commander';
import { enforceSavedOnce } from '../agent/earlyEnforce.js';
import { DEFAULT_CONFIG_PATH } from '../config/config.js';
import { loadConfig } from '../config/load.js';
import { createLogger } from '../log/logger.js';

export function registerEnforceSavedCommand(program: Command): void {
  program
    .command('enforce-saved')
    .description(
      'enforce the saved state (state.bin) once and exit, without contacting Consul (boot, before the network: befw-early.service); no valid state: the safety net',
    )
    .option('-c, --config <file>', 'befw.conf to use', DEFAULT_CONFIG_PATH)
    .option('--json', 'print the result as JSON')
    .action(async (opts: { config: string; json?: boolean }) => {
      const config = await loadConfig(opts.config);
      const log = createLogger(config.logLevel, process.stderr);
      const r = await enforceSavedOnce(config, log);
      process.stdout.write(
        `${opts.json === true ? JSON.stringify(r) : `${r.kind}: ${r.detail}${r.fingerprint === null ? '' : ` (${r.fingerprint})`}`}\n`,
      );
      if (r.kind === 'failed') process.exitCode = 1;
    });
}
