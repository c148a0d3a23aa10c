/**
 * Runs inside a test namespace: sends raw bytes to a syslog listener, the way a device or a
 * proxy would, including malformed ones. Reads one JSON request on stdin:
 *   { proto: "tcp"|"udp", host, port, source?, payloads: [base64...], holdMs?, connections? }
 * TCP: `connections` (default 1) connections, each writing every payload, holding the
 * connection `holdMs` (writing one byte every `trickleMs` meanwhile, if set: a slow-loris that
 * keeps a connection busy without finishing a message), then ending it. UDP: one datagram per
 * payload. Prints one JSON line:
 *   { connected, closedByPeer, errors }.
 */
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';

interface Req {
  proto: 'tcp' | 'udp';
  host: string;
  port: number;
  source?: string;
  payloads: string[];
  holdMs?: number;
  connections?: number;
  trickleMs?: number;
}

const chunks: Buffer[] = [];
process.stdin.on('data', (d: Buffer) => chunks.push(d));
process.stdin.on('end', () => {
  const req = JSON.parse(Buffer.concat(chunks).toString()) as Req;
  const payloads = req.payloads.map((p) => Buffer.from(p, 'base64'));
  if (req.proto === 'udp') {
    const sock = createSocket(req.host.includes(':') ? 'udp6' : 'udp4');
    sock.bind({ address: req.source ?? (req.host.includes(':') ? '::' : '0.0.0.0'), port: 0 }, () => {
      let left = payloads.length;
      if (left === 0) return finish(sock, 0);
      for (const p of payloads) sock.send(p, req.port, req.host, () => (--left === 0 ? finish(sock, payloads.length) : undefined));
    });
    return;
  }
  const n = req.connections ?? 1;
  let done = 0;
  let connected = 0;
  let closedByPeer = 0;
  const errors: string[] = [];
  for (let i = 0; i < n; i++) {
    let ended = false;
    const sock = connect({ host: req.host, port: req.port, ...(req.source === undefined ? {} : { localAddress: req.source }) });
    sock.on('connect', () => {
      connected++;
      for (const p of payloads) sock.write(p);
      const trickle = req.trickleMs === undefined ? null : setInterval(() => sock.write('x'), req.trickleMs);
      setTimeout(() => {
        if (trickle !== null) clearInterval(trickle);
        ended = true;
        sock.end();
      }, req.holdMs ?? 50);
      sock.on('close', () => {
        if (trickle !== null) clearInterval(trickle);
      });
    });
    sock.on('data', () => undefined);
    sock.on('error', (err: NodeJS.ErrnoException) => errors.push(err.code ?? err.message));
    sock.on('close', () => {
      if (!ended) closedByPeer++;
      if (++done === n) process.stdout.write(`${JSON.stringify({ connected, closedByPeer, errors })}\n`);
    });
  }
});

function finish(sock: ReturnType<typeof createSocket>, sent: number): void {
  sock.close();
  process.stdout.write(`${JSON.stringify({ sent })}\n`);
}
