/**
 * Removing table `inet befw` for a node that now runs the iptables backend: the table an earlier
 * nft run left, or BEFW's nft provider's (whose `rules_deny` would otherwise keep rejecting its
 * frozen members whatever Consul says). Run only once the iptables chain enforces the whole plan.
 */
import type { CommandRunner } from '../exec.js';
import { TABLE } from './naming.js';
import { NFT } from './readBack.js';

export async function dropNftTable(runner: CommandRunner): Promise<'removed' | 'absent'> {
  const r = await runner.run(NFT, ['delete', 'table', 'inet', TABLE]);
  if (r.code === 0) return 'removed';
  const why = `${r.stderr}\n${r.stdout}`;
  // No such table, or no nft at all (then nothing can have written one).
  if (/No such file or directory|ENOENT|not found/.test(why) || r.code === 127) return 'absent';
  throw new Error(`nft delete table inet ${TABLE} exited ${r.code}: ${why.trim().slice(0, 500)}`);
}
