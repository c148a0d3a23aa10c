/**
 * What an action returns and how it fails. A failure is either transient (the device or Consul
 * did not answer, a race was lost: try again later) or permanent (a wrong key, a path the device
 * refuses, no device configured for the sender: retrying cannot help, so the job is buried for
 * an operator at once). Results are plain data, logged as they are.
 */
import type { ReactorJob } from '../queue/job.js';

export interface ActionOutcome {
  /** e.g. banned, already-banned, already-applied, protected, added, already-present, disabled. */
  readonly result: string;
  readonly detail: Readonly<Record<string, unknown>>;
}

export class ActionError extends Error {
  constructor(
    readonly action: string,
    readonly permanent: boolean,
    message: string,
    readonly detail: Readonly<Record<string, unknown>> = {},
    options?: { cause?: unknown },
  ) {
    super(`${action}: ${message}`, options);
    this.name = 'ActionError';
  }
}

/** What the actions of one job tell the ones after them. */
export interface JobContext {
  /** Expiry (Unix seconds) of the ban the job made or found: address-group entries end with it. */
  banExpiry: number | null;
  /** An operator unbanned the subject after the job's line was read: nothing more is done. */
  cleared: boolean;
}

export function newJobContext(): JobContext {
  return { banExpiry: null, cleared: false };
}

export interface ActionRunner {
  readonly type: string;
  run(job: ReactorJob, ctx: JobContext): Promise<ActionOutcome>;
}
