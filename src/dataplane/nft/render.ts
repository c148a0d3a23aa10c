/**
 * The plan as `nft -f` text: one transaction per apply, atomic by construction (nft commits the
 * whole file or nothing).
 *
 *   full   `add table` + `delete table` + the whole table: sets, chains and every element. It
 *          also takes over BEFW's table of the same name in the same transaction.
 *   delta  element adds and deletes for the members that changed; new sets before, the chains
 *          rewritten only when the rules changed, sets no longer used deleted last.
 *
 * The chain keeps the plan's order: loopback, the protected paths, Consul's peers, the static sets
 * by priority, then the services. Services go through a verdict map per protocol (`tcp dport vmap
 * { 8080 : jump svc_web_tcp_8080, ... }`): a packet reaches its service's rules in one lookup
 * instead of walking every service's rules. Ports that several services share (or ranges that
 * overlap) map to a chain holding those services' rules in plan order, so a packet meets the same
 * rules in the same order as in the iptables chain.
 *
 * Deleting an element is written as `add` then `delete` in the same transaction: nft refuses to
 * delete an element that is not there, and an element with a timeout may have left the kernel on
 * its own a moment before (nft 1.0.6 has no `destroy element`).
 */
import { logicalOf } from '../../core/planSets.js';
import { type ChainRule, type Plan, type PlanSet, type Proto, type SetFamily, logPrefix, userChainOf } from '../../core/types.js';
import { OBSERVE_CT_LABEL, OBSERVE_LOG_RATE, observeLogPrefix, observeLogs } from '../../core/observe.js';
import { TRAP_LOG_PREFIX, TRAP_LOG_RATE } from '../../core/trap.js';
import { type Elements, elementWithTimeout, forEachMember, hostText, netElements } from './elements.js';
import { INPUT_CHAIN, type SetKind, TABLE_REF, nftSetName, nftType, saddr, serviceChainName } from './naming.js';

export interface NftSet {
  readonly name: string;
  readonly family: SetFamily;
  readonly kind: SetKind;
  /** The plan set it holds part of. */
  readonly planSet: PlanSet;
}

const FAMILIES: readonly SetFamily[] = ['inet', 'inet6'];
const KINDS: readonly SetKind[] = ['hosts', 'nets'];

/** Every nft set the plan needs: hosts and networks for each plan set. */
export function nftSets(plan: Pick<Plan, 'sets'>): NftSet[] {
  const out: NftSet[] = [];
  for (const s of plan.sets)
    for (const kind of KINDS) out.push({ name: nftSetName(logicalOf(s), s.family, kind), family: s.family, kind, planSet: s });
  return out;
}

export function setDeclaration(s: Pick<NftSet, 'name' | 'family' | 'kind'>): string {
  return `set ${s.name} { type ${nftType(s.family)}; flags ${s.kind === 'hosts' ? 'timeout' : 'interval,timeout'}; }`;
}

/** One chain: its name and its rules (the base chain gets its hook line from `chainBlock`). */
export interface Chain {
  readonly name: string;
  readonly rules: readonly string[];
}

const VERDICT = { ACCEPT: 'accept', DROP: 'drop', REJECT: 'reject', NFLOG: 'log group 0', RETURN: 'return' } as const;

/**
 * A static set's statement: the verdicts, `log prefix` (LOG), `log group 0` (NFLOG, as BEFW's bare
 * `-j NFLOG`), `return` (the base chain's policy: accept here, so the packet goes on to the other
 * input hooks as it goes back to INPUT in iptables). A user chain is refused at config time: table
 * inet befw is the agent's and holds none.
 */
function staticVerdict(r: Extract<ChainRule, { kind: 'static' }>): string {
  if (r.target === 'LOG') return `log prefix "${logPrefix(r.set)}"`;
  const chain = userChainOf(r.target);
  if (chain !== null) throw new Error(`set ${r.set}: user chain ${chain} is not in table inet befw`);
  return VERDICT[r.target as keyof typeof VERDICT];
}

function portRange(port: string): [number, number] {
  const [a, b] = port.split(':');
  const from = Number(a);
  return [from, b === undefined ? from : Number(b)];
}

function portText(from: number, to: number): string {
  return from === to ? String(from) : `${from}-${to}`;
}

type ServiceRule = Extract<ChainRule, { kind: 'service' }>;

