/**
 * What the control socket carries, shared by the agent (control.ts, supervisor.ts) and the CLI
 * (cli/control.ts): one JSON request line `{"cmd": ...}`, one JSON answer line. Each command has
 * its own answer type; any command can instead get a ControlFailure (an unknown command, a
 * request too long, a handler that threw).
 *
 * Both sides parse what the other sent: the agent believes nothing but a known command, and the
 * CLI checks an answer's shape (minimally: the fields it reads) before using it.
 */
import { assertNever } from '../core/assertNever.js';
import type { Drift } from '../dataplane/dataplane.js';
import type { GuardStatus, Hold } from './guard.js';
import type { CheckResult } from './integrityCheck.js';
import type { AgentStatus } from './status.js';

export const CONTROL_COMMANDS = ['status', 'reload', 'check', 'guard-release', 'guard-hold'] as const;
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

/** Longest `befw guard hold --for`: 30 days. */
export const MAX_HOLD_SECONDS = 30 * 86_400;

export interface ControlRequest {
  readonly cmd: ControlCommand;
  /** guard-hold: for how long; absent: until released. */
  readonly seconds?: number;
  /** check: wait for the repair of what is found, and check again. */
  readonly repair?: boolean;
}

export interface LastReload {
  readonly at: number;
  readonly ok: boolean;
  readonly error?: string;
}

export interface StatusAnswer extends AgentStatus {
  readonly ok: true;
  readonly version: string;
  readonly config: string;
  readonly pid: number;
  readonly lastReload: LastReload | null;
}

export interface ReloadAnswer {
  readonly ok: boolean;
  /** Why the reload was rejected; the agent runs on as before. */
  readonly error?: string;
  readonly config: string;
}

export interface CheckAnswer {
  /** The kernel matched the plan. */
  readonly ok: boolean;
  /** What differed, per set or chain, with the members or rules (bounded lists and counts). */
  readonly drifts: readonly Drift[];
  /** The agent repairs drift at once: `started` after this answer, or `done` with the outcome and a second check (`--repair`). */
  readonly repair?: CheckResult['repair'];
}

export interface GuardAnswer {
  readonly ok: true;
  readonly guard: GuardStatus;
  /** guard-release: the change that was waiting and now goes in, if any. */
  readonly released?: Hold | null;
}

export interface ControlFailure {
  readonly ok: false;
  readonly error: string;
}

export interface ControlAnswers {
  readonly status: StatusAnswer;
  readonly reload: ReloadAnswer;
  readonly check: CheckAnswer;
  readonly 'guard-release': GuardAnswer;
  readonly 'guard-hold': GuardAnswer;
}

export type ControlAnswer = ControlAnswers[ControlCommand];

/** The agent's side: one function per command. */
export type ControlHandlers = { readonly [C in ControlCommand]: (req: ControlRequest) => Promise<ControlAnswers[C]> };

export function isControlCommand(x: unknown): x is ControlCommand {
  return typeof x === 'string' && (CONTROL_COMMANDS as readonly string[]).includes(x);
}

export function encodeRequest(req: ControlRequest): string {
  return `${JSON.stringify(req satisfies ControlRequest)}\n`;
}

/** A request line as the agent received it. */
export function parseRequest(line: string): ControlRequest | ControlFailure {
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch {
    json = undefined;
  }
  const cmd = isObject(json) ? json.cmd : undefined;
  if (!isControlCommand(cmd)) return { ok: false, error: `unknown command; expected one of ${CONTROL_COMMANDS.join(', ')}` };
  const repair = isObject(json) ? json.repair : undefined;
  if (repair !== undefined) {
    if (cmd !== 'check' || typeof repair !== 'boolean') return { ok: false, error: 'repair: only check takes it, true or false' };
    return { cmd, repair };
  }
  const seconds = isObject(json) ? json.seconds : undefined;
  if (seconds === undefined) return { cmd };
  if (cmd !== 'guard-hold' || typeof seconds !== 'number' || !Number.isInteger(seconds) || seconds < 1 || seconds > MAX_HOLD_SECONDS) {
    return { ok: false, error: `seconds: only guard-hold takes it, a whole number from 1 to ${MAX_HOLD_SECONDS}` };
  }
  return { cmd, seconds };
}

export function dispatch(handlers: ControlHandlers, req: ControlRequest): Promise<ControlAnswer> {
  const cmd = req.cmd;
  switch (cmd) {
    case 'status':
      return handlers.status(req);
    case 'reload':
      return handlers.reload(req);
    case 'check':
      return handlers.check(req);
    case 'guard-release':
      return handlers['guard-release'](req);
    case 'guard-hold':
      return handlers['guard-hold'](req);
    default:
      return assertNever(cmd, 'control command');
  }
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

const isOptionalString = (x: unknown): boolean => x === undefined || typeof x === 'string';

export function isControlFailure(x: unknown): x is ControlFailure {
  return isObject(x) && x.ok === false && typeof x.error === 'string';
}

function isStatusAnswer(x: Record<string, unknown>): boolean {
  return (
    x.ok === true &&
    typeof x.version === 'string' &&
    typeof x.pid === 'number' &&
    typeof x.startedAt === 'number' &&
    isObject(x.consul) &&
    isObject(x.stats) &&
    Array.isArray(x.sets) &&
    Array.isArray(x.diagnostics) &&
    (x.lastReload === null || isObject(x.lastReload))
  );
}

function isReloadAnswer(x: Record<string, unknown>): boolean {
  return typeof x.ok === 'boolean' && typeof x.config === 'string' && isOptionalString(x.error);
}

function isCheckAnswer(x: Record<string, unknown>): boolean {
  return typeof x.ok === 'boolean' && Array.isArray(x.drifts) && (x.repair === undefined || x.repair === null || isObject(x.repair));
}

function isGuardAnswer(x: Record<string, unknown>): boolean {
  return x.ok === true && isObject(x.guard);
}

/** Whether `x` has the shape of the answer to `cmd`. */
export function isAnswerTo<C extends ControlCommand>(cmd: C, x: unknown): x is ControlAnswers[C] {
  if (!isObject(x)) return false;
  const c: ControlCommand = cmd;
  switch (c) {
    case 'status':
      return isStatusAnswer(x);
    case 'reload':
      return isReloadAnswer(x);
    case 'check':
      return isCheckAnswer(x);
    case 'guard-release':
    case 'guard-hold':
      return isGuardAnswer(x);
    default:
      return assertNever(c, 'control command');
  }
}
