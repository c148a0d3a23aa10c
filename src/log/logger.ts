/**
 * JSON logs, one event a line (pino), with the level as a name (`"level":"warn"`). Under systemd
 * (JOURNAL_STREAM set) each line starts with its syslog priority (`<4>{...}`), which journald
 * takes as the entry's priority and strips: `journalctl -u befw -p warning` then finds warnings.
 * Anything that could hold the ACL token is redacted by path as a second line of defence: the
 * token is never passed to a log call in the first place.
 */
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export type { Logger };

/** syslog priorities of pino's levels. */
const PRIORITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };

/** Prefixes each line with `<priority>` for journald's SyslogLevelPrefix. */
export function journaldStream(out: NodeJS.WritableStream): Writable {
  return new Writable({
    write(chunk: Buffer | string, _enc, done) {
      const line = chunk.toString();
      const level = /"level":"([a-z]+)"/.exec(line)?.[1] ?? 'info';
      out.write(`<${PRIORITY[level] ?? 6}>${line}`);
      done();
    },
  });
}

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const out = destination ?? (process.env.JOURNAL_STREAM !== undefined ? journaldStream(process.stdout) : process.stdout);
  return pino(
    {
      name: 'befw',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: { paths: ['token', '*.token', 'config.token', 'headers["x-consul-token"]'], censor: '[redacted]' },
    },
    out as pino.DestinationStream,
  );
}
