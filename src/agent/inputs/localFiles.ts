/**
 * Local inputs: service files (`<services dir>/*.json`, BEFW's format) and member files
 * (`<ipsets dir>/<set>.ipset`). Files are hostile input like any other:
 *   - only regular files are read (a FIFO, a device or a symlink to one is refused: opened
 *     non-blocking, checked with fstat), and only up to a cap, so nothing can stall the agent or
 *     grow it without bound; a read that takes too long is abandoned;
 *   - a file is taken once it is settled: unchanged since the previous look, or last written
 *     more than `settleMs` ago (a file moved into place is); a file being written is looked at
 *     again shortly, and its last good version stays in force meanwhile;
 *   - a file that cannot be read or does not parse keeps its last good version in force and is
 *     reported; it is never treated as gone while it exists;
 *   - each file fails alone: no file can block the others, or KV-driven changes.
 */
import { constants } from 'node:fs';
import { type FileHandle, open, readdir } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { lazyValidator } from '../../config/lazyValidator.js';
import { printable } from '../../core/address.js';
import type { Diagnostic, FileService, IpsetFile, PortRange, Proto } from '../../core/types.js';

export class LocalInputError extends Error {
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`cannot read ${path}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'LocalInputError';
  }
}

/** Caps: a service file is a few hundred bytes; a member file of 100,000 networks about 2 MB. */
export const MAX_SERVICE_FILE_BYTES = 1024 * 1024;
export const MAX_IPSET_FILE_BYTES = 16 * 1024 * 1024;

/**
 * BEFW's service file, as BEFW reads it (befw/legacy.go): `name` (any printable text), `port`
 * (0 or absent: the first of `ports`), `protocol` (`tcp`/`udp`, any case; absent: the first
 * port's, else tcp), `mode` (`enforcing` or `default`), `ports`: tags `FROM[:TO][/PROTO]` or
 * objects `{"port": 8443 | "1:42", "protocol": "udp"}`. Other fields (`description`) are
 * ignored. Where BEFW is lenient in a way that loosens (an unknown mode read as default), befw
 * refuses the file instead.
 */
const PORT_NUMBER = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const SERVICE_SCHEMA = {
  type: 'object',
  required: ['name'],
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 128, pattern: '^[^\\u0000-\\u001f\\u007f]+$' },
    port: PORT_NUMBER,
    protocol: { type: 'string', pattern: '^([Tt][Cc][Pp]|[Uu][Dd][Pp])$' },
    // `observe` is befw's (core/observe.ts): default mode with non-clients logged.
    mode: {
      type: 'string',
      pattern: '^([Ee][Nn][Ff][Oo][Rr][Cc][Ii][Nn][Gg]|[Dd][Ee][Ff][Aa][Uu][Ll][Tt]|[Oo][Bb][Ss][Ee][Rr][Vv][Ee]|)$',
    },
    ports: {
      type: 'array',
      maxItems: 1024,
      items: {
        oneOf: [
          { type: 'string', maxLength: 32 },
          {
            type: 'object',
            required: ['port'],
            properties: {
              port: { oneOf: [PORT_NUMBER, { type: 'string', maxLength: 16 }] },
              protocol: { type: 'string', maxLength: 8 },
            },
          },
        ],
      },
    },
  },
} as const;

interface RawService {
  name: string;
  port?: number;
  protocol?: string;
  mode?: string;
  ports?: (string | { port: number | string; protocol?: string })[];
}

const serviceValidator = lazyValidator<RawService>(SERVICE_SCHEMA);

/** Limits for reading one directory's files. */
export interface FileLimits {
  readonly maxBytes: number;
  /** A file last written longer ago than this is taken at once. 0: take every file as it is. */
  readonly settleMs: number;
  /** A read that takes longer is abandoned (its last good version stays). */
  readonly readTimeoutMs: number;
}

export const SETTLE_MS = 1000;
const READ_TIMEOUT_MS = 2000;

type ReadResult =
  | { readonly kind: 'ok'; readonly text: string; readonly stamp: string }
  | { readonly kind: 'unsettled'; readonly stamp: string }
  | { readonly kind: 'refused'; readonly reason: string };

function fileKind(st: {
  isFIFO(): boolean;
  isCharacterDevice(): boolean;
  isBlockDevice(): boolean;
  isSocket(): boolean;
  isDirectory(): boolean;
}): string {
  if (st.isFIFO()) return 'a FIFO';
  if (st.isCharacterDevice() || st.isBlockDevice()) return 'a device';
  if (st.isSocket()) return 'a socket';
  if (st.isDirectory()) return 'a directory';
  return 'not a regular file';
}

async function readCapped(fh: FileHandle, maxBytes: number): Promise<Buffer | null> {
  const buf = Buffer.alloc(Math.min(maxBytes + 1, 64 * 1024));
  const chunks: Buffer[] = [];
  let total = 0;
  for (;;) {
    const { bytesRead } = await fh.read(buf, 0, buf.length, null);
    if (bytesRead === 0) return Buffer.concat(chunks, total);
    total += bytesRead;
    if (total > maxBytes) return null;
    chunks.push(Buffer.from(buf.subarray(0, bytesRead)));
  }
}

/** One careful read: regular file only, capped, and whether it was settled. */
async function readOne(path: string, limits: FileLimits, previous: string | undefined, now: number): Promise<ReadResult> {
  let fh: FileHandle;
  try {
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    return { kind: 'refused', reason: `cannot open: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  try {
    const before = await fh.stat({ bigint: true });
    if (!before.isFile()) return { kind: 'refused', reason: `${fileKind(before)}; only regular files are read` };
    if (before.size > BigInt(limits.maxBytes)) return { kind: 'refused', reason: `larger than the cap of ${limits.maxBytes} bytes` };
    const data = await readCapped(fh, limits.maxBytes);
    if (data === null) return { kind: 'refused', reason: `larger than the cap of ${limits.maxBytes} bytes` };
    const after = await fh.stat({ bigint: true });
    const stamp = `${after.ino}:${after.size}:${after.mtimeNs}`;
    const changed = after.size !== before.size || after.mtimeNs !== before.mtimeNs || BigInt(data.length) !== after.size;
    const settled = !changed && (limits.settleMs === 0 || stamp === previous || now - Number(after.mtimeMs) >= limits.settleMs);
    return settled ? { kind: 'ok', text: data.toString('utf8'), stamp } : { kind: 'unsettled', stamp };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

function withTimeout(p: Promise<ReadResult>, ms: number): Promise<ReadResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<ReadResult>((resolve) => {
    timer = setTimeout(() => resolve({ kind: 'refused', reason: `read stalled for more than ${ms} ms` }), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** What one directory read gives: the files in force, problems, and whether to look again soon. */
export interface DirRead<T> {
  readonly items: T[];
  readonly diagnostics: Diagnostic[];
  /** Some file was still being written: read again after this many ms. */
  readonly retryInMs: number | null;
}

/**
 * One directory of local inputs with the last good version of each file. `parse` turns a file's
 * text into its value or a diagnostic message.
 */
export class LocalDir<T> {
  private readonly good = new Map<string, T>();
  private readonly stamps = new Map<string, string>();

  constructor(
    private readonly dir: string,
    private readonly suffix: string,
    private readonly limits: FileLimits,
    private readonly parse: (text: string, path: string) => { value: T } | { error: string },
    private readonly code: string,
  ) {}

  async read(now: number): Promise<DirRead<T>> {
    const diagnostics: Diagnostic[] = [];
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => n.endsWith(this.suffix)).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') names = [];
      else {
        const e = new LocalInputError(this.dir, err);
        diagnostics.push({
          severity: 'error',
          code: 'unreadable-dir',
          subject: printable(this.dir),
          message: `${e.message}; last good files kept`,
        });
        return { items: [...this.good.values()], diagnostics, retryInMs: null };
      }
    }
    const paths = names.map((n) => join(this.dir, n));
    for (const p of [...this.good.keys()]) if (!paths.includes(p)) this.forget(p);
    const items: T[] = [];
    let retry = false;
    for (const path of paths) {
      const r = await withTimeout(readOne(path, this.limits, this.stamps.get(path), now), this.limits.readTimeoutMs);
      if (r.kind !== 'refused') this.stamps.set(path, r.stamp);
      if (r.kind === 'unsettled') retry = true;
      if (r.kind === 'refused') this.report(diagnostics, path, r.reason);
      if (r.kind === 'ok') {
        const parsed = this.parse(r.text, path);
        if ('value' in parsed) this.good.set(path, parsed.value);
        else this.report(diagnostics, path, parsed.error);
      }
      const v = this.good.get(path);
      if (v !== undefined) items.push(v);
    }
    return { items, diagnostics, retryInMs: retry ? this.limits.settleMs : null };
  }

  private forget(path: string): void {
    this.good.delete(path);
    this.stamps.delete(path);
  }

  private report(out: Diagnostic[], path: string, reason: string): void {
    const kept = this.good.has(path) ? 'last good version kept' : 'not enforced';
    out.push({ severity: 'error', code: this.code, subject: printable(path), message: `${reason}; ${kept}` });
  }
}

/** A BEFW port tag `FROM[:TO][/PROTO]` (protocol any case, default `tcp`). */
function portOf(spec: string, defaultProto: string): PortRange | string {
  const m = /^([0-9]{1,5})(?::([0-9]{1,5}))?(?:\/([A-Za-z]{3}))?$/.exec(spec.trim());
  if (m === null) return `bad port "${printable(spec)}" (expected PORT, FROM:TO, PORT/PROTO or FROM:TO/PROTO)`;
  const proto = (m[3] ?? defaultProto).toLowerCase();
  if (proto !== 'tcp' && proto !== 'udp') return `bad protocol in "${printable(spec)}" (expected tcp or udp)`;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  if (from < 1 || from > 65535 || to < 1 || to > 65535) return `port out of range in "${printable(spec)}"`;
  // BEFW reads a range that runs backwards as its first port.
  return { proto, from, to: Math.max(from, to) };
}

export function parseServiceFile(text: string, file: string): { service?: FileService; diagnostics: Diagnostic[] } {
  const diag = (message: string): { diagnostics: Diagnostic[] } => ({
    diagnostics: [{ severity: 'error', code: 'bad-service-file', subject: printable(file), message: `${message}; service not enforced` }],
  });
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    // V8 quotes short input back in its message, control characters and all.
    return diag(`not JSON: ${printable((err as Error).message, 80)}`);
  }
  const validateService = serviceValidator();
  if (!validateService(json)) {
    const e = validateService.errors?.[0];
    return diag(`${e?.instancePath || '(root)'} ${e?.message ?? 'invalid'}`);
  }
  const ports: PortRange[] = [];
  for (const p of json.ports ?? []) {
    const r = typeof p === 'string' ? portOf(p, 'tcp') : portOf(String(p.port), p.protocol ?? 'tcp');
    if (typeof r === 'string') return diag(r);
    ports.push(r);
  }
  const first = ports[0];
  const port = json.port !== undefined && json.port !== 0 ? json.port : first?.from;
  if (port === undefined) return diag('expected a "port" or a non-empty "ports"');
  const protocol = (json.protocol ?? first?.proto ?? 'tcp').toLowerCase() as Proto;
  const lower = json.mode?.toLowerCase();
  const mode = lower === 'enforcing' ? 'enforcing' : lower === 'observe' ? 'observe' : 'default';
  const extra = ports.filter((p) => !(p.proto === protocol && p.from === port && p.to === port));
  return { service: { file, name: json.name, port, protocol, mode, ports: extra }, diagnostics: [] };
}

function serviceOf(text: string, path: string): { value: FileService } | { error: string } {
  const r = parseServiceFile(text, path);
  return r.service !== undefined
    ? { value: r.service }
    : { error: r.diagnostics[0]?.message.replace(/; service not enforced$/, '') ?? 'invalid' };
}

/** The service files of a directory, read carefully (see the module comment). */
export function serviceDir(dir: string, settleMs = SETTLE_MS): LocalDir<FileService> {
  return new LocalDir(
    dir,
    '.json',
    { maxBytes: MAX_SERVICE_FILE_BYTES, settleMs, readTimeoutMs: READ_TIMEOUT_MS },
    serviceOf,
    'bad-service-file',
  );
}

/** The member files of a directory: `<set>.ipset`, one address or network per line. */
export function ipsetDir(dir: string, settleMs = SETTLE_MS): LocalDir<IpsetFile> {
  const parse = (text: string, path: string): { value: IpsetFile } => ({
    value: { file: path, set: basename(path).slice(0, -'.ipset'.length), text },
  });
  return new LocalDir(dir, '.ipset', { maxBytes: MAX_IPSET_FILE_BYTES, settleMs, readTimeoutMs: READ_TIMEOUT_MS }, parse, 'bad-ipset-file');
}

/** One-shot reads for `befw plan`, `show` and `doctor`: every file taken as it is now. */
export async function readServiceFiles(dir: string): Promise<{ services: FileService[]; diagnostics: Diagnostic[] }> {
  const r = await serviceDir(dir, 0).read(Date.now());
  return { services: r.items, diagnostics: r.diagnostics };
}

export async function readIpsetFiles(dir: string): Promise<{ files: IpsetFile[]; diagnostics: Diagnostic[] }> {
  const r = await ipsetDir(dir, 0).read(Date.now());
  return { files: r.items, diagnostics: r.diagnostics };
}
