/**
 * `--check`: beyond the config's shape and meaning, every file the config names is opened and
 * its mode checked, so a missing or too-open key file is found before the daemon needs it:
 *   - secrets (the job signing keys, the Consul token, VyOS API keys): readable, mode 0600 or
 *     stricter, holding what they must;
 *   - CA certificates and the config itself: readable, not writable by group or others (whoever
 *     can write them can point the reactor elsewhere).
 */
import { access, constants, readFile, stat } from 'node:fs/promises';
import type { ReactorConfig } from './config/reactorConfig.js';
import { loadJobKeys } from './queue/jobAuth.js';
import { VYOS_KEY } from './responder/vyosClient.js';
import { readSecretFile } from './secretFile.js';

export interface FileCheck {
  readonly path: string;
  readonly what: string;
  /** null: fine. */
  readonly problem: string | null;
}

async function notWritableByOthers(path: string): Promise<string | null> {
  try {
    const st = await stat(path);
    await access(path, constants.R_OK);
    if (!st.isFile()) return 'is not a regular file';
    if ((st.mode & 0o022) !== 0) return `writable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod go-w it`;
    await readFile(path);
    return null;
  } catch (err) {
    return `cannot read: ${(err as Error).message}`;
  }
}

async function secret(path: string, fn: () => Promise<unknown>): Promise<string | null> {
  try {
    await fn();
    return null;
  } catch (err) {
    const m = (err as Error).message;
    return m.startsWith(`${path}`) ? m : m.replace(/^.*? file [^:]*: /, '');
  }
}

export async function checkFiles(config: ReactorConfig, section: 'parser' | 'responder'): Promise<FileCheck[]> {
  const out: FileCheck[] = [{ path: config.file, what: 'config', problem: await notWritableByOthers(config.file) }];
  const key = config.queue.hmacKeyFile;
  if (key !== null) out.push({ path: key, what: 'job signing keys', problem: await secret(key, () => loadJobKeys(key)) });
  const rc = config.responder;
  if (section === 'responder' && rc !== null) {
    const token = rc.consul.tokenFile;
    if (token !== null)
      out.push({
        path: token,
        what: 'Consul ACL token',
        problem: await secret(token, () => readSecretFile(token, 'Consul ACL token', /^[A-Za-z0-9._-]{1,256}$/)),
      });
    for (const d of rc.devices.values()) {
      out.push({
        path: d.keyFile,
        what: `VyOS API key of ${d.name}`,
        problem: await secret(d.keyFile, () => readSecretFile(d.keyFile, 'VyOS API key', VYOS_KEY)),
      });
      if (d.caFile !== null) out.push({ path: d.caFile, what: `CA of ${d.name}`, problem: await notWritableByOthers(d.caFile) });
    }
  }
  return out;
}
