/**
 * The agent's composition root: the only place that builds the real adapters (Consul over HTTP,
 * the firewall backend `firewall=` names from the registry in src/dataplane/registry.ts, state.bin
 * on disk) and wires them to the loop (agentLoop.ts), the service registrar and the outcome
 * recorder.
 *
 * Building takes two steps so that a reload can fail without harm: prepareAgent() does all that
 * can fail (templates, token, backend detection, adapters) without touching the kernel or
 * starting a watch; start() then enforces state.bin and starts the inputs and the timers. stop()
 * leaves the kernel exactly as it is. Signals, the control socket and metrics belong to the
 * supervisor, which replaces one agent by another on reload.
 */
import { type Config } from '../config/config.js';
import { loadTemplates, resolveToken } from '../config/load.js';
import { DEFAULT_WATCH_OPTIONS, type WatchOptions } from '../consul/blockingWatch.js';
import { createConsulApi } from '../consul/client.js';
import { type CommandRunner, createLauncherRunner, createPrewarmedRunner, processRunner } from '../dataplane/exec.js';
import { BACKENDS, type Backend } from '../dataplane/registry.js';
import { type Logger, createLogger } from '../log/logger.js';
import { createFileStateStore } from '../state/stateStore.js';
import type { GuardAnswer } from './controlProtocol.js';
import { AgentLife } from './agentLife.js';
import { AgentLoop, type LoopTiming } from './agentLoop.js';
import { ConsulContactProbe } from './consulContact.js';
import type { CheckResult } from './integrityCheck.js';
import { WatchedInputs } from './inputs/watchedInputs.js';
import type { Metrics } from './metrics.js';
import { OutcomeRecorder } from './outcomeRecorder.js';
import { Reconciler } from './reconciler.js';
import { SUSPECT_FACTOR } from './guard.js';
import { ProtectPublisher } from './protectPublisher.js';
import { ServiceRegistrar } from './serviceRegistrar.js';
import { TrapPorts } from './trapPorts.js';
import { type AgentStatus, agentStatus } from './status.js';

export interface AgentHandle {
  stop(): Promise<void>;
  readonly done: Promise<void>;
  status(): AgentStatus;
  /** Compares the kernel with the plan, members included; drift is repaired at once (before the answer when `wait`). */
  check(wait: boolean): Promise<CheckResult>;
  /** Full rebuild of every set and the chain, now. */
  rebuild(): void;
  /** `befw guard release`: the change the guard holds goes in now; a manual hold ends. */
  guardRelease(): GuardAnswer;
  /** `befw guard hold`: every removal waits until released, or for `ms`. */
  guardHold(ms: number | null): GuardAnswer;
}

export interface PreparedAgent {
  /** Enforces state.bin (or the safety net), then starts the inputs and the timers. */
  start(): Promise<AgentHandle>;
  /** Lets go of an agent that will not be started. */
  discard(): void;
}

/** Builds an agent from `config` up to the point where it would touch the kernel. */
export async function prepareAgent(
  config: Config,
  log: Logger,
  metrics: Metrics | null,
  life: AgentLife = new AgentLife(),
): Promise<PreparedAgent> {
  const templates = await loadTemplates(config);
  const token = await resolveToken(config);
  const factory = BACKENDS[config.firewall.backend];
  const runner = createToolRunner(factory.prewarm);
  let parts: AgentParts;
  try {
    const backend = await factory.prepare({ runner, ...templates, iptablesTools: config.iptablesBackend });
    log.info(
      { event: 'firewall-backend', backend: backend.name, why: config.firewall.why, description: backend.description },
      `firewall backend ${backend.name}`,
    );
    if (config.firewall.warning !== null) log.warn({ event: 'firewall-config', why: config.firewall.why }, config.firewall.warning);
    for (const note of backend.notes) log.warn({ event: 'firewall-config', backend: backend.name }, note);
    parts = assemble({ config, log, metrics, token, backend, runner, life });
  } catch (err) {
    runner.close();
    throw err;
  }
  return {
    start: () => startParts(parts),
    discard: () => {
      parts.backend.dataplane.close();
      runner.close();
    },
  };
}

export async function startAgent(
  config: Config,
  log: Logger = createLogger(config.logLevel),
  metrics: Metrics | null = null,
): Promise<AgentHandle> {
  return (await prepareAgent(config, log, metrics)).start();
}

interface ToolRunner extends CommandRunner {
  close(): void;
}

function createToolRunner(prewarm: readonly (readonly [string, readonly string[]])[]): ToolRunner {
  // Writes (with input) go to a prewarmed process: the delta's `ipset restore` or `nft -f` is the
  // one process on the propagation path. Reads (the integrity check's listings) are started by a
  // small long-lived shell: forking the agent itself every 3 s would be most of its idle CPU.
  const writer = createPrewarmedRunner(prewarm);
  const reader = createLauncherRunner(processRunner);
  return {
    run: (cmd, args, opts) => (opts?.input !== undefined ? writer.run(cmd, args, opts) : reader.run(cmd, args, opts)),
    close: () => {
      writer.close();
      reader.close();
    },
  };
}

interface Ingredients {
  readonly config: Config;
  readonly log: Logger;
  readonly metrics: Metrics | null;
  readonly token: string | null;
  readonly backend: Backend;
  readonly runner: ToolRunner;
  /** What outlives this agent: counters, uptime, readiness, Consul contact. */
  readonly life: AgentLife;
}

