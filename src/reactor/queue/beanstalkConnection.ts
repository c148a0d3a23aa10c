/**
 * One connection to a beanstalkd server, speaking its text protocol (beanstalkd's
 * doc/protocol.txt): a command line ending in CRLF, optionally a body and CRLF; replies in order,
 * a line and, for RESERVED/FOUND/OK, a body of the announced length and CRLF.
 *
 * Commands may be pipelined: replies come back in order, so a FIFO of waiters is enough. A reply
 * that cannot be read (unknown shape, body above the limit, a timeout) leaves the stream out of
 * step, so the connection is closed and every waiter fails; the owner reconnects. Names (tubes)
 * are checked before they are written, so no text from a job or a config can inject a command.
 */
import { type Socket, connect as netConnect } from 'node:net';
import type { QueueAddress } from './address.js';

export class BeanstalkError extends Error {
  constructor(
    readonly server: string,
    readonly command: string,
    /** The server's reply line when there was one (e.g. NOT_FOUND, DRAINING). */
    readonly reply: string | null,
    message: string,
  ) {
    super(`beanstalkd ${server}: ${command}: ${message}`);
    this.name = 'BeanstalkError';
  }
}

export interface Reply {
  readonly line: string;
  readonly body: Buffer | null;
}

export interface ReservedJob {
  readonly id: number;
  readonly body: Buffer;
}

interface Waiter {
  readonly command: string;
  resolve(r: Reply): void;
  reject(e: Error): void;
  timer: NodeJS.Timeout | null;
  readonly timeoutMs: number;
}

const CRLF = Buffer.from('\r\n');
const MAX_BODY = 4 * 1024 * 1024;
const MAX_LINE = 1024;
const WITH_BODY = new Set(['RESERVED', 'FOUND', 'OK']);
/** Beanstalkd names: letters, digits, - + / ; . $ _ ( ), not starting with "-", 1..200 bytes. */
export const TUBE_NAME = /^[A-Za-z0-9+/;.$_()][A-Za-z0-9+/;.$_()-]{0,199}$/;

export class BeanstalkConnection {
  private readonly waiters: Waiter[] = [];
  private buf: Buffer = Buffer.alloc(0);
  private closed = false;
  private closeError: Error | null = null;

