/**
 * The integration suite on both firewall backends. `testBackends()` lists the backends a file
 * runs its core behaviours on (BEFW_TEST_BACKENDS=iptables,nft; default both); `KernelOps` reads
 * and tampers with the kernel of the sandbox's node namespace the way each backend keeps it:
 * ipsets and chain BEFW, or table inet befw with its ip4_/net4_ sets (hosts and networks).
 */
import { spawnSync } from 'node:child_process';
import type { Sandbox } from './sandbox.js';

export type TestBackend = 'iptables' | 'nft';

export function testBackends(): TestBackend[] {
  const env = process.env.BEFW_TEST_BACKENDS ?? process.env.BEFW_TEST_BACKEND;
  if (env === undefined || env === '') return ['iptables', 'nft'];
  return env.split(',').map((b) => {
    if (b !== 'iptables' && b !== 'nft') throw new Error(`BEFW_TEST_BACKENDS: unknown backend ${b}`);
    return b;
  });
}

/** The config lines that select the backend. */
export function backendConfig(b: TestBackend): string[] {
  return b === 'nft' ? ['firewall=nft'] : [];
}

const isHost = (addr: string): boolean => !addr.includes('/') || addr.endsWith('/32') || addr.endsWith('/128');
const bare = (addr: string): string => (isHost(addr) ? addr.replace(/\/(32|128)$/, '') : addr);
const v6 = (addr: string): boolean => addr.includes(':');

export class KernelOps {
  constructor(
    private readonly sb: Sandbox,
    readonly backend: TestBackend,
  ) {}

