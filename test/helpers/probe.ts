/**
 * Runs inside the client namespace: reads JSON requests {id, src, dst, port, timeoutMs} on stdin
 * and answers {id, result} with result "open" (handshake done), "refused" (RST or ICMP reject)
 * or "timeout" (dropped). One long-lived process, so a probe costs a connection, not a fork.
 */
import { connect } from 'node:net';
import { createInterface } from 'node:readline';

interface Req {
  id: number;
  src: string;
  dst: string;
  port: number;
  timeoutMs: number;
  /** A chosen source port (a peer pretending to speak from Consul's port). */
  srcPort?: number;
}

function answer(id: number, result: string): void {
  process.stdout.write(`${JSON.stringify({ id, result })}\n`);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const req = JSON.parse(line) as Req;
  let done = false;
  const finish = (result: string): void => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    sock.destroy();
    answer(req.id, result);
  };
  const sock = connect({
    host: req.dst,
    port: req.port,
    localAddress: req.src,
    ...(req.srcPort === undefined ? {} : { localPort: req.srcPort }),
  });
  const timer = setTimeout(() => finish('timeout'), req.timeoutMs);
  sock.once('connect', () => finish('open'));
  sock.once('error', (err: NodeJS.ErrnoException) =>
    finish(err.code === 'ECONNREFUSED' || err.code === 'EHOSTUNREACH' ? 'refused' : `error:${err.code}`),
  );
});
