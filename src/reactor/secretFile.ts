/**
 * Secrets the reactor reads from files (the Consul token, VyOS API keys, the job signing keys):
 * a file only its owner may read, its text checked against what the secret must look like. The
 * error names the file and why, never the secret.
 */
import { readFile, stat } from 'node:fs/promises';

/** A secret's file is missing, too open or malformed: a config problem. */
export class SecretFileError extends Error {
  constructor(
    readonly what: string,
    readonly path: string,
    reason: string,
  ) {
    super(`${what} file ${path}: ${reason}`);
    this.name = 'SecretFileError';
  }
}

/** Reads a secret from a file that only its owner may read; the error never holds the secret. */
export async function readSecretFile(path: string, what: string, valid: RegExp): Promise<string> {
  let st;
  try {
    st = await stat(path);
  } catch (err) {
    throw new SecretFileError(what, path, `cannot read: ${(err as Error).message}`);
  }
  if (!st.isFile()) throw new SecretFileError(what, path, 'is not a regular file');
  if ((st.mode & 0o077) !== 0) throw new SecretFileError(what, path, 'readable by group or others; chmod 600 it');
  let text: string;
  try {
    text = (await readFile(path, 'utf8')).trim();
  } catch (err) {
    throw new SecretFileError(what, path, `cannot read: ${(err as Error).message}`);
  }
  if (!valid.test(text)) throw new SecretFileError(what, path, `does not hold a valid ${what}`);
  return text;
}
