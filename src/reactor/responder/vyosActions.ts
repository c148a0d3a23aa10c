/**
 * Actions on VyOS routers through their HTTP API:
 *   - vyos-address-group: the attacker goes into a firewall address group (IPv4) or
 *     ipv6-address-group (IPv6) on the configured devices, for the router's own rules to drop;
 *   - vyos-disable-interface: the interface that went down is disabled on the device that said
 *     so (a flapping link stays down until an operator looks).
 * Each is idempotent: the device is asked first (/retrieve) and only changed when needed, then
 * the running config is saved (/config-file), so a redelivered job changes nothing twice.
 * Which device sent a log line is decided by address (the PROXY header's source or the peer),
 * never by the hostname the line claims.
 */
import type { ReactorJob } from '../queue/job.js';
import type { DeviceConfig, VyosAddressGroupAction, VyosDisableInterfaceAction } from '../config/reactorConfig.js';
import { assertNever } from '../../core/assertNever.js';
import { familyOf } from '../../core/netMatch.js';
import { ActionError, type ActionOutcome, type ActionRunner } from './actionTypes.js';
import { SecretFileError } from './consulKv.js';
import { type VyosClient, VyosError } from './vyosClient.js';

export interface VyosFleet {
  readonly devices: ReadonlyMap<string, DeviceConfig>;
  client(name: string): Promise<VyosClient>;
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

  async run(job: ReactorJob): Promise<ActionOutcome> {
    const family = familyOf(job.subject);
    if (family === null) throw new ActionError(this.type, true, `subject "${job.subject}" is not an IP address`);
    const reason = await this.isProtected(job.subject);
    if (reason !== null) return { result: 'protected', detail: { reason } };
    const kind = family === 4 ? 'address-group' : 'ipv6-address-group';
    const group = family === 4 ? this.action.group : this.action.ipv6Group;
    const path = ['firewall', 'group', kind, group, 'address'];
    const devices: Record<string, string> = {};
    for (const d of this.targets(job)) {
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
      detail: { group, kind, devices, saved: this.action.save },
    };
  }
}

export class VyosDisableInterfaceRunner implements ActionRunner {
  readonly type = 'vyos-disable-interface';

  constructor(
    private readonly action: VyosDisableInterfaceAction,
    private readonly fleet: VyosFleet,
  ) {}

  async run(job: ReactorJob): Promise<ActionOutcome> {
    const iface = job.subject;
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
    try {
      const client = await this.fleet.client(d.name);
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
