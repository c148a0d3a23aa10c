/**
 * systemd's notification protocol (sd_notify): READY=1 once the first apply is done, WATCHDOG=1
 * while the loop is healthy, STOPPING=1 on the way out, STATUS=... for `systemctl status`.
 * A no-op without NOTIFY_SOCKET. Node cannot send on a unix datagram socket by itself, so the
 * `unix-dgram` native module does the sendto; it is loaded only when systemd asks for it.
 */
import { createRequire } from 'node:module';
import type { Logger } from '../log/logger.js';

export interface Notifier {
  readonly enabled: boolean;
  notify(state: string): void;
  /** WATCHDOG_USEC / 2 in ms when systemd expects pings from this process, else null. */
  readonly watchdogIntervalMs: number | null;
  close(): void;
}

interface DgramSocket {
  send(buf: Buffer, offset: number, length: number, path: string, cb: (err?: Error) => void): void;
  close(): void;
  on(event: 'error', listener: (err: Error) => void): void;
}

const NOOP: Notifier = { enabled: false, notify: () => undefined, watchdogIntervalMs: null, close: () => undefined };

export function createNotifier(env: NodeJS.ProcessEnv, log: Logger): Notifier {
  const target = env.NOTIFY_SOCKET;
  if (target === undefined || target === '') return NOOP;
  // An abstract socket is written with a leading "@".
  const path = target.startsWith('@') ? `\u0000${target.slice(1)}` : target;
  let socket: DgramSocket;
  try {
    const require = createRequire(import.meta.url);
    // The module has no type declarations; its socket is described by DgramSocket above.
    const mod = require('unix-dgram') as { createSocket(type: 'unix_dgram'): DgramSocket };
    socket = mod.createSocket('unix_dgram');
    socket.on('error', (err) => log.warn({ event: 'sd-notify-error', err: err.message }, 'cannot notify systemd'));
  } catch (err) {
    log.error({ event: 'sd-notify-unavailable', err: (err as Error).message }, 'NOTIFY_SOCKET is set but unix-dgram cannot be loaded');
    return NOOP;
  }
  const usec = Number(env.WATCHDOG_USEC ?? NaN);
  const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
  return {
    enabled: true,
    watchdogIntervalMs: Number.isFinite(usec) && usec > 0 && forUs ? Math.max(1, Math.floor(usec / 2000)) : null,
    notify(state) {
      const buf = Buffer.from(state);
      socket.send(buf, 0, buf.length, path, (err) => {
        if (err !== undefined)
          log.warn({ event: 'sd-notify-error', state: state.split('\n')[0], err: err.message }, 'cannot notify systemd');
      });
    },
    close() {
      socket.close();
    },
  };
}