  private constructor(
    private readonly socket: Socket,
    readonly server: string,
    private readonly defaultTimeoutMs: number,
  ) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err) => this.fail(new BeanstalkError(server, 'connection', null, err.message)));
    socket.on('close', () => this.fail(new BeanstalkError(server, 'connection', null, 'connection closed')));
  }

  static connect(addr: QueueAddress, timeoutMs: number): Promise<BeanstalkConnection> {
    return new Promise((resolve, reject) => {
      const socket = addr.kind === 'unix' ? netConnect({ path: addr.path }) : netConnect({ host: addr.host, port: addr.port });
      socket.setNoDelay(true);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new BeanstalkError(addr.text, 'connect', null, `no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new BeanstalkConnection(socket, addr.text, timeoutMs));
      });
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new BeanstalkError(addr.text, 'connect', null, err.message));
      });
    });
  }

  get isOpen(): boolean {
    return !this.closed;
  }

  close(): void {
    this.socket.destroy();
    this.fail(new BeanstalkError(this.server, 'connection', null, 'connection closed'));
  }

  /** Sends one command (and body) and waits for its reply. */
  request(line: string, body?: Buffer, timeoutMs = this.defaultTimeoutMs): Promise<Reply> {
    const command = line.split(' ', 1)[0] ?? line;
    if (this.closed) return Promise.reject(this.closeError ?? new BeanstalkError(this.server, command, null, 'connection closed'));
    if (line.length > MAX_LINE - 2 || /[\r\n\u0000]/.test(line))
      return Promise.reject(new BeanstalkError(this.server, command, null, 'refusing a malformed command line'));
    return new Promise((resolve, reject) => {
      const w: Waiter = { command, resolve, reject, timer: null, timeoutMs };
      this.waiters.push(w);
      if (this.waiters.length === 1) this.arm(w);
      const head = Buffer.from(`${line}\r\n`, 'latin1');
      this.socket.write(body === undefined ? head : Buffer.concat([head, body, CRLF]));
    });
  }

  private arm(w: Waiter): void {
    w.timer = setTimeout(() => {
      this.socket.destroy();
      this.fail(new BeanstalkError(this.server, w.command, null, `no reply within ${w.timeoutMs} ms`));
    }, w.timeoutMs);
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    for (;;) {
      const w = this.waiters[0];
      const eol = this.buf.indexOf(CRLF);
      if (eol < 0) {
        if (this.buf.length > MAX_LINE) this.protocolError('reply line too long');
        return;
      }
      if (w === undefined) {
        this.protocolError('reply without a command');
        return;
      }
      const line = this.buf.toString('latin1', 0, eol);
      const words = line.split(' ');
      let body: Buffer | null = null;
      let consumed = eol + 2;
      if (WITH_BODY.has(words[0] ?? '')) {
        const n = Number(words[words.length - 1]);
        if (!Number.isSafeInteger(n) || n < 0 || n > MAX_BODY) {
          this.protocolError(`bad body length in "${line.slice(0, 60)}"`);
          return;
        }
        if (this.buf.length < consumed + n + 2) return; // wait for the rest
        body = Buffer.from(this.buf.subarray(consumed, consumed + n));
        consumed += n + 2;
      }
      this.buf = this.buf.subarray(consumed);
      this.waiters.shift();
      if (w.timer !== null) clearTimeout(w.timer);
      const next = this.waiters[0];
      if (next !== undefined) this.arm(next);
      w.resolve({ line, body });
    }
  }

  private protocolError(message: string): void {
    this.socket.destroy();
    this.fail(new BeanstalkError(this.server, this.waiters[0]?.command ?? 'reply', null, message));
  }

  private fail(err: Error): void {
    if (!this.closed) {
      this.closed = true;
      this.closeError = err;
    }
    while (this.waiters.length > 0) {
      const w = this.waiters.shift() as Waiter;
      if (w.timer !== null) clearTimeout(w.timer);
      w.reject(err);
    }
  }

  // --- commands -------------------------------------------------------------------------

  private unexpected(command: string, r: Reply): BeanstalkError {
    return new BeanstalkError(this.server, command, r.line, `unexpected reply "${r.line.slice(0, 80)}"`);
  }

  private checkName(command: string, tube: string): void {
    if (!TUBE_NAME.test(tube)) throw new BeanstalkError(this.server, command, null, `bad tube name "${tube.slice(0, 60)}"`);
  }

  async use(tube: string): Promise<void> {
    this.checkName('use', tube);
    const r = await this.request(`use ${tube}`);
    if (!r.line.startsWith('USING')) throw this.unexpected('use', r);
  }

  async watch(tube: string): Promise<number> {
    this.checkName('watch', tube);
    const r = await this.request(`watch ${tube}`);
    if (!r.line.startsWith('WATCHING ')) throw this.unexpected('watch', r);
    return Number(r.line.slice(9));
  }

  async ignore(tube: string): Promise<void> {
    this.checkName('ignore', tube);
    const r = await this.request(`ignore ${tube}`);
    if (!r.line.startsWith('WATCHING ')) throw this.unexpected('ignore', r);
  }

  /** Puts a job in the used tube; returns its id. */
  async put(body: Buffer, opts: { pri?: number; delaySec?: number; ttrSec: number }): Promise<number> {
    const r = await this.request(`put ${opts.pri ?? 1024} ${opts.delaySec ?? 0} ${opts.ttrSec} ${body.length}`, body);
    const [word, id] = r.line.split(' ');
    if (word === 'INSERTED') return Number(id);
    throw new BeanstalkError(
      this.server,
      'put',
      r.line,
      word === 'BURIED' ? 'server out of memory (job buried)' : `refused: ${r.line.slice(0, 80)}`,
    );
  }

  /** Waits up to `seconds` for a job; null when none came. */
  async reserve(seconds: number): Promise<ReservedJob | null> {
    const r = await this.request(`reserve-with-timeout ${seconds}`, undefined, seconds * 1000 + this.defaultTimeoutMs);
    if (r.line === 'TIMED_OUT' || r.line === 'DEADLINE_SOON') return null;
    const [word, id] = r.line.split(' ');
    if (word !== 'RESERVED' || r.body === null) throw this.unexpected('reserve', r);
    return { id: Number(id), body: r.body };
  }

  /** Reserves one job by id, whatever its state (beanstalkd 1.12's reserve-job); null when there is none. */
  async reserveJob(id: number): Promise<ReservedJob | null> {
    const r = await this.request(`reserve-job ${id}`);
    if (r.line === 'NOT_FOUND') return null;
    const [word, got] = r.line.split(' ');
    if (word !== 'RESERVED' || r.body === null) throw this.unexpected('reserve-job', r);
    return { id: Number(got), body: r.body };
  }

  /** The next buried job of the used tube (the one `kick` moves first); null when none. */
  async peekBuried(): Promise<ReservedJob | null> {
    const r = await this.request('peek-buried');
    if (r.line === 'NOT_FOUND') return null;
    const [word, got] = r.line.split(' ');
    if (word !== 'FOUND' || r.body === null) throw this.unexpected('peek-buried', r);
    return { id: Number(got), body: r.body };
  }

  /** false: the job was not ours any more (TTR ran out and another worker may have it). */
  async delete(id: number): Promise<boolean> {
    const r = await this.request(`delete ${id}`);
    if (r.line === 'DELETED') return true;
    if (r.line === 'NOT_FOUND') return false;
    throw this.unexpected('delete', r);
  }

  async release(id: number, pri: number, delaySec: number): Promise<'released' | 'buried' | 'not-found'> {
    const r = await this.request(`release ${id} ${pri} ${delaySec}`);
    if (r.line === 'RELEASED') return 'released';
    if (r.line === 'BURIED') return 'buried';
    if (r.line === 'NOT_FOUND') return 'not-found';
    throw this.unexpected('release', r);
  }

  async bury(id: number, pri: number): Promise<boolean> {
    const r = await this.request(`bury ${id} ${pri}`);
    if (r.line === 'BURIED') return true;
    if (r.line === 'NOT_FOUND') return false;
    throw this.unexpected('bury', r);
  }

  async touch(id: number): Promise<boolean> {
    const r = await this.request(`touch ${id}`);
    if (r.line === 'TOUCHED') return true;
    if (r.line === 'NOT_FOUND') return false;
    throw this.unexpected('touch', r);
  }

  /** Kicks up to `bound` jobs of the used tube (buried ones first, else delayed ones). */
  async kick(bound: number): Promise<number> {
    const r = await this.request(`kick ${bound}`);
    if (!r.line.startsWith('KICKED ')) throw this.unexpected('kick', r);
    return Number(r.line.slice(7));
  }

  private async yamlCommand(line: string): Promise<string | null> {
    const r = await this.request(line);
    if (r.line === 'NOT_FOUND') return null;
    if (!r.line.startsWith('OK ') || r.body === null) throw this.unexpected(line.split(' ')[0] ?? line, r);
    return r.body.toString('utf8');
  }

  async statsJob(id: number): Promise<Record<string, string> | null> {
    const y = await this.yamlCommand(`stats-job ${id}`);
    return y === null ? null : parseYamlMap(y);
  }

  async statsTube(tube: string): Promise<Record<string, string> | null> {
    this.checkName('stats-tube', tube);
    const y = await this.yamlCommand(`stats-tube ${tube}`);
    return y === null ? null : parseYamlMap(y);
  }

  async stats(): Promise<Record<string, string>> {
    return parseYamlMap((await this.yamlCommand('stats')) ?? '');
  }

  async listTubes(): Promise<string[]> {
    return parseYamlList((await this.yamlCommand('list-tubes')) ?? '');
  }
}

/** beanstalkd's stats are flat YAML maps: `---` then `key: value` lines. */
export function parseYamlMap(text: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const line of text.split('\n')) {
    if (line === '---' || line.trim() === '') continue;
    const colon = line.indexOf(': ');
    if (colon <= 0) continue;
    let value = line.slice(colon + 2).trim();
    if (value.startsWith('"') && value.endsWith('"') && value.length >= 2) value = value.slice(1, -1);
    out[line.slice(0, colon).trim()] = value;
  }
  return out;
}

/** `---` then `- item` lines. */
export function parseYamlList(text: string): string[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('- '))
    .map((l) => l.slice(2).trim());
}
