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
import type { Drift } from '../dataplane/iptables/driver.js';
import type { AgentStatus } from './status.js';

export const CONTROL_COMMANDS = ['status', 'reload', 'check'] as const;
export type ControlCommand = (typeof CONTROL_COMMANDS)[number];

export interface ControlRequest {
  readonly cmd: ControlCommand;
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
  /** The kernel matches the plan. */
  readonly ok: boolean;
  readonly drifts: readonly Drift[];
}

export interface ControlFailure {
  readonly ok: false;
  readonly error: string;
}

export interface ControlAnswers {
  readonly status: StatusAnswer;
  readonly reload: ReloadAnswer;
  readonly check: CheckAnswer;
}

export type ControlAnswer = ControlAnswers[ControlCommand];

/** The agent's side: one function per command. */
export type ControlHandlers = { readonly [C in ControlCommand]: () => Promise<ControlAnswers[C]> };

export function isControlCommand(x: unknown): x is ControlCommand {
  return typeof x === 'string' && (CONTROL_COMMANDS as readonly string[]).includes(x);
}

export function encodeRequest(cmd: ControlCommand): string {
  return `${JSON.stringify({ cmd } satisfies ControlRequest)}\n`;
}

/** A request line as the agent received it. */
export function parseRequest(line: string): ControlRequest | ControlFailure {
  let cmd: unknown;
  try {
    const json: unknown = JSON.parse(line);
    cmd = isObject(json) ? json.cmd : undefined;
  } catch {
    cmd = undefined;
  }
  if (isControlCommand(cmd)) return { cmd };
  return { ok: false, error: `unknown command; expected one of ${CONTROL_COMMANDS.join(', ')}` };
}

export function dispatch(handlers: ControlHandlers, cmd: ControlCommand): Promise<ControlAnswer> {
  switch (cmd) {
    case 'status':
      return handlers.status();
    case 'reload':
      return handlers.reload();
    case 'check':
      return handlers.check();
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
  return typeof x.ok === 'boolean' && Array.isArray(x.drifts);
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
    default:
      return assertNever(c, 'control command');
  }
}
