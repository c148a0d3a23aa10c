/**
 * The nftables backend: table `inet befw` (BEFW's name), one `nft -f` transaction per apply.
 *
 * Apply: the first apply (and every full one) replaces the whole table in one transaction, which
 * also takes over BEFW's table of the same name with no moment in between. Later applies are
 * deltas: element adds and deletes for what changed (a one-member change is two lines, whatever
 * the set's size), the chains rewritten only when the rules changed, in the same transaction.
 * Members that expire carry an element timeout: the kernel drops them at their second even if the
 * agent is down; the agent's own expiry timer removes them too (a delete of an element the
 * kernel already dropped is harmless, see render.ts).
 *
 * Integrity: a generation watch (genWatch.ts) sees every transaction in the namespace and whose
 * it was. With no foreign transaction the quick check reads nothing. A foreign one (or a lost
 * watch, or the periodic full check) reads the table once (`nft -j list table`) and compares sets,
 * elements and chains with what was applied; drift is repaired as in the iptables backend (the
 * reconciler re-applies in full). The chains are compared with the kernel's own rendering of
 * them, read back after each chain write and accepted only if every rule has the set references,
 * ports and verdicts that were written.
 *
 * Takeover: once a real plan is in (`adopt`), what the iptables backend left (chain BEFW, its
 * jumps and its ipsets, befw's or BEFW's) is removed; until then both enforce.
 */
import { mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { expiryOf, logicalOf } from '../../core/planSets.js';
import { diffSorted } from '../../core/sortedDiff.js';
import type { PlanSet } from '../../core/types.js';
import {
  ApplyError,
  type ApplyReport,
  type Dataplane,
  type Drift,
  type EnsureSet,
  type MemberDiff,
  type Takeover,
  memberDiff,
  ruleDiff,
} from '../dataplane.js';
import type { CommandRunner } from '../exec.js';
import { type Elements, canonicalElement, elementWithTimeout, hostText, isHost, netElements } from './elements.js';
import type { GenerationWatch } from './genWatch.js';
import { INPUT_CHAIN, TABLE_REF, nftSetName } from './naming.js';
import { NFT, type ReadSet, type ReadTable, readChains, readSetHeaders, readTable } from './readBack.js';
import {
  type Chain,
  type NftSet,
  type SetDelta,
  chainRewriteLines,
  deltaLines,
  hostElements,
  netElementTexts,
  nftSets,
  renderChains,
  renderFull,
  setDeclaration,
} from './render.js';

export interface NftOptions {
  /** The generation watch; null: none (every quick check then reads the set headers and chains). */
  readonly watch: GenerationWatch | null;
  /** Unix ms now (element timeouts are written relative to it). */
  readonly now: () => number;
  /** Removes what the iptables backend left (chain BEFW, its jumps, its ipsets); null: nothing to look at. */
  readonly retireIptables: ((owned: readonly string[]) => Promise<Takeover>) | null;
}

interface Held {
  readonly set: NftSet;
  /** The interval set's elements (networks), or null for a hosts set. */
  readonly nets: Elements | null;
}

/** Elements whose expiry is this close to now may or may not still be in the kernel. */
const EXPIRY_SLACK_MS = 2000;
/** A check triggered by someone else's transaction reads the table at most this often (x the read's own time). */
const TRIGGERED_READ_FACTOR = 50;
const MIN_TRIGGERED_GAP_MS = 0;
/** Bytes a pipe takes in one write (Linux: 64 KiB; the text is ASCII). */
const PIPE_SAFE = 60_000;
/** A takeover that failed is tried again with a later apply, at most this often. */
const TAKEOVER_RETRY_MS = 60_000;

function hasMember(list: readonly string[], m: string): boolean {
  let lo = 0;
  let hi = list.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const x = list[mid] as string;
    if (x === m) return true;
    if (x < m) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

/**
 * What changed between two plans' versions of one set, for its hosts set (element lines) and
 * whether its networks changed (then the interval set is diffed element by element).
 */
function hostDelta(prev: PlanSet, next: PlanSet, nowMs: number): { delta: SetDelta; netsChanged: boolean; added: number; deleted: number } {
  const remove: string[] = [];
  const add: string[] = [];
  let netsChanged = false;
  let added = 0;
  let deleted = 0;
  if (prev === next) return { delta: { remove, add }, netsChanged, added, deleted };
  const family = next.family;
  diffSorted(
    prev.members,
    next.members,
    (m) => {
      if (!isHost(m, family)) {
        netsChanged = true;
        return;
      }
      added++;
      const e = elementWithTimeout(hostText(m), expiryOf(next, m), nowMs);
      if (e !== null) add.push(e);
    },
    (m) => {
      if (!isHost(m, family)) {
        netsChanged = true;
        return;
      }
      deleted++;
      remove.push(hostText(m));
    },
  );
  // Members in both whose expiry moved (a grant renewed): the element is written again.
  const pe = prev.expiring;
  const ne = next.expiring;
  if (pe !== ne) {
    const seen = new Set<string>();
    const retime = (m: string): void => {
      if (seen.has(m)) return;
      seen.add(m);
      if (!hasMember(prev.members, m) || !hasMember(next.members, m)) return; // an add or a delete, done above
      if (expiryOf(prev, m) === expiryOf(next, m)) return;
      if (!isHost(m, family)) {
        netsChanged = true;
        return;
      }
      remove.push(hostText(m));
      const e = elementWithTimeout(hostText(m), expiryOf(next, m), nowMs);
      if (e !== null) add.push(e);
    };
    for (const m of pe?.members ?? []) retime(m);
    for (const m of ne?.members ?? []) retime(m);
  }
  return { delta: { remove, add }, netsChanged, added, deleted };
}

/** Element changes between two versions of an interval set's elements. */
function netDelta(prev: Elements, next: Elements, nowMs: number): { delta: SetDelta; added: number; deleted: number } {
  const remove: string[] = [];
  const add: string[] = [];
  let added = 0;
  let deleted = 0;
  for (const [text, at] of prev) {
    if (!next.has(text)) {
      remove.push(text);
      deleted++;
    } else if (next.get(text) !== at) {
      remove.push(text);
      const e = elementWithTimeout(text, next.get(text) ?? null, nowMs);
      if (e !== null) add.push(e);
    }
  }
  for (const [text, at] of next) {
    if (prev.has(text)) continue;
    added++;
    const e = elementWithTimeout(text, at, nowMs);
    if (e !== null) add.push(e);
  }
  return { delta: { remove, add }, added, deleted };
}

/** Set references (`@name`), numbers and verdicts of a rule as written: what its read-back must hold. */
function ruleSignature(written: string): { refs: string[]; numbers: string[]; verdicts: string[] } {
  // Quoted text (a log prefix) is no reference, port or verdict.
  const rule = written.replace(/"[^"]*"/g, '""');
  return {
    refs: [...rule.matchAll(/@([A-Za-z0-9_.-]+)/g)].map((m) => m[1] ?? ''),
    // Numbers (ports) outside set names: a name like `foo-2.x` holds digits that are no port.
    numbers: [...rule.replace(/@[A-Za-z0-9_.-]+/g, '@').matchAll(/\b(\d+)\b/g)].map((m) => m[1] ?? ''),
    verdicts: [...rule.matchAll(/\b(accept|drop|reject|jump|goto|return|continue|queue)\b/g)].map((m) => m[1] ?? ''),
  };
}

const JSON_VERDICTS = /"(accept|drop|reject|jump|goto|return|continue|queue)"/g;

/** Whether a read-back rule (JSON) is the rule written: same set references, ports and verdicts. */
export function sameRule(written: string, readJson: string): boolean {
  const sig = ruleSignature(written);
  for (const ref of sig.refs) if (!readJson.includes(`"@${ref}"`)) return false;
  for (const n of sig.numbers) if (!new RegExp(`[^0-9.]${n}[^0-9.]`).test(readJson)) return false;
  const read = [...readJson.matchAll(JSON_VERDICTS)].map((m) => m[1] ?? '');
  const want = sig.verdicts;
  return read.length === want.length && read.every((v, i) => v === want[i]);
}

async function step<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw new ApplyError('transaction', err);
  }
}

const TRANSACTION_DIR = 'befw-nft-';

/**
 * Transaction files an agent killed mid-apply left behind (older than 10 minutes, so never one
 * another agent on the host is writing now). Best effort.
 */
export async function removeStaleTransactions(dir = tmpdir(), olderThanMs = 600_000): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const n of names) {
    if (!n.startsWith(TRANSACTION_DIR)) continue;
    const p = join(dir, n);
    const st = await stat(p).catch(() => null);
    if (st !== null && Date.now() - st.mtimeMs > olderThanMs) await rm(p, { recursive: true, force: true }).catch(() => undefined);
  }
}

