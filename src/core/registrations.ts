/**
 * Which service files must be registered with (or removed from) the local Consul agent, as data.
 * A file service is registered under its name as ID with the tags `befw` and `local` and its ports;
 * a `befw`+`local` agent service without a file is deregistered. Services not tagged `local` are
 * never touched: they belong to whoever registered them.
 */
import { BEFW_TAG, ENFORCING_TAG, LOCAL_TAG, OBSERVE_TAG, UDP_TAG, portText } from './services.js';
import type { AgentService, FileService } from './types.js';

export interface Registration {
  readonly id: string;
  readonly name: string;
  readonly port: number;
  readonly tags: readonly string[];
}

export interface RegistrationPlan {
  readonly register: readonly Registration[];
  readonly deregister: readonly string[];
}

export function registrationFor(f: FileService): Registration {
  const tags = [BEFW_TAG, LOCAL_TAG];
  if (f.protocol === 'udp') tags.push(UDP_TAG);
  if (f.mode === 'enforcing') tags.push(ENFORCING_TAG);
  if (f.mode === 'observe') tags.push(OBSERVE_TAG);
  for (const p of f.ports) tags.push(`${portText(p)}/${p.proto}`);
  return { id: f.name, name: f.name, port: f.port, tags };
}

export function planRegistrations(agent: readonly AgentService[], files: readonly FileService[]): RegistrationPlan {
  const byId = new Map(agent.map((s) => [s.id, s]));
  const wanted = new Map(files.map((f) => [f.name, registrationFor(f)]));
  const register = [...wanted.values()].filter((r) => {
    const cur = byId.get(r.id);
    return cur === undefined || cur.name !== r.name || cur.port !== r.port || cur.tags.join('\n') !== r.tags.join('\n');
  });
  const deregister = agent
    .filter((s) => s.tags.includes(BEFW_TAG) && s.tags.includes(LOCAL_TAG) && !wanted.has(s.id))
    .map((s) => s.id)
    .sort();
  return { register, deregister };
}
