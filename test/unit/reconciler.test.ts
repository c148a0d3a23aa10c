/**
 * The Reconciler against recording fakes: a scripted snapshot source, a dataplane that records
 * every call (and fails when told to), an in-memory state store, a fake clock and a real logger
 * writing into memory. The compiler is the real one: plans are what the agent would apply.
 * Service-file registration is not the Reconciler's (serviceRegistrar.ts) and is not tested here.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type Outcome, Reconciler } from '../../src/agent/reconciler.js';
import { parseConfig } from '../../src/config/config.js';
import type { KvPair, Plan, Snapshot } from '../../src/core/types.js';
import type { ApplyInput, ApplyReport, Dataplane, Drift } from '../../src/dataplane/dataplane.js';
import type { LoadResult, SavedState, StateStore } from '../../src/state/stateStore.js';
import { recordingLog } from '../helpers/recordingLog.js';

const T0 = 1_700_000_000_000;
const NODE = { name: 'n1', dc: 'dc1' };
const MGMT_V4 = '192.0.2.0/24';
const MGMT_V6 = '2001:db8:ffff::/48';

/** `n` deny entries 198.51.100.<from..>; `expiry` in Unix seconds, -1 for never. */
function denyKv(n: number, from = 1, expiry = -1): KvPair[] {
  return Array.from({ length: n }, (_, i) => ({ key: `befw/$ipset$/rules_deny/198.51.100.${from + i}`, value: String(expiry) }));
}

function snap(kv: readonly KvPair[]): Snapshot {
  return { node: NODE, agentServices: [], fileServices: [], kv, ipsetFiles: [], inputDiagnostics: [] };
}

function members(plan: Plan | null | undefined, set: string): readonly string[] | undefined {
  return plan?.sets.find((s) => s.name === set)?.members;
}

function setNames(plan: Plan): string[] {
  return plan.sets.map((s) => s.name).sort();
}

/** As the plan lists them: canonical CIDRs in string order. */
function ips(n: number, from = 1): string[] {
  return Array.from({ length: n }, (_, i) => `198.51.100.${from + i}/32`).sort();
}

function reportFor(input: ApplyInput, notDestroyed: { name: string; error: string }[] = []): ApplyReport {
  return {
    mode: input.full === true ? 'full' : 'delta',
    created: [],
    swapped: [],
    added: 0,
    deleted: 0,
    chainWritten: true,
    destroyed: [],
    notDestroyed,
    jumpInserted: [],
    members: input.plan.sets.reduce((n, s) => n + s.members.length, 0),
    // As the iptables backend names its sets when the names are short: the plan's names.
    owned: input.plan.sets.map((s) => s.name),
    takeover: null,
    ms: { script: 0, sets: 0, chain: 0, cleanup: 0, total: 0 },
  };
}

/** Records every call into the shared `trace`; `applyScript` decides each apply's fate in turn. */
class FakeDataplane implements Dataplane {
  readonly applies: ApplyInput[] = [];
  readonly ensured: { name: string; family: string; members: readonly string[] }[][] = [];
  /** One entry per coming apply: an Error to throw, or the sets to report as not destroyed. */
  readonly applyScript: (Error | { notDestroyed: { name: string; error: string }[] })[] = [];
  chainPresent = false;
  hasChainError: Error | null = null;

  constructor(private readonly trace: string[]) {}

  async apply(input: ApplyInput): Promise<ApplyReport> {
    this.trace.push(`apply${input.full === true ? ' full' : ''}`);
    this.applies.push(input);
    const next = this.applyScript.shift();
    if (next instanceof Error) throw next;
    return reportFor(input, next?.notDestroyed);
  }

  forget(): void {
    this.trace.push('forget');
  }

  async verify(): Promise<Drift[]> {
    this.trace.push('verify');
    return [];
  }

  async hasChain(): Promise<boolean> {
    this.trace.push('hasChain');
    if (this.hasChainError !== null) throw this.hasChainError;
    return this.chainPresent;
  }

