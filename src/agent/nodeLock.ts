/**
 * One agent per node. Two agents on one network namespace would fight over the same chain and
 * sets, each repairing the other's "drift". The lock is taken before anything touches the
 * kernel: a second agent exits with one line naming the running one and changes nothing.
 *
 * The lock is a file named after the network namespace (its inode in /proc/self/ns/net: the
 * kernel's identity of "this node's firewall"), created exclusively with the owner's pid in it. A
 * lock whose pid is gone, or now belongs to a process in another namespace, is stale and taken
 * over: a crashed agent never blocks the next start.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import { mkdir, open, readFile, unlink } from 'node:fs/promises';
import { join } from 'node:path';

export const LOCK_DIR = '/run/befw';

export class NodeLockError extends Error {
  constructor(
    readonly holderPid: number,
    message: string,
  ) {
    super(message);
    this.name = 'NodeLockError';
  }
}

export interface NodeLock {
  readonly path: string;
  release(): Promise<void>;
}

function netnsOf(pid: number | 'self'): string | null {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return null;
  }
}

/** The running holder's pid and command line, or null when the lock is stale. */
function liveHolder(pid: number, ns: string | null): string | null {
  if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) return null;
  if (netnsOf(pid) !== ns) return null;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ');
    // A pid reused by some other program is no agent.
    return cmd.includes('befw') ? cmd : null;
  } catch {
    return null;
  }
}

export async function takeNodeLock(dir = LOCK_DIR): Promise<NodeLock> {
  const ns = netnsOf('self');
  const id = /\[([0-9]+)\]/.exec(ns ?? '')?.[1] ?? 'host';
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, `agent-net${id}.lock`);
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fh = await open(path, 'wx', 0o600);
      await fh.writeFile(`${process.pid}\n`);
      await fh.close();
      return {
        path,
        async release() {
          const owner = await readFile(path, 'utf8').catch(() => '');
          if (Number(owner.trim()) === process.pid) await unlink(path).catch(() => undefined);
        },
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const pid = Number((await readFile(path, 'utf8').catch(() => '')).trim());
    const holder = liveHolder(pid, ns);
    if (holder !== null) {
      throw new NodeLockError(pid, `another befw agent runs on this node: pid ${pid} (${holder.slice(0, 200)}); lock ${path}`);
    }
    await unlink(path).catch(() => undefined);
  }
  throw new Error(`cannot take ${path}: it keeps reappearing`);
}
