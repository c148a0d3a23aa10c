/**
 * Actions on VyOS routers through their HTTP API:
 *   - vyos-address-group: the attacker goes into a firewall address group (IPv4) or
 *     ipv6-address-group (IPv6) on the configured devices, for the router's own rules to drop,
 *     until the ban ends (vyosGroups.ts records it first and takes it out again);
 *   - vyos-disable-interface: the interface that went down is disabled on the device that said
 *     so (a flapping link stays down until an operator looks), only when the device's config
 *     lists that interface, and never the interface the device is reached by (the one holding
 *     the API's address, the addresses it logs from, or the responder's own subnet).
 * Each is idempotent: the device is asked first (/retrieve) and only changed when needed, then
 * the running config is saved (/config-file), so a redelivered job changes nothing twice.
 * Which device sent a log line is decided by address (the PROXY header's source or the peer),
 * never by the hostname the line claims.
 */
import type { ReactorJob } from '../queue/job.js';
import type { DeviceConfig, VyosAddressGroupAction, VyosDisableInterfaceAction } from '../config/reactorConfig.js';
import { assertNever } from '../../core/assertNever.js';
import { familyOf } from '../../core/netMatch.js';
import { ActionError, type ActionOutcome, type ActionRunner, type JobContext } from './actionTypes.js';
import { SecretFileError } from '../secretFile.js';
import type { ReactorKv } from './consulKv.js';
import { type GroupEntry, recordEntries } from './vyosGroups.js';
import { canonicalIp } from '../../core/netMatch.js';
import { parseNet } from '../../core/address.js';
import { VyosClient, VyosError } from './vyosClient.js';

export interface VyosFleet {
  readonly devices: ReadonlyMap<string, DeviceConfig>;
  client(name: string): Promise<VyosClient>;
}

/** Clients of the configured routers; a device's key is read at its first use (a bad key file fails its jobs, not the start). */
export function createFleet(devices: ReadonlyMap<string, DeviceConfig>): VyosFleet {
  const clients = new Map<string, Promise<VyosClient>>();
  return {
    devices,
    client(name) {
      let c = clients.get(name);
      if (c === undefined) {
        const device = devices.get(name);
        if (device === undefined) return Promise.reject(new Error(`no device ${name}`));
        c = VyosClient.open(device);
        c.catch(() => clients.delete(name));
        clients.set(name, c);
      }
      return c;
    },
  };
}

/** The configured device a job's sender address belongs to. */
export function deviceForSender(devices: ReadonlyMap<string, DeviceConfig>, address: string): DeviceConfig | null {
  for (const d of devices.values()) if (d.addresses.has(address)) return d;
  return null;
}

const IFACE_TYPES: Readonly<Record<string, string>> = {
  eth: 'ethernet',
  bond: 'bonding',
  br: 'bridge',
  dum: 'dummy',
  lo: 'loopback',
  wg: 'wireguard',
  vtun: 'openvpn',
  tun: 'tunnel',
  vti: 'vti',
  vxlan: 'vxlan',
  wlan: 'wireless',
  wwan: 'wwan',
  peth: 'pseudo-ethernet',
  pppoe: 'pppoe',
  macsec: 'macsec',
  gnv: 'geneve',
  l2tpeth: 'l2tpv3',
  sstpc: 'sstpc',
};

/** VyOS config path of an interface: `eth1` → interfaces ethernet eth1; `eth1.10` → ... vif 10. */
export function interfacePath(iface: string): string[] | null {
  const m = /^([a-z]+)([0-9]{1,5})(?:\.([0-9]{1,4}))?$/.exec(iface);
  if (m === null) return null;
  const type = IFACE_TYPES[m[1] ?? ''];
  if (type === undefined) return null;
  const base = ['interfaces', type, `${m[1]}${m[2]}`];
  if (m[3] === undefined) return base;
  if (type !== 'ethernet' && type !== 'bonding' && type !== 'pseudo-ethernet') return null;
  return [...base, 'vif', String(Number(m[3]))];
}

