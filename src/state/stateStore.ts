/**
 * state.bin: the last good state, saved after every successful apply and enforced at start before
 * Consul answers. It holds the snapshot the plan was compiled from (not the plan), so a restart
 * recompiles it with the current time and expired entries stay out.
 *
 * Format: msgpack envelope { magic, version, sha256, payload } where payload is the msgpack of
 * the state; written to a temporary file, fsynced, renamed over the old one, and the directory
 * fsynced, so a crash leaves either the old or the new file, never a torn one.
 */
import { createHash } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Packr } from 'msgpackr';
import type { Snapshot } from '../core/types.js';
import { snapshotProblem } from './snapshotSchema.js';

export const STATE_MAGIC = 'befw-state';
export const STATE_VERSION = 1;

export interface SavedState {
  readonly savedAt: number;
  readonly snapshot: Snapshot;
  /** Kernel set names the agent created and still owns. */
  readonly owned: readonly string[];
  readonly fingerprint: string;
}

export type LoadResult =
  | { readonly kind: 'ok'; readonly state: SavedState }
  | { readonly kind: 'missing' }
  | { readonly kind: 'invalid'; readonly reason: string };

export interface StateStore {
  load(): Promise<LoadResult>;
  save(state: SavedState): Promise<void>;
}

export class StateSaveError extends Error {
  constructor(
    readonly path: string,
    cause: unknown,
  ) {
    super(`cannot save ${path}: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'StateSaveError';
  }
}

// Plain objects and arrays only: no msgpackr record extension, so the file reads back the same
// from any version of the library.
const packrOptions = { useRecords: false, mapsAsObjects: true } as const;
const packr = (): Packr => new Packr(packrOptions);
/** Small buffer handed to msgpackr after a pack so it drops the large one it keeps (module-wide). */
const SMALL_TARGET = 8192;

function sha256(buf: Uint8Array): string {
  return createHash('sha256').update(buf).digest('hex');
}

export function encodeState(state: SavedState): Buffer {
  const p = packr();
  // Copies: the packer's buffer is reused by its next pack, and then given up, so a 10 MB
  // state does not stay with the agent between saves.
  const payload = Buffer.from(p.pack(state));
  const out = Buffer.from(p.pack({ magic: STATE_MAGIC, version: STATE_VERSION, sha256: sha256(payload), payload }));
  p.useBuffer(Buffer.allocUnsafeSlow(SMALL_TARGET));
  return out;
}

export function decodeState(buf: Buffer): LoadResult {
  let env: unknown;
  try {
    env = packr().unpack(buf);
  } catch (err) {
    return { kind: 'invalid', reason: `not a state file: ${(err as Error).message}` };
  }
  const e = env as { magic?: unknown; version?: unknown; sha256?: unknown; payload?: unknown };
  if (typeof e !== 'object' || e === null || e.magic !== STATE_MAGIC) return { kind: 'invalid', reason: 'not a befw state file' };
  if (typeof e.version !== 'number' || e.version > STATE_VERSION)
    return { kind: 'invalid', reason: `state version ${String(e.version)} is newer than this agent (${STATE_VERSION})` };
  if (!(e.payload instanceof Uint8Array) || typeof e.sha256 !== 'string')
    return { kind: 'invalid', reason: 'envelope lacks payload or checksum' };
  if (sha256(e.payload) !== e.sha256) return { kind: 'invalid', reason: 'checksum mismatch (truncated or corrupt)' };
  try {
    const state = packr().unpack(e.payload) as SavedState;
    if (typeof state.fingerprint !== 'string' || !Array.isArray(state.owned) || typeof state.snapshot !== 'object') {
      return { kind: 'invalid', reason: 'payload lacks fields' };
    }
    if (!state.owned.every((n) => typeof n === 'string')) return { kind: 'invalid', reason: 'owned set names are not strings' };
    const problem = snapshotProblem(state.snapshot);
    if (problem !== null) return { kind: 'invalid', reason: problem };
    return { kind: 'ok', state };
  } catch (err) {
    return { kind: 'invalid', reason: `payload unreadable: ${(err as Error).message}` };
  }
}

export function createFileStateStore(path: string): StateStore {
  return {
    async load() {
      let buf: Buffer;
      try {
        buf = await readFile(path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
        return { kind: 'invalid', reason: `unreadable: ${(err as Error).message}` };
      }
      return decodeState(buf);
    },

    async save(state) {
      const dir = dirname(path);
      const tmp = `${path}.tmp-${process.pid}`;
      try {
        await mkdir(dir, { recursive: true, mode: 0o700 });
        const fh = await open(tmp, 'w', 0o600);
        try {
          await fh.writeFile(encodeState(state));
          await fh.sync();
        } finally {
          await fh.close();
        }
        await rename(tmp, path);
        const dh = await open(dir, 'r');
        try {
          await dh.sync();
        } finally {
          await dh.close();
        }
      } catch (err) {
        await rm(tmp, { force: true }).catch(() => undefined);
        throw new StateSaveError(path, err);
      }
    },
  };
}
