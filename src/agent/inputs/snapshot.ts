/**
 * Reads one snapshot of everything the compiler needs: the node's identity, its agent services,
 * the befw/ KV tree and the local files. Any failure rejects the whole read: a partial snapshot
 * would look like "no clients" and empty sets.
 *
 * One recursive read of `befw/` covers clients, aliases and static sets at every scope in a
 * single request with a single index, so the three kinds are always seen at the same moment.
 */
import type { Config } from '../../config/config.js';
import type { ConsulApi } from '../../consul/client.js';
import { readIpsetFiles, readServiceFiles } from './localFiles.js';
import { KV_ROOT, shortNodeName } from '../../core/kvLayout.js';
import { printable } from '../../core/address.js';
import type { ConsulPeers } from '../../core/protect.js';
import type { Diagnostic, NodeIdentity, Snapshot } from '../../core/types.js';

export async function readIdentity(consul: ConsulApi, config: Config): Promise<NodeIdentity> {
  if (config.nodeName !== null && config.nodeDc !== null) return { name: shortNodeName(config.nodeName), dc: config.nodeDc };
  const self = await consul.self();
  return { name: shortNodeName(config.nodeName ?? self.nodeName), dc: config.nodeDc ?? self.datacenter };
}

export async function readSnapshot(consul: ConsulApi, config: Config, node?: NodeIdentity): Promise<Snapshot> {
  const [identity, agentServices, kv, files, ipsetFiles, peers] = await Promise.all([
    node === undefined ? readIdentity(consul, config) : Promise.resolve(node),
    consul.services(),
    consul.kvTree(KV_ROOT, config.dc),
    readServiceFiles(config.servicesDir),
    readIpsetFiles(config.ipsetsDir),
    // The agent protects Consul's peers (and clips denies of them): so must a plan of it.
    consul.peers().then(
      (p): { peers: ConsulPeers } | { error: string } => ({ peers: p }),
      (err: unknown) => ({ error: err instanceof Error ? err.message : String(err) }),
    ),
  ]);
  const peerDiagnostics: Diagnostic[] =
    'error' in peers
      ? [
          {
            severity: 'warning',
            code: 'peers-unknown',
            subject: 'agent/members',
            message: `cannot read Consul members (${printable(peers.error, 200)}); Consul peers are not protected in this plan`,
          },
        ]
      : [];
  return {
    node: identity,
    agentServices,
    fileServices: files.services,
    kv,
    ipsetFiles: ipsetFiles.files,
    ...('peers' in peers ? { consulPeers: peers.peers } : {}),
    inputDiagnostics: [...files.diagnostics, ...ipsetFiles.diagnostics, ...peerDiagnostics],
  };
}
