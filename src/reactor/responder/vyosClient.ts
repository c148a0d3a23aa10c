/**
 * The VyOS HTTP API as its documentation describes it (docs.vyos.io, "VyOS API"): every endpoint
 * takes POST with form fields `data` (a JSON command, or a list of them) and `key` (the API key),
 * sent as multipart/form-data exactly as `curl --form` does; replies are JSON
 * `{"success": bool, "data": ..., "error": ...}` even though they are served as text/html.
 *
 * How failures are read: 401 (bad key) and 400 (the device refused the command: bad path, bad
 * value, failed commit) will fail again the same way, so they are permanent; 5xx, a reply that is
 * not the API's JSON (a proxy's error page), a timeout or a refused connection are transient.
 * The key is read from a mode-0600 file, sent only in the form body, and never logged.
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { DeviceConfig } from '../config/reactorConfig.js';
import { SecretFileError, readSecretFile } from '../secretFile.js';

export type VyosEndpoint = '/retrieve' | '/configure' | '/config-file';

export class VyosError extends Error {
  constructor(
    readonly device: string,
    readonly endpoint: string,
    readonly status: number | null,
    readonly permanent: boolean,
    message: string,
  ) {
    super(`vyos ${device} ${endpoint}: ${message}`);
    this.name = 'VyosError';
  }
}

/** The API key: printable, no whitespace, so it cannot break out of its form part. */
export const VYOS_KEY = /^[\x21-\x7e]{1,256}$/;

export interface FormBody {
  readonly body: Buffer;
  readonly contentType: string;
}

/** multipart/form-data with the two documented fields, in the documented order. */
export function buildForm(data: unknown, key: string, boundary = `befw${randomBytes(12).toString('hex')}`): FormBody {
  const part = (name: string, value: string): string =>
    `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
  const text = `${part('data', JSON.stringify(data))}${part('key', key)}--${boundary}--\r\n`;
  return { body: Buffer.from(text, 'utf8'), contentType: `multipart/form-data; boundary=${boundary}` };
}

export type VyosReply =
  { readonly ok: true; readonly data: unknown } | { readonly ok: false; readonly permanent: boolean; readonly error: string };

/** Reads a reply: status and body text in, the API's verdict out. */
export function interpretReply(status: number, text: string): VyosReply {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return {
      ok: false,
      permanent: false,
      error: `HTTP ${status} with a body that is not the API's JSON: ${text.slice(0, 120).replace(/\s+/g, ' ')}`,
    };
  }
  const o = json as { success?: unknown; data?: unknown; error?: unknown; detail?: unknown };
  if (typeof o !== 'object' || o === null || typeof o.success !== 'boolean') {
    return { ok: false, permanent: status >= 400 && status < 500, error: `HTTP ${status}: reply has no "success" field` };
  }
  if (status === 200 && o.success) return { ok: true, data: o.data ?? null };
  const error = typeof o.error === 'string' ? o.error : typeof o.detail === 'string' ? o.detail : 'no error text';
  const permanent =
    status === 400 || status === 401 || status === 403 || status === 404 || status === 422 || (status === 200 && !o.success);
  return { ok: false, permanent, error: `HTTP ${status}: ${error.trim()}` };
}

const MAX_REPLY = 4 * 1024 * 1024;

export class VyosClient {
  /** The responder's own address on its last connection to the device (which interface it reaches it by). */
  localAddress: string | null = null;

  private constructor(
    private readonly device: DeviceConfig,
    private readonly key: string,
    private readonly ca: Buffer | null,
  ) {}

  static async open(device: DeviceConfig): Promise<VyosClient> {
    const key = await readSecretFile(device.keyFile, 'VyOS API key', VYOS_KEY);
    let ca: Buffer | null = null;
    if (device.caFile !== null) {
      try {
        ca = await readFile(device.caFile);
      } catch (err) {
        throw new SecretFileError('CA certificate', device.caFile, `cannot read: ${(err as Error).message}`);
      }
    }
    return new VyosClient(device, key, ca);
  }

  get name(): string {
    return this.device.name;
  }

  /** One API call; resolves with the reply's `data`, throws VyosError otherwise. */
  post(endpoint: VyosEndpoint, data: unknown): Promise<unknown> {
    const base = this.device.url.href.endsWith('/') ? this.device.url.href : `${this.device.url.href}/`;
    const url = new URL(endpoint.slice(1), base);
    const form = buildForm(data, this.key);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const fail = (status: number | null, permanent: boolean, message: string): VyosError =>
      new VyosError(this.device.name, endpoint, status, permanent, message);
    return new Promise((resolve, reject) => {
      const req = send(
        url,
        {
          method: 'POST',
          headers: { 'content-type': form.contentType, 'content-length': form.body.length, accept: 'application/json, text/html' },
          ...(this.ca === null ? {} : { ca: this.ca }),
          timeout: this.device.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (d: Buffer) => {
            size += d.length;
            if (size > MAX_REPLY) {
              req.destroy();
              reject(fail(res.statusCode ?? null, false, `reply above ${MAX_REPLY} bytes`));
              return;
            }
            chunks.push(d);
          });
          res.on('end', () => {
            const status = res.statusCode ?? 0;
            const r = interpretReply(status, Buffer.concat(chunks).toString('utf8'));
            if (r.ok) resolve(r.data);
            else reject(fail(status, r.permanent, r.error));
          });
          res.on('error', (err) => reject(fail(res.statusCode ?? null, false, err.message)));
        },
      );
      req.on('socket', (sock) => {
        const note = (): void => {
          if (sock.localAddress !== undefined) this.localAddress = sock.localAddress;
        };
        note();
        sock.once('connect', note);
      });
      req.on('timeout', () => req.destroy(new Error(`no reply within ${this.device.timeoutMs} ms`)));
      req.on('error', (err) => reject(fail(null, false, err.message)));
      req.end(form.body);
    });
  }
}
