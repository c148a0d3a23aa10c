/**
 * The local control socket: a unix stream socket (mode 0600 in a 0700 directory) on which
 * `befw status`, `befw reload` and `befw check` ask the running agent. One JSON request line in,
 * one JSON answer line out (controlProtocol.ts). Only root (the socket's owner) can connect.
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { type Server, type Socket, createConnection, createServer } from 'node:net';
import { dirname } from 'node:path';
import {
  type ControlAnswers,
  type ControlCommand,
  type ControlFailure,
  type ControlHandlers,
  dispatch,
  encodeRequest,
  isAnswerTo,
  isControlFailure,
  parseRequest,
} from './controlProtocol.js';

const MAX_REQUEST = 4096;

export class ControlError extends Error {
  constructor(
    readonly socketPath: string,
    message: string,
  ) {
    super(message);
    this.name = 'ControlError';
  }
}

/** Whether something answers on the path (a live agent), as opposed to a stale socket file. */
export function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

function failure(error: string): ControlFailure {
  return { ok: false, error };
}

/** Reads one request line from `sock` and answers it. */
function serve(sock: Socket, handlers: ControlHandlers): void {
  let buf = '';
  let answered = false;
  const answer = (a: unknown): void => void sock.end(`${JSON.stringify(a)}\n`);
  sock.setEncoding('utf8');
  sock.on('error', () => undefined);
  sock.on('data', (d: string) => {
    if (answered) return;
    buf += d;
    answered = buf.length > MAX_REQUEST || buf.includes('\n');
    if (buf.length > MAX_REQUEST) return answer(failure('request too long'));
    const nl = buf.indexOf('\n');
    if (nl < 0) return;
    const req = parseRequest(buf.slice(0, nl));
    if ('error' in req) return answer(req);
    dispatch(handlers, req).then(answer, (err: unknown) => answer(failure(err instanceof Error ? err.message : String(err))));
  });
}

export async function startControlServer(path: string, handlers: ControlHandlers): Promise<Server> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  if (await isLive(path)) throw new ControlError(path, `another agent answers on ${path}`);
  await unlink(path).catch(() => undefined);
  const server = createServer((sock) => serve(sock, handlers));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}

/**
 * Client side: one request, one answer of the command's own shape or a failure. An answer of
 * neither shape (another program on the socket, another version) is an error.
 */
export async function askAgent<C extends ControlCommand>(
  path: string,
  cmd: C,
  timeoutMs = 30_000,
  extra: { seconds?: number; repair?: boolean } = {},
): Promise<ControlAnswers[C] | ControlFailure> {
  const answer = await exchange(path, encodeRequest({ cmd, ...extra }), timeoutMs);
  if (isAnswerTo(cmd, answer) || isControlFailure(answer)) return answer;
  throw new ControlError(path, `unexpected answer from the agent to ${cmd}: ${JSON.stringify(answer).slice(0, 200)}`);
}

function exchange(path: string, request: string, timeoutMs: number): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ControlError(path, `no answer from the agent on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(request));
    sock.on('data', (d: string) => (buf += d));
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as unknown);
      } catch {
        reject(new ControlError(path, `unreadable answer from the agent: ${buf.slice(0, 200)}`));
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const why = err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'is the agent running?' : err.message;
      reject(new ControlError(path, `cannot reach the agent on ${path}: ${why}`));
    });
  });
}