  close(): void {
    this.trace.push('close');
  }

  async ensureMembers(sets: readonly { name: string; family: 'inet' | 'inet6'; members: readonly string[] }[]): Promise<void> {
    this.trace.push('ensureMembers');
    this.ensured.push(sets.map((s) => ({ name: s.name, family: s.family, members: [...s.members] })));
  }
}

class FakeStore implements StateStore {
  readonly saved: SavedState[] = [];
  saveError: Error | null = null;

  constructor(
    private readonly trace: string[],
    public loadResult: LoadResult = { kind: 'missing' },
  ) {}

  async load(): Promise<LoadResult> {
    this.trace.push('load');
    return this.loadResult;
  }

  async save(state: SavedState): Promise<void> {
    this.trace.push('save');
    if (this.saveError !== null) throw this.saveError;
    this.saved.push(state);
  }
}

interface Rig {
  readonly reconciler: Reconciler;
  readonly dataplane: FakeDataplane;
  readonly store: FakeStore;
  readonly trace: string[];
  /** Answers of the snapshot source, one per call: a snapshot, or an Error to reject with. */
  readonly reads: (Snapshot | Error)[];
  readonly rereads: { count: number };
  readonly clock: { now: number };
  readonly logged: ReturnType<typeof recordingLog>;
  /** What the inputs say about themselves (an index that went backwards), or null. */
  readonly suspect: { note: string | null };
}

function rig(): Rig {
  const trace: string[] = [];
  const dataplane = new FakeDataplane(trace);
  const store = new FakeStore(trace);
  const reads: (Snapshot | Error)[] = [];
  const rereads = { count: 0 };
  const clock = { now: T0 };
  const logged = recordingLog();
  const suspect: { note: string | null } = { note: null };
  const config = parseConfig(
    `set.rules_allow=${MGMT_V4};${MGMT_V6}\nguard_share=50\nguard_min=10\nstate=/test/state.bin`,
    '/test/befw.conf',
  );
  // A plain object, not a literal at the call: a dependency dropped from ReconcilerDeps later
  // does not trip excess-property checks here.
  const deps = {
    source: async (): Promise<Snapshot> => {
      trace.push('read');
      const next = reads.shift();
      if (next === undefined) throw new Error('test script has no more reads');
      if (next instanceof Error) throw next;
      return next;
    },
    requestReread: (): void => {
      rereads.count++;
    },
    dataplane,
    store,
    config,
    log: logged.log,
    now: (): number => clock.now,
    inputsSuspect: (): string | null => suspect.note,
  };
  return { reconciler: new Reconciler(deps), dataplane, store, trace, reads, rereads, clock, logged, suspect };
}

function expectKind<K extends Outcome['kind']>(o: Outcome | null, kind: K): Extract<Outcome, { kind: K }> {
  assert.ok(o !== null, `expected ${kind}, got null`);
  assert.equal(o.kind, kind, `expected ${kind}, got ${JSON.stringify(o.kind)}`);
  return o as Extract<Outcome, { kind: K }>;
}

