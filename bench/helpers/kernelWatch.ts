/**
 * Watches set membership in the kernel from the bench process: a long-lived `ipset -`
 * (interactive mode) inside the node namespace answers `test` commands in microseconds, so
 * polling it measures when a member lands with sub-millisecond resolution and no fork per poll.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';

export class KernelWatch {
  private readonly proc: ChildProcess;
  private waiting: ((line: string) => void) | null = null;

  constructor(ns: string) {
    this.proc = spawn('ip', ['netns', 'exec', ns, 'ipset', '-'], { stdio: ['pipe', 'ignore', 'pipe'] });
    createInterface({ input: this.proc.stderr! }).on('line', (line) => {
      const w = this.waiting;
      this.waiting = null;
      w?.(line);
    });
  }

  test(set: string, member: string): Promise<boolean> {
    return new Promise((resolve) => {
      this.waiting = (line) => resolve(!line.includes('is NOT in set'));
      this.proc.stdin!.write(`test ${set} ${member}\n`);
    });
  }

  /** Polls until the member's presence equals `present`; resolves with the wall-clock ms. */
  async until(set: string, member: string, present: boolean, timeoutMs: number): Promise<number> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if ((await this.test(set, member)) === present) return performance.timeOrigin + performance.now();
      if (Date.now() > end) throw new Error(`${member} ${present ? 'never appeared in' : 'never left'} ${set}`);
    }
  }

  close(): void {
    this.proc.kill();
  }
}
