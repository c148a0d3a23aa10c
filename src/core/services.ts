/**
 * Turns Consul agent services (tag `befw`) and service files into service definitions with their
 * ports, mode and logical set name (SPEC §1 "Services").
 */
import { printable } from './address.js';
import type { AgentService, Diagnostic, FileService, Mode, PortRange, Proto } from './types.js';

export const BEFW_TAG = 'befw';
export const LOCAL_TAG = 'local';
export const ENFORCING_TAG = 'enforcing';
/** Mode `observe` (observe.ts): as default, with non-clients logged. `enforcing` wins over it. */
export const OBSERVE_TAG = 'observe';
export const UDP_TAG = 'udp';

export interface ServiceDef {
  readonly name: string;
  /** Logical set name: `<name>_<proto>_<port>` of the primary port. */
  readonly set: string;
  readonly mode: Mode;
  /** Primary port first, then extra ports; unique. */
  readonly ports: readonly PortRange[];
  readonly origin: string;
}

const PORT_TAG = /^([0-9]{1,5})(?::([0-9]{1,5}))?\/(tcp|udp)$/;

export type PortResult = { ok: true; range: PortRange } | { ok: false; error: string };

/** Parses `PORT/PROTO` or `FROM:TO/PROTO`. Returns null for tags that are not port tags at all. */
export function parsePortSpec(text: string): PortResult | null {
  const m = PORT_TAG.exec(text);
  if (m === null) return /^[0-9:]+\/[a-z]+$/i.test(text) ? { ok: false, error: `bad port tag "${printable(text)}"` } : null;
  const from = Number(m[1]);
  const to = m[2] === undefined ? from : Number(m[2]);
  const proto = m[3] as Proto;
  if (from < 1 || from > 65535 || to < 1 || to > 65535) return { ok: false, error: `port out of range in "${text}"` };
  if (to < from) return { ok: false, error: `port range "${text}" runs backwards` };
  return { ok: true, range: { proto, from, to } };
}

export function portText(r: PortRange): string {
  return r.from === r.to ? `${r.from}` : `${r.from}:${r.to}`;
}

/** Service name lower-cased and stripped to `[a-z0-9._-]`, then `_<proto>_<port>`. */
export function serviceSetName(name: string, proto: Proto, port: number): string {
  const base = name.toLowerCase().replace(/[^a-z0-9._-]/g, '');
  return `${base}_${proto}_${port}`;
}

/** Two declarations of one set: enforcing wins, then observe (it loosens nothing), then default. */
function mergedMode(a: Mode, b: Mode): Mode {
  if (a === 'enforcing' || b === 'enforcing') return 'enforcing';
  return a === 'observe' || b === 'observe' ? 'observe' : 'default';
}

function uniquePorts(ports: readonly PortRange[]): PortRange[] {
  const seen = new Set<string>();
  const out: PortRange[] = [];
  for (const p of ports) {
    const k = `${p.proto}/${p.from}/${p.to}`;
    if (!seen.has(k)) {
      seen.add(k);
      out.push(p);
    }
  }
  return out;
}

export interface ServicesResult {
  readonly services: readonly ServiceDef[];
  readonly diagnostics: readonly Diagnostic[];
}

/**
 * A `local` agent service mirrors a service file: the file itself is the source, and a local
 * service whose file is gone is being deregistered, so no local service counts for the plan.
 */
export function mirrorsFile(s: AgentService): boolean {
  return s.tags.includes(LOCAL_TAG);
}

/**
 * Agent services tagged `befw` plus file services. A `local` agent service whose file is gone is
 * left out (the agent deregisters it), and a file service already registered is counted once.
 * Two services that map to the same set are merged: they read the same KV keys anyway.
 */
/**
 * How a service's set is named, as the fleet's BEFW release names it (grants are written to set
 * names, so a node switching agents must keep them):
 *   name-port     service name + protocol and port of its Port (BEFW up to 0.1.12, and befw);
 *   id-first-tag  service ID + protocol and port of its first port tag (BEFW's later releases:
 *                 Port 8080 with tag 8443/tcp gives <id>_tcp_8443; no port tag: its Port).
 */
