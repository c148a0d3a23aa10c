/**
 * Keeps the local Consul agent's registrations in line with the service files: each file is
 * registered under its name with the tags `befw`, `local` and its ports, and a `befw`+`local`
 * service whose file is gone is deregistered (core/registrations.ts decides which).
 *
 * It runs beside the reconcile loop, not inside it: a registration changes no plan (the compiler
 * reads the files themselves and ignores `local` services), so a reconcile never waits for one
 * and a registration never causes a reconcile. It acts only on a difference: a change of the
 * files that leaves the wanted registrations as they were last brought in line costs nothing,
 * and otherwise only what differs from Consul's list is (de)registered. Syncs run one at a time;
 * requests meanwhile fold into one more sync after it. A sync that Consul failed is tried again
 * after a growing delay: nothing else would ask before the next resync.
 */
import type { ConsulApi } from '../consul/client.js';
import { type Registration, planRegistrations, registrationFor } from '../core/registrations.js';
import type { FileService } from '../core/types.js';
import type { Logger } from '../log/logger.js';

export interface RegistrarDeps {
  readonly consul: Pick<ConsulApi, 'services' | 'register' | 'deregister'>;
  /** The parsed service files (rejects when the directory or a file cannot be read). */
  readonly files: () => Promise<readonly FileService[]>;
  readonly log: Logger;
}

/** `files`: only the files may have moved; `consul`: Consul's side may have moved too. */
type Trigger = 'files' | 'consul';

const RETRY_BASE_MS = 2000;
const RETRY_MAX_MS = 60_000;

function registrationsKey(wanted: readonly Registration[]): string {
  return JSON.stringify([...wanted].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)));
}

export class ServiceRegistrar {
  /** The wanted registrations last found in line with Consul (null: unknown, compare again). */
  private inLine: string | null = null;
  private running: Promise<void> | null = null;
  private next: Trigger | null = null;
  private stopped = false;
  private failures = 0;
  private retryTimer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: RegistrarDeps) {}

  /** The service files changed (or may have). */
  filesChanged(): void {
    this.request('files');
  }

  /** At start, at every resync, and when the node's services changed in Consul. */
  recheck(): void {
    this.request('consul');
  }

  /** Resolves once no sync runs or waits. */
  async idle(): Promise<void> {
    while (this.running !== null) await this.running;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.next = null;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    await this.idle();
  }

  private request(trigger: Trigger): void {
    if (this.stopped) return;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (this.running !== null) {
      this.next = this.next === 'consul' ? 'consul' : trigger;
      return;
    }
    this.running = this.drain(trigger).finally(() => (this.running = null));
  }

  private async drain(first: Trigger): Promise<void> {
    let trigger: Trigger | null = first;
    while (trigger !== null && !this.stopped) {
      this.next = null;
      const ok = await this.sync(trigger);
      this.failures = ok ? 0 : this.failures + 1;
      trigger = this.next;
    }
    if (this.failures > 0 && !this.stopped) {
      const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(this.failures - 1, 16));
      this.retryTimer = setTimeout(() => this.recheck(), delay);
    }
  }

  /** False when Consul failed a request: the agent's registrations may still differ. */
  private async sync(trigger: Trigger): Promise<boolean> {
    const { consul, log } = this.deps;
    let files: readonly FileService[];
    try {
      files = await this.deps.files();
    } catch (err) {
      // The reconcile reports the unreadable file; registering from a partial read could
      // deregister a service whose file is only unreadable for a moment.
      log.debug({ event: 'service-sync-skipped', err: (err as Error).message }, 'service files unreadable; registrations kept');
      return true;
    }
    const key = registrationsKey(files.map(registrationFor));
    if (trigger === 'files' && key === this.inLine) return true;
    let agent;
    try {
      agent = await consul.services();
    } catch (err) {
      this.inLine = null;
      log.debug({ event: 'service-sync-skipped', err: (err as Error).message }, 'cannot list the agent services; will compare again');
      return false;
    }
    const todo = planRegistrations(agent, files);
    let ok = true;
    for (const r of todo.register) ok = (await this.register(r)) && ok;
    for (const id of todo.deregister) ok = (await this.deregister(id)) && ok;
    this.inLine = ok ? key : null;
    return ok;
  }

  private async register(r: Registration): Promise<boolean> {
    try {
      await this.deps.consul.register(r);
      this.deps.log.info({ event: 'service-registered', id: r.id, port: r.port, tags: r.tags }, 'service file registered');
      return true;
    } catch (err) {
      this.deps.log.warn({ event: 'service-register-failed', id: r.id, err: (err as Error).message }, 'cannot register service file');
      return false;
    }
  }

  private async deregister(id: string): Promise<boolean> {
    try {
      await this.deps.consul.deregister(id);
      this.deps.log.info({ event: 'service-deregistered', id }, 'service file gone; deregistered');
      return true;
    } catch (err) {
      this.deps.log.warn({ event: 'service-deregister-failed', id, err: (err as Error).message }, 'cannot deregister service');
      return false;
    }
  }
}
