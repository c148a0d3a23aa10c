/**
 * A stand-in for a VyOS router's HTTP API, for the one part of the reactor that cannot run here.
 * It checks requests the way the documented API takes them and answers the way VyOS's API server
 * does (JSON `{"success", "data", "error"}` served as text/html):
 *   - POST only; form fields `data` (JSON: one command or a list) and `key`, as multipart/form-data
 *     or urlencoded; no data: 422, data not JSON: 400, wrong or missing key: 401
 *     "Valid API key is required";
 *   - /configure: op set/delete/comment with a non-empty path of strings; values are validated
 *     like VyOS does for what the reactor touches (IPv4 in address-group, IPv6 in
 *     ipv6-address-group, known interfaces), a refusal is 400 with VyOS's kind of message;
 *   - /retrieve: returnValues, showConfig, exists on an in-memory config tree;
 *   - /config-file: save.
 * Failures can be injected through a control file (read at every request):
 *   [{ "id": "x", "endpoint": "/configure", "status": 500, "times": 2, "html": false }]
 * Every request is written to stdout as one JSON line (the key itself never is).
 * Usage: node vyosMock.js <port> <key file> <control file>
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';

const [portText, keyFile, controlFile] = process.argv.slice(2);
const KEY = readFileSync(keyFile ?? '', 'utf8').trim();

type Tree = { [k: string]: Tree };
const config: Tree = {
  interfaces: {
    ethernet: {
      // The interface the responder reaches the API by (the API listens on 127.0.0.1).
      eth0: { 'hw-id': { '52:54:00:00:00:00': {} }, address: { '127.0.0.1/8': {} } },
      eth1: { 'hw-id': { '52:54:00:00:00:01': {} } },
      eth2: { 'hw-id': { '52:54:00:00:00:02': {} } },
    },
  },
  firewall: { group: { 'address-group': { 'BEFW-BLOCK': { address: { '203.0.113.200': {} } } } } },
};

interface Injected {
  id: string;
  endpoint: string;
  status: number;
  times: number;
  html?: boolean;
}
const used = new Map<string, number>();

function injected(endpoint: string): Injected | null {
  let list: Injected[];
  try {
    list = JSON.parse(readFileSync(controlFile ?? '', 'utf8')) as Injected[];
  } catch {
    return null;
  }
  for (const f of list) {
    if (f.endpoint !== endpoint) continue;
    const n = used.get(f.id) ?? 0;
    if (n >= f.times) continue;
    used.set(f.id, n + 1);
    return f;
  }
  return null;
}

function nodeAt(path: readonly string[]): Tree | null {
  let t: Tree | undefined = config;
  for (const p of path) {
    t = t?.[p];
    if (t === undefined) return null;
  }
  return t ?? null;
}

class ConfigSessionError extends Error {}

function validateSet(path: readonly string[]): void {
  const [a, b, c, name, d, value] = path;
  if (a === 'firewall' && b === 'group' && (c === 'address-group' || c === 'ipv6-address-group')) {
    if (name === undefined || !/^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$/.test(name))
      throw new ConfigSessionError(`Configuration path: [firewall group ${c} ${name ?? ''}] is not valid\nSet failed\n`);
    if (d !== 'address' || value === undefined || path.length !== 6)
      throw new ConfigSessionError(`Configuration path: [${path.join(' ')}] is not valid\nSet failed\n`);
    const okValue = c === 'address-group' ? isIPv4(value) : isIPv6(value);
    if (!okValue)
      throw new ConfigSessionError(
        `\n\n  Error: ${value} is not a valid ${c === 'address-group' ? 'IPv4' : 'IPv6'} address or range\n\n\n\n  Value validation failed\n  Set failed\n\n`,
      );
    return;
  }
  if (a === 'interfaces' && b === 'ethernet') {
    if (c === undefined || nodeAt(['interfaces', 'ethernet', c]) === null)
      throw new ConfigSessionError(
        `Configuration path: [interfaces ethernet ${c ?? ''}] is not valid: interface does not exist\nSet failed\n`,
      );
    if (path.length !== 4 || path[3] !== 'disable')
      throw new ConfigSessionError(`Configuration path: [${path.join(' ')}] is not valid\nSet failed\n`);
    return;
  }
  throw new ConfigSessionError(`Configuration path: [${path.join(' ')}] is not valid\nSet failed\n`);
}

function apply(op: string, path: string[]): void {
  if (op === 'set') {
    validateSet(path);
    let t = config;
    for (const p of path) t = t[p] ??= {};
    return;
  }
  if (op === 'delete') {
    const parent = nodeAt(path.slice(0, -1));
    const last = path[path.length - 1] ?? '';
    if (parent === null || parent[last] === undefined)
      throw new ConfigSessionError(`Cannot delete [${path.join(' ')}]: path/value does not exist`);
    delete parent[last];
    return;
  }
  if (op === 'comment') return;
  throw new ConfigSessionError(`'${op}' is not a valid operation`);
}

function toJson(t: Tree): unknown {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(t)) out[k] = toJson(v);
  return out;
}

interface Command {
  op?: unknown;
  path?: unknown;
  file?: unknown;
}

function handle(endpoint: string, data: unknown): { status: number; body: unknown } {
  const fail = (status: number, error: string): { status: number; body: unknown } => ({
    status,
    body: { success: false, error, data: null },
  });
  const ok = (d: unknown): { status: number; body: unknown } => ({ status: 200, body: { success: true, data: d, error: null } });
  const cmds = (Array.isArray(data) ? data : [data]) as Command[];
  for (const c of cmds) {
    if (typeof c !== 'object' || c === null) return fail(400, `Malformed command '${JSON.stringify(c)}': any command must be JSON of dict`);
    if (c.op === undefined) return fail(400, `Malformed command '${JSON.stringify(c)}': missing 'op' field`);
    if (endpoint !== '/config-file') {
      if (!Array.isArray(c.path)) return fail(400, `Malformed command '${JSON.stringify(c)}': 'path' field must be a list`);
      if (!c.path.every((p) => typeof p === 'string'))
        return fail(400, `Malformed command '${JSON.stringify(c)}': 'path' field must be a list of strings`);
      if (endpoint === '/configure' && c.path.length === 0)
        return fail(400, `Malformed command '${JSON.stringify(c)}': 'path' list must be non-empty`);
    }
  }
  if (endpoint === '/configure') {
    const snapshot = JSON.stringify(config);
    try {
      for (const c of cmds) apply(String(c.op), c.path as string[]);
    } catch (err) {
      // Discard the session: nothing of a refused batch stays.
      const back = JSON.parse(snapshot) as Tree;
      for (const k of Object.keys(config)) delete config[k];
      Object.assign(config, back);
      return fail(400, (err as Error).message);
    }
    return ok(null);
  }
  const c = cmds[0] as Command;
  if (endpoint === '/retrieve') {
    const path = c.path as string[];
    const node = nodeAt(path);
    if (c.op === 'returnValues') return ok(node === null ? [] : Object.keys(node));
    if (c.op === 'exists') return ok(node !== null);
    if (c.op === 'showConfig') return node === null ? fail(400, 'Configuration under specified path is empty\n') : ok(toJson(node));
    return fail(400, `'${String(c.op)}' is not a valid operation`);
  }
  if (endpoint === '/config-file') {
    if (c.op === 'save') return ok(`Saving configuration to '${typeof c.file === 'string' ? c.file : '/config/config.boot'}'...\nDone\n`);
    return fail(400, `'${String(c.op)}' is not a valid operation`);
  }
  return { status: 404, body: { detail: 'Not Found' } };
}

let seq = 0;
const server = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (d: Buffer) => chunks.push(d));
  req.on('end', () => {
    void (async () => {
      const body = Buffer.concat(chunks);
      const endpoint = new URL(req.url ?? '/', 'http://vyos').pathname;
      const contentType = req.headers['content-type'] ?? '';
      const record: Record<string, unknown> = {
        event: 'request',
        seq: ++seq,
        method: req.method,
        endpoint,
        contentType: contentType.split(';')[0],
      };
      const answer = (status: number, payload: unknown, html = false): void => {
        record.status = status;
        process.stdout.write(`${JSON.stringify(record)}\n`);
        // VyOS's API server answers JSON with FastAPI's HTMLResponse: text/html.
        res.writeHead(status, { 'content-type': 'text/html; charset=utf-8' });
        res.end(html ? String(payload) : JSON.stringify(payload));
      };
      if (req.method !== 'POST') return answer(405, { detail: 'Method Not Allowed' });
      let fields: Map<string, string>;
      try {
        const fd = await new Request('http://vyos/', { method: 'POST', headers: { 'content-type': contentType }, body }).formData();
        fields = new Map([...fd.entries()].map(([k, v]) => [k, typeof v === 'string' ? v : v.name]));
        record.form = contentType.startsWith('multipart/form-data') ? 'multipart' : 'urlencoded';
      } catch {
        fields = new Map();
        record.form = 'unreadable';
      }
      record.fields = [...fields.keys()];
      const dataText = fields.get('data');
      if (dataText === undefined || dataText === '')
        return answer(422, { success: false, error: 'Non-empty data field is required', data: null });
      let data: unknown;
      try {
        data = JSON.parse(dataText);
      } catch (err) {
        return answer(400, { success: false, error: `Failed to parse JSON: ${(err as Error).message}`, data: null });
      }
      record.data = data;
      record.keyOk = fields.get('key') === KEY;
      if (!record.keyOk) return answer(401, { success: false, error: 'Valid API key is required', data: null });
      const f = injected(endpoint);
      if (f !== null) {
        record.injected = f.id;
        if (f.html === true)
          return answer(
            f.status,
            `<html>\r\n<head><title>${f.status} Bad Gateway</title></head>\r\n<body>\r\n<center><h1>${f.status} Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n`,
            true,
          );
        return answer(f.status, {
          success: false,
          error: f.status >= 500 ? 'An internal error occured. Check the logs for details.' : 'Commit failed',
          data: null,
        });
      }
      const r = handle(endpoint, data);
      answer(r.status, r.body);
    })();
  });
});

server.listen(Number(portText), '127.0.0.1', () => process.stdout.write(`${JSON.stringify({ event: 'listening' })}\n`));