function asActionError(type: string, err: unknown, detail: Record<string, unknown>): ActionError {
  if (err instanceof ActionError) return err;
  // A missing or too-open key file will not fix itself between attempts.
  if (err instanceof SecretFileError) return new ActionError(type, true, err.message, detail, { cause: err });
  if (err instanceof VyosError)
    return new ActionError(
      type,
      err.permanent,
      err.message,
      { ...detail, device: err.device, endpoint: err.endpoint, status: err.status },
      { cause: err },
    );
  return new ActionError(type, false, (err as Error).message, detail, { cause: err });
}

export class VyosAddressGroupRunner implements ActionRunner {
  readonly type = 'vyos-address-group';

  constructor(
    private readonly action: VyosAddressGroupAction,
    private readonly fleet: VyosFleet,
    private readonly isProtected: (address: string) => Promise<string | null>,
    private readonly records: { readonly kv: ReactorKv; readonly prefix: string; readonly now: () => number },
  ) {}

  private targets(job: ReactorJob): DeviceConfig[] {
    const t = this.action.devices;
    switch (t.kind) {
      case 'all':
        return [...this.fleet.devices.values()];
      case 'named':
        return t.names.map((n) => this.fleet.devices.get(n)).filter((d): d is DeviceConfig => d !== undefined);
      case 'source': {
        const d = deviceForSender(this.fleet.devices, job.device.address);
        if (d === null)
          throw new ActionError(
            this.type,
            true,
            `no device in /responder/devices sends from ${job.device.address} (hostname ${job.device.hostname ?? 'unknown'})`,
          );
        return [d];
      }
      default:
        return assertNever(t, 'device target');
    }
  }

  async run(job: ReactorJob, ctx: JobContext): Promise<ActionOutcome> {
    const family = familyOf(job.subject);
    if (family === null) throw new ActionError(this.type, true, `subject "${job.subject}" is not an IP address`);
    if (ctx.cleared) return { result: 'cleared-by-operator', detail: {} };
    const reason = await this.isProtected(job.subject);
    if (reason !== null) return { result: 'protected', detail: { reason } };
    const kind = family === 4 ? 'address-group' : 'ipv6-address-group';
    const group = family === 4 ? this.action.group : this.action.ipv6Group;
    const path = ['firewall', 'group', kind, group, 'address'];
    const devices: Record<string, string> = {};
    const targets = this.targets(job);
    const expiry = ctx.banExpiry ?? Math.floor(this.records.now() / 1000) + this.action.bantimeSec;
    // Recorded before the routers are changed: whatever happens next, the entry is known and expires.
    const entries: GroupEntry[] = targets.map((d) => ({ device: d.name, kind, group }));
    try {
      await recordEntries(this.records.kv, this.records.prefix, job.subject, expiry, entries);
    } catch (err) {
      throw new ActionError(this.type, false, `cannot record the entry in Consul: ${(err as Error).message}`, { group, kind });
    }
    for (const d of targets) {
      const detail = { device: d.name, group, kind };
      try {
        const client = await this.fleet.client(d.name);
        const present = await client.post('/retrieve', { op: 'returnValues', path });
        const members = Array.isArray(present) ? present.filter((x): x is string => typeof x === 'string') : [];
        if (members.includes(job.subject)) {
          devices[d.name] = 'already-present';
        } else {
          await client.post('/configure', { op: 'set', path: [...path, job.subject] });
          devices[d.name] = 'added';
        }
        // Saved every time: a retry after a failed save must still save.
        if (this.action.save) await client.post('/config-file', { op: 'save' });
      } catch (err) {
        throw asActionError(this.type, err, { ...detail, done: devices });
      }
    }
    const results = Object.values(devices);
    return {
      result: results.every((r) => r === 'already-present') ? 'already-present' : 'added',
      detail: { group, kind, devices, saved: this.action.save, expiry },
    };
  }
}

export class VyosDisableInterfaceRunner implements ActionRunner {
  readonly type = 'vyos-disable-interface';

  constructor(
    private readonly action: VyosDisableInterfaceAction,
    private readonly fleet: VyosFleet,
  ) {}

