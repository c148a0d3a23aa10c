/**
 * A disposable multi-node lab: Consul servers, Consul client agents and one befw agent per node,
 * each host in its own network namespace, all joined by veth pairs to one bridge in a "switch"
 * namespace:
 *
 *                       switch ns (bridge, no addresses)
 *        ┌──────────┬──────────┬─────┴────┬──────────┬──────────┬──────────┐
 *     server      serverb     nodea      nodeb      nodec      noded     client
 *   Consul dc1   Consul dc2  node1      node2      node3      node4     probes
 *   .21          .22         .11        .12        .13        .14       .2-.9
 *   (198.51.100.0/24, and 2001:db8:100::/64 with the same host numbers)
 *
 * A node namespace holds a Consul client agent (HTTP on its own 127.0.0.1:8500, where the befw
 * agent finds it, and on a unix socket for the test), the befw agent (metrics on its own
 * 127.0.0.1:9187), and TCP listeners on the node's service ports. A node of the second datacenter
 * joins the dc2 server, which is joined to dc1 over WAN; its agent reads the KV of dc1 (`dc=dc1`,
 * BEFW's one KV datacenter) through its own Consul agent, which forwards to dc1.
 *
 * Servers keep their data on disk (not -dev), so a server restarted is the same cluster with the
 * same KV and index. Only documentation addresses, only inside namespaces made here; nothing
 * touches the host's firewall. destroy() removes everything, and an exit hook does if a test dies
 * half-way; namespaces of a test process that is gone are swept at the next create().
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  BEFW_BIN,
  BEFW_ENV,
  BEFW_NODE_FLAGS,
  HELPERS,
  type ProbeResult,
  consulBinary,
  encodeKey,
  httpOverSocket,
  killAll,
  nsExec,
  removeLab,
  sleep,
  sweepStale,
} from './sandbox.js';

export const FLEET_NET_V4 = '198.51.100';
export const FLEET_NET_V6 = '2001:db8:100:';
const v4 = (host: number): string => `${FLEET_NET_V4}.${host}`;
const v6 = (host: number): string => `${FLEET_NET_V6}:${host}`;
/** Client hosts for probes: 2..9 and 40..49 exist in the client namespace. */
const CLIENT_HOSTS = [2, 3, 4, 5, 6, 7, 8, 9, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49];
export const fleetClientV4 = (i: number): string => v4(i);
export const fleetClientV6 = (i: number): string => v6(i);
export const KV_DC = 'dc1';
const METRICS_PORT = 9187;

export interface FleetService {
  readonly name: string;
  readonly port: number;
  readonly tags: readonly string[];
}

export interface FleetNodeSpec {
  /** Consul node name (lower case: the KV node scope uses it as it is). */
  readonly name: string;
  readonly dc: 'dc1' | 'dc2';
  readonly services: readonly FleetService[];
}

export interface KvAnswers {
  /** Answers to the KV watches whose data changed. */
  readonly changed: number;
  /** Answers that only moved the index. */
  readonly unchanged: number;
  /** Failed Consul requests, all watches. */
  readonly errors: number;
}

type Http = (method: string, path: string, body?: string) => Promise<{ status: number; body: string }>;

const live = new Set<FleetLab>();
process.on('exit', () => {
  for (const l of live) l.destroySync();
});

/** A line-protocol helper process inside a namespace: one JSON request a line, one JSON answer a line. */
class NsWorker {
  private seq = 0;
  private readonly pending = new Map<number, (msg: Record<string, unknown>) => void>();

  constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as Record<string, unknown> & { id: number };
      this.pending.get(msg.id)?.(msg);
      this.pending.delete(msg.id);
    });
  }

  ask(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      this.pending.set(id, resolve);
      this.proc.stdin?.write(`${JSON.stringify({ ...req, id })}\n`);
    });
  }
}

/**
 * HTTP GETs from inside a namespace (the agent's metrics listen on that namespace's loopback):
 * one long-lived process, no connection reuse, so an agent restarted in between is no error.
 */
const FETCHER = `
const http = require('node:http');
require('node:readline').createInterface({ input: process.stdin }).on('line', (line) => {
  const { id, url } = JSON.parse(line);
  const done = (status, body) => process.stdout.write(JSON.stringify({ id, status, body }) + '\\n');
  const req = http.get(url, { agent: false, timeout: 5000 }, (res) => {
    const chunks = [];
    res.on('data', (d) => chunks.push(d));
    res.on('end', () => done(res.statusCode, Buffer.concat(chunks).toString()));
  });
  req.on('timeout', () => req.destroy(new Error('timeout')));
  req.on('error', (e) => done(0, String(e)));
});
`;