describe('Reconciler: applied and unchanged', () => {
  it('applies a new plan, then saves the state it was compiled from', async () => {
    const r = rig();
    const s = snap(denyKv(3));
    r.reads.push(s);
    const o = expectKind(await r.reconciler.reconcile('kv'), 'applied');
    assert.equal(o.source, 'consul');
    assert.deepEqual(r.trace, ['read', 'apply', 'save'], 'the state is saved after the apply, never before');
    const input = r.dataplane.applies[0];
    assert.ok(input !== undefined);
    assert.deepEqual(members(input.plan, 'rules_deny'), ips(3));
    assert.deepEqual(members(input.plan, 'rules_allow'), [MGMT_V4], 'management networks are always in rules_allow');
    assert.deepEqual(members(input.plan, 'rules_allow_v6'), [MGMT_V6]);
    assert.equal(input.full, false);
    assert.deepEqual(input.owned, [], 'nothing owned before the first apply');
    assert.equal(input.adopt, true, 'a plan from Consul may take over what the other backend left');

    const saved = r.store.saved[0];
    assert.ok(saved !== undefined);
    assert.equal(saved.snapshot, s);
    assert.equal(saved.fingerprint, o.plan.fingerprint);
    assert.equal(saved.savedAt, T0);
    assert.deepEqual([...saved.owned].sort(), setNames(o.plan), 'the sets just applied are owned');
    assert.ok(saved.owned.includes('rules_deny') && saved.owned.includes('rules_deny_v6'));

    assert.equal(r.reconciler.lastPlan, o.plan);
    assert.equal(r.reconciler.lastSource, 'consul');
    assert.equal(r.reconciler.stats.applies, 1);
    assert.equal(r.reconciler.stats.lastApplyAt, T0);
    assert.equal(r.logged.named('applied').length, 1);
  });

  it('does not call the dataplane or save again when the plan did not change', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(3)), snap(denyKv(3)));
    const first = expectKind(await r.reconciler.reconcile('kv'), 'applied');
    r.trace.length = 0;
    const second = expectKind(await r.reconciler.reconcile('kv'), 'unchanged');
    assert.equal(second.plan.fingerprint, first.plan.fingerprint);
    assert.deepEqual(r.trace, ['read'], 'only the read: no apply, no forget, no save');
    assert.equal(r.dataplane.applies.length, 1);
    assert.equal(r.store.saved.length, 1);
    assert.equal(r.reconciler.stats.applies, 1);
  });

  it('applies an unchanged plan in full when asked for a full resync', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(3)), snap(denyKv(3)));
    await r.reconciler.reconcile('kv');
    const o = expectKind(await r.reconciler.reconcile('resync', true), 'applied');
    assert.equal(r.dataplane.applies[1]?.full, true);
    assert.equal(o.plan.fingerprint, r.dataplane.applies[0]?.plan.fingerprint);
  });

  it('passes the sets it applied as owned to the next apply, with those it could not destroy', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(3)), snap(denyKv(4)));
    r.dataplane.applyScript.push({ notDestroyed: [{ name: 'old_set', error: 'Set cannot be destroyed: it is in use' }] });
    const first = expectKind(await r.reconciler.reconcile('kv'), 'applied');
    await r.reconciler.reconcile('kv');
    assert.deepEqual([...(r.dataplane.applies[1]?.owned ?? [])].sort(), [...setNames(first.plan), 'old_set'].sort());
  });

  it('an unchanged plan is not applied again', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(3)), snap(denyKv(3)), snap(denyKv(4)));
    await r.reconciler.reconcile('kv');
    const again = await r.reconciler.reconcile('kv');
    await r.reconciler.reconcile('kv');
    assert.equal(again.kind, 'unchanged');
    assert.equal(r.dataplane.applies.length, 2);
  });

  it('keeps the applied plan when the state cannot be saved, and says so', async () => {
    const r = rig();
    r.store.saveError = new Error('disk full');
    r.reads.push(snap(denyKv(3)));
    expectKind(await r.reconciler.reconcile('kv'), 'applied');
    assert.equal(r.reconciler.lastSource, 'consul');
    assert.equal(r.logged.named('state-save-failed').length, 1);
  });
});