/** The rules of a service inside its chain: its members accepted, the rest dropped when enforcing. */
function serviceRules(r: ServiceRule): string[] {
  const out: string[] = [];
  for (const f of FAMILIES) for (const k of KINDS) out.push(`${saddr(f)} @${nftSetName(r.set, f, k)} accept`);
  if (r.mode === 'enforcing') out.push('drop');
  if (r.mode === 'observe' && observeLogs(r.proto))
    // Only connections that completed the handshake, once each: the first established packet sets
    // a conntrack label bit, later ones see it. nft enables connlabels itself for this rule (no
    // sysctl, unlike `ct original packets`, which needs nf_conntrack_acct=1).
    out.push(
      `ct state established ct label != ${OBSERVE_CT_LABEL} limit rate ${OBSERVE_LOG_RATE.perSecond}/second burst ${OBSERVE_LOG_RATE.burst} packets ct label set ${OBSERVE_CT_LABEL} log prefix "${observeLogPrefix(r.set)}"`,
    );
  return out;
}

/**
 * A run of service rules as verdict maps plus the chains they jump to. Per protocol, the port
 * space is cut at every rule's boundaries; each piece jumps to the chain of the services that
 * cover it, in plan order.
 */
function dispatch(run: readonly ServiceRule[], chains: Map<string, Chain>, names: Map<string, string>): string[] {
  const lines: string[] = [];
  for (const proto of ['tcp', 'udp'] as const satisfies readonly Proto[]) {
    const mine = run.filter((r) => r.proto === proto).map((r) => ({ r, range: portRange(r.port) }));
    if (mine.length === 0) continue;
    const points = [...new Set(mine.flatMap((x) => [x.range[0], x.range[1] + 1]))].sort((a, b) => a - b);
    const pieces: { from: number; to: number; chain: string }[] = [];
    for (let i = 0; i + 1 < points.length; i++) {
      const from = points[i] as number;
      const to = (points[i + 1] as number) - 1;
      const covering: ServiceRule[] = [];
      for (const x of mine)
        if (x.range[0] <= from && x.range[1] >= to && !covering.some((c) => c.service === x.r.service)) covering.push(x.r);
      if (covering.length === 0) continue;
      const chain = chainFor(covering, chains, names);
      const last = pieces[pieces.length - 1];
      if (last !== undefined && last.to + 1 === from && last.chain === chain) last.to = to;
      else pieces.push({ from, to, chain });
    }
    lines.push(`${proto} dport vmap { ${pieces.map((p) => `${portText(p.from, p.to)} : jump ${p.chain}`).join(', ')} }`);
  }
  return lines;
}

/** The chain for services that share ports: one per service, or one per distinct list of them. */
function chainFor(covering: readonly ServiceRule[], chains: Map<string, Chain>, names: Map<string, string>): string {
  const key = covering.map((r) => `${r.service}/${r.set}/${r.mode}`).join(' ');
  const known = names.get(key);
  if (known !== undefined) return known;
  const first = covering[0] as ServiceRule;
  let name = covering.length === 1 ? serviceChainName(first.set) : `svcs_${names.size}`;
  for (let n = 2; chains.has(name); n++) name = `${covering.length === 1 ? serviceChainName(first.set) : 'svcs'}_${n}`;
  chains.set(name, { name, rules: covering.flatMap(serviceRules) });
  names.set(key, name);
  return name;
}

/** The base chain and the service chains for the plan's rules. */
export function renderChains(rules: readonly ChainRule[]): Chain[] {
  const input: string[] = [];
  const chains = new Map<string, Chain>();
  const names = new Map<string, string>();
  let run: ServiceRule[] = [];
  const flush = (): void => {
    if (run.length > 0) input.push(...dispatch(run, chains, names));
    run = [];
  };
  for (const r of rules) {
    if (r.kind === 'service') {
      run.push(r);
      continue;
    }
    flush();
    switch (r.kind) {
      case 'loopback':
        input.push('iif "lo" accept');
        break;
      case 'static':
        for (const f of FAMILIES) for (const k of KINDS) input.push(`${saddr(f)} @${nftSetName(r.set, f, k)} ${staticVerdict(r)}`);
        break;
      case 'trap': {
        // Logged, not blocked (BEFW only logged: befw/fwnft.go:269-283); rate-limited.
        const ports = r.ports.length === 1 ? String(r.ports[0]) : `{ ${r.ports.join(', ')} }`;
        input.push(
          `tcp dport ${ports} ct state new limit rate ${TRAP_LOG_RATE.perSecond}/second burst ${TRAP_LOG_RATE.burst} packets log prefix "${TRAP_LOG_PREFIX}"`,
        );
        break;
      }
      case 'peers': {
        // New connections to Consul's ports; from Consul's ports only replies (as iptables): a
        // peer choosing source port 8301 must not reach every other port of the node.
        const ports = r.ports.length === 1 ? String(r.ports[0]) : `{ ${r.ports.join(', ')} }`;
        for (const f of FAMILIES)
          for (const k of KINDS) {
            const from = `${saddr(f)} @${nftSetName(r.set, f, k)} ${r.proto}`;
            input.push(`${from} dport ${ports} accept`, `${from} sport ${ports} ct state established accept`);
          }
        break;
      }
    }
  }
  flush();
  return [{ name: INPUT_CHAIN, rules: input }, ...chains.values()];
}

