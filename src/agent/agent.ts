/**
 * The agent's composition root and loop. Builds the real adapters (Consul over HTTP, processes
 * for ipset/iptables, state.bin on disk) and runs reconciles one at a time, triggered by:
 *   - start (after enforcing state.bin),
 *   - the poll interval (re-read Consul),
 *   - the next expiry in the enforced plan (so an entry leaves at its second),
 *   - SIGHUP (reconcile now).
 * SIGTERM/SIGINT stop the loop and leave the kernel exactly as it is.
 */
import type { Config } from '../config/config.js';
import { loadTemplates, resolveToken } from '../config/load.js';
import { createConsulApi } from '../consul/client.js';
import { createDataplane } from '../dataplane/driver.js';
import { processRunner } from '../dataplane/exec.js';
import { createFileStateStore } from '../state/stateStore.js';
import { type Logger, createLogger } from './logger.js';
import { Reconciler } from './reconciler.js';

/** Wake slightly after the expiry second so that the compile sees the entry as expired. */
const EXPIRY_SLACK_MS = 5;
/** Longest single timer: also bounds how stale a wrongly computed expiry could get. */
const MAX_SLEEP_MS = 60_000;

export interface AgentHandle {
  stop(): Promise<void>;
  readonly done: Promise<void>;
}

export async function startAgent(config: Config, log: Logger = createLogger(config.logLevel)): Promise<AgentHandle> {
  const templates = await loadTemplates(config);
  const token = await resolveToken(config);
  const consul = createConsulApi({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000 });
  const reconciler = new Reconciler({
    consul,
    dataplane: createDataplane(processRunner),
    store: createFileStateStore(config.statePath),
    config,
    templates,
    log,
    now: () => Date.now(),
  });

  log.info(
    { event: 'start', config: config.file, consul: `${config.consul.host}:${config.consul.port}`, tokenSource: token === null ? 'none' : config.token !== null ? 'config' : config.tokenFile !== null ? 'token_file' : 'environment', state: config.statePath },
    'befw agent starting',
  );

  let stopping = false;
  let timer: NodeJS.Timeout | null = null;
  let wake: (() => void) | null = null;
  const sleep = (ms: number): Promise<void> =>
    new Promise((resolve) => {
      wake = resolve;
      timer = setTimeout(resolve, ms);
    });
  const interrupt = (): void => {
    if (timer !== null) clearTimeout(timer);
    wake?.();
  };

  const onHup = (): void => {
    log.info({ event: 'sighup' }, 'reconcile requested');
    interrupt();
  };
  process.on('SIGHUP', onHup);

  const done = (async () => {
    await reconciler.enforceSaved();
    let reason = 'start';
    while (!stopping) {
      const outcome = await reconciler.reconcile(reason);
      if (outcome.kind === 'apply-failed') log.warn({ event: 'retry-scheduled' }, 'will retry on the next pass');
      if (stopping) break;
      const now = Date.now();
      let delay = config.pollInterval * 1000;
      reason = 'poll';
      const next = reconciler.nextExpiry;
      if (next !== null && next - now + EXPIRY_SLACK_MS < delay) {
        delay = Math.max(0, next - now + EXPIRY_SLACK_MS);
        reason = 'expiry';
      }
      await sleep(Math.min(delay, MAX_SLEEP_MS));
    }
    process.off('SIGHUP', onHup);
    log.info({ event: 'stopped' }, 'befw agent stopped; firewall left as it is');
  })();

  return {
    done,
    async stop() {
      stopping = true;
      interrupt();
      await done;
    },
  };
}
