/**
 * A disposable two-host lab for integration tests and the demo:
 *
 *   client ns  --veth--  node ns (Consul -dev on loopback, befw agent, TCP listeners)
 *   198.51.100.2-9          198.51.100.1       (and 203.0.113.1 / .2-9)
 *   2001:db8:100::2-9       2001:db8:100::1
 *
 * Only documentation addresses, only inside namespaces made here; nothing touches the host's
 * own firewall (ipsets and iptables are per network namespace). The test process stays in the
 * root namespace and reaches Consul through a unix socket Consul also listens on, so the agent
 * still talks to Consul over loopback TCP inside its namespace as it would on a real node.
 * Everything is removed by destroy(), and by an exit hook if a test dies half-way.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';

export const ROOT = new URL('../../../', import.meta.url).pathname;
export const HELPERS = new URL('./', import.meta.url).pathname;
export const BEFW_BIN = join(ROOT, 'bin/befw');
/** The node flags and environment bin/befw's shebang sets, so the agent runs here as installed. */
const SHEBANG = (readFileSync(BEFW_BIN, 'utf8').split('\n')[0] ?? '').split(/\s+/);
export const BEFW_NODE_FLAGS = SHEBANG.filter((w) => w.startsWith('--'));
export const BEFW_ENV = Object.fromEntries(
  SHEBANG.filter((w) => /^[A-Z_]+=/.test(w)).map((w) => [w.slice(0, w.indexOf('=')), w.slice(w.indexOf('=') + 1)]),
);

export const NODE_V4 = '198.51.100.1';
export const NODE_V6 = '2001:db8:100::1';
export const NODE_MGMT_V4 = '203.0.113.1';
/** Client addresses: index 2..9 exist in the client namespace. */
export const clientV4 = (i: number): string => `198.51.100.${i}`;
export const clientV6 = (i: number): string => `2001:db8:100::${i}`;
export const mgmtV4 = (i: number): string => `203.0.113.${i}`;
export const NODE_NAME = 'node1';
export const DC = 'dc1';

export function consulBinary(): string {
  const env = process.env.CONSUL_BIN;
  if (env !== undefined && env !== '') return env;
  const cached = join(ROOT, '.cache/consul/consul');
  if (existsSync(cached)) return cached;
  const r = spawnSync('sh', ['-c', 'command -v consul'], { encoding: 'utf8' });
  if (r.status === 0 && r.stdout.trim() !== '') return r.stdout.trim();
  throw new Error('no consul binary: set CONSUL_BIN or run scripts/install-deps.sh');
}

function sh(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

export function nsExec(ns: string, cmd: string, args: string[]): string {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args]);
}

const live = new Set<Sandbox>();
process.on('exit', () => {
  for (const s of live) s.destroySync();
});

/** Namespaces left by a test process that no longer exists. */
export function sweepStale(): void {
  const r = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' });
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^(befwt-(\d+)-[0-9a-f]+-[a-z]+)/.exec(line);
    if (m === null) continue;
    const pid = Number(m[2]);
    let alive = true;
    try {
      process.kill(pid, 0);
    } catch {
      alive = false;
    }
    if (!alive) spawnSync('ip', ['netns', 'del', m[1] ?? '']);
  }
}

export type ProbeResult = 'open' | 'refused' | 'timeout';

interface Pending {
  resolve: (r: ProbeResult) => void;
}

