/**
 * Syslog reactor benchmarks, each in its own sandbox (network namespaces; real processes):
 *   - throughput: `befw syslog` (one process, one thread) fed LF-framed TCP as fast as one
 *     connection carries it, built-in triggers on, a realistic mix of lines (40% sshd failures
 *     from 5,000 attackers, 15% other sshd lines, 45% other programs; 10% RFC 5424). Reported
 *     per wall-clock second (first byte sent -> the parser reading the last line) and per second
 *     of the parser's own CPU time (its threads together: what one core buys);
 *   - reaction: the time from `logger` being started with the line that crosses the threshold to
 *     the attacker's next TCP connection being refused on the node, through HAProxy (send-proxy),
 *     a parser, beanstalkd, a responder, Consul and the befw agent. Includes logger's own start.
 * Attackers in the flood are text from 198.18.0.0/15 and 2001:db8::/32, never connection
 * targets; the reaction test's attackers are addresses of the sandbox's client namespace.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type AgentProcess, NODE_V4, ROOT, Sandbox, sleep } from '../test/helpers/sandbox.js';
import { type LabProcess, ReactorLab, labConfig } from '../test/helpers/reactorLab.js';

const FLOOD = join(ROOT, 'dist/test/helpers/syslogFlood.js');

function percentile(xs: readonly number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))] ?? NaN;
}
const CLK_TCK = 100;

function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ")".
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

function commOf(pid: number): string {
  return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
}

export interface ThroughputResult {
  messages: number;
  bytes: number;
  wallMs: number;
  perSecond: number;
  cpuSec: number;
  perCpuSecond: number;
  jobs: number;
}

export async function benchSyslogThroughput(messages = Number(process.env.BENCH_SYSLOG_MESSAGES ?? 1_000_000)): Promise<ThroughputResult> {
  const sb = await Sandbox.create();
  const lab = new ReactorLab(sb);
  let parser: LabProcess | null = null;
  try {
    await lab.beanstalkd(11300);
    const config = lab.writeConfig('reactor.json', {
      logLevel: 'info',
      queue: { servers: ['127.0.0.1:11300'] },
      parser: {
        listeners: [{ protocol: 'tcp', address: '127.0.0.1', port: 5514 }],
        allowedDevices: ['127.0.0.0/8'],
        statsIntervalSec: 3600,
      },
    });
    parser = lab.befwProcess(sb.nodeNs, ['syslog', '-c', config], 'parser.log');
    await lab.waitListening(sb.nodeNs, 5514);
    const pid = parser.proc.pid ?? 0;
    if (commOf(pid) !== 'node') throw new Error(`pid ${pid} is ${commOf(pid)}, not the parser`);
    const cpu0 = cpuSeconds(pid);
    const marker = `bm${process.pid % 100000}`;
    const out = await new Promise<string>((resolve, reject) => {
      const p = spawn('ip', ['netns', 'exec', sb.nodeNs, process.execPath, FLOOD], { stdio: ['pipe', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('exit', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`flood failed: ${stderr}`))));
      p.stdin.end(
        JSON.stringify({
          host: '127.0.0.1',
          port: 5514,
          count: messages,
          attackers: 5000,
          queue: '127.0.0.1:11300',
          tube: 'befw-iface-down',
          marker,
        }),
      );
    });
    const cpuSec = cpuSeconds(pid) - cpu0;
    const r = JSON.parse(out) as { startMs: number; markerReceivedMs: number; count: number; bytes: number };
    const wallMs = r.markerReceivedMs - r.startMs;
    await parser.stop();
    const last = parser
      .events()
      .filter((e) => e.event === 'stats')
      .pop();
    return {
      messages: r.count,
      bytes: r.bytes,
      wallMs,
      perSecond: (r.count / wallMs) * 1000,
      cpuSec,
      perCpuSecond: r.count / cpuSec,
      jobs: Number(last?.jobs ?? NaN),
    };
  } finally {
    await parser?.stop();
    await sb.destroy();
  }
}

export interface ReactionResult {
  rounds: number;
  p50: number;
  p99: number;
  max: number;
  /** Parser line -> responder action, as the responder logs it (lineToActionMs). */
  lineToActionP50: number;
  lineToActionP99: number;
}