describe('Reconciler: blast-radius guard', () => {
  it('holds a plan that empties a set until the inputs have said the same for guard_hold seconds', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(20)));
    expectKind(await r.reconciler.reconcile('kv'), 'applied');

    // The same number of keys, all for another node's set: the tree did not shrink.
    const elsewhere = Array.from({ length: 20 }, (_, i) => ({ key: `befw/$service$/db_tcp_5432/203.0.113.${i + 1}`, value: '-1' }));
    const emptied = snap(elsewhere);
    r.reads.push(emptied);
    const held = expectKind(await r.reconciler.reconcile('kv'), 'held');
    assert.deepEqual(held.hold.reasons, ['rules_deny: 20 of 20 members removed']);
    assert.equal(held.hold.suspect, null);
    assert.equal(held.hold.until, T0 + 60_000, 'guard_hold defaults to 60 s');
    assert.equal(r.rereads.count, 1, 'a second, independent read is requested');
    assert.equal(r.dataplane.applies.length, 1, 'the held-back plan is the one in force: nothing new to apply');
    assert.equal(r.store.saved.length, 1, 'a held plan is never saved as state');
    assert.deepEqual(members(r.reconciler.lastPlan, 'rules_deny'), ips(20), 'the enforced plan is still the old one');
    assert.equal(r.reconciler.stats.held, 1);
    assert.equal(r.logged.named('guard-held').length, 1);
    assert.equal(r.reconciler.nextExpiry, T0 + 60_000, 'the loop wakes when the hold ends');

    // The same answer again before the hold ends stays held and asks for nothing more.
    r.clock.now += 30_000;
    r.reads.push(emptied);
    expectKind(await r.reconciler.reconcile('kv'), 'held');
    assert.equal(r.rereads.count, 1);
    assert.equal(r.reconciler.stats.held, 1);

    // Still the same once the hold is over: applied.
    r.clock.now += 30_000;
    r.reads.push(snap(elsewhere));
    const applied = expectKind(await r.reconciler.reconcile('expiry'), 'applied');
    assert.deepEqual(members(applied.plan, 'rules_deny'), []);
    assert.equal(r.dataplane.applies.length, 2);
    assert.equal(r.logged.named('guard-confirmed').length, 1);
    assert.equal(r.store.saved.length, 2);
  });

  it('lets additions through while a removal waits', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(20)), snap([{ key: 'befw/$ipset$/rules_deny/203.0.113.99', value: '-1' }]));
    await r.reconciler.reconcile('kv');
    const held = expectKind(await r.reconciler.reconcile('kv'), 'held');
    assert.deepEqual(members(held.enforced, 'rules_deny'), [...ips(20), '203.0.113.99/32'].sort());
    assert.equal(r.dataplane.applies.length, 2, 'the addition went in at once');
  });

  it('drops the held plan when the next read no longer removes that much, and guards afresh later', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(20)), snap([]), snap(denyKv(20)));
    await r.reconciler.reconcile('kv');
    expectKind(await r.reconciler.reconcile('kv'), 'held');
    expectKind(await r.reconciler.reconcile('reread'), 'unchanged');
    assert.equal(r.logged.named('guard-cleared').length, 1);
    assert.equal(r.dataplane.applies.length, 1);

    r.reads.push(snap([]));
    expectKind(await r.reconciler.reconcile('kv'), 'held');
    assert.equal(r.rereads.count, 2);
    assert.equal(r.reconciler.stats.held, 2);
  });

  it('holds five times longer when the tree shrank by most of its keys, and an operator can release it', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(20)), snap([]));
    await r.reconciler.reconcile('kv');
    const held = expectKind(await r.reconciler.reconcile('kv'), 'held');
    assert.equal(held.hold.until, T0 + 300_000);
    assert.match(held.hold.suspect ?? '', /shrank from 20 to 0 keys/);
    r.reconciler.guard.release();
    r.reads.push(snap([]));
    expectKind(await r.reconciler.reconcile('release'), 'applied');
  });

  it('while the inputs are suspect every removal waits, even of a single deny', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(1)), snap(denyKv(0)));
    await r.reconciler.reconcile('kv');
    r.suspect.note = 'the Consul KV index went backwards 1 s ago';
    const held = expectKind(await r.reconciler.reconcile('kv'), 'held');
    assert.equal(held.hold.until, T0 + 300_000);
    assert.deepEqual(members(held.enforced, 'rules_deny'), ips(1));
  });

  it('lets a removal below the share through at once', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(20)), snap(denyKv(10)));
    await r.reconciler.reconcile('kv');
    const o = expectKind(await r.reconciler.reconcile('kv'), 'applied');
    assert.deepEqual(members(o.plan, 'rules_deny'), ips(10));
    assert.equal(r.rereads.count, 0);
  });

  it('does not count entries that expired as removals', async () => {
    const r = rig();
    const expiry = T0 / 1000 + 60;
    r.reads.push(snap(denyKv(20, 1, expiry)));
    await r.reconciler.reconcile('kv');
    r.clock.now = T0 + 120_000;
    r.reads.push(snap(denyKv(20, 1, expiry)));
    const o = expectKind(await r.reconciler.reconcile('expiry'), 'applied');
    assert.deepEqual(members(o.plan, 'rules_deny'), []);
    assert.equal(r.rereads.count, 0);
  });
});