export interface AgentProcess {
  readonly proc: ChildProcess;
  readonly logPath: string;
  /** Lines logged so far, parsed. */
  events(): Record<string, unknown>[];
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Waits for an agent log event matching `pred` (from the `from`-th line on); fails with the last lines. */
export async function waitEvent(
  a: AgentProcess,
  pred: (e: Record<string, unknown>) => boolean,
  ms: number,
  from = 0,
): Promise<Record<string, unknown>> {
  const end = Date.now() + ms;
  for (;;) {
    const hit = a.events().slice(from).find(pred);
    if (hit !== undefined) return hit;
    if (Date.now() > end)
      throw new Error(
        `no matching agent event within ${ms} ms:\n${a
          .events()
          .slice(-15)
          .map((e) => JSON.stringify(e))
          .join('\n')}`,
      );
    await sleep(20);
  }
}

/** Kills a lab's processes (waiting up to 3 s for them to go). */
export async function killAll(procs: Iterable<ChildProcess>): Promise<void> {
  const all = [...procs];
  const waits = all.map(
    (p) => new Promise<void>((resolve) => (p.exitCode !== null || p.signalCode !== null ? resolve() : p.once('exit', () => resolve()))),
  );
  for (const p of all) p.kill('SIGKILL');
  await Promise.race([Promise.all(waits), sleep(3000)]);
}

/** Removes a lab at once: its processes, namespaces and (unless BEFW_KEEP_SANDBOX) its directory. */
export function removeLab(procs: Iterable<ChildProcess>, namespaces: Iterable<string>, dir: string): void {
  for (const p of procs) p.kill('SIGKILL');
  for (const ns of namespaces) spawnSync('ip', ['netns', 'del', ns]);
  if (process.env.BEFW_KEEP_SANDBOX === undefined) rmSync(dir, { recursive: true, force: true });
}

export class Sandbox {
  readonly id = randomBytes(3).toString('hex');
  readonly nodeNs = `befwt-${process.pid}-${this.id}-node`;
  readonly clientNs = `befwt-${process.pid}-${this.id}-client`;
  readonly dir = mkdtempSync(join(tmpdir(), 'befw-sandbox-'));
  readonly consulSock = join(this.dir, 'consul.sock');
  private readonly procs = new Set<ChildProcess>();
  private probeProc: ChildProcess | null = null;
  private probeSeq = 0;
  private readonly pending = new Map<number, Pending>();
  private destroyed = false;
  private consulProc: ChildProcess | null = null;
  private consulStarts = 0;
  /** Consul as a single persistent server (data survives a restart) instead of -dev. */
  private persistent = false;
  /** The address Consul's cluster side (serf, server RPC) binds: its members report it. */
  private consulBind = '127.0.0.1';

  /**
   * `consulBind`: the address Consul binds for its cluster traffic (default 127.0.0.1); e.g.
   * NODE_V4 makes /v1/agent/members report the node's veth address, as on a real node. The HTTP
   * API stays on loopback (and the sandbox's unix socket) either way.
   */
  static async create(opts: { persistentConsul?: boolean; consulBind?: string } = {}): Promise<Sandbox> {
    sweepStale();
    const s = new Sandbox();
    s.persistent = opts.persistentConsul ?? false;
    s.consulBind = opts.consulBind ?? '127.0.0.1';
    live.add(s);
    try {
      s.network();
      await s.startConsul();
      s.startProbe();
    } catch (err) {
      await s.destroy();
      throw err;
    }
    return s;
  }

  private network(): void {
    const { nodeNs: n, clientNs: c, id } = this;
    sh('ip', ['netns', 'add', n]);
    sh('ip', ['netns', 'add', c]);
    const vn = `bt${id}n`;
    const vc = `bt${id}c`;
    sh('ip', ['link', 'add', vn, 'netns', n, 'type', 'veth', 'peer', 'name', vc, 'netns', c]);
    for (const ns of [n, c]) nsExec(ns, 'ip', ['link', 'set', 'lo', 'up']);
    nsExec(n, 'ip', ['addr', 'add', `${NODE_V4}/24`, 'dev', vn]);
    nsExec(n, 'ip', ['addr', 'add', `${NODE_MGMT_V4}/24`, 'dev', vn]);
    nsExec(n, 'ip', ['-6', 'addr', 'add', `${NODE_V6}/64`, 'dev', vn, 'nodad']);
    for (let i = 2; i <= 9; i++) {
      nsExec(c, 'ip', ['addr', 'add', `${clientV4(i)}/24`, 'dev', vc]);
      nsExec(c, 'ip', ['addr', 'add', `${mgmtV4(i)}/24`, 'dev', vc]);
      nsExec(c, 'ip', ['-6', 'addr', 'add', `${clientV6(i)}/64`, 'dev', vc, 'nodad']);
    }
    nsExec(n, 'ip', ['link', 'set', vn, 'up']);
    nsExec(c, 'ip', ['link', 'set', vc, 'up']);
    // REJECT answers with ICMP, which the kernel rate-limits per destination: a test that probes
    // a rejected client hundreds of times a second would see some answers as drops.
    nsExec(n, 'sysctl', ['-qw', 'net.ipv4.icmp_ratelimit=0', 'net.ipv6.icmp.ratelimit=0']);
    // ...and caps all ICMP errors per second (per namespace on current kernels): lift that too.
    spawnSync('ip', ['netns', 'exec', n, 'sysctl', '-qw', 'net.ipv4.icmp_msgs_per_sec=100000', 'net.ipv4.icmp_msgs_burst=10000']);
  }

