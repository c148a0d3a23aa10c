/**
 * The running agent, and its replacement on reload.
 *
 * A reload builds the new agent before it touches the old one: the config is read and checked,
 * then everything that can fail (templates, token, backend detection, adapters) is prepared while
 * the old agent goes on enforcing. Only then is the old agent stopped and the new one started.
 * A failure up to that point leaves the old agent running; it is logged (`reload-rejected`) and
 * answered, so `befw reload` can say why. Starting can still fail after the old agent stopped
 * (reading state.bin); then an agent is started again from the config that ran before.
 *
 * Reloads run one at a time, and reload() never rejects: SIGHUP has nobody to report to.
 */
import type { Config } from '../config/config.js';
import type { Logger } from '../log/logger.js';
import type { AgentHandle, PreparedAgent } from './agent.js';
import type { LastReload, ReloadAnswer } from './controlProtocol.js';

export interface AgentSlotDeps {
  readonly configPath: string;
  readonly loadConfig: (path: string) => Promise<Config>;
  readonly prepare: (config: Config) => Promise<PreparedAgent>;
  readonly log: Logger;
  /** Just before the old agent stops (systemd: RELOADING=1). */
  readonly onSwap?: () => void;
  /** A new agent runs (systemd: READY=1 once it is ready). */
  readonly onSwapped?: (agent: AgentHandle) => void;
  /** The old agent stopped and no agent could be started in its place. */
  readonly onFatal?: (err: unknown) => void;
  readonly now?: () => number;
}

function reasonOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Settings the running process keeps until a restart. */
function restartOnly(a: Config, b: Config): boolean {
  return a.socketPath !== b.socketPath || a.befwApi !== b.befwApi || JSON.stringify(a.metrics) !== JSON.stringify(b.metrics);
}

export class AgentSlot {
  private last: LastReload | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly deps: AgentSlotDeps,
    private running: { config: Config; agent: AgentHandle },
  ) {}

  /** Starts the first agent; its failure is the daemon's failure to start. */
  static async open(deps: AgentSlotDeps, config: Config): Promise<AgentSlot> {
    const agent = await (await deps.prepare(config)).start();
    return new AgentSlot(deps, { config, agent });
  }

  get agent(): AgentHandle {
    return this.running.agent;
  }

  get config(): Config {
    return this.running.config;
  }

  get lastReload(): LastReload | null {
    return this.last;
  }

  reload(): Promise<ReloadAnswer> {
    const answer = this.queue
      .then(() => this.reloadNow())
      .catch((err: unknown) => this.rejected(err, 'reload failed; the agent in place goes on'));
    this.queue = answer;
    return answer;
  }

  /** Stops the agent once a reload in progress is done. */
  async stop(): Promise<void> {
    await this.queue;
    await this.running.agent.stop();
  }

  private async reloadNow(): Promise<ReloadAnswer> {
    let config: Config;
    let prepared: PreparedAgent;
    try {
      config = await this.deps.loadConfig(this.deps.configPath);
      prepared = await this.deps.prepare(config);
    } catch (err) {
      return this.rejected(err, 'new config rejected; still running with the old one');
    }
    try {
      await this.swap(config, prepared);
    } catch (err) {
      return this.rejected(err, 'the new agent did not start; running with the old config again');
    }
    this.last = { at: this.now(), ok: true };
    return { ok: true, config: this.deps.configPath };
  }

  private async swap(config: Config, prepared: PreparedAgent): Promise<void> {
    const { log } = this.deps;
    const old = this.running;
    this.deps.onSwap?.();
    log.info({ event: 'reload', config: this.deps.configPath }, 'reloading');
    if (restartOnly(old.config, config)) log.warn({ event: 'reload-partial' }, 'socket and metrics settings change at the next restart');
    try {
      await old.agent.stop();
    } catch (err) {
      prepared.discard();
      throw err;
    }
    log.level = config.logLevel;
    try {
      this.running = { config, agent: await prepared.start() };
    } catch (err) {
      log.level = old.config.logLevel;
      await this.restart(old.config);
      throw err;
    }
    this.deps.onSwapped?.(this.running.agent);
  }

  /** After a failed start: an agent from the config that ran before, or none at all. */
  private async restart(config: Config): Promise<void> {
    try {
      this.running = { config, agent: await (await this.deps.prepare(config)).start() };
      this.deps.onSwapped?.(this.running.agent);
    } catch (err) {
      this.deps.log.fatal({ event: 'reload-failed', err: reasonOf(err) }, 'no agent could be started; the firewall stays as it is');
      this.deps.onFatal?.(err);
    }
  }

  private rejected(err: unknown, message: string): ReloadAnswer {
    const error = reasonOf(err);
    this.deps.log.error({ event: 'reload-rejected', err: error }, message);
    this.last = { at: this.now(), ok: false, error };
    return { ok: false, error, config: this.deps.configPath };
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }
}