function parseMetric(text: string, name: string, labels = ''): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== '{' && rest[0] !== ' ') continue;
    if (labels !== '' && !rest.includes(labels)) continue;
    sum += Number(rest.slice(rest.lastIndexOf(' ') + 1));
  }
  return sum;
}

export class FleetNode {
  readonly ns: string;
  readonly v4: string;
  readonly v6: string;
  readonly dir: string;
  readonly consulSock: string;
  readonly configPath: string;
  consulProc: ChildProcess | null = null;
  agentProc: ChildProcess | null = null;
  private agentStarts = 0;
  private consulStarts = 0;
  private fetcher!: NsWorker;

  constructor(
    private readonly lab: FleetLab,
    readonly spec: FleetNodeSpec,
    readonly letter: string,
    readonly host: number,
  ) {
    this.ns = `${lab.prefix}-node${letter}`;
    this.v4 = v4(host);
    this.v6 = v6(host);
    this.dir = join(lab.dir, spec.name);
    mkdirSync(join(this.dir, 'services'), { recursive: true });
    mkdirSync(join(this.dir, 'ipsets'), { recursive: true });
    this.consulSock = join(this.dir, 'consul.sock');
    this.configPath = join(this.dir, 'befw.conf');
    writeFileSync(
      this.configPath,
      [
        `# fleet lab: ${spec.name} in ${spec.dc}`,
        `services=${this.dir}/services`,
        `ipsets=${this.dir}/ipsets`,
        `state=${this.dir}/state/state.bin`,
        `socket=${this.dir}/run/befw.sock`,
        'set.rules_allow=203.0.113.0/28',
        `metrics=127.0.0.1:${METRICS_PORT}`,
        'log_level=debug',
        // Every node shares the host's /var/run: BEFW's api.sock is not needed here.
        'befw_api=off',
        'guard_hold=1',
        // Every node reads the one KV datacenter (BEFW's layout); a dc2 node through its own
        // agent, which forwards to dc1 over WAN.
        `dc=${KV_DC}`,
        '',
      ].join('\n'),
    );
  }

  get name(): string {
    return this.spec.name;
  }

  get dc(): string {
    return this.spec.dc;
  }

  /** HTTP to this node's Consul client agent (its unix socket). */
  consul: Http = (method, path, body) => httpOverSocket(this.consulSock, method, path, body);

  startHelpers(): void {
    this.fetcher = new NsWorker(this.lab.spawnIn(this.ns, process.execPath, ['-e', FETCHER], `${this.name}-fetcher.log`, true));
  }

  /** Starts (or restarts, on the same data dir) the node's Consul client agent; resolves once it reads KV of dc1. */
  async startConsul(): Promise<void> {
    const server = this.lab.serverFor(this.dc);
    this.consulProc = this.lab.spawnIn(
      this.ns,
      consulBinary(),
      [
        'agent',
        '-node',
        this.name,
        '-datacenter',
        this.dc,
        '-data-dir',
        join(this.dir, 'consul-data'),
        '-bind',
        this.v4,
        '-client',
        '127.0.0.1',
        '-retry-join',
        server.addr,
        '-retry-interval',
        '1s',
        '-log-level',
        'warn',
        '-hcl',
        `addresses { http = "127.0.0.1 unix://${this.consulSock}" }`,
        '-hcl',
        'disable_update_check = true',
      ],
      `${this.name}-consul-${++this.consulStarts}.log`,
    );
    await waitConsulKv(this.consul, this.dc === KV_DC ? '' : `?dc=${KV_DC}`, () =>
      this.lab.log(`${this.name}-consul-${this.consulStarts}.log`),
    );
  }

  async stopConsul(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopProc(this.consulProc, signal);
    this.consulProc = null;
  }

  async registerServices(): Promise<void> {
    for (const s of this.spec.services) {
      const r = await this.consul(
        'PUT',
        '/v1/agent/service/register',
        JSON.stringify({ ID: s.name, Name: s.name, Port: s.port, Tags: s.tags }),
      );
      if (r.status !== 200) throw new Error(`${this.name}: register ${s.name}: ${r.status} ${r.body}`);
    }
  }

