/**
 * Gives memory back after a large reconcile. Re-reading a big befw/ tree allocates several times
 * the tree's size for a moment (the HTTP body, its parse, the restore script); V8 keeps that heap
 * committed long after, so a node with 100,000 entries would sit at twice its working set. When
 * the agent runs with --expose-gc (bin/befw passes it), one full collection shortly after such a
 * reconcile lets V8 return the pages. Without the flag this does nothing.
 */
const QUIET_MS = 1000;
/** Below this many KV entries the transient is too small to matter. */
export const COMPACT_ABOVE_KEYS = 10_000;

let timer: NodeJS.Timeout | null = null;

export interface MemoryFigures {
  readonly rssMb: number;
  readonly heapUsedMb: number;
  readonly heapTotalMb: number;
  readonly externalMb: number;
}

export function memoryFigures(): MemoryFigures {
  const m = process.memoryUsage();
  const mb = (n: number): number => Math.round(n / 104857.6) / 10;
  return { rssMb: mb(m.rss), heapUsedMb: mb(m.heapUsed), heapTotalMb: mb(m.heapTotal), externalMb: mb(m.external) };
}

export function scheduleCompaction(report: (before: MemoryFigures, after: MemoryFigures) => void): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (typeof gc !== 'function') return;
  if (timer !== null) clearTimeout(timer);
  timer = setTimeout(() => {
    timer = null;
    const before = memoryFigures();
    gc();
    report(before, memoryFigures());
  }, QUIET_MS);
  timer.unref();
}