  spawnIn(ns: string, cmd: string, args: string[], logName: string, env: NodeJS.ProcessEnv = process.env): ChildProcess {
    const log = createWriteStream(join(this.dir, logName));
    const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    p.stdout?.pipe(log);
    p.stderr?.pipe(log);
    this.procs.add(p);
    p.on('exit', () => this.procs.delete(p));
    return p;
  }

  /** Starts (or restarts) Consul in the node namespace and waits until it has a leader. */
  async startConsul(): Promise<void> {
    const mode = this.persistent
      ? ['-server', '-bootstrap-expect', '1', '-data-dir', join(this.dir, 'consul-data'), '-log-level', 'warn']
      : ['-dev'];
    this.consulProc = this.spawnIn(
      this.nodeNs,
      consulBinary(),
      [
        'agent',
        ...mode,
        '-node',
        NODE_NAME,
        '-datacenter',
        DC,
        '-bind',
        this.consulBind,
        '-client',
        '127.0.0.1',
        '-hcl',
        `addresses { http = "127.0.0.1 unix://${this.consulSock}" }`,
      ],
      `consul-${++this.consulStarts}.log`,
    );
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      try {
        const leader = await this.consul('GET', '/v1/status/leader');
        if (leader.status === 200 && leader.body.length > 4) {
          const self = await this.consul('GET', '/v1/agent/self');
          // A fresh server answers before it can write; wait for a KV read to go through.
          const kv = await this.consul('GET', '/v1/kv/befw-sandbox-probe');
          if (self.status === 200 && (kv.status === 404 || kv.status === 200)) return;
        }
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`consul did not start: ${this.log(`consul-${this.consulStarts}.log`).slice(-2000)}`);
  }

  /** Stops Consul (SIGTERM) and waits for it to exit. */
  async stopConsul(): Promise<void> {
    const p = this.consulProc;
    if (p === null || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
    this.consulProc = null;
  }

  /**
   * A second Consul agent (client mode) in the client namespace at `addr` (one of the client
   * addresses), joined to the node's Consul: a LAN member the node's agent must keep reaching.
   * Needs the sandbox made with `consulBind` set to a node address. Its HTTP API listens on a
   * unix socket only; `consul(...)` of the returned handle talks to it (reads go through it to the
   * node's server over RPC). Resolves once it has joined and can read KV.
   */
  async startConsulPeer(addr: string, name = 'peer1'): Promise<ConsulPeer> {
    if (this.consulBind === '127.0.0.1') throw new Error('startConsulPeer needs Sandbox.create({ consulBind })');
    const sock = join(this.dir, `consul-${name}.sock`);
    const p = this.spawnIn(
      this.clientNs,
      consulBinary(),
      [
        'agent',
        '-node',
        name,
        '-datacenter',
        DC,
        '-data-dir',
        join(this.dir, `consul-${name}-data`),
        '-bind',
        addr,
        '-client',
        '127.0.0.1',
        '-retry-join',
        this.consulBind,
        '-retry-interval',
        '1s',
        '-log-level',
        'warn',
        '-hcl',
        `addresses { http = "unix://${sock}" }`,
        '-hcl',
        'leave_on_terminate = true',
      ],
      `consul-${name}.log`,
    );
    const peer: ConsulPeer = {
      proc: p,
      consul: (method, path, body) => httpOverSocket(sock, method, path, body),
      stop: () =>
        new Promise((resolve) => {
          if (p.exitCode !== null || p.signalCode !== null) return resolve();
          p.once('exit', () => resolve());
          p.kill('SIGTERM');
        }),
    };
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      try {
        const kv = await peer.consul('GET', '/v1/kv/befw-sandbox-probe');
        if (kv.status === 404 || kv.status === 200) return peer;
      } catch {
        // not listening, or not joined yet
      }
      await sleep(100);
    }
    await peer.stop();
    throw new Error(`consul peer ${name} did not join: ${this.log(`consul-${name}.log`).slice(-2000)}`);
  }

  /** `consul snapshot save|restore` through the sandbox's socket. */
  consulSnapshot(verb: 'save' | 'restore', file: string): void {
    const r = spawnSync(consulBinary(), ['snapshot', verb, file], {
      encoding: 'utf8',
      env: { ...process.env, CONSUL_HTTP_ADDR: `unix://${this.consulSock}` },
    });
    if (r.status !== 0) throw new Error(`consul snapshot ${verb}: ${r.stderr || r.stdout}`);
  }

  /** Raw HTTP to the sandbox's Consul over its unix socket. */
  consul(method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
    return httpOverSocket(this.consulSock, method, path, body);
  }

