/**
 * The responder's action registry: one entry per action type the config schema accepts, each
 * building its own runner from the shared context. (That an action type of the config without
 * an entry is a compile error is the registry's type, not a test.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/config.js';
import { type ActionConfig, parseReactorConfig } from '../../src/reactor/config/reactorConfig.js';
import type { ReactorJob } from '../../src/reactor/queue/job.js';
import { ActionError, type ActionRunner, newJobContext } from '../../src/reactor/responder/actionTypes.js';
import { BanRunner } from '../../src/reactor/responder/banAction.js';
import type { KvEntry, ReactorKv, TxnResult } from '../../src/reactor/responder/consulKv.js';
import { protectionFor } from '../helpers/reactorFakes.js';
import { ACTIONS, type ActionContext, type ActionRegistry, runnerFor } from '../../src/reactor/responder/registry.js';
import { UserLeaseRunner } from '../../src/reactor/responder/userLease.js';
import { ObserveRunner } from '../../src/reactor/responder/observeAction.js';
import { VyosAddressGroupRunner, VyosDisableInterfaceRunner } from '../../src/reactor/responder/vyosActions.js';
import type { VyosClient } from '../../src/reactor/responder/vyosClient.js';

const FILE = '/etc/befw/reactor.json';

/** The action types the config schema accepts, read from its own refusal of one it does not. */
function schemaActionTypes(): string[] {
  const config = { queue: { servers: ['127.0.0.1:11300'] }, responder: { actions: { 'ssh-auth-failure': [{ type: 'no-such-action' }] } } };
  try {
    parseReactorConfig(JSON.stringify(config), FILE);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    const m = /^expected one of (.*)$/.exec(err.reason);
    assert.ok(m !== null, err.reason);
    return (JSON.parse(`[${m[1]}]`) as string[]).sort();
  }
  assert.fail('an unknown action type was accepted');
}

/** A config with one action of every type, each on an event about what it acts on. */
function everyAction(): ActionConfig[] {
  const c = parseReactorConfig(
    JSON.stringify({
      queue: { servers: ['127.0.0.1:11300'], hmacKeyFile: '/etc/befw/reactor.key' },
      parser: {
        listeners: [{ protocol: 'udp', port: 5140 }],
        allowedDevices: ['198.51.100.0/24'],
        builtinTriggers: ['sshd', 'iface-down', 'dhcp-lease', 'observe'],
      },
      responder: {
        actions: {
          'ssh-auth-failure': [{ type: 'ban' }, { type: 'vyos-address-group', devices: 'source', group: 'BLOCK', ipv6Group: 'BLOCK6' }],
          'iface-down': [{ type: 'vyos-disable-interface' }],
          'dhcp-lease': [{ type: 'user-lease', networks: ['198.51.100.0/24'] }],
          observed: [{ type: 'observe' }],
        },
        devices: { edge1: { url: 'https://198.51.100.254', keyFile: '/etc/befw/edge1.key', addresses: ['198.51.100.254'] } },
      },
    }),
    FILE,
  );
  return [...(c.responder?.actions.values() ?? [])].flat();
}

const NO_KV: ReactorKv = {
  self: async () => ({ datacenter: 'dc1', nodeName: 'responder-1' }),
  get: async (): Promise<KvEntry | null> => null,
  list: async (): Promise<KvEntry[]> => [],
  txn: async (): Promise<TxnResult> => ({ ok: true }),
  members: async () => [],
};

function context(over: Partial<ActionContext> = {}): ActionContext {
  return {
    kv: NO_KV,
    protection: protectionFor(NO_KV, ['203.0.113.0/24']),
    stateKvPrefix: 'befw-reactor',
    localDc: async () => 'dc1',
    now: () => 1_700_000_000_000,
    fleet: { devices: new Map(), client: async (name: string): Promise<VyosClient> => Promise.reject(new Error(`no client for ${name}`)) },
    isProtected: async () => null,
    ...over,
  };
}

