/**
 * "Did you mean …?": the closest known name to a mistyped one. The distance is Damerau-Levenshtein
 * in its optimal-string-alignment form (insert, delete, substitute, swap two neighbours: each 1),
 * so `wbe_tcp_8080` is one step from `web_tcp_8080`, as a person counts typos.
 */

/** Edit distance between `a` and `b`, counting a swap of two neighbouring characters as one edit. */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  // Three rows: the one before the previous (for swaps), the previous, the current.
  let before: number[] = [];
  let prev: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur: number[] = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min((prev[j] as number) + 1, (cur[j - 1] as number) + 1, (prev[j - 1] as number) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d = Math.min(d, (before[j - 2] as number) + 1);
      cur.push(d);
    }
    before = prev;
    prev = cur;
  }
  return prev[b.length] as number;
}

/** The largest distance still worth a suggestion for a name of this length: about one typo in four characters, at most 3. */
export function suggestionLimit(name: string): number {
  return Math.min(3, Math.max(1, Math.floor(name.length / 4)));
}

/**
 * The known name closest to `name`, or null when none is close enough (see suggestionLimit) or
 * `name` itself is known. Ties go to the name that sorts first, so the answer does not depend on
 * the order the candidates came in.
 */
export function closest(name: string, candidates: Iterable<string>, limit = suggestionLimit(name)): string | null {
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const c of candidates) {
    if (c === name) return null;
    const d = editDistance(name, c);
    if (d < bestDistance || (d === bestDistance && best !== null && c < best)) {
      best = c;
      bestDistance = d;
    }
  }
  return bestDistance <= limit ? best : null;
}
