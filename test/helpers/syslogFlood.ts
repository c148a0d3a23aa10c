/**
 * Runs inside a namespace for the syslog benchmark: floods a parser with `count` LF-framed
 * syslog lines over one TCP connection (a realistic mix: sshd failures from many attackers,
 * other sshd lines, other programs; RFC 3164 and 5424), then one marker line that makes an
 * iface-down job, and waits for that job on beanstalkd: its lineReceivedMs is when the parser
 * read the last line. Input (stdin JSON): { host, port, count, attackers, queue, tube, marker }.
 * Output: one JSON line { startMs, sentMs, markerReceivedMs, count, bytes }.
 * The attackers' addresses (198.18.0.0/15, 2001:db8::/32) are text in the lines, never targets.
 */
import { connect } from 'node:net';
import { parseQueueAddress, type QueueAddress } from '../../src/reactor/queue/address.js';
import { BeanstalkConnection } from '../../src/reactor/queue/beanstalkConnection.js';

interface Req {
  host: string;
  port: number;
  count: number;
  attackers: number;
  queue: string;
  tube: string;
  marker: string;
}

/** mulberry32: a small deterministic PRNG, so every run sends the same stream. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function buildPool(size: number, attackers: number, seed = 42): string[] {
  const r = rng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)] as T;
  const attacker = (): string => {
    const i = Math.floor(r() * attackers);
    return i % 5 === 4
      ? `2001:db8:${(i >> 8).toString(16)}::${(i & 255).toString(16)}`
      : `198.${18 + ((i >> 16) & 1)}.${(i >> 8) & 255}.${i & 255}`;
  };
  const hosts = ['web-01', 'web-02', 'db-1', 'edge1', 'vyos'];
  const users = ['root', 'admin', 'oracle', 'test', 'ubuntu', 'git'];
  const lines: string[] = [];
  for (let n = 0; n < size; n++) {
    const host = pick(hosts);
    const pid = 1000 + Math.floor(r() * 60000);
    const port = 1024 + Math.floor(r() * 60000);
    const sec = String(n % 60).padStart(2, '0');
    const x = r();
    let pri = 38;
    let app = 'sshd';
    let msg: string;
    if (x < 0.4) {
      const a = attacker();
      const kind = r();
      if (kind < 0.45) msg = `Failed password for ${pick(users)} from ${a} port ${port} ssh2`;
      else if (kind < 0.7) msg = `Failed password for invalid user ${pick(users)} from ${a} port ${port} ssh2`;
      else if (kind < 0.85) msg = `Invalid user ${pick(users)} from ${a} port ${port}`;
      else if (kind < 0.95) msg = `pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=${a}  user=root`;
      else msg = `error: maximum authentication attempts exceeded for root from ${a} port ${port} ssh2 [preauth]`;
      if (r() < 0.3) app = 'sshd-session';
    } else if (x < 0.55) {
      msg = pick([
        `Accepted publickey for deploy from 198.51.100.2 port ${port} ssh2: ED25519 SHA256:Zm9vYmFyYmF6cXV4cXV1eGZvb2Jhcg`,
        `Connection closed by authenticating user root 203.0.113.9 port ${port} [preauth]`,
        `Received disconnect from 203.0.113.10 port ${port}:11: Bye Bye [preauth]`,
        `pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)`,
      ]);
    } else {
      const other = r();
      if (other < 0.3) {
        pri = 30;
        app = 'systemd';
        msg = `Started Session ${pid} of User deploy.`;
      } else if (other < 0.5) {
        pri = 78;
        app = 'CRON';
        msg = '(root) CMD (   cd / && run-parts --report /etc/cron.hourly)';
      } else if (other < 0.75) {
        pri = 4;
        app = 'kernel';
        msg = `[${pid}.${port}] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=203.0.113.${pid % 250} DST=198.51.100.1 LEN=60 TOS=0x00 PREC=0x00 TTL=52 ID=${port} DF PROTO=TCP SPT=${port} DPT=22 WINDOW=64240 RES=0x00 SYN URGP=0`;
      } else {
        pri = 190;
        app = 'nginx';
        msg = `198.51.100.${pid % 250} - - [21/Nov/2026:02:00:${sec} +0000] "GET /api/v1/items?page=${pid % 9} HTTP/1.1" 200 ${port} "-" "curl/8.5.0"`;
      }
    }
    if (r() < 0.1) lines.push(`<${pri}>1 2026-11-21T02:00:${sec}.${String(pid).slice(0, 3)}Z ${host} ${app} ${pid} - - ${msg}`);
    else lines.push(`<${pri}>Nov 21 02:00:${sec} ${host} ${app}[${pid}]: ${msg}`);
  }
  return lines;
}

async function main(): Promise<void> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  const req = JSON.parse(Buffer.concat(chunks).toString()) as Req;
  const poolLines = buildPool(20_000, req.attackers);
  const pool = Buffer.from(`${poolLines.join('\n')}\n`);
  // Sent in pieces of ~256 kB so the socket's own buffering, not one giant write, paces it.
  const pieces: Buffer[] = [];
  const perPiece = 2000;
  for (let i = 0; i < poolLines.length; i += perPiece) pieces.push(Buffer.from(`${poolLines.slice(i, i + perPiece).join('\n')}\n`));
  const queue = parseQueueAddress(req.queue) as QueueAddress;
  const q = await BeanstalkConnection.connect(queue, 5000);
  await q.watch(req.tube);
  await q.ignore('default');

  const sock = connect({ host: req.host, port: req.port });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', () => resolve());
    sock.once('error', reject);
  });
  const startMs = Date.now();
  let sent = 0;
  let bytes = 0;
  outer: for (;;) {
    for (let p = 0; p < pieces.length; p++) {
      const lines = Math.min(perPiece, poolLines.length - p * perPiece);
      if (sent + lines > req.count) break outer;
      const piece = pieces[p] as Buffer;
      sent += lines;
      bytes += piece.length;
      if (!sock.write(piece)) await new Promise<void>((r) => sock.once('drain', () => r()));
    }
  }
  for (let i = 0; sent < req.count; i++, sent++) {
    const line = Buffer.from(`${poolLines[i % poolLines.length]}\n`);
    bytes += line.length;
    sock.write(line);
  }
  sock.end(`<30>Nov 21 02:00:00 bench netplugd[1]: ${req.marker}: state DOWN flags 0x00001002\n`);
  const sentMs = Date.now();
  const job = await q.reserve(120);
  q.close();
  if (job === null) throw new Error('the marker job never arrived');
  // A signed job: the JSON is on the line after the signature (queue/jobAuth.ts).
  const text = job.body.toString();
  const body = JSON.parse(text.slice(text.indexOf('\n') + 1)) as { subject: string; lineReceivedMs: number };
  if (body.subject !== req.marker) throw new Error(`unexpected job for ${body.subject}`);
  process.stdout.write(
    `${JSON.stringify({ startMs, sentMs, markerReceivedMs: body.lineReceivedMs, count: sent, bytes, pool: pool.length })}\n`,
  );
}

if (process.argv[1]?.endsWith('syslogFlood.js')) {
  main().catch((err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  });
}
