/**
 * How every failed `befw` command ends: one place (`reportError`, called by main) turns any
 * error into one line on stderr, or under `--json` one JSON object on stderr, and an exit code.
 *
 *   befw: error: --ttl "1h30x": unknown unit "x"; units are s, m, h, d and w (try befw client add --help)
 *   {"error":{"kind":"usage","message":"--ttl \"1h30x\": unknown unit …","command":"befw client add","exitCode":2}}
 *
 * Exit codes: 2 for a usage error (the command line itself is wrong: a bad argument, option or
 * value; nothing was contacted or written), 1 for everything else (config, Consul, a refusal
 * against the catalog, a lost race, a finding such as drift). stdout stays empty on failure,
 * also under --json, so `befw … --json | jq` never mistakes an error for a result; the JSON
 * error goes to stderr, where a script reads it when the exit code is not 0.
 *
 * Help is never dumped after an error: the line ends with the command's `--help` to try.
 */
import { type Command, CommanderError } from 'commander';
import { ConfigError } from '../config/config.js';
import { ConsulError } from '../consul/connection.js';
import { printable } from '../core/address.js';
import { AccessError, RefusedError, UsageError } from './access/errors.js';

export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

export type ErrorKind = 'usage' | 'config' | 'refused' | 'access' | 'consul' | 'failure';

/** What is reported for one failure: the line (without prefix), and the JSON fields. */
export interface ErrorReport {
  readonly kind: ErrorKind;
  readonly message: string;
  readonly exitCode: number;
  /** `befw client add`: the command that failed, when known. */
  readonly command: string | null;
  /** Extra fields for --json (a config error's problems, a usage error's subject). */
  readonly details: Readonly<Record<string, unknown>>;
}

/** commander's own message, `error: unknown option '--frob'`, without its prefix or a trailing period. */
function commanderMessage(err: CommanderError): string {
  return err.message
    .replace(/^error: /, '')
    .replace(/\n+/g, ' ')
    .trim();
}

/** Sorts any thrown value into a report. `command` is the command path that was running, if known. */
export function describeError(err: unknown, command: string | null): ErrorReport {
  const base = { command, details: {} };
  if (err instanceof UsageError)
    return { ...base, kind: 'usage', message: err.message, exitCode: EXIT_USAGE, details: { subject: err.subject, reason: err.reason } };
  if (err instanceof CommanderError) return { ...base, kind: 'usage', message: commanderMessage(err), exitCode: EXIT_USAGE };
  if (err instanceof ConfigError)
    return {
      ...base,
      kind: 'config',
      message: err.message,
      exitCode: EXIT_FAILURE,
      details: { problems: err.problems.map((p) => ({ file: p.file, line: p.line, key: p.key, reason: p.reason })) },
    };
  if (err instanceof RefusedError) return { ...base, kind: 'refused', message: err.message, exitCode: EXIT_FAILURE };
  if (err instanceof AccessError)
    return { ...base, kind: 'access', message: err.message, exitCode: EXIT_FAILURE, details: { key: err.key } };
  if (err instanceof ConsulError) return { ...base, kind: 'consul', message: err.message, exitCode: EXIT_FAILURE };
  const message = err instanceof Error ? err.message : String(err);
  return { ...base, kind: 'failure', message, exitCode: EXIT_FAILURE };
}

/** One line, printable (no control characters from a hostile argument or Consul answer). */
function oneLine(text: string): string {
  return printable(text.replace(/\r?\n\s*/g, ' '), 2000);
}

/** `befw: error: <what>: <why>` (config errors: `befw: config error: …`); usage errors end with the help to try. */
export function errorLine(r: ErrorReport): string {
  const prefix = r.kind === 'config' ? 'config error' : 'error';
  const hint = r.kind === 'usage' ? ` (try ${r.command ?? 'befw'} --help)` : '';
  return `befw: ${prefix}: ${oneLine(r.message)}${hint}`;
}

/** `{"error":{…}}` on one line. */
export function errorJson(r: ErrorReport): string {
  return JSON.stringify({
    error: { kind: r.kind, message: oneLine(r.message), command: r.command, exitCode: r.exitCode, ...r.details },
  });
}

/** `--json` anywhere before `--` asks for JSON errors too, even when parsing failed before options were read. */
export function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  return (end < 0 ? argv : argv.slice(0, end)).includes('--json');
}

/** Prints the report of `err` to stderr and returns the exit code. */
export function reportError(err: unknown, command: string | null, json: boolean, write: (s: string) => void): number {
  const r = describeError(err, command);
  write(`${json ? errorJson(r) : errorLine(r)}\n`);
  return r.exitCode;
}

/** `befw client add`: a command's path from the program down. */
export function commandPath(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(' ');
}

/**
 * Makes commander throw instead of printing and exiting, on every command of `program` (call it
 * once the program is built, so commands registered anywhere are covered), and remembers which
 * command was running, for the "try … --help" of the error line.
 */
export function routeErrors(program: Command): { readonly current: () => string | null } {
  let current: string | null = null;
  const visit = (cmd: Command): void => {
    cmd
      .exitOverride((err) => {
        current = commandPath(cmd);
        throw err;
      })
      .showHelpAfterError(false)
      // reportError prints the error; commander would print it a second time.
      .configureOutput({ outputError: () => undefined });
    // Before a subcommand parses its options, so an option's own parser (--at, --ttl) failing
    // is reported against that subcommand.
    if (cmd.commands.length > 0)
      cmd.hook('preSubcommand', (_cmd, sub) => {
        current = commandPath(sub);
      });
    for (const sub of cmd.commands) visit(sub);
  };
  visit(program);
  program.hook('preAction', (_program, action) => {
    current = commandPath(action);
  });
  return { current: () => current };
}

/** Help and version output that commander already printed: not an error to report. */
const DISPLAYED = new Set(['commander.helpDisplayed', 'commander.version', 'commander.help']);

/**
 * The exit code for whatever a command threw, reporting it (one line, or JSON under --json) unless
 * it is help that was asked for or an exit a command requested (`process.exit` turned into an
 * error by a test harness carries a `commander.*` code of its own).
 */
export function finish(err: unknown, command: string | null, argv: readonly string[], write: (s: string) => void): number {
  if (err instanceof CommanderError && DISPLAYED.has(err.code)) return err.exitCode === 0 ? 0 : EXIT_USAGE;
  const e = err as { code?: unknown; exitCode?: unknown };
  if (!(err instanceof CommanderError) && typeof e.code === 'string' && e.code.startsWith('commander.'))
    return typeof e.exitCode === 'number' ? e.exitCode : EXIT_FAILURE;
  return reportError(err, command, wantsJson(argv), write);
}
