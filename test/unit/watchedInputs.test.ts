/**
 * WatchedInputs against a fake ConsulApi whose blocking queries answer from a script and, when
 * the script is empty, block until the test delivers an answer or the watch aborts them (as a
 * real blocking query does). Watch timing is virtual (fake sleep and clock); the loop itself is
 * covered by blockingWatch.test.ts: these tests are about what WatchedInputs makes of the answers.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { type ChangeReason, InputsNotReadyError, WatchedInputs } from '../../src/agent/inputs/watchedInputs.js';
import { parseConfig } from '../../src/config/config.js';
import type { BlockingAnswer, BlockingQuery, WatchOptions } from '../../src/consul/blockingWatch.js';
import type { AgentIdentity, ConsulApi, ServiceRegistration } from '../../src/consul/client.js';
import type { ConsulPeers } from '../../src/core/protect.js';
import type { AgentService, KvPair } from '../../src/core/types.js';
import { recordingLog } from '../helpers/recordingLog.js';

type Step<T> = { readonly answer: BlockingAnswer<T> } | { readonly error: Error };

interface Asked {
  readonly index: number;
  readonly stale: boolean;
}

/** One blocking endpoint: scripted steps first, then queries wait for `deliver()` or an abort. */
class BlockingEndpoint<T> {
  readonly asked: Asked[] = [];
  readonly steps: Step<T>[] = [];
  private waiting: { resolve: (a: BlockingAnswer<T>) => void; reject: (e: Error) => void } | null = null;

  constructor(private readonly clock: { now: number }) {}

  async query(q: BlockingQuery): Promise<BlockingAnswer<T>> {
    this.asked.push({ index: q.index, stale: q.stale });
    const step = this.steps.shift();
    if (step === undefined) {
      return new Promise((resolve, reject) => {
        this.waiting = { resolve, reject };
        q.signal.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
      });
    }
    if ('error' in step) throw step.error;
    // An answer at the index asked for is a blocking query that waited its whole wait.
    this.clock.now += q.index > 0 && step.answer.index === q.index ? q.waitMs : 5;
    return step.answer;
  }

  /** Answers the query that is waiting; false when none is. */
  deliver(step: Step<T>): boolean {
    const w = this.waiting;
    if (w === null) return false;
    this.waiting = null;
    if ('error' in step) w.reject(step.error);
    else w.resolve(step.answer);
    return true;
  }

  get blocked(): boolean {
    return this.waiting !== null;
  }
}

function answer<T>(index: number, data: T): Step<T> {
  return { answer: { index, data, lastContactMs: 0, knownLeader: true } };
}

class FakeConsul implements ConsulApi {
  readonly clock = { now: 1_000_000 };
  readonly kv = new BlockingEndpoint<KvPair[]>(this.clock);
  readonly catalog = new BlockingEndpoint<AgentService[]>(this.clock);
  readonly kvArgs: { prefix: string; dc: string | null }[] = [];
  agentServices: AgentService[] = [];
  servicesCalls = 0;
  selfError: Error | null = null;

  async self(): Promise<AgentIdentity> {
    if (this.selfError !== null) throw this.selfError;
    return { nodeName: 'Web-01.example.org', datacenter: 'dc1' };
  }
  async services(): Promise<AgentService[]> {
    this.servicesCalls++;
    return this.agentServices;
  }
  async kvTree(): Promise<KvPair[]> {
    throw new Error('WatchedInputs must not poll the KV tree');
  }
  peersAnswers: (ConsulPeers | Error)[] = [];
  peersCalls = 0;
  async peers(): Promise<ConsulPeers> {
    this.peersCalls++;
    const next = this.peersAnswers.length > 1 ? this.peersAnswers.shift() : this.peersAnswers[0];
    if (next === undefined) return { addrs: [], tcpPorts: [], udpPorts: [] };
    if (next instanceof Error) throw next;
    return next;
  }
  async kvGet(): Promise<string | null> {
    throw new Error('not used');
  }
  async kvPut(): Promise<void> {
    throw new Error('not used');
  }
  async register(_s: ServiceRegistration): Promise<void> {
    throw new Error('not used');
  }
  async deregister(_id: string): Promise<void> {
    throw new Error('not used');
  }
  kvTreeBlocking(prefix: string, dc: string | null, q: BlockingQuery): Promise<BlockingAnswer<KvPair[]>> {
    this.kvArgs.push({ prefix, dc });
    return this.kv.query(q);
  }
  nodeServicesBlocking(_node: string, q: BlockingQuery): Promise<BlockingAnswer<AgentService[]>> {
    return this.catalog.query(q);
  }
}

