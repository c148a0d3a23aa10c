/**
 * `befw responder`: the composition root. Builds the Consul KV client (token from a file or the
 * environment), the job keys, the protected list and the protection check, the ban budget, one
 * runner per configured action (from the registry, registry.ts), `concurrency` workers per
 * beanstalkd server, and the keeper of VyOS address-group entries. SIGTERM stops reserving; a
 * job being acted on is finished first.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { loadJobKeys } from '../queue/jobAuth.js';
import { ProtectedList } from './protectedList.js';
import { GroupKeeper } from './vyosGroups.js';
import { tubeFor } from '../queue/job.js';
import { type ReactorConfig, type ResponderConfig, configuredProtection } from '../config/reactorConfig.js';
import type { ActionRunner } from './actionTypes.js';
import { type ReactorKv, createReactorKv, resolveConsulToken } from './consulKv.js';
import { Protection } from './protection.js';
import { type ActionContext, runnerFor } from './registry.js';
import { createFleet } from './vyosActions.js';
import { BanBudget, ResponderWorker, newWorkerCounters } from './worker.js';

export interface RunningResponder {
  readonly protectedList: ProtectedList;
  stop(): Promise<void>;
  readonly done: Promise<void>;
}

/** The responder's Consul KV client (token from its file or the environment). */
export async function connectKv(rc: ResponderConfig): Promise<ReactorKv> {
  const token = await resolveConsulToken(rc.consul.tokenFile);
  return createReactorKv({ host: rc.consul.host, port: rc.consul.port, secure: rc.consul.secure, token, timeoutMs: rc.consul.timeoutMs });
}

export async function startResponder(config: ReactorConfig, log: Logger): Promise<RunningResponder> {
  const rc = config.responder as ResponderConfig;
  if (rc.actions.size === 0) throw new Error(`${config.file}: /responder/actions names no event: nothing to respond to`);
  for (const w of config.warnings) log.warn({ event: 'config-warning', warning: w }, w);
  const keys = await loadJobKeys(config.queue.hmacKeyFile ?? '');
  const kv = await connectKv(rc);
  // The datacenter whose rules_allow protects, and where dc-scoped bans go when they name none:
  // the configured one, else the local agent's, asked once it is first needed (and until it answers).
  let dcAnswer: Promise<string> | null = null;
  const localDc = (): Promise<string> => {
    if (rc.consul.dc !== null) return Promise.resolve(rc.consul.dc);
    dcAnswer ??= kv.self().then(
      (s) => s.datacenter,
      (err: unknown) => {
        dcAnswer = null;
        throw err;
      },
    );
    return dcAnswer;
  };
  const protectedList = new ProtectedList(kv, configuredProtection(config), rc.protectedListRefreshMs, log);
  const protection = new Protection(kv, protectedList);

  const fleet = createFleet(rc.devices);
  const isProtected = async (address: string): Promise<string | null> =>
    protection.reason(address, { dc: await localDc(), node: null }, Date.now());

  const ctx: ActionContext = { kv, protection, stateKvPrefix: rc.stateKvPrefix, localDc, now: Date.now, fleet, isProtected };
  const actions = new Map<string, ActionRunner[]>([...rc.actions].map(([event, list]) => [event, list.map((a) => runnerFor(a, ctx))]));
  const tubes = new Map([...actions.keys()].map((e) => [tubeFor(config.queue.tubePrefix, e), e]));
  const counters = newWorkerCounters();
  const budget = new BanBudget(rc.banBudgetPerMinute);
  const responderId = `${hostname()}:${process.pid}`;
  const workers: ResponderWorker[] = [];
  for (const server of config.queue.servers) {
    for (let i = 0; i < rc.concurrency; i++) {
      workers.push(
        new ResponderWorker(
          server,
          {
            tubes,
            actions,
            policy: config.queue,
            ttrSec: config.queue.ttrSec,
            connectTimeoutMs: config.queue.connectTimeoutMs,
            keys,
            guard: { isProtected, budget },
            responderId,
          },
          log,
          counters,
        ),
      );
    }
  }
  const statsTimer = setInterval(
    () => log.info({ event: 'stats', ...counters, protectedList: protectedList.counters }, 'responder stats'),
    60_000,
  );
  statsTimer.unref();
  const keeper = new GroupKeeper(kv, fleet, rc.stateKvPrefix, rc.vyosSweepMs, log);
  keeper.start();
  const running = workers.map((w) => w.run());
  log.info(
    {
      event: 'responder-ready',
      tubes: [...tubes.keys()],
      servers: config.queue.servers.map((s) => s.text),
      workers: workers.length,
      actions: Object.fromEntries([...rc.actions].map(([e, l]) => [e, l.map((a) => a.type)])),
      banBudgetPerMinute: rc.banBudgetPerMinute,
    },
    'responder ready',
  );
  const done = Promise.all(running).then(async () => {
    clearInterval(statsTimer);
    await keeper.stop();
    log.info({ event: 'responder-stopped', ...counters, protectedList: protectedList.counters }, 'responder stopped');
  });
  return {
    protectedList,
    stop: async () => {
      for (const w of workers) w.stop();
      await done;
    },
    done,
  };
}