export function createNftDataplane(runner: CommandRunner, opts: NftOptions): Dataplane {
  const watch = opts.watch;
  let held: Map<string, Held> | null = null;
  let chains: readonly Chain[] | null = null;
  let chainsKey: string | null = null;
  /** The chains as the kernel printed them back after our last chain write; null until read. */
  let canon: ReadonlyMap<string, { header: string; rules: readonly string[] }> | null = null;
  /** Someone else's transaction (or a lost watch) was seen and the table not read since. */
  let suspect = false;
  let nextTriggeredRead = 0;
  let adopted = false;
  let takeoverTriedAt = -Infinity;
  let leftover: readonly string[] = [];

  const forget = (): void => {
    held = null;
    chains = null;
    chainsKey = null;
    canon = null;
  };

  const write = async (text: string): Promise<void> => {
    if (text === '') return;
    const onSpawn = (pid: number): void => watch?.ours(pid);
    // A transaction that fits the pipe is written to nft's stdin in one write: if the agent dies
    // meanwhile, nft reads all of it or nothing. A bigger one goes through a file written first:
    // nft reading a cut-off stdin up to a line end would commit what it got.
    if (text.length <= PIPE_SAFE) {
      const r = await runner.run(NFT, ['-f', '-'], { input: text, onSpawn });
      if (r.code !== 0) throw new Error(`nft -f - exited ${r.code}: ${r.stderr.trim().slice(0, 2000) || '(no stderr)'}`);
      return;
    }
    const dir = await mkdtemp(join(tmpdir(), TRANSACTION_DIR));
    // A listener makes the kernel build one notification per element: the watch pauses during a
    // big transaction (it doubles its time otherwise) and the next check reads the table, since
    // what happened meanwhile was not watched.
    const watching = watch?.running === true;
    if (watching) watch.stop();
    try {
      const file = join(dir, 'transaction.nft');
      await writeFile(file, text, { mode: 0o600 });
      const r = await runner.run(NFT, ['-f', file], { onSpawn });
      if (r.code !== 0) throw new Error(`nft -f ${file} exited ${r.code}: ${r.stderr.trim().slice(0, 2000) || '(no stderr)'}`);
    } finally {
      if (watching) watch.start();
      await rm(dir, { recursive: true, force: true });
    }
  };

  const takeOver = async (owned: readonly string[]): Promise<Takeover | null> => {
    if (adopted || opts.retireIptables === null) return null;
    const now = opts.now();
    if (now - takeoverTriedAt < TAKEOVER_RETRY_MS) return null;
    takeoverTriedAt = now;
    const t = await opts.retireIptables(owned);
    // A set something else still references stays (reported); only a chain left in place is retried.
    if (!t.failed.some((f) => !f.what.startsWith('ipset '))) adopted = true;
    leftover = t.failed.filter((f) => f.what.startsWith('ipset ')).map((f) => f.what.slice(6));
    return t;
  };

  /** Compares the table read back with what was applied. */
  const compare = (back: ReadTable | null, nowMs: number): Drift[] => {
    const h = held;
    if (h === null) return [];
    if (back === null) return [{ what: 'table', detail: `table ${TABLE_REF} is gone` }];
    const drifts: Drift[] = [];
    for (const [name, x] of h) {
      const k = back.sets.get(name);
      if (k === undefined) {
        drifts.push({ what: 'set-missing', set: name, detail: 'set is gone' });
        continue;
      }
      const wantFlags = x.set.kind === 'hosts' ? 'timeout' : 'interval,timeout';
      const wantType = x.set.family === 'inet' ? 'ipv4_addr' : 'ipv6_addr';
      if (k.type !== wantType || k.flags.join(',') !== wantFlags) {
        drifts.push({ what: 'set-type', set: name, detail: `${k.type} flags ${k.flags.join(',')}` });
        continue;
      }
      const d = compareElements(x, k.elements, nowMs);
      if (d !== null) drifts.push({ what: 'set-members', set: name, ...d });
    }
    for (const name of back.sets.keys()) if (!h.has(name)) drifts.push({ what: 'table', set: name, detail: `set ${name} is not ours` });
    drifts.push(...compareChains(back));
    return drifts;
  };

  const compareElements = (x: Held, kernel: ReadSet['elements'], nowMs: number): ({ detail: string } & MemberDiff) | null => {
    // Expected elements and the second each leaves.
    const want = new Map<string, number | null>();
    if (x.nets !== null) for (const [t, at] of x.nets) want.set(t, at);
    else for (const m of x.set.planSet.members) if (isHost(m, x.set.family)) want.set(hostText(m), expiryOf(x.set.planSet, m));
    const due = (at: number | null): 'live' | 'gone' | 'either' => {
      if (at === null) return 'live';
      const ms = at * 1000 - nowMs;
      return ms > EXPIRY_SLACK_MS ? 'live' : ms < -EXPIRY_SLACK_MS ? 'gone' : 'either';
    };
    let extra: string[] = [];
    let timeouts = 0;
    const found = new Set<string>();
    for (const e of kernel) {
      if (!want.has(e.text)) {
        extra.push(e.text);
        continue;
      }
      found.add(e.text);
      const at = want.get(e.text) ?? null;
      if (due(at) === 'gone' || (at === null) === e.timeout) timeouts++;
    }
    let missing: string[] = [];
    for (const [t, at] of want) if (!found.has(t) && due(at) === 'live') missing.push(t);
    if (extra.length > 0 && missing.length > 0) {
      // The same address spelled differently (glibc prints `::1.2.3.4` where befw writes
      // `::102:304`): what is left after comparing canonical forms is real.
      const wanted = new Map(missing.map((t) => [canonicalElement(t, x.set.family), t]));
      const stillExtra: string[] = [];
      for (const t of extra) {
        const c = canonicalElement(t, x.set.family);
        if (wanted.has(c)) wanted.delete(c);
        else stillExtra.push(t);
      }
      extra = stillExtra;
      missing = [...wanted.values()];
    }
    if (extra.length === 0 && missing.length === 0 && timeouts === 0) return null;
    const parts: string[] = [];
    if (missing.length > 0) parts.push(`${missing.length} missing (${missing.slice(0, 3).join(', ')})`);
    if (extra.length > 0) parts.push(`${extra.length} not applied (${extra.slice(0, 3).join(', ')})`);
    if (timeouts > 0) parts.push(`${timeouts} with a timeout that differs`);
    // Disjoint by now: the diff only sorts and bounds the two lists.
    return { detail: `${kernel.length} elements in the kernel: ${parts.join('; ')}`, ...memberDiff(missing, extra) };
  };

  const compareChains = (back: ReadTable): Drift[] => {
    const written = chains;
    if (written === null) return [];
    if (canon === null) {
      // First read since our chain write: the kernel's rendering is adopted if every rule is the
      // one written (same set references, ports and verdicts), else it is drift.
      const problems: string[] = [];
      for (const c of written) {
        const r = back.chains.get(c.name);
        if (r === undefined) problems.push(`chain ${c.name} is gone`);
        else if (r.rules.length !== c.rules.length) problems.push(`chain ${c.name}: ${r.rules.length} rules, ${c.rules.length} written`);
        else if (!c.rules.every((w, i) => sameRule(w, r.rules[i] ?? '')))
          problems.push(`chain ${c.name}: a rule differs from the one written`);
      }
      for (const name of back.chains.keys()) if (!written.some((c) => c.name === name)) problems.push(`chain ${name} is not ours`);
      if (problems.length > 0) return problems.map((detail) => ({ what: 'chain' as const, detail }));
      canon = new Map([...back.chains].map(([n, c]) => [n, { header: c.header, rules: c.rules }]));
      return [];
    }
    const drifts: Drift[] = [];
    for (const [name, c] of canon) {
      const r = back.chains.get(name);
      if (r === undefined) drifts.push({ what: 'chain', chain: name, detail: `chain ${name} is gone`, rulesMissing: c.rules.slice(0, 20) });
      else if (r.header !== c.header) drifts.push({ what: 'chain', chain: name, detail: `chain ${name}: hook or policy changed` });
      else if (r.rules.length !== c.rules.length || r.rules.some((x, i) => x !== c.rules[i])) {
        const d = ruleDiff(c.rules, r.rules);
        const how = d.missing.length === 0 && d.extra.length === 0 ? 'same rules in another order' : 'a rule changed';
        drifts.push({
          what: 'chain',
          chain: name,
          detail: `chain ${name}: ${r.rules.length} rules, ${c.rules.length} applied: ${how}`,
          rulesMissing: d.missing,
          rulesExtra: d.extra,
        });
      }
    }
    for (const name of back.chains.keys()) {
      if (!canon.has(name))
        drifts.push({
          what: 'chain',
          chain: name,
          detail: `chain ${name} is not ours`,
          rulesExtra: back.chains.get(name)?.rules.slice(0, 20) ?? [],
        });
    }
    return drifts;
  };

  /** Without a watch: set headers and chains only (cheap reads; elements wait for the full check). */
  const cheapCheck = async (): Promise<Drift[]> => {
    const h = held;
    if (h === null) return [];
    const sets = await readSetHeaders(runner);
    if (sets === null) return [{ what: 'table', detail: `table ${TABLE_REF} is gone` }];
    const drifts: Drift[] = [];
    for (const name of h.keys()) if (!sets.has(name)) drifts.push({ what: 'set-missing', set: name, detail: 'set is gone' });
    const ch = await readChains(runner);
    if (ch.get(INPUT_CHAIN) !== 'input') drifts.push({ what: 'chain', detail: `chain ${INPUT_CHAIN} is gone or not hooked at input` });
    return drifts;
  };

  const verify = async ({ members }: { readonly members: boolean }): Promise<Drift[]> => {
    if (held === null) return [];
    const w = watch?.take() ?? { foreign: 0, lost: false, unavailable: true };
    if (w.foreign > 0 || w.lost) suspect = true;
    const now = opts.now();
    const read = members || canon === null || (suspect && now >= nextTriggeredRead);
    if (!read) return w.unavailable ? cheapCheck() : [];
    const t0 = performance.now();
    const back = await readTable(runner);
    const ms = performance.now() - t0;
    suspect = false;
    nextTriggeredRead = now + Math.max(MIN_TRIGGERED_GAP_MS, TRIGGERED_READ_FACTOR * ms);
    return compare(back, opts.now());
  };

  return {
    forget,
    verify,
    close() {
      watch?.stop();
    },
    async hasChain() {
      const ch = await readChains(runner);
      return [...ch.values()].some((hook) => hook === 'input');
    },
    async ensureMembers(sets: readonly EnsureSet[]) {
      const headers = await readSetHeaders(runner);
      if (headers === null) return;
      const lines: string[] = [];
      for (const s of sets) {
        const logical = logicalOf(s);
        const hostsSet = nftSetName(logical, s.family, 'hosts');
        const netsSet = nftSetName(logical, s.family, 'nets');
        // BEFW's own table keeps everything in one interval set named like our hosts set.
        const hostsIsInterval = headers.get(hostsSet)?.flags.includes('interval') === true;
        const hosts: string[] = [];
        const nets: string[] = [];
        for (const m of s.members) {
          if (isHost(m, s.family)) hosts.push(hostText(m));
          else if (headers.has(netsSet)) nets.push(m);
          else if (hostsIsInterval) hosts.push(m);
        }
        if (headers.has(hostsSet) && hosts.length > 0) lines.push(`add element ${TABLE_REF} ${hostsSet} { ${hosts.join(', ')} }`);
        if (nets.length > 0) lines.push(`add element ${TABLE_REF} ${netsSet} { ${nets.join(', ')} }`);
      }
      await write(lines.length === 0 ? '' : `${lines.join('\n')}\n`);
    },
    async apply({ plan, owned, full = false, adopt = false }): Promise<ApplyReport> {
      const t0 = performance.now();
      if (full) forget();
      const now = opts.now();
      const mode = held === null ? 'full' : 'delta';
      try {
        const next = nftSets(plan);
        const nextChains = renderChains(plan.rules);
        const nextKey = JSON.stringify(nextChains);
        let text: string;
        let nextHeld: Map<string, Held>;
        let created: string[] = [];
        let destroyed: string[] = [];
        let added = 0;
        let deleted = 0;
        let chainWritten = false;
        if (held === null) {
          const r = renderFull(plan, now);
          text = r.text;
          nextHeld = new Map(r.sets.map((s) => [s.name, { set: s, nets: s.kind === 'nets' ? (r.nets.get(s.name) ?? new Map()) : null }]));
          created = r.sets.map((s) => s.name);
          added = r.elements;
          chainWritten = true;
        } else {
          const d = renderDelta(held, next, nextChains, chains ?? [], chainsKey !== nextKey, now);
          ({ text, created, destroyed, added, deleted } = d);
          nextHeld = d.held;
          chainWritten = chainsKey !== nextKey;
        }
        const tScript = performance.now();
        await step(() => write(text));
        const t1 = performance.now();
        held = nextHeld;
        if (chainWritten) canon = null;
        chains = nextChains;
        chainsKey = nextKey;
        // The watch starts once the table is in: a listener doubles the cost of a big transaction.
        if (watch !== null && !watch.running && !watch.unavailable) watch.start();
        const takeover = adopt ? await takeOver(owned) : null;
        const t2 = performance.now();
        return {
          mode,
          created,
          swapped: [],
          added,
          deleted,
          chainWritten,
          destroyed,
          notDestroyed: [],
          jumpInserted: [],
          members: plan.sets.reduce((n, s) => n + s.members.length, 0),
          // Until the takeover is done, what earlier runs owned is kept for it.
          owned: adopted ? leftover : [...new Set([...owned, ...leftover])],
          takeover,
          ms: { script: tScript - t0, sets: t1 - t0, chain: 0, cleanup: t2 - t1, total: t2 - t0 },
        };
      } catch (err) {
        forget();
        throw err;
      }
    },
  };
}

