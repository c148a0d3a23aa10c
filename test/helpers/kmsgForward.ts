/**
 * A stand-in for the node's rsyslog (imklog + the omfwd action of examples/reactor/rsyslog.conf)
 * in tests: reads the kernel log from /dev/kmsg (non-destructive: every reader gets its own
 * copy), keeps only befw's lines whose IN= is the test's own interface (the ring buffer is the
 * host's, shared by every namespace), and forwards each as RFC 5424 with the record's own
 * priority (facility kern) and APP-NAME `kernel`, octet-counted over TCP, as rsyslog does.
 *
 * Why not rsyslog itself: imklog reads /proc/kmsg, which is one destructive stream for the whole
 * host; a test's rsyslog would take the host's kernel messages away from the host. /dev/kmsg
 * gives the same records to each reader.
 *
 * Args: --iface NAME --host H --port P --hostname NODE. Prints `{"forwarded":N}` lines as it goes.
 */
import { createReadStream } from 'node:fs';
import { connect } from 'node:net';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: { iface: { type: 'string' }, host: { type: 'string' }, port: { type: 'string' }, hostname: { type: 'string' } },
});
const iface = values.iface ?? '';
const sock = connect({ host: values.host ?? '127.0.0.1', port: Number(values.port) });
let forwarded = 0;
let pending = '';
let lastSeq = -1;

/** "pri,seq,usec,flags;message" -> the syslog frame, or null when it is not one of ours. */
function frame(record: string): Buffer | null {
  const semi = record.indexOf(';');
  if (semi < 0) return null;
  const [pri, seqText, usec] = record.slice(0, semi).split(',');
  // After a reopen the reader starts over: each record once.
  const seq = Number(seqText);
  if (seq <= lastSeq) return null;
  lastSeq = seq;
  const msg = record.slice(semi + 1);
  if (!/^befw-(trap |obs:)/.test(msg) || !msg.includes(` IN=${iface} `)) return null;
  const us = Number(usec);
  const stamp = `[${String(Math.floor(us / 1e6)).padStart(5)}.${String(us % 1e6).padStart(6, '0')}]`;
  const line = `<${Number(pri)}>1 ${new Date().toISOString()} ${values.hostname ?? '-'} kernel - - - ${stamp} ${msg}`;
  const body = Buffer.from(line);
  return Buffer.concat([Buffer.from(`${body.length} `), body]);
}

function read(): void {
  const kmsg = createReadStream('/dev/kmsg', { encoding: 'utf8', highWaterMark: 8192 });
  kmsg.on('data', (chunk: string | Buffer) => {
    pending += chunk.toString();
    const records = pending.split('\n');
    pending = records.pop() ?? '';
    for (const r of records) {
      const f = frame(r);
      if (f === null) continue;
      sock.write(f);
      forwarded++;
      process.stdout.write(`${JSON.stringify({ forwarded })}\n`);
    }
  });
  // Records overwritten in the ring buffer before this reader got them (EPIPE): open again.
  kmsg.on('error', (err) => {
    process.stderr.write(`kmsg: ${err.message}\n`);
    pending = '';
    setTimeout(read, 10);
  });
}

sock.on('connect', () => {
  read();
  process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
});
sock.on('error', (err) => {
  process.stderr.write(`forward: ${err.message}\n`);
  process.exit(1);
});
