/**
 * The local control socket: a unix stream socket (mode 0600 in a 0700 directory) on which
 * `befw status`, `befw reload` and `befw check` ask the running agent. One JSON request line in,
 * one JSON answer line out. Only root (the socket's owner) can connect.
 */
import { chmod, mkdir, unlink } from 'node:fs/promises';
import { type Server, createConnection, createServer } from 'node:net';
import { dirname } from 'node:path';

export type ControlCommand = 'status' | 'reload' | 'check';
export type ControlHandler = (cmd: ControlCommand) => Promise<unknown>;

const COMMANDS: readonly ControlCommand[] = ['status', 'reload', 'check'];
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
function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = createConnection(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

export async function startControlServer(path: string, handle: ControlHandler): Promise<Server> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  if (await isLive(path)) throw new ControlError(path, `another agent answers on ${path}`);
  await unlink(path).catch(() => undefined);
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => undefined);
    sock.on('data', (d: string) => {
      buf += d;
      if (buf.length > MAX_REQUEST) {
        sock.end(`${JSON.stringify({ ok: false, error: 'request too long' })}\n`);
        return;
      }
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let cmd: unknown;
      try {
        cmd = (JSON.parse(buf.slice(0, nl)) as { cmd?: unknown }).cmd;
      } catch {
        cmd = undefined;
      }
      if (!COMMANDS.includes(cmd as ControlCommand)) {
        sock.end(`${JSON.stringify({ ok: false, error: `unknown command; expected one of ${COMMANDS.join(', ')}` })}\n`);
        return;
      }
      handle(cmd as ControlCommand).then(
        (answer) => sock.end(`${JSON.stringify(answer)}\n`),
        (err: unknown) => sock.end(`${JSON.stringify({ ok: false, error: err instanceof Error ? err.message : String(err) })}\n`),
      );
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return server;
}

/** Client side: one request, one answer. */
export function askAgent(path: string, cmd: ControlCommand, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new ControlError(path, `no answer from the agent on ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(`${JSON.stringify({ cmd })}\n`));
    sock.on('data', (d: string) => (buf += d));
    sock.on('end', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf));
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
