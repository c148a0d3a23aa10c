/**
 * nftables names. The table is BEFW's own, `inet befw`, so a node switched from BEFW's nft
 * provider takes it over in one transaction. Each half of a logical set becomes two named sets:
 *
 *   ip4_<logical> / ip6_<logical>     hosts (/32, /128): a hash set, `flags timeout`
 *   net4_<logical> / net6_<logical>   networks: an interval set, `flags interval, timeout`
 *
 * Why two: nft 1.0.6 (Debian 12) reads every element of every interval set in the netns before it
 * adds or deletes a single element (its userspace overlap check), so a one-member change on a
 * 65,000-member interval set costs a dump of 65,000 elements (measured: 0.2-2 s). Hosts in a hash
 * set are checked by the kernel alone, and networks are few. It also keeps a host and a network
 * that contains it apart, each with its own expiry, where one interval set would refuse them as
 * overlapping.
 *
 * Logical names are `[a-z0-9._-]`; the prefixes make them valid nft identifiers whatever they
 * start with. The protected sets (`befw~protect`, `befw~consul`) become upper case
 * (`ip4_BEFW_PROTECT`), which no logical name can be. BEFW's provider named its sets
 * `ip4_<short name>`; they all go with its table.
 */
import type { SetFamily } from '../../core/types.js';

export const TABLE = 'befw';
/** `inet befw`, as nft commands name it. */
export const TABLE_REF = `inet ${TABLE}`;
export const INPUT_CHAIN = 'input';

export type SetKind = 'hosts' | 'nets';

const LOGICAL = /^[a-z0-9._-]+$/;
const PROTECTED = /^befw~([a-z0-9_]+)$/;

function nftLogical(logical: string): string {
  if (LOGICAL.test(logical)) return logical;
  const p = PROTECTED.exec(logical);
  if (p !== null) return `BEFW_${(p[1] ?? '').toUpperCase()}`;
  // The compiler only produces the two shapes above; anything else is a bug, not input.
  throw new Error(`no nftables name for set "${logical}"`);
}

export function nftSetName(logical: string, family: SetFamily, kind: SetKind): string {
  const v = family === 'inet' ? '4' : '6';
  return `${kind === 'hosts' ? 'ip' : 'net'}${v}_${nftLogical(logical)}`;
}

/** nft's element type for a family. */
export function nftType(family: SetFamily): string {
  return family === 'inet' ? 'ipv4_addr' : 'ipv6_addr';
}

/** `ip saddr` or `ip6 saddr`. */
export function saddr(family: SetFamily): string {
  return family === 'inet' ? 'ip saddr' : 'ip6 saddr';
}

/** A service chain's name (`svc_web_tcp_8080`). */
export function serviceChainName(logical: string): string {
  return `svc_${nftLogical(logical)}`;
}
