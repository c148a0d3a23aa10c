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
import type { NodeIdentity, Snapshot } from '../../core/types.js';

export async function readIdentity(consul: ConsulApi, config: Config): Promise<NodeIdentity> {
  if (config.nodeName !== null && config.nodeDc !== null) return { name: shortNodeName(config.nodeName), dc: config.nodeDc };
  const self = await consul.self();
  return { name: shortNodeName(config.nodeName ?? self.nodeName), dc: config.nodeDc ?? self.datacenter };
}

export async function readSnapshot(consul: ConsulApi, config: Config, node?: NodeIdentity): Promise<Snapshot> {
  const [identity, agentServices, kv, files, ipsetFiles] = await Promise.all([
    node === undefined ? readIdentity(consul, config) : Promise.resolve(node),
    consul.services(),
    consul.kvTree(KV_ROOT, config.dc),
    readServiceFiles(config.servicesDir),
    readIpsetFiles(config.ipsetsDir),
  ]);
  return {
    node: identity,
    agentServices,
    fileServices: files.services,
    kv,
    ipsetFiles: ipsetFiles.files,
    inputDiagnostics: [...files.diagnostics, ...ipsetFiles.diagnostics],
  };
}
