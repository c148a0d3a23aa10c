/**
 * "When did Consul last answer?", asked every few seconds with a cheap, non-blocking request to
 * the local agent. The blocking queries cannot tell: one that is parked for minutes looks the
 * same whether Consul is idle or hung (SIGSTOP, a full disk, a deadlock), so only a request that
 * completes counts as contact. One request at a time: a hung Consul costs one open connection.
 */
import type { Logger } from '../log/logger.js';
import type { AgentLife } from './agentLife.js';

/** How often the local Consul agent is asked. */
export const CONTACT_INTERVAL_MS = 5_000;
/** No contact for this long: Consul counts as not reached (three missed probes). */
export const CONTACT_STALE_MS = 3 * CONTACT_INTERVAL_MS;

export interface ContactProbeDeps {
  /** A non-blocking request to the local Consul agent (it carries the client's timeout). */
  readonly ping: () => Promise<unknown>;
  readonly life: Pick<AgentLife, 'contacted' | 'contactFailed'>;
  readonly log: Logger;
  readonly intervalMs?: number;
}

export class ConsulContactProbe {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  private failing = false;

  constructor(private readonly deps: ContactProbeDeps) {}

  start(): void {
    void this.probe();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private async probe(): Promise<void> {
    if (this.stopped) return;
    try {
      await this.deps.ping();
      if (this.stopped) return;
      this.deps.life.contacted();
      if (this.failing) this.deps.log.info({ event: 'consul-contact' }, 'the local Consul agent answers again');
      this.failing = false;
    } catch (err) {
      if (this.stopped) return;
      this.deps.life.contactFailed(err);
      if (!this.failing) {
        this.deps.log.warn({ event: 'consul-contact-failed', err: (err as Error).message }, 'the local Consul agent does not answer');
      }
      this.failing = true;
    }
    if (!this.stopped) this.timer = setTimeout(() => void this.probe(), this.deps.intervalMs ?? CONTACT_INTERVAL_MS);
  }
}