/** Chains as a `table inet befw { ... }` block (the base chain with its hook). */
export function chainBlock(chains: readonly Chain[]): string {
  const out = [`table ${TABLE_REF} {`];
  for (const c of chains) {
    out.push(`\tchain ${c.name} {`);
    if (c.name === INPUT_CHAIN) out.push('\t\ttype filter hook input priority filter; policy accept;');
    for (const r of c.rules) out.push(`\t\t${r}`);
    out.push('\t}');
  }
  out.push('}');
  return out.join('\n');
}

/** The elements of an nft set as an `add element` line (null when it has none to write). */
export function addElementsLine(setName: string, elements: readonly string[]): string | null {
  return elements.length === 0 ? null : `add element ${TABLE_REF} ${setName} { ${elements.join(', ')} }`;
}

/** The hosts of a plan set with their timeouts, for a full write. */
export function hostElements(s: PlanSet, nowMs: number): string[] {
  const out: string[] = [];
  forEachMember(s, 'hosts', (cidr, at) => {
    const e = elementWithTimeout(hostText(cidr), at, nowMs);
    if (e !== null) out.push(e);
  });
  return out;
}

export function netElementTexts(elements: Elements, nowMs: number): string[] {
  const out: string[] = [];
  for (const [text, at] of elements) {
    const e = elementWithTimeout(text, at, nowMs);
    if (e !== null) out.push(e);
  }
  return out;
}

export interface FullRender {
  readonly text: string;
  readonly sets: readonly NftSet[];
  readonly chains: readonly Chain[];
  /** The network elements written per interval set. */
  readonly nets: ReadonlyMap<string, Elements>;
  readonly elements: number;
}

/** The whole table in one transaction, replacing whatever table `inet befw` holds. */
export function renderFull(plan: Pick<Plan, 'sets' | 'rules'>, nowMs: number): FullRender {
  const sets = nftSets(plan);
  const chains = renderChains(plan.rules);
  const lines = [`add table ${TABLE_REF}`, `delete table ${TABLE_REF}`, `table ${TABLE_REF} {`];
  for (const s of sets) lines.push(`\t${setDeclaration(s)}`);
  lines.push('}', chainBlock(chains));
  const nets = new Map<string, Elements>();
  let elements = 0;
  for (const s of sets) {
    let els: string[];
    if (s.kind === 'hosts') {
      els = hostElements(s.planSet, nowMs);
    } else {
      const n = netElements(s.planSet);
      nets.set(s.name, n);
      els = netElementTexts(n, nowMs);
    }
    elements += els.length;
    const line = addElementsLine(s.name, els);
    if (line !== null) lines.push(line);
  }
  lines.push('');
  return { text: lines.join('\n'), sets, chains, nets, elements };
}

/** What a delta changes in one nft set. */
export interface SetDelta {
  /** Elements to remove (written as add + delete). */
  readonly remove: string[];
  /** Elements to (re)add, with their timeouts. */
  readonly add: string[];
}

/** The text of element changes of one set (empty when nothing changes). */
export function deltaLines(setName: string, d: SetDelta): string[] {
  const out: string[] = [];
  if (d.remove.length > 0) {
    out.push(`add element ${TABLE_REF} ${setName} { ${d.remove.join(', ')} }`);
    out.push(`delete element ${TABLE_REF} ${setName} { ${d.remove.join(', ')} }`);
  }
  const add = addElementsLine(setName, d.add);
  if (add !== null) out.push(add);
  return out;
}

/** Replaces the chains: every old chain flushed, the ones no longer used deleted, the new ones written. */
export function chainRewriteLines(old: readonly string[], next: readonly Chain[]): string[] {
  const keep = new Set(next.map((c) => c.name));
  const out: string[] = [`flush chain ${TABLE_REF} ${INPUT_CHAIN}`];
  for (const name of old) if (name !== INPUT_CHAIN) out.push(`flush chain ${TABLE_REF} ${name}`);
  for (const name of old) if (name !== INPUT_CHAIN && !keep.has(name)) out.push(`delete chain ${TABLE_REF} ${name}`);
  out.push(chainBlock(next));
  return out;
}
