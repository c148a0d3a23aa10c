/**
 * Local inputs: service files (`<services dir>/*.json`, BEFW's format) and member files
 * (`<ipsets dir>/<set>.ipset`). Reading is here; a bad file becomes a diagnostic and is skipped,
 * never a crash, and never read as "no services" when the directory itself cannot be read.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { lazyValidator } from '../../config/lazyValidator.js';
import { printable } from '../../core/address.js';
import { parsePortSpec } from '../../core/services.js';
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

const MAX_FILE_BYTES = 16 * 1024 * 1024;

const SERVICE_SCHEMA = {
  type: 'object',
  required: ['name', 'port'],
  additionalProperties: false,
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' },
    port: { type: 'integer', minimum: 1, maximum: 65535 },
    protocol: { enum: ['tcp', 'udp'] },
    mode: { enum: ['default', 'enforcing'] },
    ports: {
      type: 'array',
      maxItems: 1024,
      items: {
        oneOf: [
          { type: 'string', maxLength: 32 },
          // BEFW's own files list extra ports as objects.
          {
            type: 'object',
            required: ['port'],
            additionalProperties: false,
            properties: { port: { type: 'integer', minimum: 1, maximum: 65535 }, protocol: { enum: ['tcp', 'udp'] } },
          },
        ],
      },
    },
  },
} as const;

interface RawService {
  name: string;
  port: number;
  protocol?: Proto;
  mode?: 'default' | 'enforcing';
  ports?: (string | { port: number; protocol?: Proto })[];
}

const serviceValidator = lazyValidator<RawService>(SERVICE_SCHEMA);

/** Directory listing where a missing directory is an empty one but any other failure is an error. */
async function listDir(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).sort();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new LocalInputError(dir, err);
  }
}

async function readSmall(path: string): Promise<string> {
  const buf = await readFile(path);
  if (buf.length > MAX_FILE_BYTES) throw new Error(`larger than ${MAX_FILE_BYTES} bytes`);
  return buf.toString('utf8');
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
    return diag(`not JSON: ${printable((err as Error).message, 200)}`);
  }
  const validateService = serviceValidator();
  if (!validateService(json)) {
    const e = validateService.errors?.[0];
    return diag(`${e?.instancePath || '(root)'} ${e?.message ?? 'invalid'}`);
  }
  const ports: PortRange[] = [];
  for (const p of json.ports ?? []) {
    if (typeof p !== 'string') {
      ports.push({ proto: p.protocol ?? 'tcp', from: p.port, to: p.port });
      continue;
    }
    const r = parsePortSpec(p);
    if (r === null || !r.ok) return diag(r === null ? `bad port "${printable(p)}" (expected PORT/PROTO or FROM:TO/PROTO)` : r.error);
    ports.push(r.range);
  }
  return {
    service: { file, name: json.name, port: json.port, protocol: json.protocol ?? 'tcp', mode: json.mode ?? 'default', ports },
    diagnostics: [],
  };
}

export async function readServiceFiles(dir: string): Promise<{ services: FileService[]; diagnostics: Diagnostic[] }> {
  const services: FileService[] = [];
  const diagnostics: Diagnostic[] = [];
  for (const name of await listDir(dir)) {
    if (!name.endsWith('.json')) continue;
    const path = join(dir, name);
    let text: string;
    try {
      text = await readSmall(path);
    } catch (err) {
      // Skipping it would drop the service's rules: abandon this read and keep what is enforced.
      throw new LocalInputError(path, err);
    }
    const r = parseServiceFile(text, path);
    diagnostics.push(...r.diagnostics);
    if (r.service !== undefined) services.push(r.service);
  }
  return { services, diagnostics };
}

export async function readIpsetFiles(dir: string): Promise<IpsetFile[]> {
  const files: IpsetFile[] = [];
  for (const name of await listDir(dir)) {
    if (!name.endsWith('.ipset')) continue;
    const path = join(dir, name);
    try {
      files.push({ file: path, set: name.slice(0, -'.ipset'.length), text: await readSmall(path) });
    } catch (err) {
      // An unreadable member file would narrow access silently: make the whole read fail instead.
      throw new LocalInputError(path, err);
    }
  }
  return files;
}
