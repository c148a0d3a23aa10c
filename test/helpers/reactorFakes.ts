/**
 * Fakes and factories shared by the reactor's unit tests: an in-memory KV with Consul's
 * check-and-set semantics and a members list, a valid (v2) job, a quiet logger, and the
 * protection a responder builds, from a protect list and what the fake Consul holds; a syslog
 * pipeline built from a config, collecting its jobs and problems.
 */
import { Writable } from 'node:stream';
import { createLogger } from '../../src/log/logger.js';
import { NetSet } from '../../src/core/netMatch.js';
import type { ReactorJob } from '../../src/reactor/queue/job.js';
import { parseReactorConfig } from '../../src/reactor/config/reactorConfig.js';
import { type Problem, SyslogPipeline } from '../../src/reactor/syslog/pipeline.js';
import type { ConsulMember, KvEntry, ReactorKv, TxnOp, TxnResult } from '../../src/reactor/responder/consulKv.js';
import { ProtectedList } from '../../src/reactor/responder/protectedList.js';
import { Protection } from '../../src/reactor/responder/protection.js';

export class FakeKv implements ReactorKv {
  readonly data = new Map<string, { value: string; index: number }>();
  index = 10;
  txns = 0;
  failing = false;
  membersLan: ConsulMember[] = [];
  membersWan: ConsulMember[] = [];
  /** Runs before each txn applies: lets a test write "concurrently". */
  beforeTxn: (() => void) | null = null;

  put(key: string, value: string): void {
    this.data.set(key, { value, index: ++this.index });
  }

  async self(): Promise<{ datacenter: string; nodeName: string }> {
    return { datacenter: 'dc1', nodeName: 'responder-1' };
  }

  async get(key: string): Promise<KvEntry | null> {
    if (this.failing) throw new Error('connection refused');
    const e = this.data.get(key);
    return e === undefined ? null : { key, value: e.value, modifyIndex: e.index };
  }

  async list(prefix: string): Promise<KvEntry[]> {
    if (this.failing) throw new Error('connection refused');
    return [...this.data].filter(([k]) => k.startsWith(prefix)).map(([key, e]) => ({ key, value: e.value, modifyIndex: e.index }));
  }

  async members(wan: boolean): Promise<ConsulMember[]> {
    if (this.failing) throw new Error('connection refused');
    return wan ? this.membersWan : this.membersLan;
  }

  async txn(ops: readonly TxnOp[]): Promise<TxnResult> {
    const hook = this.beforeTxn;
    this.beforeTxn = null;
    hook?.();
    this.txns++;
    for (const o of ops) {
      if (o.verb === 'set' || o.verb === 'delete') continue;
      const cur = this.data.get(o.key)?.index ?? 0;
      if (cur !== o.index) return { ok: false, errors: [`cas failed on ${o.key}`] };
    }
    const at = ++this.index;
    for (const o of ops) {
      if (o.verb === 'delete-cas' || o.verb === 'delete') this.data.delete(o.key);
      else this.data.set(o.key, { value: o.value, index: at });
    }
    return { ok: true };
  }
}

export function quietLog(): ReturnType<typeof createLogger> {
  return createLogger('fatal', new Writable({ write: (_c, _e, cb) => cb() }));
}

/** The responder's protection: `protect` as the config's list, plus what `kv` publishes and its members. */
export function protectionFor(kv: ReactorKv, protect: readonly string[] = [], now: () => number = Date.now): Protection {
  const list = new ProtectedList(kv, [{ what: 'the protect list', nets: NetSet.parse(protect) }], 5000, quietLog(), now);
  return new Protection(kv, list);
}

let seq = 0;
export function testJob(subject = '198.51.100.5', over: Partial<ReactorJob> = {}, at = 1_700_000_000_000): ReactorJob {
  seq++;
  return {
    v: 2,
    id: `job-${String(seq).padStart(8, '0')}`,
    event: 'ssh-auth-failure',
    trigger: 'sshd-failed-password',
    subject,
    fields: { attacker: subject },
    count: 5,
    device: { address: '198.51.100.2', hostname: 'vyos', via: 'direct', listener: 'tcp:0.0.0.0:514', name: 'edge', transport: 'tcp' },
    evidence: { spoofable: false, udpActions: [] },
    firstSeenMs: at,
    lineReceivedMs: at,
    queuedMs: at,
    parser: 'p:1',
    sample: 'x',
    ...over,
  };
}

/** A parser pipeline for `parser` (merged over one UDP listener and the queue), collecting what it emits. */
export function testPipeline(
  parser: Record<string, unknown>,
  protect: readonly string[] = [],
): { p: SyslogPipeline; jobs: ReactorJob[]; problems: Problem[] } {
  const c = parseReactorConfig(
    JSON.stringify({
      protect,
      queue: { servers: ['127.0.0.1:11300'], hmacKeyFile: '/etc/befw/reactor.key' },
      parser: { listeners: [{ protocol: 'udp', port: 514 }], ...parser },
    }),
    'test.json',
  );
  const jobs: ReactorJob[] = [];
  const problems: Problem[] = [];
  const p = new SyslogPipeline(
    c.parser!,
    c.protect,
    (j) => jobs.push(j),
    (x) => problems.push(x),
    'test:1',
  );
  return { p, jobs, problems };
}
