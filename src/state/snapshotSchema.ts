/**
 * The shape a state.bin snapshot must have before the compiler sees it. A checksum proves the file
 * is the one written, not that the writer (an older or newer agent, a hand-made file) wrote what
 * this agent reads: a snapshot whose service lacks a name would crash the compile at start, which
 * is exactly when the saved state has to work. A file that fails here is "invalid", and the agent
 * falls back to its safety net as for a torn file.
 */
import { Ajv, type ValidateFunction } from 'ajv';
import type { Snapshot } from '../core/types.js';

const str = { type: 'string', maxLength: 65536 } as const;
const port = { type: 'integer', minimum: 0, maximum: 65535 } as const;
const proto = { enum: ['tcp', 'udp'] } as const;
const strings = { type: 'array', items: str } as const;
const obj = (required: readonly string[], properties: Record<string, object>): object => ({
  type: 'object',
  required,
  properties,
});

const SCHEMA = obj(['node', 'agentServices', 'fileServices', 'kv', 'ipsetFiles', 'inputDiagnostics'], {
  node: obj(['name', 'dc'], { name: str, dc: str }),
  agentServices: { type: 'array', items: obj(['id', 'name', 'port', 'tags'], { id: str, name: str, port, tags: strings }) },
  fileServices: {
    type: 'array',
    items: obj(['file', 'name', 'port', 'protocol', 'mode', 'ports'], {
      file: str,
      name: str,
      port,
      protocol: proto,
      mode: { enum: ['default', 'enforcing', 'observe'] },
      ports: { type: 'array', items: obj(['proto', 'from', 'to'], { proto, from: port, to: port }) },
    }),
  },
  kv: { type: 'array', items: obj(['key', 'value'], { key: str, value: { type: ['string', 'null'] } }) },
  ipsetFiles: { type: 'array', items: obj(['file', 'set', 'text'], { file: str, set: str, text: { type: 'string' } }) },
  inputDiagnostics: {
    type: 'array',
    items: obj(['severity', 'code', 'subject', 'message'], {
      severity: { enum: ['error', 'warning'] },
      code: str,
      subject: str,
      message: { type: 'string' },
    }),
  },
  consulPeers: obj(['addrs', 'tcpPorts', 'udpPorts'], {
    addrs: strings,
    tcpPorts: { type: 'array', items: port },
    udpPorts: { type: 'array', items: port },
  }),
  trapPorts: { type: 'array', items: port },
});

let compiled: ValidateFunction<Snapshot> | null = null;

/** null when `value` is a snapshot this agent can compile; else the first problem, with its path. */
export function snapshotProblem(value: unknown): string | null {
  compiled ??= new Ajv({ allErrors: false }).compile<Snapshot>(SCHEMA);
  if (compiled(value)) return null;
  const e = compiled.errors?.[0];
  return e === undefined ? 'not a snapshot' : `snapshot${e.instancePath} ${e.message ?? 'is invalid'}`;
}