  /** TCP listeners on the node's TCP service ports. */
  async listen(): Promise<void> {
    const ports = this.spec.services.filter((s) => !s.tags.includes('udp')).map((s) => s.port);
    if (ports.length === 0) return;
    const p = this.lab.spawnIn(
      this.ns,
      process.execPath,
      [join(HELPERS, 'listener.js'), ...ports.map(String)],
      `${this.name}-listener.log`,
      true,
    );
    await new Promise<void>((resolve, reject) => {
      const rl = createInterface({ input: p.stdout! });
      rl.once('line', (l) => (l.startsWith('listening') ? resolve() : reject(new Error(l))));
      p.once('exit', (code) => reject(new Error(`listener exited ${code}`)));
    });
  }

  get agentLog(): string {
    return `${this.name}-agent-${this.agentStarts}.log`;
  }

  /** Starts `befw agent` in the node namespace; resolves at its first apply from Consul. */
  async startAgent(withinMs = 20_000): Promise<void> {
    this.agentStarts++;
    this.agentProc = this.lab.spawnIn(
      this.ns,
      process.execPath,
      [...BEFW_NODE_FLAGS, BEFW_BIN, 'agent', '-c', this.configPath],
      this.agentLog,
      false,
      { ...process.env, ...BEFW_ENV },
    );
    const proc = this.agentProc;
    const deadline = Date.now() + withinMs;
    while (!this.events().some((e) => e.event === 'applied' && e.source === 'consul')) {
      if (proc.exitCode !== null || Date.now() > deadline) {
        throw new Error(`${this.name}: agent never applied from Consul:\n${this.lab.log(this.agentLog).slice(-3000)}`);
      }
      await sleep(50);
    }
  }

  async stopAgent(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopProc(this.agentProc, signal);
    this.agentProc = null;
  }

  /** The current agent's log lines, parsed. */
  events(): Record<string, unknown>[] {
    return this.lab
      .log(this.agentLog)
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** GET from inside the node namespace. */
  async get(path: string, port = METRICS_PORT): Promise<{ status: number; body: string }> {
    const r = await this.fetcher.ask({ url: `http://127.0.0.1:${port}${path}` });
    return { status: Number(r.status), body: String(r.body) };
  }

  /** The agent's KV answer counters (its /metrics). */
  async kvAnswers(): Promise<KvAnswers> {
    const r = await this.get('/metrics');
    if (r.status !== 200) throw new Error(`${this.name}: /metrics answered ${r.status}: ${r.body.slice(0, 200)}`);
    return {
      changed: parseMetric(r.body, 'befw_consul_kv_answers_total', 'changed="true"'),
      unchanged: parseMetric(r.body, 'befw_consul_kv_answers_total', 'changed="false"'),
      errors: parseMetric(r.body, 'befw_consul_request_errors_total'),
    };
  }

  /** Runs a befw CLI command inside the node namespace. */
  befw(args: string[]): { code: number; stdout: string; stderr: string } {
    const r = spawnSync('ip', ['netns', 'exec', this.ns, process.execPath, ...BEFW_NODE_FLAGS, BEFW_BIN, ...args], {
      encoding: 'utf8',
      env: { ...process.env, ...BEFW_ENV },
    });
    return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
  }

  /** `befw status --json` of the running agent. */
  status(): { kvPrefixes: string[]; consul: { reachable: boolean } } & Record<string, unknown> {
    const r = this.befw(['status', '-c', this.configPath, '--json']);
    if (r.code !== 0) throw new Error(`${this.name}: befw status: ${r.stderr}`);
    return JSON.parse(r.stdout) as { kvPrefixes: string[]; consul: { reachable: boolean } } & Record<string, unknown>;
  }
}

export class ConsulServer {
  readonly ns: string;
  readonly addr: string;
  readonly sock: string;
  proc: ChildProcess | null = null;
  private starts = 0;

  constructor(
    private readonly lab: FleetLab,
    readonly dc: 'dc1' | 'dc2',
    readonly nsName: string,
    readonly host: number,
    private readonly wanJoin: string | null,
  ) {
    this.ns = `${lab.prefix}-${nsName}`;
    this.addr = v4(host);
    this.sock = join(lab.dir, `${nsName}-consul.sock`);
  }

  consul: Http = (method, path, body) => httpOverSocket(this.sock, method, path, body);

