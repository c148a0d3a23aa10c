/**
 * Publishes this node's protected networks (management networks and `protect=`) under
 * `befw-protect/<dc>/<node>`, so the syslog reactor never bans what the nodes protect. Written
 * only when it differs from what Consul holds; read and compared at start and at every resync.
 * A failure is logged once and retried at the next resync: it never affects enforcement.
 */
import type { Config } from '../config/config.js';
import type { ConsulApi } from '../consul/client.js';
import { encodeProtected, protectKvKey } from '../core/protect.js';
import type { NodeIdentity } from '../core/types.js';
import type { Logger } from '../log/logger.js';

const IDENTITY_WAIT_MS = 2000;

export class ProtectPublisher {
  private timer: NodeJS.Timeout | null = null;
  private failing = false;
  private stopped = false;
  private running: Promise<void> | null = null;

  constructor(
    private readonly consul: Pick<ConsulApi, 'kvGet' | 'kvPut'>,
    private readonly config: Config,
    private readonly identity: () => NodeIdentity | null,
    private readonly log: Logger,
  ) {}

  /** Compares and, if needed, writes; waits for the node's identity first. */
  recheck(): void {
    if (this.stopped || this.running !== null) return;
    this.running = this.publish().finally(() => (this.running = null));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    await this.running;
  }

  private async publish(): Promise<void> {
    const node = this.identity();
    if (node === null) {
      this.timer = setTimeout(() => this.recheck(), IDENTITY_WAIT_MS);
      return;
    }
    const key = protectKvKey(node.dc, node.name);
    const value = encodeProtected([...this.config.managementNets, ...this.config.protect]);
    try {
      if ((await this.consul.kvGet(key, this.config.dc)) === value) return;
      await this.consul.kvPut(key, value, this.config.dc);
      this.log.info({ event: 'protect-published', key, value }, 'protected networks published for the reactor');
      this.failing = false;
    } catch (err) {
      if (!this.failing)
        this.log.warn({ event: 'protect-publish-failed', key, err: (err as Error).message }, 'cannot publish protected networks');
      this.failing = true;
    }
  }
}