function job(subject: string): ReactorJob {
  return {
    v: 2,
    id: '0b7e3c1e-8f0a-4c59-9d7e-1d2f3a4b5c6d',
    event: 'ssh-auth-failure',
    trigger: 'sshd-failed-password',
    subject,
    fields: {},
    count: 5,
    device: { address: '192.0.2.9', hostname: 'vyos', via: 'direct', listener: 'tcp:0.0.0.0:5140', name: 'edge', transport: 'tcp' },
    evidence: { spoofable: false, udpActions: [] },
    firstSeenMs: 1_700_000_000_000,
    lineReceivedMs: 1_700_000_000_000,
    queuedMs: 1_700_000_000_000,
    parser: 'parser-1:1',
    sample: 'x',
  };
}

describe('responder action registry', () => {
  test('has exactly one entry per action type the config schema accepts', () => {
    assert.deepEqual(Object.keys(ACTIONS).sort(), schemaActionTypes());
  });

  test('every configured action type resolves to its runner', () => {
    const actions = everyAction();
    assert.deepEqual(actions.map((a) => a.type).sort(), schemaActionTypes());
    const classes: Record<ActionConfig['type'], new (...args: never[]) => ActionRunner> = {
      ban: BanRunner,
      'vyos-address-group': VyosAddressGroupRunner,
      'vyos-disable-interface': VyosDisableInterfaceRunner,
      'user-lease': UserLeaseRunner,
      observe: ObserveRunner,
    };
    for (const a of actions) {
      const runner = runnerFor(a, context());
      assert.equal(runner.type, a.type);
      assert.ok(runner instanceof classes[a.type], a.type);
    }
  });

  test('runnerFor hands each factory its own action and the shared context', () => {
    const calls: string[] = [];
    const ctx = context();
    const recording = (type: string) => (action: ActionConfig, got: ActionContext) => {
      calls.push(type);
      assert.equal(action.type, type);
      assert.equal(got, ctx);
      return { type, run: async () => ({ result: 'ok', detail: {} }) };
    };
    const registry: ActionRegistry = {
      ban: recording('ban'),
      'vyos-address-group': recording('vyos-address-group'),
      'vyos-disable-interface': recording('vyos-disable-interface'),
      'user-lease': recording('user-lease'),
      observe: recording('observe'),
    };
    for (const a of everyAction()) runnerFor(a, ctx, registry);
    assert.deepEqual(calls.sort(), schemaActionTypes());
  });

  test('the runners use the context they were built with', async () => {
    const actionOf = (type: ActionConfig['type']): ActionConfig => {
      const a = everyAction().find((x) => x.type === type);
      assert.ok(a !== undefined, type);
      return a;
    };
    const [ban, group, disable] = [actionOf('ban'), actionOf('vyos-address-group'), actionOf('vyos-disable-interface')];
    // ban: the context's protection (its ignore list) keeps the address out of Consul.
    const banned = await runnerFor(ban, context()).run(job('203.0.113.7'), newJobContext());
    assert.equal(banned.result, 'protected');
    assert.match(String(banned.detail.reason), /protect list/);
    // vyos-address-group: the context's protection check.
    const grouped = await runnerFor(group, context({ isProtected: async () => 'in rules_allow (198.51.100.0/24)' })).run(
      job('198.51.100.7'),
      newJobContext(),
    );
    assert.deepEqual(grouped, { result: 'protected', detail: { reason: 'in rules_allow (198.51.100.0/24)' } });
    // vyos-disable-interface: the context's fleet (empty here: no device sends from the job's address).
    await assert.rejects(
      runnerFor(disable, context()).run({ ...job('eth1'), event: 'iface-down' }, newJobContext()),
      (err: unknown) =>
        err instanceof ActionError && err.permanent && /no device in \/responder\/devices sends from 192\.0\.2\.9/.test(err.message),
    );
  });
});