  /** Starts (or restarts, on the same data dir) the server; resolves once it has a leader and reads KV. */
  async start(): Promise<void> {
    this.proc = this.lab.spawnIn(
      this.ns,
      consulBinary(),
      [
        'agent',
        '-server',
        '-bootstrap-expect',
        '1',
        '-node',
        `server-${this.dc}`,
        '-datacenter',
        this.dc,
        '-data-dir',
        join(this.lab.dir, `${this.nsName}-data`),
        '-bind',
        this.addr,
        '-client',
        '127.0.0.1',
        ...(this.wanJoin === null ? [] : ['-retry-join-wan', this.wanJoin, '-retry-interval-wan', '1s']),
        '-log-level',
        'warn',
        '-hcl',
        `addresses { http = "127.0.0.1 unix://${this.sock}" }`,
        '-hcl',
        'disable_update_check = true',
        // Elections in a lab on one machine: no need for production's slack.
        '-hcl',
        'performance { raft_multiplier = 1 }',
      ],
      `${this.nsName}-consul-${++this.starts}.log`,
    );
    await waitConsulKv(this.consul, '', () => this.lab.log(`${this.nsName}-consul-${this.starts}.log`));
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    await stopProc(this.proc, signal);
    this.proc = null;
  }
}

async function waitConsulKv(consul: Http, query: string, log: () => string, withinMs = 30_000): Promise<void> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline) {
    try {
      const kv = await consul('GET', `/v1/kv/befw-fleet-probe${query}`);
      if (kv.status === 404 || kv.status === 200) return;
    } catch {
      // not listening, no leader, or not joined yet
    }
    await sleep(100);
  }
  throw new Error(`consul not ready: ${log().slice(-2000)}`);
}