  async run(job: ReactorJob, _ctx: JobContext): Promise<ActionOutcome> {
    const iface = job.subject;
    // Disruptive: only on evidence that cannot be forged (the worker checks this too).
    if (job.evidence.spoofable)
      return { result: 'refused', detail: { interface: iface, reason: 'the event came over UDP, which anyone can forge' } };
    const path = interfacePath(iface);
    if (path === null) throw new ActionError(this.type, true, `"${iface}" is not an interface name this action knows how to address`);
    const d = deviceForSender(this.fleet.devices, job.device.address);
    if (d === null)
      throw new ActionError(
        this.type,
        true,
        `no device in /responder/devices sends from ${job.device.address} (hostname ${job.device.hostname ?? 'unknown'})`,
      );
    const detail = { device: d.name, interface: iface, path: path.join(' ') };
    if (!d.interfaces.includes(iface))
      return {
        result: 'refused',
        detail: { ...detail, reason: `${iface} is not in /responder/devices/${d.name}/interfaces (${d.interfaces.join(', ') || 'none'})` },
      };
    try {
      const client = await this.fleet.client(d.name);
      const all = await client.post('/retrieve', { op: 'showConfig', path: ['interfaces'] });
      const mgmt = managementInterfaces(all, d, client.localAddress);
      const hit = mgmt.find((m) => m.iface === iface || m.iface.startsWith(`${iface}.`));
      if (hit !== undefined)
        return {
          result: 'refused',
          detail: { ...detail, reason: `${hit.iface} is how the device is reached (${hit.why}): never disabled by the reactor` },
        };
      const config = await client.post('/retrieve', { op: 'showConfig', path });
      if (typeof config !== 'object' || config === null)
        throw new ActionError(this.type, true, `${iface} is not in the device's configuration`, detail);
      let result: string;
      if ('disable' in config) {
        result = 'already-disabled';
      } else {
        await client.post('/configure', { op: 'set', path: [...path, 'disable'] });
        result = 'disabled';
      }
      if (this.action.save) await client.post('/config-file', { op: 'save' });
      return { result, detail: { ...detail, saved: this.action.save } };
    } catch (err) {
      throw asActionError(this.type, err, detail);
    }
  }
}

/** Addresses configured on each interface of a VyOS `showConfig ["interfaces"]` answer (vifs as eth0.10). */
export function interfaceAddresses(config: unknown): { iface: string; addresses: string[] }[] {
  const out: { iface: string; addresses: string[] }[] = [];
  const addrs = (node: unknown): string[] => {
    const a = (node as { address?: unknown } | null)?.address;
    if (typeof a === 'string') return [a];
    if (Array.isArray(a)) return a.filter((x): x is string => typeof x === 'string');
    if (typeof a === 'object' && a !== null) return Object.keys(a);
    return [];
  };
  if (typeof config !== 'object' || config === null) return out;
  for (const byName of Object.values(config as Record<string, unknown>)) {
    if (typeof byName !== 'object' || byName === null) continue;
    for (const [name, node] of Object.entries(byName as Record<string, unknown>)) {
      out.push({ iface: name, addresses: addrs(node) });
      const vifs = (node as { vif?: unknown } | null)?.vif;
      if (typeof vifs === 'object' && vifs !== null)
        for (const [id, v] of Object.entries(vifs as Record<string, unknown>)) out.push({ iface: `${name}.${id}`, addresses: addrs(v) });
    }
  }
  return out;
}

/** The interfaces a device is reached by: holding its API address or an address it logs from, or the responder's subnet. */
export function managementInterfaces(config: unknown, d: DeviceConfig, localAddress: string | null): { iface: string; why: string }[] {
  const apiHost = canonicalIp(d.url.hostname.replace(/^\[|\]$/g, ''));
  const local = localAddress === null ? null : canonicalIp(localAddress);
  const out: { iface: string; why: string }[] = [];
  for (const { iface, addresses } of interfaceAddresses(config)) {
    for (const a of addresses) {
      const slash = a.indexOf('/');
      const ip = canonicalIp(slash < 0 ? a : a.slice(0, slash));
      if (ip === null) continue;
      if (ip === apiHost) out.push({ iface, why: `it holds ${ip}, the API address` });
      else if (d.addresses.has(ip)) out.push({ iface, why: `it holds ${ip}, an address the device logs from` });
      else if (local !== null && slash >= 0) {
        const net = parseNet(a);
        const mine = parseNet(`${local}/${a.slice(slash + 1)}`);
        if (net.ok && mine.ok && net.value.cidr === mine.value.cidr)
          out.push({ iface, why: `its subnet ${net.value.cidr} holds the responder (${local})` });
      }
    }
  }
  return out;
}