/** The delta transaction from what is applied to the plan's sets and chains. */
function renderDelta(
  held: ReadonlyMap<string, Held>,
  next: readonly NftSet[],
  nextChains: readonly Chain[],
  oldChains: readonly Chain[],
  chainsChanged: boolean,
  nowMs: number,
): { text: string; held: Map<string, Held>; created: string[]; destroyed: string[]; added: number; deleted: number } {
  const head: string[] = [];
  const body: string[] = [];
  const out = new Map<string, Held>();
  const created: string[] = [];
  let added = 0;
  let deleted = 0;
  // Hosts sets first: whether a plan set's networks changed is learnt while diffing its hosts.
  const netsChanged = new Map<PlanSet, boolean>();
  for (const s of next) {
    if (s.kind !== 'hosts') continue;
    const prev = held.get(s.name);
    if (prev === undefined) {
      created.push(s.name);
      head.push(`add set ${TABLE_REF} ${setDeclaration(s).slice(4)}`);
      const els = hostElements(s.planSet, nowMs);
      added += els.length;
      body.push(...deltaLines(s.name, { remove: [], add: els }));
      out.set(s.name, { set: s, nets: null });
      netsChanged.set(s.planSet, true);
      continue;
    }
    const d = hostDelta(prev.set.planSet, s.planSet, nowMs);
    added += d.added;
    deleted += d.deleted;
    body.push(...deltaLines(s.name, d.delta));
    netsChanged.set(s.planSet, d.netsChanged);
    out.set(s.name, { set: s, nets: null });
  }
  for (const s of next) {
    if (s.kind !== 'nets') continue;
    const prev = held.get(s.name);
    if (prev === undefined || prev.nets === null) {
      created.push(s.name);
      head.push(`add set ${TABLE_REF} ${setDeclaration(s).slice(4)}`);
      const nets = netElements(s.planSet);
      const els = netElementTexts(nets, nowMs);
      added += els.length;
      body.push(...deltaLines(s.name, { remove: [], add: els }));
      out.set(s.name, { set: s, nets });
      continue;
    }
    if (netsChanged.get(s.planSet) !== true) {
      out.set(s.name, { set: s, nets: prev.nets });
      continue;
    }
    const nets = netElements(s.planSet);
    const d = netDelta(prev.nets, nets, nowMs);
    added += d.added;
    deleted += d.deleted;
    body.push(...deltaLines(s.name, d.delta));
    out.set(s.name, { set: s, nets });
  }
  const tail: string[] = [];
  if (chainsChanged)
    tail.push(
      ...chainRewriteLines(
        oldChains.map((c) => c.name),
        nextChains,
      ),
    );
  const destroyed: string[] = [];
  for (const name of held.keys()) {
    if (out.has(name)) continue;
    destroyed.push(name);
    tail.push(`delete set ${TABLE_REF} ${name}`);
  }
  const lines = [...head, ...body, ...tail];
  return { text: lines.length === 0 ? '' : `${lines.join('\n')}\n`, held: out, created, destroyed, added, deleted };
}