export type SetNaming = 'name-port' | 'id-first-tag';

/**
 * The set an agent service's grants are read from, as the fleet's BEFW release names it: name and
 * Port, or the service ID and its first port tag (the first one that parses).
 */
export function agentServiceSet(s: Pick<AgentService, 'id' | 'name' | 'port' | 'tags'>, naming: SetNaming): string {
  const proto: Proto = s.tags.includes(UDP_TAG) ? 'udp' : 'tcp';
  if (naming === 'id-first-tag' && s.id.toLowerCase().replace(/[^a-z0-9._-]/g, '') !== '') {
    for (const tag of s.tags) {
      const p = parsePortSpec(tag);
      if (p?.ok === true) return serviceSetName(s.id, p.range.proto, p.range.from);
    }
    return serviceSetName(s.id, proto, s.port);
  }
  return serviceSetName(s.name, proto, s.port);
}

export function collectServices(
  agent: readonly AgentService[],
  files: readonly FileService[],
  naming: SetNaming = 'name-port',
): ServicesResult {
  const diagnostics: Diagnostic[] = [];
  const defs: ServiceDef[] = [];

  for (const s of [...agent].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    if (!s.tags.includes(BEFW_TAG)) continue;
    if (mirrorsFile(s)) continue;
    const subject = `service ${printable(s.id)}`;
    if (!Number.isInteger(s.port) || s.port < 1 || s.port > 65535) {
      diagnostics.push({ severity: 'error', code: 'bad-service', subject, message: `port ${s.port} is not 1–65535; service not enforced` });
      continue;
    }
    if (s.name.toLowerCase().replace(/[^a-z0-9._-]/g, '') === '') {
      diagnostics.push({ severity: 'error', code: 'bad-service', subject, message: 'name has no usable characters; service not enforced' });
      continue;
    }
    const proto: Proto = s.tags.includes(UDP_TAG) ? 'udp' : 'tcp';
    const ports: PortRange[] = [{ proto, from: s.port, to: s.port }];
    for (const tag of s.tags) {
      const p = parsePortSpec(tag);
      if (p === null) continue;
      if (!p.ok) {
        diagnostics.push({ severity: 'error', code: 'bad-port', subject, message: `${p.error}; port ignored` });
        continue;
      }
      ports.push(p.range);
    }
    const set = agentServiceSet(s, naming);
    defs.push({
      name: s.name,
      set,
      mode: s.tags.includes(ENFORCING_TAG) ? 'enforcing' : s.tags.includes(OBSERVE_TAG) ? 'observe' : 'default',
      ports: uniquePorts(ports),
      origin: `consul:${s.id}`,
    });
  }
  for (const f of files) {
    defs.push({
      name: f.name,
      set: serviceSetName(f.name, f.protocol, f.port),
      mode: f.mode,
      ports: uniquePorts([{ proto: f.protocol, from: f.port, to: f.port }, ...f.ports]),
      origin: `file:${f.file}`,
    });
  }

  const bySet = new Map<string, ServiceDef>();
  for (const d of defs) {
    const prev = bySet.get(d.set);
    if (prev === undefined) {
      bySet.set(d.set, d);
      continue;
    }
    if (prev.mode !== d.mode) {
      diagnostics.push({
        severity: 'warning',
        code: 'service-conflict',
        subject: `set ${d.set}`,
        message: `${prev.origin} and ${d.origin} share the set with different modes; enforcing wins`,
      });
    }
    bySet.set(d.set, {
      ...prev,
      mode: mergedMode(prev.mode, d.mode),
      ports: uniquePorts([...prev.ports, ...d.ports]),
      origin: `${prev.origin},${d.origin}`,
    });
  }
  const services = [...bySet.values()].sort((a, b) => (a.set < b.set ? -1 : a.set > b.set ? 1 : 0));
  return { services, diagnostics };
}
