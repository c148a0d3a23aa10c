/**
 * The agent's side of trap ports (`nids=true`, core/trap.ts): which TCP ports this host listens
 * on (read from /proc/net/tcp and tcp6 in the agent's network namespace, as BEFW did:
 * befw/nids.go:132-175), the random draws, and the ports chosen last time (kept in state.bin with
 * the snapshot, so the traps do not move on a restart). Each pass's snapshot gets the trap ports
 * attached; a port that a service or a listener took since is replaced, the others stay.
 */
import { randomInt } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Config } from '../config/config.js';
import { collectServices } from '../core/services.js';
import { chooseTrapPorts } from '../core/trap.js';
import type { Snapshot } from '../core/types.js';
import type { Logger } from '../log/logger.js';
import type { StateStore } from '../state/stateStore.js';

/** TCP state LISTEN in /proc/net/tcp's `st` column. */
const LISTEN = '0A';
/** /proc is read at most this often: a busy host's socket table is large. */
const LISTENERS_TTL_MS = 10_000;
/** At most this much of each /proc file is read. */
const PROC_MAX_BYTES = 64 * 1024 * 1024;

/** Local ports in state LISTEN from the text of /proc/net/tcp or tcp6. */
export function listeningPorts(procText: string): Set<number> {
  const out = new Set<number>();
  const lines = procText.split('\n');
  for (let i = 1; i < lines.length; i++) {
    // "  0: 0100007F:743A 00000000:0000 0A ..."
    const f = (lines[i] as string).trim().split(/\s+/);
    if (f.length < 4 || f[3] !== LISTEN) continue;
    const local = f[1] ?? '';
    const port = parseInt(local.slice(local.lastIndexOf(':') + 1), 16);
    if (Number.isInteger(port) && port > 0 && port <= 65535) out.add(port);
  }
  return out;
}

async function readProc(path: string): Promise<string> {
  const buf = await readFile(path);
  return buf.subarray(0, PROC_MAX_BYTES).toString('latin1');
}

export interface TrapPortsDeps {
  readonly config: Pick<Config, 'nids' | 'nidsPorts' | 'setNaming'>;
  readonly store: Pick<StateStore, 'load'>;
  readonly log: Logger;
  readonly now: () => number;
  /** Reads a /proc file (tests pass text). */
  readonly read?: (path: string) => Promise<string>;
  /** An integer in [0, n) (tests pass a fixed sequence). */
  readonly draw?: (n: number) => number;
}

export class TrapPorts {
  private current: readonly number[] | null = null;
  private listeners: { at: number; ports: Set<number> } | null = null;

  constructor(private readonly deps: TrapPortsDeps) {}

  /** The ports in force (null before the first pass). */
  get ports(): readonly number[] | null {
    return this.current;
  }

  /** The snapshot with this pass's trap ports (unchanged when nids is off). */
  async attach(snapshot: Snapshot): Promise<Snapshot> {
    const { config, log } = this.deps;
    if (!config.nids) return snapshot;
    if (this.current === null) this.current = await this.saved();
    const used = await this.listening();
    const svc = collectServices(snapshot.agentServices, snapshot.fileServices, config.setNaming);
    for (const s of svc.services)
      for (const p of s.ports) if (p.proto === 'tcp') for (let port = p.from; port <= p.to && port - p.from < 65536; port++) used.add(port);
    const choice = chooseTrapPorts(config.nidsPorts, this.current, used, this.deps.draw ?? ((n) => randomInt(n)));
    if (choice.ports.join(',') !== this.current.join(','))
      log.info({ event: 'trap-ports', ports: choice.ports, previous: this.current }, 'trap ports chosen');
    this.current = choice.ports;
    return {
      ...snapshot,
      trapPorts: choice.ports,
      inputDiagnostics: choice.diagnostics.length === 0 ? snapshot.inputDiagnostics : [...snapshot.inputDiagnostics, ...choice.diagnostics],
    };
  }

  /** The trap ports of the last saved state; none when there is no valid one. */
  private async saved(): Promise<readonly number[]> {
    try {
      const r = await this.deps.store.load();
      const ports = r.kind === 'ok' ? r.state.snapshot.trapPorts : undefined;
      return Array.isArray(ports) ? ports.filter((p): p is number => typeof p === 'number') : [];
    } catch {
      return [];
    }
  }

  /** A fresh copy of the ports the host listens on (cached briefly). A failed read counts every candidate as free of listeners, and says so. */
  private async listening(): Promise<Set<number>> {
    const now = this.deps.now();
    if (this.listeners !== null && now - this.listeners.at < LISTENERS_TTL_MS) return new Set(this.listeners.ports);
    const read = this.deps.read ?? readProc;
    const ports = new Set<number>();
    for (const path of ['/proc/net/tcp', '/proc/net/tcp6']) {
      try {
        for (const p of listeningPorts(await read(path))) ports.add(p);
      } catch (err) {
        // tcp6 is absent with IPv6 disabled: not a problem. Anything else is logged.
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
          this.deps.log.warn({ event: 'trap-listeners-unreadable', path, err: (err as Error).message }, 'cannot read listening ports');
      }
    }
    this.listeners = { at: now, ports };
    return new Set(ports);
  }
}
