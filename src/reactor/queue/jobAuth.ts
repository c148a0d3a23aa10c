/**
 * Signed queue messages. beanstalkd has no authentication: whoever reaches it can put a job. So
 * every message a parser (or `befw reactor unban`) puts is signed with HMAC-SHA256 under a key
 * shared by parsers and responders (a mode-0600 file), and a responder acts only on messages
 * whose signature checks out for the tube they were taken from:
 *
 *   BEFW1 <kind> <key id> <mac, base64url>\n<payload JSON>[\n#note <JSON>]
 *   mac = HMAC-SHA256(key, "BEFW1\n" kind "\n" tube "\n" payload)
 *
 * The tube is inside the MAC, so a signed job moved to another tube (another event's actions)
 * fails. The optional note after the payload is unsigned: a responder that buries a job writes
 * why there, for `befw queue peek --buried`; nothing acts on it.
 *
 * The key file holds one key per line (at least 32 characters; `openssl rand -base64 48`); the
 * first signs, every one verifies, so keys can be rotated without a flag day. A key is named in
 * messages by the first 8 hex digits of its SHA-256, which says nothing about the key itself.
 */
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { readSecretFile } from '../secretFile.js';

export type MessageKind = 'job' | 'ctl';

export interface JobKeys {
  readonly signing: { readonly id: string; readonly key: Buffer };
  readonly byId: ReadonlyMap<string, Buffer>;
}

const KEY_LINE = /^[\x21-\x7e]{32,512}$/;

export function keyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

/** Keys from the text of a key file; throws with a reason (never the key) when malformed. */
export function parseJobKeys(text: string): JobKeys {
  const lines = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length === 0) throw new Error('holds no key');
  const byId = new Map<string, Buffer>();
  lines.forEach((l, i) => {
    if (!KEY_LINE.test(l)) throw new Error(`key ${i + 1} must be 32 to 512 printable characters without spaces`);
    const key = Buffer.from(l, 'utf8');
    byId.set(keyId(key), key);
  });
  const first = Buffer.from(lines[0] as string, 'utf8');
  return { signing: { id: keyId(first), key: first }, byId };
}

export async function loadJobKeys(path: string): Promise<JobKeys> {
  const text = await readSecretFile(path, 'job signing key', /^[\s\S]{1,65536}$/);
  try {
    return parseJobKeys(text);
  } catch (err) {
    throw new Error(`job signing key file ${path}: ${(err as Error).message}`, { cause: err });
  }
}

function mac(key: Buffer, kind: MessageKind, tube: string, payload: Buffer): Buffer {
  return createHmac('sha256', key).update(`BEFW1\n${kind}\n${tube}\n`).update(payload).digest();
}

/** A signed message for `tube`. */
export function seal(keys: JobKeys, kind: MessageKind, tube: string, payload: Buffer): Buffer {
  const m = mac(keys.signing.key, kind, tube, payload).toString('base64url');
  return Buffer.concat([Buffer.from(`BEFW1 ${kind} ${keys.signing.id} ${m}\n`, 'latin1'), payload]);
}

/** What a responder writes beside a job it buries. */
export interface JobNote {
  readonly at: number;
  readonly by: string;
  readonly reason: string;
  readonly error: string;
  readonly attempt?: number;
}

/** The body with a note after it (replacing an earlier note). */
export function withNote(body: Buffer, note: JobNote): Buffer {
  const split = splitBody(body);
  const base = split.note === null ? body : body.subarray(0, split.noteAt);
  return Buffer.concat([base, Buffer.from(`\n#note ${JSON.stringify(note)}`, 'utf8')]);
}

export type OpenFailure = 'unsigned' | 'unknown-key' | 'bad-signature' | 'wrong-kind';

export type Opened =
  | { readonly ok: true; readonly payload: Buffer; readonly note: JobNote | null }
  | { readonly ok: false; readonly reason: OpenFailure; readonly error: string; readonly note: JobNote | null };

interface Split {
  readonly header: string | null;
  readonly payload: Buffer;
  readonly note: JobNote | null;
  readonly noteAt: number;
}

function splitBody(body: Buffer): Split {
  const nl = body.indexOf(0x0a);
  const header = nl > 0 && body.subarray(0, 6).toString('latin1') === 'BEFW1 ' ? body.toString('latin1', 0, nl) : null;
  const start = header === null ? 0 : nl + 1;
  const noteAt = body.indexOf('\n#note ', start);
  let note: JobNote | null = null;
  if (noteAt >= 0) {
    try {
      const n = JSON.parse(body.toString('utf8', noteAt + 7)) as Partial<JobNote>;
      if (typeof n.reason === 'string' && typeof n.error === 'string')
        note = {
          at: Number(n.at) || 0,
          by: String(n.by ?? ''),
          reason: n.reason,
          error: n.error,
          ...(typeof n.attempt === 'number' ? { attempt: n.attempt } : {}),
        };
    } catch {
      note = null;
    }
  }
  return { header, payload: body.subarray(start, noteAt >= 0 ? noteAt : body.length), note, noteAt };
}

/** Checks a message taken from `tube`; on success, its payload. */
export function open(keys: JobKeys, kind: MessageKind, tube: string, body: Buffer): Opened {
  const s = splitBody(body);
  const fail = (reason: OpenFailure, error: string): Opened => ({ ok: false, reason, error, note: s.note });
  if (s.header === null) return fail('unsigned', 'no signature (the job was not put by a befw parser with the shared key)');
  const [, k, id, m] = s.header.split(' ');
  if (k !== kind) return fail('wrong-kind', `a "${(k ?? '').slice(0, 10)}" message where a "${kind}" one belongs`);
  const key = keys.byId.get(id ?? '');
  if (key === undefined) return fail('unknown-key', `signed with key ${(id ?? '').slice(0, 16)}, which is not in the key file`);
  const want = mac(key, kind, tube, s.payload);
  const got = Buffer.from(m ?? '', 'base64url');
  if (got.length !== want.length || !timingSafeEqual(got, want))
    return fail('bad-signature', `the signature does not match the job and its tube ${tube} (forged, altered, or moved from another tube)`);
  return { ok: true, payload: s.payload, note: s.note };
}

/** The payload and note of a body, unverified (for showing buried jobs to an operator). */
export function inspect(body: Buffer): { signed: boolean; payload: Buffer; note: JobNote | null } {
  const s = splitBody(body);
  return { signed: s.header !== null, payload: s.payload, note: s.note };
}