  async kvPut(key: string, value: string): Promise<void> {
    const r = await this.consul('PUT', `/v1/kv/${encodeKey(key)}`, value);
    if (r.status !== 200) throw new Error(`kv put ${key}: ${r.status} ${r.body}`);
  }

  /** Many writes (or deletes, with value null) through Consul's transaction endpoint, 64 at a time. */
  async kvPutMany(pairs: readonly { key: string; value: string | null }[]): Promise<void> {
    for (let i = 0; i < pairs.length; i += 64) {
      const ops = pairs
        .slice(i, i + 64)
        .map((p) =>
          p.value === null
            ? { KV: { Verb: 'delete', Key: p.key } }
            : { KV: { Verb: 'set', Key: p.key, Value: Buffer.from(p.value).toString('base64') } },
        );
      const r = await this.consul('PUT', '/v1/txn', JSON.stringify(ops));
      if (r.status !== 200) throw new Error(`txn: ${r.status} ${r.body.slice(0, 200)}`);
    }
  }

  async kvDelete(key: string, recurse = false): Promise<void> {
    const r = await this.consul('DELETE', `/v1/kv/${encodeKey(key)}${recurse ? '?recurse' : ''}`);
    if (r.status !== 200) throw new Error(`kv delete ${key}: ${r.status} ${r.body}`);
  }

  async registerService(svc: { id?: string; name: string; port: number; tags: string[] }): Promise<void> {
    const r = await this.consul(
      'PUT',
      '/v1/agent/service/register',
      JSON.stringify({ ID: svc.id ?? svc.name, Name: svc.name, Port: svc.port, Tags: svc.tags }),
    );
    if (r.status !== 200) throw new Error(`register ${svc.name}: ${r.status} ${r.body}`);
  }

  async agentServices(): Promise<Record<string, { Service: string; Port: number; Tags: string[] }>> {
    const r = await this.consul('GET', '/v1/agent/services');
    return JSON.parse(r.body) as Record<string, { Service: string; Port: number; Tags: string[] }>;
  }

