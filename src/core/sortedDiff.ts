/**
 * Differences between two sorted string lists in one walk (the plan keeps members sorted).
 */

/** Walks two sorted member lists once; calls back for each member only in one of them. */
export function diffSorted(
  before: readonly string[],
  after: readonly string[],
  onAdd: (m: string) => void,
  onDel: (m: string) => void,
): void {
  let i = 0;
  let j = 0;
  while (i < before.length || j < after.length) {
    const a = before[i];
    const b = after[j];
    // Unchanged members are usually the very same string objects (the compiler reuses parses),
    // so identity settles most steps without comparing characters.
    if (a === b) {
      i++;
      j++;
      continue;
    }
    if (b === undefined || (a !== undefined && a < b)) {
      onDel(a as string);
      i++;
    } else if (a === undefined || b < a) {
      onAdd(b);
      j++;
    } else {
      i++;
      j++;
    }
  }
}
