/**
 * What to do with a job whose action failed: release it with a delay that doubles per attempt
 * (capped), or bury it once it has had its attempts, or at once when retrying cannot help.
 * The attempt number is beanstalkd's own count of reservations of the job (stats-job
 * `reserves`), so it survives responder restarts and is shared by every responder.
 */
export type RetryDecision = { readonly kind: 'release'; readonly delaySec: number } | { readonly kind: 'bury'; readonly reason: string };

export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly retryDelaySec: number;
  readonly retryDelayMaxSec: number;
}

export function decideRetry(policy: RetryPolicy, attempt: number, permanent: boolean): RetryDecision {
  if (permanent) return { kind: 'bury', reason: 'permanent failure' };
  if (attempt >= policy.maxAttempts) return { kind: 'bury', reason: `failed ${attempt} of ${policy.maxAttempts} attempts` };
  const delaySec = Math.min(policy.retryDelayMaxSec, policy.retryDelaySec * 2 ** Math.max(0, attempt - 1));
  return { kind: 'release', delaySec: Math.round(delaySec) };
}