  /** TCP listeners on the node (dual-stack), accepting and closing every connection. */
  async listen(ports: number[]): Promise<void> {
    const p = this.spawnIn(
      this.nodeNs,
      process.execPath,
      [join(HELPERS, 'listener.js'), ...ports.map(String)],
      `listener-${ports.join('-')}.log`,
    );
    await new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: p.stdout! });
      rl.once('line', (l) => (l.startsWith('listening') ? resolve() : reject(new Error(l))));
      p.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
    });
  }

  private startProbe(): void {
    const p = spawn('ip', ['netns', 'exec', this.clientNs, process.execPath, join(HELPERS, 'probe.js')], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.procs.add(p);
    this.probeProc = p;
    createInterface({ input: p.stdout }).on('line', (line) => {
      const msg = JSON.parse(line) as { id: number; result: ProbeResult };
      this.pending.get(msg.id)?.resolve(msg.result);
      this.pending.delete(msg.id);
    });
  }

  /** One TCP connection attempt from `src` (a client address) to `dst`:`port`. */
  probe(src: string, dst: string, port: number, timeoutMs = 400, srcPort?: number): Promise<ProbeResult> {
    const id = ++this.probeSeq;
    return new Promise((resolve) => {
      this.pending.set(id, { resolve });
      this.probeProc?.stdin?.write(`${JSON.stringify({ id, src, dst, port, timeoutMs, srcPort })}\n`);
    });
  }

  /** Polls until the probe gives the wanted answer; returns ms taken, or throws with the last answer. */
  async waitFor(want: 'open' | 'blocked', src: string, dst: string, port: number, withinMs: number): Promise<number> {
    const t0 = Date.now();
    let last: ProbeResult = 'timeout';
    while (Date.now() - t0 < withinMs) {
      // On a veth pair a granted handshake completes in well under a millisecond, so an open
      // probe can give up fast; a blocked one waits long enough to tell DROP from delay.
      last = await this.probe(src, dst, port, want === 'open' ? 20 : 150);
      if ((want === 'open') === (last === 'open')) return Date.now() - t0;
    }
    throw new Error(`${src} -> ${dst}:${port} still ${last} after ${withinMs} ms (wanted ${want})`);
  }

  /**
   * Probes a client that must stay refused, over and over, until stopped: returns how many probes
   * ran and how many got in. A REJECTed client answers at once, so this samples every few ms.
   */
  watchRefused(src: string, dst: string, port: number): { stop(): Promise<{ probes: number; opened: number }> } {
    let running = true;
    let probes = 0;
    let opened = 0;
    const loop = (async () => {
      while (running) {
        const r = await this.probe(src, dst, port, 50);
        probes++;
        if (r === 'open') opened++;
        // A few hundred probes a second: dense enough to catch a window, sparse enough not to
        // exhaust the kernel's ICMP budget that other probes of the same test rely on.
        await sleep(3);
      }
    })();
    return {
      stop: async () => {
        running = false;
        await loop;
        return { probes, opened };
      },
    };
  }

  writeFile(name: string, text: string): string {
    const p = join(this.dir, name);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(p, text);
    return p;
  }

  log(name: string): string {
    try {
      return readFileSync(join(this.dir, name), 'utf8');
    } catch {
      return '';
    }
  }

  /** Starts `befw agent -c <config>` inside the node namespace. */
  startAgent(configPath: string, logName = 'agent.log', env: NodeJS.ProcessEnv = {}): AgentProcess {
    // Each sandbox's agent gets its own control socket (the default, /run/befw/befw.sock, is one
    // per host and a second agent refuses to start on a live one).
    const text = readFileSync(configPath, 'utf8');
    if (!/^socket=/m.test(text)) writeFileSync(configPath, `${text.replace(/\n*$/, '\n')}socket=${this.dir}/befw.sock\n`);
    // ...and BEFW's API socket too (its default, /var/run/befw/api.sock, is the host's).
    const withSocket = readFileSync(configPath, 'utf8');
    if (!/^befw_api=/m.test(withSocket)) writeFileSync(configPath, `${withSocket.replace(/\n*$/, '\n')}befw_api=${this.dir}/api.sock\n`);
    const p = this.spawnIn(this.nodeNs, process.execPath, [...BEFW_NODE_FLAGS, BEFW_BIN, 'agent', '-c', configPath], logName, {
      ...process.env,
      ...BEFW_ENV,
      ...env,
    });
    const logPath = join(this.dir, logName);
    return {
      proc: p,
      logPath,
      events: () =>
        this.log(logName)
          .split('\n')
          .filter((l) => l.startsWith('{'))
          .map((l) => JSON.parse(l) as Record<string, unknown>),
      stop: (signal: NodeJS.Signals = 'SIGTERM') =>
        new Promise((resolve) => {
          if (p.exitCode !== null) return resolve(p.exitCode);
          p.once('exit', (code) => resolve(code));
          p.kill(signal);
        }),
    };
  }

  /** Runs a befw CLI command inside the node namespace. */
  befw(args: string[]): { code: number; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.nodeNs, process.execPath, ...BEFW_NODE_FLAGS, BEFW_BIN, ...args], {
      encoding: 'utf8',
      maxBuffer: 1 << 30,
      env: { ...process.env, ...BEFW_ENV },
    });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  inNode(cmd: string, args: string[]): string {
    return nsExec(this.nodeNs, cmd, args);
  }

  /** One HTTP GET from inside the node namespace (e.g. the agent's loopback-only /healthz). */
  httpInNode(url: string, timeoutMs = 5000): { status: number; body: string } {
    const script = [
      'const u = process.argv[1];',
      'const c = new AbortController();',
      `setTimeout(() => c.abort(), ${timeoutMs}).unref();`,
      'fetch(u, { signal: c.signal }).then(async (r) => process.stdout.write(JSON.stringify({ status: r.status, body: await r.text() })),',
      '  (e) => { process.stderr.write(String(e)); process.exit(2); });',
    ].join('\n');
    const r = spawnSync('ip', ['netns', 'exec', this.nodeNs, process.execPath, '-e', script, url], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`GET ${url} in the node namespace failed: ${r.stderr || r.error?.message}`);
    return JSON.parse(r.stdout) as { status: number; body: string };
  }

  async destroy(): Promise<void> {
    await killAll(this.procs);
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    removeLab(this.procs, [this.nodeNs, this.clientNs], this.dir);
    live.delete(this);
  }
}

/** A Consul client agent started by `startConsulPeer`. */
export interface ConsulPeer {
  readonly proc: ChildProcess;
  consul(method: string, path: string, body?: string): Promise<{ status: number; body: string }>;
  /** SIGTERM (it leaves the cluster) and wait for it to exit. */
  stop(): Promise<void>;
}

export function httpOverSocket(socketPath: string, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method, path, headers: { host: 'consul' } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (d: Buffer) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error(`consul ${method} ${path} timed out`)));
    req.end(body);
  });
}

export function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export function nowSec(): number {
  return Math.floor(Date.now() / 1000);
}