describe('Reconciler: apply failures', () => {
  it('rolls back to the last good plan, applied in full, and retries the new plan later', async () => {
    const r = rig();
    const good = snap(denyKv(3));
    r.reads.push(good);
    const first = expectKind(await r.reconciler.reconcile('kv'), 'applied');
    r.trace.length = 0;

    r.dataplane.applyScript.push(new Error('ipset restore exited 1'));
    r.reads.push(snap(denyKv(5)));
    const failed = expectKind(await r.reconciler.reconcile('kv'), 'apply-failed');
    assert.equal(failed.rolledBack, true);
    assert.match(failed.error.message, /ipset restore exited 1/);
    assert.deepEqual(members(failed.plan, 'rules_deny'), ips(5), 'the outcome names the plan that failed');
    assert.deepEqual(r.trace, ['read', 'apply', 'forget', 'apply full'], 'rollback forgets the kernel and applies in full');
    const rollback = r.dataplane.applies[2];
    assert.ok(rollback !== undefined);
    assert.equal(rollback.full, true);
    assert.equal(rollback.plan.fingerprint, first.plan.fingerprint, 'the last good plan, not the failed one');
    assert.deepEqual(members(rollback.plan, 'rules_deny'), ips(3));
    assert.equal(r.reconciler.lastPlan?.fingerprint, first.plan.fingerprint);
    assert.equal(r.store.saved.length, 1, 'a failed apply saves nothing');
    assert.equal(r.reconciler.stats.applyFailures, 1);
    assert.equal(r.reconciler.stats.rollbacks, 1);
    assert.match(r.reconciler.stats.lastResult ?? '', /^failed: /);
    assert.equal(r.logged.named('rolled-back').length, 1);

    // The failed plan is tried again on the next pass.
    r.reads.push(snap(denyKv(5)));
    const retried = expectKind(await r.reconciler.reconcile('retry'), 'applied');
    assert.deepEqual(members(retried.plan, 'rules_deny'), ips(5));
    assert.equal(r.store.saved.length, 2);
  });

  it('retries a plan that failed even when the next read gives the same plan as the last good one', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(3)));
    await r.reconciler.reconcile('kv');
    r.dataplane.applyScript.push(new Error('boom'), new Error('rollback boom'));
    r.reads.push(snap(denyKv(5)));
    const failed = expectKind(await r.reconciler.reconcile('kv'), 'apply-failed');
    assert.equal(failed.rolledBack, false, 'the rollback failed too');
    assert.equal(r.logged.named('rollback-failed').length, 1);
    // The kernel is in an unknown state: even the old plan must be applied again, not skipped.
    r.reads.push(snap(denyKv(3)));
    expectKind(await r.reconciler.reconcile('retry'), 'applied');
    assert.equal(r.dataplane.applies.length, 4);
  });

  it('reports the failure without a rollback when there is no last good plan', async () => {
    const r = rig();
    r.dataplane.applyScript.push(new Error('iptables-restore: line 3 failed'));
    r.reads.push(snap(denyKv(3)));
    const failed = expectKind(await r.reconciler.reconcile('kv'), 'apply-failed');
    assert.equal(failed.rolledBack, false);
    assert.deepEqual(r.trace, ['read', 'apply'], 'no forget, no second apply, no save');
    assert.equal(r.reconciler.lastPlan, null);
    assert.equal(r.reconciler.stats.rollbacks, 0);
    assert.equal(r.logged.named('apply-failed').length, 1);
  });
});

