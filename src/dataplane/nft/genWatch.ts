/**
 * The ruleset's generations, watched: every nftables transaction in the namespace (any table,
 * iptables-nft's included) bumps the generation, and a monitor prints one line for it with the
 * process that committed it:
 *
 *   xtables-monitor -e   NEWGEN: GENID=97 PID=14537 NAME=iptables
 *   nft monitor          # new generation 97 by process 14537 (iptables)
 *
 * The agent knows the process ids of its own `nft` runs, so a generation by anyone else means the
 * ruleset was changed behind its back: the integrity check then reads the table (the only costly
 * read); with no foreign generation it reads nothing at all. xtables-monitor is preferred (2 MB,
 * it keeps no copy of the ruleset; `nft monitor` caches every element, ~80 MB at 165,000); the
 * first that starts is used. Both run under `stdbuf -oL` so each line arrives when it is written.
 *
 * Any listener makes the kernel build a notification per element changed, which roughly doubles
 * the time of a transaction of 100,000 elements: the watch starts after the first apply.
 */
import type { LineProcess, LineSpawner } from '../exec.js';

const XTABLES = /^NEWGEN: GENID=(\d+) PID=(\d+)/;
const NFT = /^# new generation (\d+) by process (\d+)/;

const TOOLS: readonly (readonly string[])[] = [
  ['stdbuf', '-oL', 'xtables-monitor', '-e'],
  ['stdbuf', '-oL', 'nft', 'monitor'],
];

/** How many of its own process ids the watch remembers (a few applies' worth). */
const OWN_PIDS = 256;

export interface WatchState {
  /** Generations committed by other processes since the last `take()`. */
  readonly foreign: number;
  /** The watch stopped (or never started) since the last `take()`: changes may have been missed. */
  readonly lost: boolean;
  /** No monitor can run here (none installed): the check has to read instead. */
  readonly unavailable: boolean;
}

export class GenerationWatch {
  private proc: LineProcess | null = null;
  private tool = 0;
  private foreign = 0;
  private lost = true;
  private stopped = false;
  /** Monitors that failed to start in a row; all of them: none is available. */
  private failedInARow = 0;
  private readonly own: number[] = [];
  private readonly ownSet = new Set<number>();
  /** The last generation seen, and who made it. */
  lastGeneration: number | null = null;
  /** Why the watch is not running, for logs and doctor. */
  lastError: string | null = null;

  constructor(private readonly spawn: LineSpawner) {}

  /** Remembers a process id of ours: its generations are not foreign. */
  ours(pid: number): void {
    if (this.ownSet.has(pid)) return;
    this.own.push(pid);
    this.ownSet.add(pid);
    if (this.own.length > OWN_PIDS) this.ownSet.delete(this.own.shift() as number);
  }

  get running(): boolean {
    return this.proc !== null;
  }

  get unavailable(): boolean {
    return this.failedInARow >= TOOLS.length;
  }

  /** Which monitor runs (`xtables-monitor` or `nft`), or null. */
  get monitor(): string | null {
    return this.proc === null ? null : (TOOLS[this.tool]?.[2] ?? null);
  }

  start(): void {
    this.stopped = false;
    if (this.proc !== null || this.unavailable) return;
    const argv = TOOLS[this.tool] ?? TOOLS[0] ?? [];
    const [cmd, ...args] = argv;
    let lines = 0;
    const startedAt = Date.now();
    const p = this.spawn(
      cmd ?? 'stdbuf',
      args,
      (line) => {
        lines++;
        this.onLine(line);
      },
      (code, stderr) => {
        if (this.proc === p) this.proc = null;
        this.lost = true;
        this.lastError = `${argv.join(' ')} exited ${code ?? 'on a signal'}${stderr === '' ? '' : `: ${stderr.split('\n')[0] ?? ''}`}`;
        // A monitor that could not run at all (not installed): try the next one at the next start.
        if (lines === 0 && code !== null && code !== 0 && Date.now() - startedAt < 5000) {
          this.tool = (this.tool + 1) % TOOLS.length;
          this.failedInARow++;
        } else {
          this.failedInARow = 0;
        }
      },
    );
    this.proc = p;
  }

  /** Stops the monitor; what happens until the next start is unseen, so the next `take()` says lost. */
  stop(): void {
    this.stopped = true;
    const p = this.proc;
    this.proc = null;
    this.lost = true;
    p?.stop();
  }

  /** What happened since the last call; a stopped watch is restarted (and reported lost). */
  take(): WatchState {
    if (this.unavailable) return { foreign: 0, lost: false, unavailable: true };
    const state: WatchState = { foreign: this.foreign, lost: this.lost || this.proc === null, unavailable: false };
    this.foreign = 0;
    this.lost = false;
    if (this.proc === null && !this.stopped) this.start();
    return state;
  }

  private onLine(line: string): void {
    const m = XTABLES.exec(line) ?? NFT.exec(line);
    if (m === null) return;
    this.lastGeneration = Number(m[1]);
    if (!this.ownSet.has(Number(m[2]))) this.foreign++;
  }
}
