/**
 * Runs `befw` commands in one long-lived process inside a sandbox namespace: the CLI's own
 * `main()` per request, with its stdout, stderr and exit code captured. Starting Node and
 * loading the CLI for every command costs most of a second; integration tests make dozens.
 *
 * Protocol: one JSON request per stdin line, `{"id":1,"args":[...],"env":{...}}`; one JSON answer
 * per stdout line, `{"id":1,"code":0,"stdout":"...","stderr":"..."}`. Requests run one at a time.
 * Token variables are cleared before each request, so only what a test passes reaches Consul.
 */
import { createInterface } from 'node:readline';
import { main } from '../../src/cli/main.js';

interface Request {
  readonly id: number;
  readonly args: readonly string[];
  readonly env: Record<string, string>;
}

const TOKEN_VARS = ['BEFW_CONSUL_TOKEN', 'CONSUL_HTTP_TOKEN'];
const out = process.stdout.write.bind(process.stdout);
const err = process.stderr.write.bind(process.stderr);
const realExit = process.exit.bind(process);

/** What commander's process.exit becomes during a request: main() turns it into an exit code. */
class ExitCalled extends Error {
  readonly code = 'commander.exit';
  constructor(readonly exitCode: number) {
    super(`exit ${exitCode}`);
  }
}

type Write = typeof process.stdout.write;

async function handle(req: Request): Promise<void> {
  const saved = new Map<string, string | undefined>();
  for (const k of [...TOKEN_VARS, ...Object.keys(req.env)]) saved.set(k, process.env[k]);
  for (const k of TOKEN_VARS) delete process.env[k];
  Object.assign(process.env, req.env);
  let stdout = '';
  let stderr = '';
  const capture =
    (append: (s: string) => void): Write =>
    (chunk: string | Uint8Array, ...rest: unknown[]) => {
      append(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString());
      const cb = rest.find((r) => typeof r === 'function') as (() => void) | undefined;
      cb?.();
      return true;
    };
  process.stdout.write = capture((s) => (stdout += s));
  process.stderr.write = capture((s) => (stderr += s));
  process.exit = (code?: number) => {
    throw new ExitCalled(code ?? 0);
  };
  // main() reports an exit code a command left in process.exitCode; one request's must not
  // leak into the next.
  process.exitCode = undefined;
  let code: number;
  try {
    code = await main(['node', 'befw', ...req.args]);
  } catch (e) {
    code = -1;
    stderr += `cliServer: ${(e as Error).stack ?? String(e)}`;
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
    process.exit = realExit;
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
  out(`${JSON.stringify({ id: req.id, code, stdout, stderr })}\n`);
}

let queue = Promise.resolve();
createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line) as Request;
  queue = queue.then(() => handle(req));
});
out('ready\n');