/** Lets the watch loops run (they only wait on promises here) until `pred` holds. */
async function until(pred: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (pred()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.fail(`timed out waiting for ${what}`);
}

const A: KvPair = { key: 'befw/$ipset$/rules_deny/198.51.100.1', value: '-1' };
const B: KvPair = { key: 'befw/$service$/web_tcp_80/198.51.100.2', value: '-1' };
const WEB: AgentService = { id: 'web', name: 'web', port: 80, tags: [] };
const API: AgentService = { id: 'api', name: 'api', port: 443, tags: [] };

describe('WatchedInputs', () => {
  let dir = '';
  let inputs: WatchedInputs | null = null;
  let logged = recordingLog();

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'befw-watched-'));
    await mkdir(join(dir, 'services'));
    await mkdir(join(dir, 'ipsets'));
  });

  afterEach(async () => {
    await inputs?.stop();
    inputs = null;
    await rm(dir, { recursive: true, force: true });
  });

  function startInputs(consul: FakeConsul): { pokes: { reason: ChangeReason; kvQueries: number }[]; errors: string[] } {
    const pokes: { reason: ChangeReason; kvQueries: number }[] = [];
    const errors: string[] = [];
    const config = parseConfig(`dc=dc1\nkv_watch=tree\nservices=${dir}/services\nipsets=${dir}/ipsets`, '/test/befw.conf');
    const options: WatchOptions = {
      waitMs: 60_000,
      maxStaleMs: 5000,
      burst: 1000,
      ratePerSec: 1000,
      backoffBaseMs: 250,
      backoffMaxMs: 5000,
      random: () => 0.5,
      sleep: async (ms) => {
        consul.clock.now += ms;
      },
      now: () => consul.clock.now,
    };
    logged = recordingLog();
    inputs = new WatchedInputs(
      consul,
      config,
      logged.log,
      (reason) => pokes.push({ reason, kvQueries: consul.kv.asked.length }),
      options,
      { onError: (watch) => errors.push(watch) },
      5,
    );
    inputs.start();
    return { pokes, errors };
  }

  it('reads Consul peers into the snapshot, pokes "peers" on a change, and keeps them through a failed read', async () => {
    const consul = new FakeConsul();
    consul.kv.steps.push(answer(5, [A]));
    const first = { addrs: ['203.0.113.250'], tcpPorts: [8300, 8301], udpPorts: [8301] };
    const second = { addrs: ['203.0.113.250', '203.0.113.251'], tcpPorts: [8300, 8301], udpPorts: [8301] };
    consul.peersAnswers = [first, first, new Error('connect ECONNREFUSED'), second];
    const { pokes, errors } = startInputs(consul);
    await until(() => consul.kv.blocked && consul.catalog.blocked, 'both watches');
    await until(() => consul.peersCalls >= 1, 'the first members read');
    assert.deepEqual((await inputs?.snapshot())?.consulPeers, first);
    const peerPokes = (): number => pokes.filter((p) => p.reason === 'peers').length;
    assert.equal(peerPokes(), 1, 'the first answer is announced: a pass before it had no peers');
    for (let i = 0; i < 400 && peerPokes() < 2; i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(errors.includes('agent/members'), 'the failed read is counted');
    assert.ok(peerPokes() === 2, 'a new server is a change; the same answer again is not');
    assert.deepEqual((await inputs?.snapshot())?.consulPeers, second);
  });

  it('pokes "kv" for a KV answer whose index moved, and not for one that did not', async () => {
    const consul = new FakeConsul();
    consul.kv.steps.push(answer(5, [A]), answer(5, [A]), answer(9, [A, B]));
    const { pokes } = startInputs(consul);
    await until(() => consul.kv.blocked && consul.kv.asked.length === 4, 'the fourth KV query');

    assert.deepEqual(
      consul.kv.asked.map((q) => q.index),
      [0, 5, 5, 9],
    );
    assert.deepEqual(consul.kvArgs[0], { prefix: 'befw/', dc: 'dc1' }, 'one recursive query on befw/ in the configured dc');
    assert.deepEqual(
      pokes.filter((p) => p.reason === 'kv').map((p) => p.kvQueries),
      [1, 3],
      'poked after the first and the third answer only',
    );
    assert.equal(inputs?.kvSize, 2);
    assert.equal(inputs?.consulHealth.reachable, true);
  });

  it('marks Consul unreachable on an error, asks again without blocking, and keeps the last good answer', async () => {
    const consul = new FakeConsul();
    consul.kv.steps.push(answer(5, [A, B]), { error: new Error('connect ECONNREFUSED 127.0.0.1:8500') });
    const { errors } = startInputs(consul);
    await until(() => consul.kv.blocked && consul.kv.asked.length === 3, 'the query after the error');
    await until(() => consul.catalog.blocked, 'the services watch');

    assert.deepEqual(
      consul.kv.asked.map((q) => q.index),
      [0, 5, 0],
      'the query after an error does not block on the old index',
    );
    const health = inputs?.consulHealth;
    assert.equal(health?.reachable, false);
    assert.match(health?.lastError ?? '', /ECONNREFUSED/);
    assert.deepEqual(errors, ['kv']);
    assert.equal(logged.named('watch-error').length, 1);

    const snap = await inputs?.snapshot();
    assert.deepEqual(snap?.kv, [A, B], 'the last good KV answer, never an empty list');

    // Consul comes back.
    assert.ok(consul.kv.deliver(answer(5, [A, B])));
    await until(() => inputs?.consulHealth.reachable === true, 'reachable again');
    assert.equal(inputs?.consulHealth.lastError, null);
    assert.equal(logged.named('consul-reachable').length, 2, 'first contact, then recovery');
  });

  it('gives a snapshot of the last answers: KV, the node identity, the agent services and the local files', async () => {
    const consul = new FakeConsul();
    consul.agentServices = [WEB];
    const { pokes } = startInputs(consul);
    await assert.rejects(inputs?.snapshot() ?? Promise.resolve(), InputsNotReadyError, 'no KV answer yet');

    await until(() => consul.kv.blocked, 'the first KV query');
    assert.ok(consul.kv.deliver(answer(7, [A])));
    await until(() => consul.kv.asked.length === 2 && consul.kv.blocked, 'the KV answer');
    await until(() => consul.catalog.blocked, 'the services watch');
    assert.ok(consul.catalog.deliver(answer(3, [WEB])));
    await until(() => pokes.some((p) => p.reason === 'services'), 'the services poke');

    const snap = await inputs?.snapshot();
    assert.deepEqual(snap?.node, { name: 'web-01', dc: 'dc1' }, 'short, lower-case node name');
    assert.deepEqual(snap?.kv, [A]);
    assert.deepEqual(snap?.agentServices, [WEB]);
    assert.deepEqual(snap?.fileServices, []);
    assert.deepEqual(snap?.ipsetFiles, []);
    await inputs?.snapshot();
    assert.equal(consul.servicesCalls, 1, 'the agent is asked once, not at every snapshot');

    // The catalog index moves for a write elsewhere: same list, no poke, no re-read.
    const servicePokes = (): number => pokes.filter((p) => p.reason === 'services').length;
    const before = servicePokes();
    await until(() => consul.catalog.blocked, 'the catalog query');
    assert.ok(consul.catalog.deliver(answer(4, [WEB])));
    await until(() => consul.catalog.blocked && consul.catalog.asked.length === 3, 'the next catalog query');
    assert.equal(servicePokes(), before);
    await inputs?.snapshot();
    assert.equal(consul.servicesCalls, 1);

    // The node's services changed: poked, and the agent's list is read again.
    consul.agentServices = [WEB, API];
    assert.ok(consul.catalog.deliver(answer(6, [WEB, API])));
    await until(() => servicePokes() === before + 1, 'the services change');
    assert.deepEqual((await inputs?.snapshot())?.agentServices, [WEB, API]);
    assert.equal(consul.servicesCalls, 2);
  });

  it('reread() reads KV beside the parked query (never aborting it), announces only a change, and re-reads the agent', async () => {
    const consul = new FakeConsul();
    consul.kv.steps.push(answer(5, [A]));
    const { pokes } = startInputs(consul);
    await until(() => consul.kv.blocked && consul.kv.asked.length === 2, 'the blocking KV query');
    await until(() => consul.catalog.blocked, 'the services watch');
    assert.ok(consul.catalog.deliver(answer(3, [])));
    await until(() => pokes.some((p) => p.reason === 'services'), 'the services poke');
    await inputs?.snapshot();
    const calls = consul.servicesCalls;
    const kvPokes = (): number => pokes.filter((p) => p.reason === 'kv').length;
    assert.equal(kvPokes(), 1);

    // The same data: asked once more, consistently and without blocking, and nothing announced.
    consul.kv.steps.push(answer(5, [A]));
    inputs?.reread();
    await until(() => consul.kv.asked.length === 3, 'the re-read');
    assert.deepEqual(consul.kv.asked[2], { index: 0, stale: false }, 'a consistent, non-blocking read');
    await new Promise((r) => setImmediate(r));
    assert.equal(kvPokes(), 1, 'an unchanged re-read is no change');
    // Different data: announced.
    consul.kv.steps.push(answer(7, [A, B]));
    inputs?.reread();
    await until(() => kvPokes() === 2, 'the changed re-read');
    assert.equal(consul.kv.asked.filter((q) => q.index === 5).length, 1, 'the parked query was never cut short');
    await inputs?.snapshot();
    assert.equal(consul.servicesCalls, calls + 1, 'services are read again for the next pass');
  });

  it('a services change that lands while a snapshot is being taken does not fail the snapshot', async () => {
    const consul = new FakeConsul();
    consul.kv.steps.push(answer(5, [A]));
    let release: (list: AgentService[]) => void = () => undefined;
    consul.services = () => {
      consul.servicesCalls++;
      return new Promise((resolve) => (release = resolve));
    };
    const { pokes } = startInputs(consul);
    await until(() => consul.kv.blocked && consul.catalog.blocked, 'both watches');
    const taking = inputs?.snapshot();
    await until(() => consul.servicesCalls === 1, 'the agent services read');
    release([WEB]);
    assert.ok(consul.catalog.deliver(answer(3, [WEB])));
    const snap = await taking;
    assert.deepEqual(snap?.agentServices, [WEB]);
    assert.ok(
      pokes.some((p) => p.reason === 'services'),
      'the change is still announced for the next pass',
    );
  });

  it('retries the agent identity and reports it as an error until it answers', async () => {
    const consul = new FakeConsul();
    consul.selfError = new Error('connect ECONNREFUSED 127.0.0.1:8500');
    consul.kv.steps.push(answer(5, [A]));
    const { errors } = startInputs(consul);
    await until(() => consul.kv.blocked, 'the KV answer');
    assert.deepEqual(errors, ['agent/self']);
    await assert.rejects(inputs?.snapshot() ?? Promise.resolve(), /agent identity/);
    assert.equal(consul.catalog.asked.length, 0, 'no services watch without an identity');
  });
});