describe('Reconciler: read failures', () => {
  it('enforces the last good inputs, recompiled for now, when the inputs cannot be read', async () => {
    const r = rig();
    const expiring = T0 / 1000 + 60;
    r.reads.push(snap([...denyKv(2, 1, expiring), ...denyKv(3, 10)]));
    await r.reconciler.reconcile('kv');
    r.trace.length = 0;

    // Inside the entries' lifetime: nothing to change, and certainly nothing flushed.
    r.reads.push(new Error('connect ECONNREFUSED 127.0.0.1:8500'));
    const quiet = expectKind(await r.reconciler.reconcile('kv'), 'read-failed');
    assert.match(quiet.error.message, /ECONNREFUSED/);
    const same = expectKind(quiet.fallback, 'unchanged');
    assert.equal(same.source, 'saved');
    assert.deepEqual(r.trace, ['read'], 'no dataplane call');

    // Past the expiry of two of them: those two leave, the rest stays.
    r.clock.now = T0 + 120_000;
    r.reads.push(new Error('Consul timed out'));
    const later = expectKind(await r.reconciler.reconcile('expiry'), 'read-failed');
    const applied = expectKind(later.fallback, 'applied');
    assert.equal(applied.source, 'saved');
    assert.deepEqual(members(applied.plan, 'rules_deny'), ips(3, 10), 'never an empty set because a read failed');
    assert.deepEqual(members(r.dataplane.applies.at(-1)?.plan, 'rules_deny'), ips(3, 10));
    assert.equal(r.logged.named('read-failed').length, 2);
  });

  it('changes nothing when the inputs cannot be read and there is no good state yet', async () => {
    const r = rig();
    r.reads.push(new Error('no answer yet for the befw/ KV tree'));
    const o = expectKind(await r.reconciler.reconcile('start'), 'read-failed');
    assert.equal(o.fallback, null);
    assert.deepEqual(r.trace, ['read']);
  });
});