export async function benchSyslogReaction(rounds = Number(process.env.BENCH_SYSLOG_ROUNDS ?? 100)): Promise<ReactionResult> {
  const sb = await Sandbox.create();
  const lab = new ReactorLab(sb);
  const procs: LabProcess[] = [];
  let agent: AgentProcess | null = null;
  try {
    if (rounds < 1 || rounds > 150) throw new Error('BENCH_SYSLOG_ROUNDS must be 1..150 (one fresh client address per round)');
    const attackers = Array.from({ length: rounds }, (_, i) => `198.51.100.${100 + i}`);
    lab.addClientAddresses(attackers.map((a) => `${a}/24`));
    await sb.registerService({ name: 'web', port: 8080, tags: ['befw'] });
    await sb.listen([8080]);
    agent = sb.startAgent(
      sb.writeFile(
        'befw.conf',
        [`services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, `state=${sb.dir}/state.bin`, 'set.rules_allow=203.0.113.0/28'].join(
          '\n',
        ),
      ),
    );
    await lab.beanstalkd(11300);
    const config = lab.writeConfig(
      'reactor.json',
      labConfig({
        protect: ['203.0.113.0/28'],
        parser: {
          listeners: [{ protocol: 'tcp', address: '127.0.0.1', port: 5141, proxyProtocol: true }],
          trustedProxies: ['127.0.0.1/32'],
          allowedDevices: ['198.51.100.0/24'],
          thresholds: { 'ssh-auth-failure': { maxRetry: 5, findTimeSec: 600 } },
          statsIntervalSec: 3600,
        },
        responder: {
          consul: { address: '127.0.0.1:8500' },
          // 100 bans in well under a minute: above the default budget of 60 a minute.
          banBudgetPerMinute: 1000,
          actions: { 'ssh-auth-failure': [{ type: 'ban', bantimeSec: 3600 }] },
        },
      }),
    );
    procs.push(await lab.parser(config, 'parser.log'));
    const responder = await lab.responder(config, 'responder.log');
    procs.push(responder);
    await lab.haproxy(
      [
        'global',
        '  maxconn 1000',
        'defaults',
        '  mode tcp',
        '  timeout connect 2s',
        '  timeout client 60s',
        '  timeout server 60s',
        'frontend syslog',
        `  bind ${NODE_V4}:5140`,
        '  default_backend parsers',
        'backend parsers',
        '  balance source',
        '  server p0 127.0.0.1:5141 send-proxy',
        '',
      ].join('\n'),
      5140,
    );
    while (!agent.events().some((e) => e.event === 'applied')) await sleep(50);
    const loggerArgs = ['-T', '-n', NODE_V4, '-P', '5140', '--rfc3164', '-t', 'sshd', '--id=2755', '-p', 'auth.info'];
    const line = (a: string): string => `Failed password for root from ${a} port 47336 ssh2`;
    const samples: number[] = [];
    for (const attacker of attackers) {
      if ((await sb.probe(attacker, NODE_V4, 8080, 200)) !== 'open') throw new Error(`${attacker} is not open before its burst`);
      lab.logger(
        sb.clientNs,
        loggerArgs,
        [1, 2, 3, 4].map(() => line(attacker)),
      );
      await sleep(30); // the four lines below the threshold are in
      const t0 = performance.now();
      const logger = spawn('ip', ['netns', 'exec', sb.clientNs, 'logger', ...loggerArgs, line(attacker)], { stdio: 'ignore' });
      for (;;) {
        const r = await sb.probe(attacker, NODE_V4, 8080, 50);
        if (r === 'refused') break;
        if (performance.now() - t0 > 10_000) throw new Error(`${attacker} still ${r} after 10 s`);
      }
      samples.push(performance.now() - t0);
      await new Promise<void>((resolve) => (logger.exitCode !== null ? resolve() : logger.once('exit', () => resolve())));
    }
    const lineToAction = responder
      .events()
      .filter((e) => e.event === 'action' && e.result === 'banned')
      .map((e) => Number(e.lineToActionMs));
    return {
      rounds: samples.length,
      p50: percentile(samples, 50),
      p99: percentile(samples, 99),
      max: Math.max(...samples),
      lineToActionP50: percentile(lineToAction, 50),
      lineToActionP99: percentile(lineToAction, 99),
    };
  } finally {
    for (const p of procs) await p.stop();
    await agent?.stop();
    await sb.destroy();
  }
}
