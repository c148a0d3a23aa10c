/**
 * Consul's own peers as the local agent reports them: the LAN members (serf gossip), the
 * servers (RPC), and on a server also the WAN members. Every node must keep reaching them
 * whatever the KV store says (a deny of a server's address would cut the node off from Consul,
 * and with it from the very change that would undo the deny).
 */
import type { ConsulPeers } from '../core/protect.js';

interface RawMember {
  Addr?: unknown;
  Port?: unknown;
  Tags?: unknown;
}

function port(x: unknown): number | null {
  const n = typeof x === 'string' ? Number(x) : x;
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= 65535 ? n : null;
}

/** Addresses and ports from /v1/agent/members answers and the agent's own /v1/agent/self. */
export function parsePeers(memberLists: readonly unknown[], self: unknown): ConsulPeers {
  const addrs = new Set<string>();
  const tcp = new Set<number>();
  const udp = new Set<number>();
  const add = (set: Set<number>, p: number | null): void => {
    if (p !== null) set.add(p);
  };
  for (const list of memberLists) {
    if (!Array.isArray(list)) continue;
    for (const m of list as RawMember[]) {
      if (typeof m.Addr === 'string' && m.Addr.length <= 45) addrs.add(m.Addr);
      const serf = port(m.Port);
      add(tcp, serf);
      add(udp, serf);
      const tags = (typeof m.Tags === 'object' && m.Tags !== null ? m.Tags : {}) as Record<string, unknown>;
      if (tags.role === 'consul') {
        add(tcp, port(tags.port));
        add(tcp, port(tags.wan_join_port));
        add(udp, port(tags.wan_join_port));
      }
    }
  }
  const cfg = (self as { DebugConfig?: Record<string, unknown> } | null)?.DebugConfig ?? {};
  for (const k of ['SerfPortLAN', 'SerfPortWAN']) {
    add(tcp, port(cfg[k]));
    add(udp, port(cfg[k]));
  }
  add(tcp, port(cfg.ServerPort));
  const sorted = (s: Set<number>): number[] => [...s].sort((a, b) => a - b);
  return { addrs: [...addrs].sort(), tcpPorts: sorted(tcp), udpPorts: sorted(udp) };
}

/** Whether the agent is a server (then its WAN peers matter too). */
export function isServer(self: unknown): boolean {
  return (self as { DebugConfig?: { ServerMode?: unknown } } | null)?.DebugConfig?.ServerMode === true;
}