  private run(cmd: string, args: string[]): { code: number; out: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.sb.nodeNs, cmd, ...args], { encoding: 'utf8', maxBuffer: 1 << 28 });
    return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
  }

  private must(cmd: string, args: string[]): string {
    const r = this.run(cmd, args);
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.out}`);
    return r.out;
  }

  /** The kernel set(s) holding `addr` for logical set `set`. */
  private nftSet(set: string, addr: string): string {
    const family = v6(addr) ? '6' : '4';
    return `${isHost(addr) ? 'ip' : 'net'}${family}_${set}`;
  }

  /** Whether `addr` (an address) is a member of the logical set, as the kernel matches it. */
  has(set: string, addr: string): boolean {
    if (this.backend === 'iptables') {
      const r = this.run('ipset', ['test', v6(addr) ? `${set}_v6` : set, addr]);
      // A set not made yet holds nothing (callers poll until it does).
      if (r.code !== 0 && !/is NOT in set|does not exist/.test(r.out)) throw new Error(`ipset test ${set} ${addr}: ${r.out}`);
      return r.code === 0;
    }
    const f = v6(addr) ? '6' : '4';
    for (const s of [`ip${f}_${set}`, `net${f}_${set}`]) {
      const r = this.run('nft', ['get', 'element', 'inet', 'befw', s, `{ ${addr} }`]);
      if (r.code === 0) return true;
    }
    return false;
  }

  /** Number of entries in the logical set's IPv4 (or IPv6) half. */
  count(set: string, family: 4 | 6 = 4): number {
    if (this.backend === 'iptables') {
      const out = this.must('ipset', ['list', '-t', family === 6 ? `${set}_v6` : set]);
      return Number(/^Number of entries: (\d+)/m.exec(out)?.[1] ?? 'NaN');
    }
    let n = 0;
    for (const s of [`ip${family}_${set}`, `net${family}_${set}`]) {
      const j = JSON.parse(this.must('nft', ['-j', 'list', 'set', 'inet', 'befw', s])) as { nftables: { set?: { elem?: unknown[] } }[] };
      n += j.nftables.find((x) => x.set !== undefined)?.set?.elem?.length ?? 0;
    }
    return n;
  }

  flush(set: string, family: 4 | 6 = 4): void {
    if (this.backend === 'iptables') this.must('ipset', ['flush', family === 6 ? `${set}_v6` : set]);
    else for (const s of [`ip${family}_${set}`, `net${family}_${set}`]) this.must('nft', ['flush', 'set', 'inet', 'befw', s]);
  }

  del(set: string, addr: string): void {
    if (this.backend === 'iptables') this.must('ipset', ['del', v6(addr) ? `${set}_v6` : set, addr]);
    else this.must('nft', ['delete', 'element', 'inet', 'befw', this.nftSet(set, addr), `{ ${bare(addr)} }`]);
  }

  add(set: string, addr: string): void {
    if (this.backend === 'iptables') this.must('ipset', ['add', v6(addr) ? `${set}_v6` : set, addr]);
    else this.must('nft', ['add', 'element', 'inet', 'befw', this.nftSet(set, addr), `{ ${bare(addr)} }`]);
  }

  /** Empties the agent's chain. */
  flushChain(): void {
    if (this.backend === 'iptables') this.must('iptables', ['-F', 'BEFW']);
    else this.must('nft', ['flush', 'chain', 'inet', 'befw', 'input']);
  }

  /** Takes the agent's chain off the input path (iptables: the INPUT jump; nft: the whole table). */
  unhook(): void {
    if (this.backend === 'iptables') this.must('iptables', ['-D', 'INPUT', '-j', 'BEFW']);
    else this.must('nft', ['delete', 'table', 'inet', 'befw']);
  }

  /** Puts an accept-everything rule in front of the agent's rules. */
  insertAccept(): void {
    if (this.backend === 'iptables') this.must('iptables', ['-I', 'BEFW', '1', '-j', 'ACCEPT']);
    else this.must('nft', ['insert', 'rule', 'inet', 'befw', 'input', 'accept']);
  }

  /** The rules as text (for asserting that nothing from a bad key reaches them). */
  rules(): string {
    if (this.backend === 'iptables')
      return `${this.must('iptables-save', ['-t', 'filter'])}${this.must('ip6tables-save', ['-t', 'filter'])}`;
    const r = this.run('nft', ['list', 'table', 'inet', 'befw']);
    return r.code === 0 ? r.out : '';
  }

  /**
   * Per kernel set, something that changes when the set is re-created or swapped (ipset's random
   * initval; nftables' set handle) and not when members are added or deleted.
   */
  setIdentities(): Map<string, string> {
    const out = new Map<string, string>();
    if (this.backend === 'iptables') {
      let name = '';
      for (const line of this.must('ipset', ['list', '-t']).split('\n')) {
        if (line.startsWith('Name: ')) name = line.slice(6);
        const m = /initval (0x[0-9a-f]+)/.exec(line);
        if (m !== null) out.set(name, m[1] ?? '');
      }
      return out;
    }
    const j = JSON.parse(this.must('nft', ['-j', '-a', '-t', 'list', 'sets', 'table', 'inet', 'befw'])) as {
      nftables: { set?: { name: string; handle: number } }[];
    };
    for (const x of j.nftables) if (x.set !== undefined) out.set(x.set.name, String(x.set.handle));
    return out;
  }

  /**
   * Something that changes when the chain is rewritten and not otherwise: iptables' per-rule
   * packet counters (which only grow while the rules stay), nftables' rule handles.
   */
  chainIdentity(): number[] {
    if (this.backend === 'iptables')
      return this.must('iptables', ['-L', 'BEFW', '-v', '-x', '-n'])
        .split('\n')
        .slice(2)
        .filter((l) => l.trim() !== '')
        .map((l) => Number(l.trim().split(/\s+/)[0]));
    const j = JSON.parse(this.must('nft', ['-j', 'list', 'table', 'inet', 'befw'])) as { nftables: { rule?: { handle: number } }[] };
    return j.nftables.flatMap((x) => (x.rule === undefined ? [] : [x.rule.handle]));
  }

  /** A set's members as the kernel lists them (IPv4 half). */
  listing(set: string): string {
    if (this.backend === 'iptables') return this.must('ipset', ['save', set]);
    return `${this.must('nft', ['list', 'set', 'inet', 'befw', `ip4_${set}`])}${this.must('nft', ['list', 'set', 'inet', 'befw', `net4_${set}`])}`;
  }

  /** What the kernel holds, for a failure message. */
  dump(max = 6000): string {
    if (this.backend === 'iptables')
      return `${this.run('iptables-save', ['-t', 'filter']).out}\n${this.run('ipset', ['list', '-t']).out}`.slice(0, max);
    return this.run('nft', ['list', 'ruleset']).out.slice(0, max);
  }
}