function stopProc(p: ChildProcess | null, signal: NodeJS.Signals): Promise<void> {
  return new Promise((resolve) => {
    if (p === null || p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill(signal);
  });
}

export class FleetLab {
  readonly id = randomBytes(3).toString('hex');
  readonly prefix = `befwt-${process.pid}-${this.id}`;
  readonly switchNs = `${this.prefix}-switch`;
  readonly clientNs = `${this.prefix}-client`;
  readonly dir = mkdtempSync(join(tmpdir(), 'befw-fleetlab-'));
  readonly servers: ConsulServer[] = [];
  readonly nodes: FleetNode[] = [];
  private readonly procs = new Set<ChildProcess>();
  private readonly namespaces: string[] = [];
  private probe!: NsWorker;
  private destroyed = false;

  /**
   * Builds the network, starts the servers (dc2 only if a node is in dc2), the nodes' Consul
   * agents with their services, and their befw agents; resolves once every agent has applied
   * from Consul.
   */
  static async create(specs: readonly FleetNodeSpec[]): Promise<FleetLab> {
    sweepStale();
    const lab = new FleetLab();
    live.add(lab);
    try {
      const dc1 = new ConsulServer(lab, 'dc1', 'server', 21, null);
      lab.servers.push(dc1);
      if (specs.some((s) => s.dc === 'dc2')) lab.servers.push(new ConsulServer(lab, 'dc2', 'serverb', 22, dc1.addr));
      specs.forEach((s, i) => lab.nodes.push(new FleetNode(lab, s, String.fromCharCode(97 + i), 11 + i)));
      lab.network();
      lab.probe = new NsWorker(lab.spawnIn(lab.clientNs, process.execPath, [join(HELPERS, 'probe.js')], 'probe.log', true));
      for (const n of lab.nodes) n.startHelpers();
      await Promise.all(lab.servers.map((s) => s.start()));
      await Promise.all(
        lab.nodes.map(async (n) => {
          await n.startConsul();
          await n.registerServices();
          await n.listen();
        }),
      );
      await Promise.all(lab.nodes.map((n) => n.startAgent()));
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  node(name: string): FleetNode {
    const n = this.nodes.find((x) => x.name === name);
    if (n === undefined) throw new Error(`no node ${name}`);
    return n;
  }

  serverFor(dc: string): ConsulServer {
    const s = this.servers.find((x) => x.dc === dc);
    if (s === undefined) throw new Error(`no server for ${dc}`);
    return s;
  }

  private addNs(name: string): void {
    const r = spawnSync('ip', ['netns', 'add', name], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`ip netns add ${name}: ${r.stderr}`);
    this.namespaces.push(name);
    nsExec(name, 'ip', ['link', 'set', 'lo', 'up']);
  }

  /** A veth pair from `ns` (as eth0) to a port of the switch's bridge, with the given hosts' addresses. */
  private plug(ns: string, tag: string, hosts: readonly number[]): void {
    const inside = `f${this.id}${tag}`;
    const port = `s${this.id}${tag}`;
    const r = spawnSync('ip', ['link', 'add', inside, 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.switchNs], {
      encoding: 'utf8',
    });
    if (r.status !== 0) throw new Error(`veth ${inside}: ${r.stderr}`);
    nsExec(this.switchNs, 'ip', ['link', 'set', port, 'master', 'br0', 'up']);
    nsExec(ns, 'ip', ['link', 'set', inside, 'name', 'eth0']);
    for (const h of hosts) {
      nsExec(ns, 'ip', ['addr', 'add', `${v4(h)}/24`, 'dev', 'eth0']);
      nsExec(ns, 'ip', ['-6', 'addr', 'add', `${v6(h)}/64`, 'dev', 'eth0', 'nodad']);
    }
    nsExec(ns, 'ip', ['link', 'set', 'eth0', 'up']);
  }

  private network(): void {
    this.addNs(this.switchNs);
    nsExec(this.switchNs, 'ip', ['link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    nsExec(this.switchNs, 'ip', ['link', 'set', 'br0', 'up']);
    for (const s of this.servers) {
      this.addNs(s.ns);
      this.plug(s.ns, String(s.host), [s.host]); // digits: never a node's letter
    }
    for (const n of this.nodes) {
      this.addNs(n.ns);
      this.plug(n.ns, n.letter, [n.host]);
      // A REJECT answers with ICMP, which the kernel rate-limits: probes must not see drops.
      spawnSync('ip', ['netns', 'exec', n.ns, 'sysctl', '-qw', 'net.ipv4.icmp_ratelimit=0', 'net.ipv6.icmp.ratelimit=0']);
    }
    this.addNs(this.clientNs);
    this.plug(this.clientNs, '0', CLIENT_HOSTS);
  }

  spawnIn(
    ns: string,
    cmd: string,
    args: string[],
    logName: string,
    pipeStdout = false,
    env: NodeJS.ProcessEnv = process.env,
  ): ChildProcess {
    const log = createWriteStream(join(this.dir, logName));
    const p = spawn('ip', ['netns', 'exec', ns, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'], env });
    if (!pipeStdout) p.stdout?.pipe(log);
    p.stderr?.pipe(log);
    this.procs.add(p);
    p.on('exit', () => this.procs.delete(p));
    return p;
  }

  log(name: string): string {
    try {
      return readFileSync(join(this.dir, name), 'utf8');
    } catch {
      return '';
    }
  }

  /** KV write in the one KV datacenter, through its server. */
  async kvPut(key: string, value: string): Promise<void> {
    const r = await this.servers[0]!.consul('PUT', `/v1/kv/${encodeKey(key)}`, value);
    if (r.status !== 200) throw new Error(`kv put ${key}: ${r.status} ${r.body}`);
  }

  /** One TCP connection attempt from `src` (a client address) to `dst`:`port`. */
  async probeOnce(src: string, dst: string, port: number, timeoutMs = 400): Promise<ProbeResult> {
    const r = await this.probe.ask({ src, dst, port, timeoutMs });
    return r.result as ProbeResult;
  }

  /** Polls until the probe gives the wanted answer; returns ms taken, or throws with the last answer. */
  async waitFor(want: 'open' | 'blocked', src: string, dst: string, port: number, withinMs: number): Promise<number> {
    const t0 = Date.now();
    let last: ProbeResult = 'timeout';
    while (Date.now() - t0 < withinMs) {
      last = await this.probeOnce(src, dst, port, want === 'open' ? 20 : 150);
      if ((want === 'open') === (last === 'open')) return Date.now() - t0;
    }
    throw new Error(`${src} -> ${dst}:${port} still ${last} after ${withinMs} ms (wanted ${want})`);
  }

  /** Each running agent's KV answer counters, by node name. */
  async kvAnswers(nodes: readonly FleetNode[] = this.nodes): Promise<Map<string, KvAnswers>> {
    const all = await Promise.all(nodes.map(async (n) => [n.name, await n.kvAnswers()] as const));
    return new Map(all);
  }

  async destroy(): Promise<void> {
    await killAll(this.procs);
    this.destroySync();
  }

  destroySync(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    removeLab(this.procs, this.namespaces, this.dir);
    live.delete(this);
  }
}
