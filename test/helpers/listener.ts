/**
 * Runs inside the node namespace: a dual-stack TCP listener per port that accepts and closes.
 * Prints "listening" once every port is bound.
 */
import { createServer } from 'node:net';

const ports = process.argv.slice(2).map(Number);
let ready = 0;
for (const port of ports) {
  const server = createServer((sock) => sock.destroy());
  server.on('error', (err) => {
    process.stdout.write(`error ${port} ${err.message}\n`);
    process.exit(1);
  });
  server.listen({ port, host: '::', ipv6Only: false }, () => {
    ready++;
    if (ready === ports.length) process.stdout.write('listening\n');
  });
}
