/**
 * `befw responder`: the composition root. Builds the Consul KV client (token from a file or the
 * environment), the protection check, one runner per configured action (from the registry,
 * registry.ts), and `concurrency` workers per beanstalkd server. SIGTERM stops reserving; a job
 * being acted on is finished first.
 */
import type { Logger } from 'pino';
import { tubeFor } from '../queue/job.js';
import type { ReactorConfig, ResponderConfig } from '../config/reactorConfig.js';
import type { ActionRunner } from './actionTypes.js';
import { createReactorKv, resolveConsulToken } from './consulKv.js';
import { Protection } from './protection.js';
import { type ActionContext, runnerFor } from './registry.js';
import { VyosClient } from './vyosClient.js';
import type { VyosFleet } from './vyosActions.js';
import { ResponderWorker, newWorkerCounters } from './worker.js';

export interface RunningResponder {
  stop(): Promise<void>;
  readonly done: Promise<void>;
}

export async function startResponder(config: ReactorConfig, log: Logger): Promise<RunningResponder> {
  const rc = config.responder as ResponderConfig;
  if (rc.actions.size === 0) throw new Error(`${config.file}: /responder/actions names no event: nothing to respond to`);
  const token = await resolveConsulToken(rc.consul.tokenFile);
  const kv = createReactorKv({
    host: rc.consul.host,
    port: rc.consul.port,
    secure: rc.consul.secure,
    token,
    timeoutMs: rc.consul.timeoutMs,
  });
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
  const protection = new Protection(kv, config.ignore, rc.managementNets);

  // Keys are read once per device, at first use (a missing key file fails that device's jobs, not the start).
  const clients = new Map<string, Promise<VyosClient>>();
  const fleet: VyosFleet = {
    devices: rc.devices,
    client(name) {
      let c = clients.get(name);
      if (c === undefined) {
        const device = rc.devices.get(name);
        if (device === undefined) return Promise.reject(new Error(`no device ${name}`));
        c = VyosClient.open(device);
        c.catch(() => clients.delete(name));
        clients.set(name, c);
      }
      return c;
    },
  };
  const isProtected = async (address: string): Promise<string | null> =>
    protection.reason(address, { dc: await localDc(), node: null }, Date.now());

  const ctx: ActionContext = { kv, protection, stateKvPrefix: rc.stateKvPrefix, localDc, now: Date.now, fleet, isProtected };
  const actions = new Map<string, ActionRunner[]>([...rc.actions].map(([event, list]) => [event, list.map((a) => runnerFor(a, ctx))]));
  const tubes = new Map([...actions.keys()].map((e) => [tubeFor(config.queue.tubePrefix, e), e]));
  const counters = newWorkerCounters();
  const workers: ResponderWorker[] = [];
  for (const server of config.queue.servers) {
    for (let i = 0; i < rc.concurrency; i++) {
      workers.push(
        new ResponderWorker(
          server,
          { tubes, actions, policy: config.queue, ttrSec: config.queue.ttrSec, connectTimeoutMs: config.queue.connectTimeoutMs },
          log,
          counters,
        ),
      );
    }
  }
  const running = workers.map((w) => w.run());
  log.info(
    {
      event: 'responder-ready',
      tubes: [...tubes.keys()],
      servers: config.queue.servers.map((s) => s.text),
      workers: workers.length,
      actions: Object.fromEntries([...rc.actions].map(([e, l]) => [e, l.map((a) => a.type)])),
    },
    'responder ready',
  );
  const done = Promise.all(running).then(() => {
    log.info({ event: 'responder-stopped', ...counters }, 'responder stopped');
  });
  return {
    stop: async () => {
      for (const w of workers) w.stop();
      await done;
    },
    done,
  };
}
