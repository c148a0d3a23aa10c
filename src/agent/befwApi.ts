/**
 * BEFW's API socket, served beside befw's own control socket so that BEFW's `befw-cli` and the
 * scripts written against it keep working on a node that runs befw (`befw_api=`, default
 * /var/run/befw/api.sock as BEFW had it, befw/const.go:81; `befw_api=off` turns it off).
 *
 * The protocol is BEFW's (befw/api.go:30-87): text lines in, one text line out per line, several
 * lines per connection, 15 s of silence closes it. A line is trimmed of spaces, CR and LF at both
 * ends and split at single spaces; the first word is the command:
 *   helo [words]    "Hello, " and the words joined by one space
 *   help            "helo;help;reload;clear_missing;"
 *   reload          BEFW re-read everything (config, services, KV) and re-applied; befw does the
 *                   same as `befw reload`/SIGHUP: the config is read and checked, the agent rebuilt,
 *                   and "ok" comes back once that is done, or the reason it was refused (BEFW
 *                   answered "ok" before it had even started)
 *   clear_missing   BEFW cleared its NFLOG counts of refused clients (befw/nf.go:319); befw keeps
 *                   no such counts, so there is nothing to clear: "ok"
 *   anything else   "command not found; type help for help"
 *
 * Mode 0600, not BEFW's 0666 (befw/api.go:96). With 0666 any local user could make the agent
 * reload as often as they like, and a befw reload is real work (config, token and templates read,
 * the agent rebuilt, every set re-read and re-applied): the same power `befw reload` has over the
 * control socket, which is root's only. Scripts that ran BEFW's befw-cli as root are unaffected;
 * an unprivileged monitor that only said `helo` should use the agent's /healthz (`metrics=`).
 * The directory is made 0755 if missing (BEFW's own choice, befw/run.go:42) and never re-moded.
 *
 * What the socket believes: nothing but the four words. Lines are capped (a longer one closes the
 * connection), connections are capped, and the reply to an unknown word never echoes it.
 *
 * A process already answering on the path (BEFW's befw-firewalld, or another befw agent in
 * another network namespace of the same host) keeps it: befw logs that and serves its own
 * control socket only, as BEFW itself went on without its API when it could not listen
 * (befw/api.go:92-95). A stale socket file is replaced.
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { type Server, type Socket, createServer } from 'node:net';
import { dirname } from 'node:path';
import type { Logger } from '../log/logger.js';
import { isLive } from './control.js';
import type { ReloadAnswer } from './controlProtocol.js';

/** BEFW's reply to `help` (befw/api.go:53). */
export const BEFW_API_HELP = 'helo;help;reload;clear_missing;';
/** BEFW's reply to a word it does not know (befw/api.go:81). */
export const BEFW_API_NOT_FOUND = 'command not found; type help for help';
/** BEFW closed a connection after 15 s without a full line (befw/api.go:74). */
export const BEFW_API_IDLE_MS = 15_000;
/** Longest line read; BEFW read any length. */
export const BEFW_API_MAX_LINE = 1024;
const MAX_CONNECTIONS = 32;

export interface BefwApiHandlers {
  /** Re-read the config and rebuild the agent (`befw reload`). */
  reload(): Promise<ReloadAnswer>;
}

/** A line as BEFW read it: trimmed of spaces, CR and LF, split at single spaces. */
export function befwApiWords(line: string): { cmd: string; args: string[] } {
  const [cmd = '', ...args] = line.replace(/^[ \r\n]+|[ \r\n]+$/g, '').split(' ');
  return { cmd, args };
}

/** The reply to one line, as BEFW gives it; `reload` is the one that does anything. */
export async function befwApiReply(line: string, handlers: BefwApiHandlers): Promise<string> {
  const { cmd, args } = befwApiWords(line);
  switch (cmd) {
    case 'helo':
      return `Hello, ${args.join(' ')}`;
    case 'help':
      return BEFW_API_HELP;
    case 'reload': {
      const answer = await handlers.reload();
      // One line, whatever the reason says: the reply is the whole line.
      return answer.ok ? 'ok' : (answer.error ?? 'reload failed').replace(/[\r\n]+/g, ' ');
    }
    case 'clear_missing':
      return 'ok';
    default:
      return BEFW_API_NOT_FOUND;
  }
}

function serve(sock: Socket, handlers: BefwApiHandlers, log: Logger): void {
  let buf = '';
  let busy: Promise<void> = Promise.resolve();
  sock.setEncoding('utf8');
  sock.setTimeout(BEFW_API_IDLE_MS, () => sock.destroy());
  sock.on('error', () => undefined);
  sock.on('data', (d: string) => {
    buf += d;
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.length > BEFW_API_MAX_LINE) return void sock.destroy();
      // Replies go out in the order the lines came in, one command at a time.
      busy = busy.then(async () => {
        const reply = await befwApiReply(line, handlers).catch((err: unknown) => (err instanceof Error ? err.message : String(err)));
        const { cmd } = befwApiWords(line);
        if (cmd === 'reload') log.info({ event: 'befw-api-reload', reply }, "reload asked on BEFW's API socket");
        if (!sock.destroyed) sock.write(`${reply}\n`);
      });
    }
    if (buf.length > BEFW_API_MAX_LINE) sock.destroy();
  });
}

export interface BefwApi {
  close(): void;
}

/**
 * Serves BEFW's API on `path` (null: off). Never fails the agent: a path it cannot take is logged
 * and left alone, and the returned handle then closes nothing.
 */
export async function startBefwApi(path: string | null, handlers: BefwApiHandlers, log: Logger): Promise<BefwApi> {
  const none: BefwApi = { close: () => undefined };
  if (path === null) return none;
  try {
    if (await isLive(path)) {
      log.warn(
        { event: 'befw-api-busy', path },
        `another process answers on ${path} (is BEFW's befw-firewalld still running? stop it: two agents rewrite chain BEFW in turn); BEFW's API is not served`,
      );
      return none;
    }
    await mkdir(dirname(path), { recursive: true, mode: 0o755 });
    await unlink(path).catch(() => undefined);
    const server: Server = createServer((sock) => serve(sock, handlers, log));
    server.maxConnections = MAX_CONNECTIONS;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => resolve());
    });
    server.on('error', (err) => log.warn({ event: 'befw-api-error', path, err: err.message }, "BEFW's API socket failed"));
    await chmod(path, 0o600);
    log.info({ event: 'befw-api-listening', path }, "BEFW's API socket on (helo, help, reload, clear_missing)");
    return { close: () => void server.close() };
  } catch (err) {
    log.warn(
      { event: 'befw-api-unavailable', path, err: err instanceof Error ? err.message : String(err) },
      `cannot serve BEFW's API on ${path}; the agent runs on without it`,
    );
    return none;
  }
}
