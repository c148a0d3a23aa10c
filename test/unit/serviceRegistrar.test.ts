/**
 * The ServiceRegistrar against a fake local Consul agent (an in-memory service list that records
 * every call): service files are registered with the tags befw, local and their ports, `local`
 * services without a file are deregistered, and nothing is sent when nothing differs.
 */
import assert from 'node:assert/strict';
import { type TestContext, describe, it } from 'node:test';
import { ServiceRegistrar } from '../../src/agent/serviceRegistrar.js';
import type { ServiceRegistration } from '../../src/consul/client.js';
import type { AgentService, FileService } from '../../src/core/types.js';
import { recordingLog } from '../helpers/recordingLog.js';

const flush = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class FakeAgent {
  readonly services = new Map<string, AgentService>();
  readonly calls: string[] = [];
  /** Calls that fail while listed: 'services', 'register <id>', 'deregister <id>'. */
  readonly failing = new Set<string>();

  private call(what: string): void {
    this.calls.push(what);
    if (this.failing.has(what)) throw new Error(`${what}: connection refused`);
  }

  async list(): Promise<AgentService[]> {
    this.call('services');
    return [...this.services.values()];
  }

  async register(s: ServiceRegistration): Promise<void> {
    this.call(`register ${s.id}`);
    this.services.set(s.id, { id: s.id, name: s.name, port: s.port, tags: [...s.tags] });
  }

  async deregister(id: string): Promise<void> {
    this.call(`deregister ${id}`);
    this.services.delete(id);
  }
}

function file(name: string, port: number, extra: Partial<FileService> = {}): FileService {
  return { file: `/etc/befw/services/${name}.json`, name, port, protocol: 'tcp', mode: 'enforcing', ports: [], ...extra };
}

function rig(): {
  registrar: ServiceRegistrar;
  agent: FakeAgent;
  files: { list: FileService[] | Error };
  logged: ReturnType<typeof recordingLog>;
} {
  const agent = new FakeAgent();
  const files: { list: FileService[] | Error } = { list: [] };
  const logged = recordingLog();
  const registrar = new ServiceRegistrar({
    consul: { services: () => agent.list(), register: (s) => agent.register(s), deregister: (id) => agent.deregister(id) },
    files: async () => {
      if (files.list instanceof Error) throw files.list;
      return files.list;
    },
    log: logged.log,
  });
  return { registrar, agent, files, logged };
}

describe('ServiceRegistrar', () => {
  it('registers each service file with the tags befw, local, its mode and its ports', async () => {
    const r = rig();
    r.files.list = [file('files', 8443, { ports: [{ proto: 'udp', from: 9000, to: 9010 }] })];
    r.registrar.recheck();
    await r.registrar.idle();
    assert.deepEqual(r.agent.services.get('files'), {
      id: 'files',
      name: 'files',
      port: 8443,
      tags: ['befw', 'local', 'enforcing', '9000:9010/udp'],
    });
    assert.deepEqual(
      r.logged.named('service-registered').map((e) => e.id),
      ['files'],
    );
  });

  it('sends nothing when the files still ask for what was last registered', async () => {
    const r = rig();
    r.files.list = [file('files', 8443)];
    r.registrar.filesChanged();
    await r.registrar.idle();
    const before = r.agent.calls.length;
    r.registrar.filesChanged();
    await r.registrar.idle();
    assert.equal(r.agent.calls.length, before, 'not even a listing');
  });

  it("compares with Consul's list when Consul's side moved, and only sends the difference", async () => {
    const r = rig();
    r.files.list = [file('a', 1001), file('b', 1002)];
    r.registrar.recheck();
    await r.registrar.idle();
    r.agent.services.delete('b'); // someone deregistered it
    r.agent.calls.length = 0;
    r.registrar.recheck();
    await r.registrar.idle();
    assert.deepEqual(r.agent.calls, ['services', 'register b']);
    r.agent.calls.length = 0;
    r.registrar.recheck();
    await r.registrar.idle();
    assert.deepEqual(r.agent.calls, ['services'], 'in line: a listing and nothing else');
  });

  it('deregisters a befw+local service whose file is gone, and leaves other services alone', async () => {
    const r = rig();
    r.agent.services.set('gone', { id: 'gone', name: 'gone', port: 1, tags: ['befw', 'local'] });
    r.agent.services.set('web', { id: 'web', name: 'web', port: 80, tags: ['befw', 'enforcing'] });
    r.agent.services.set('other', { id: 'other', name: 'other', port: 2, tags: ['local'] });
    r.registrar.filesChanged();
    await r.registrar.idle();
    assert.deepEqual([...r.agent.services.keys()].sort(), ['other', 'web']);
    assert.deepEqual(
      r.logged.named('service-deregistered').map((e) => e.id),
      ['gone'],
    );
  });

  it('keeps every registration when the files cannot be read', async () => {
    const r = rig();
    r.agent.services.set('a', { id: 'a', name: 'a', port: 1001, tags: ['befw', 'local'] });
    r.files.list = new Error('cannot read /etc/befw/services/a.json: EACCES');
    r.registrar.filesChanged();
    await r.registrar.idle();
    assert.deepEqual(r.agent.calls, []);
    assert.ok(r.agent.services.has('a'));
  });

  it('retries after a failed registration, 2 s later, until Consul takes it', async (t: TestContext) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const r = rig();
    r.files.list = [file('a', 1001)];
    r.agent.failing.add('register a');
    r.registrar.filesChanged();
    await r.registrar.idle();
    assert.equal(r.logged.named('service-register-failed').length, 1);
    r.agent.failing.clear();
    t.mock.timers.tick(1999);
    await flush();
    assert.equal(r.agent.services.has('a'), false, 'not before the delay');
    t.mock.timers.tick(1);
    await flush();
    await r.registrar.idle();
    assert.equal(r.agent.services.has('a'), true);
    await r.registrar.stop();
  });

  it('folds requests made during a sync into one more sync', async () => {
    const r = rig();
    r.files.list = [file('a', 1001)];
    r.registrar.recheck();
    r.registrar.filesChanged();
    r.registrar.recheck();
    r.registrar.filesChanged();
    await r.registrar.idle();
    assert.deepEqual(r.agent.calls, ['services', 'register a', 'services']);
  });

  it('does nothing once stopped', async () => {
    const r = rig();
    r.files.list = [file('a', 1001)];
    await r.registrar.stop();
    r.registrar.recheck();
    await r.registrar.idle();
    assert.deepEqual(r.agent.calls, []);
  });
});