describe('Reconciler.enforceSaved', () => {
  it('enforces a valid saved state, and destroys the sets it owned that the plan no longer has', async () => {
    const r = rig();
    const saved = snap(denyKv(4));
    r.store.loadResult = {
      kind: 'ok',
      state: { savedAt: T0 - 3_600_000, snapshot: saved, owned: ['web_tcp_80', 'web_tcp_80_v6', 'rules_deny'], fingerprint: 'x' },
    };
    const o = expectKind(await r.reconciler.enforceSaved(), 'applied');
    assert.equal(o.source, 'saved');
    assert.deepEqual(members(o.plan, 'rules_deny'), ips(4));
    assert.deepEqual([...(r.dataplane.applies[0]?.owned ?? [])].sort(), ['rules_deny', 'web_tcp_80', 'web_tcp_80_v6']);
    assert.deepEqual(r.trace, ['load', 'apply', 'save']);
    assert.equal(r.reconciler.lastSource, 'saved');
    assert.equal(r.logged.named('state-loaded').length, 1);

    // Consul's first answer, identical, changes nothing.
    r.reads.push(snap(denyKv(4)));
    expectKind(await r.reconciler.reconcile('kv'), 'unchanged');
  });

  it('with a corrupt state and a BEFW chain in place: keeps the kernel, only ensures the management networks', async () => {
    const r = rig();
    r.store.loadResult = { kind: 'invalid', reason: 'checksum mismatch (truncated or corrupt)' };
    r.dataplane.chainPresent = true;
    const o = await r.reconciler.enforceSaved();
    assert.equal(o, null);
    assert.deepEqual(r.trace, ['load', 'hasChain', 'ensureMembers']);
    assert.deepEqual(r.dataplane.ensured, [
      [
        { name: 'rules_allow', family: 'inet', members: [MGMT_V4] },
        { name: 'rules_allow_v6', family: 'inet6', members: [MGMT_V6] },
      ],
    ]);
    const invalid = r.logged.named('state-invalid');
    assert.equal(invalid.length, 1);
    assert.equal(invalid[0]?.reason, 'checksum mismatch (truncated or corrupt)');
    assert.equal(r.reconciler.lastPlan, null);
  });

  it('with no state and no BEFW chain: installs the minimal plan and saves nothing', async () => {
    const r = rig();
    r.store.loadResult = { kind: 'missing' };
    const o = expectKind(await r.reconciler.enforceSaved(), 'applied');
    assert.equal(o.source, 'minimal');
    assert.deepEqual(members(o.plan, 'rules_allow'), [MGMT_V4]);
    assert.deepEqual(members(o.plan, 'rules_deny'), []);
    assert.deepEqual(r.trace, ['load', 'hasChain', 'apply'], 'the minimal plan is never saved as state');
    assert.equal(r.dataplane.applies[0]?.adopt, false, 'the safety net takes nothing over: what an earlier run left keeps enforcing');
    assert.equal(r.logged.named('state-missing').length, 1);

    // The minimal plan is no good state: a read failure does not re-enforce it, and the
    // guard does not hold Consul's first answer against it.
    r.reads.push(new Error('unreachable'));
    assert.equal(expectKind(await r.reconciler.reconcile('kv'), 'read-failed').fallback, null);
    r.reads.push(snap(denyKv(20)), snap([]));
    expectKind(await r.reconciler.reconcile('kv'), 'applied');
    assert.equal(r.reconciler.lastSource, 'consul');
    // From then on, Consul's answers are guarded against each other.
    expectKind(await r.reconciler.reconcile('kv'), 'held');
  });

  it('changes nothing when the kernel cannot even be inspected', async () => {
    const r = rig();
    r.dataplane.hasChainError = new Error('iptables-nft-save exited 4');
    assert.equal(await r.reconciler.enforceSaved(), null);
    assert.deepEqual(r.trace, ['load', 'hasChain']);
    assert.equal(r.logged.named('safety-net-failed').length, 1);
  });
});

describe('Reconciler.repair', () => {
  it('does nothing before anything was applied', async () => {
    const r = rig();
    assert.equal(await r.reconciler.repair([{ what: 'set-missing', set: 'rules_deny', detail: 'set is gone' }]), null);
    assert.deepEqual(r.trace, []);
    assert.equal(r.reconciler.stats.repairs, 0);
  });

  it('forgets what the driver believes and re-applies the last good plan in full', async () => {
    const r = rig();
    r.reads.push(snap(denyKv(3)));
    const first = expectKind(await r.reconciler.reconcile('kv'), 'applied');
    r.trace.length = 0;
    const drifts: Drift[] = [
      { what: 'set-count', set: 'rules_deny', detail: '2 entries, 3 applied' },
      { what: 'jump', family: 4, detail: 'INPUT does not jump to BEFW' },
    ];
    const o = expectKind(await r.reconciler.repair(drifts), 'applied');
    assert.deepEqual(r.trace, ['forget', 'apply full'], 'the plan in force goes back as it was; the state on disk is unchanged');
    assert.equal(o.plan.fingerprint, first.plan.fingerprint);
    assert.equal(o.source, 'consul', 'the repaired plan keeps its origin');
    assert.equal(r.reconciler.stats.repairs, 1);
    const logged = r.logged.named('drift');
    assert.equal(logged.length, 1);
    assert.deepEqual(logged[0]?.drifts, drifts);
  });
});