interface AgentParts extends Ingredients {
  readonly inputs: WatchedInputs;
  readonly registrar: ServiceRegistrar;
  readonly publisher: ProtectPublisher;
  readonly reconciler: Reconciler;
  readonly recorder: OutcomeRecorder;
  readonly loop: AgentLoop;
  readonly contact: ConsulContactProbe;
}

function watchOptions(config: Config): WatchOptions {
  return { ...DEFAULT_WATCH_OPTIONS, waitMs: config.consulWait * 1000, maxStaleMs: config.maxStale * 1000 };
}

function loopTiming(config: Config): LoopTiming {
  return {
    resyncMs: config.resyncInterval * 1000,
    integrityMs: config.integrityInterval * 1000,
    integrityFullMs: config.integrityFullInterval * 1000,
  };
}

function assemble(i: Ingredients): AgentParts {
  const { config, log } = i;
  const consul = createConsulApi({ ...config.consul, token: i.token, timeoutMs: config.consulTimeout * 1000 });
  const dataplane = i.backend.dataplane;
  const recorder = new OutcomeRecorder(i.metrics, undefined, i.life.readiness);
  const hooks = recorder.watchHooks();
  // The inputs call back only once started (by loop.start()), so `loop` and `registrar`, built
  // below, exist by then.
  const inputs = new WatchedInputs(
    consul,
    config,
    log,
    (reason) => {
      if (reason === 'files') registrar.filesChanged();
      loop.poke(reason);
    },
    watchOptions(config),
    {
      ...hooks,
      // A KV answer is a completed request: contact, like the probe's.
      onKvPrefixAnswer: (changed) => {
        i.life.contacted();
        hooks.onKvPrefixAnswer?.(changed);
      },
      onNodeServicesChange: () => registrar.recheck(),
    },
  );
  const registrar = new ServiceRegistrar({ consul, files: () => inputs.fileServices(), log });
  const publisher = new ProtectPublisher(consul, config, () => inputs.identity, log);
  const store = createFileStateStore(config.statePath);
  // nids=true: each pass's snapshot carries the trap ports (kept in state.bin with it).
  const traps = new TrapPorts({ config, store, log, now: () => Date.now() });
  const reconciler = new Reconciler({
    source: () => inputs.snapshot().then((s) => traps.attach(s)),
    requestReread: () => inputs.reread(),
    dataplane,
    store,
    config,
    log,
    now: () => Date.now(),
    // An index that went backwards makes the inputs suspect for as long as a suspect hold lasts.
    inputsSuspect: () => inputs.suspect(config.guardHold * 1000 * SUSPECT_FACTOR),
    stats: i.life.stats,
  });
  const loop = new AgentLoop({
    reconciler,
    inputs,
    verify: (opts) => dataplane.verify(opts),
    recorder,
    log,
    timing: loopTiming(config),
    onResync: () => {
      registrar.recheck();
      publisher.recheck();
    },
  });
  const contact = new ConsulContactProbe({ ping: () => consul.self(), life: i.life, log });
  return { ...i, inputs, registrar, publisher, reconciler, recorder, loop, contact };
}

function tokenSource(config: Config, token: string | null): string {
  if (token === null) return 'none';
  return config.token !== null ? 'config' : config.tokenFile !== null ? 'token_file' : 'environment';
}

async function startParts(p: AgentParts): Promise<AgentHandle> {
  const { config } = p;
  p.log.info(
    {
      event: 'start',
      config: config.file,
      consul: `${config.consul.host}:${config.consul.port}`,
      tokenSource: tokenSource(config, p.token),
      state: config.statePath,
    },
    'befw agent starting',
  );
  try {
    await p.loop.start();
  } catch (err) {
    await p.loop.stop();
    p.backend.dataplane.close();
    p.runner.close();
    throw err;
  }
  p.registrar.recheck();
  p.publisher.recheck();
  p.contact.start();
  return handleOf(p);
}

/** No successful reconcile for three resync periods (at least 15 minutes) is a problem. */
function staleAfterMs(config: Config): number {
  return Math.max(15 * 60_000, 3 * config.resyncInterval * 1000);
}

function handleOf(p: AgentParts): AgentHandle {
  let resolveDone: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  return {
    done,
    status: () =>
      agentStatus({ ...p, startedAt: p.life.startedAt, contact: p.life.contact, staleAfterMs: staleAfterMs(p.config), now: Date.now() }),
    check: (wait) => p.loop.check(wait),
    rebuild: () => p.loop.poke('rebuild'),
    guardRelease() {
      const released = p.reconciler.guard.release();
      p.loop.poke('release');
      return { ok: true, guard: p.reconciler.guardStatus, released };
    },
    guardHold(ms) {
      p.reconciler.guard.holdAll(ms);
      return { ok: true, guard: p.reconciler.guardStatus };
    },
    async stop() {
      p.contact.stop();
      await p.loop.stop();
      await p.reconciler.flushSaves();
      await p.registrar.stop();
      await p.publisher.stop();
      p.backend.dataplane.close();
      p.runner.close();
      p.log.info({ event: 'stopped' }, 'befw agent stopped; firewall left as it is');
      resolveDone();
    },
  };
}
