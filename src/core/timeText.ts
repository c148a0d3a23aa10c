/**
 * The one way befw prints a time: ISO 8601 in UTC to the second (`2025-06-30T18:00:00Z`), with
 * "in 1h19m" or "2s ago" beside it where the distance matters. Every CLI line, `befw status`
 * and the agent's own messages use these, so a time read in one place can be pasted into
 * another (`--until`, `--at`) and compared by eye. Pure: the caller passes `now`.
 */

/** `2025-06-30T18:00:00Z`: whole seconds, rounded down as expiry is. */
export function formatTime(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace('.000Z', 'Z');
}

/** `1h19m`, `2d3h`, `45s`, `<1s`: the two largest units; `expired` for zero or less. */
export function formatDuration(ms: number): string {
  if (ms <= 0) return 'expired';
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const parts: string[] = [];
  let rest = Math.floor(ms / 1000);
  for (const [size, label] of units) {
    if (rest >= size && parts.length < 2) {
      parts.push(`${Math.floor(rest / size)}${label}`);
      rest %= size;
    }
  }
  return parts.length === 0 ? '<1s' : parts.join('');
}

/** `2025-06-30T18:00:00Z (in 1h19m)`, `2025-06-30T18:00:00Z (2s ago)`, or `… (now)` within a second. */
export function formatWhen(ms: number, nowMs: number): string {
  const d = ms - nowMs;
  if (Math.abs(d) < 1000) return `${formatTime(ms)} (now)`;
  return d > 0 ? `${formatTime(ms)} (in ${formatDuration(d)})` : `${formatTime(ms)} (${formatDuration(-d)} ago)`;
}
