/**
 * JSON logs, one event a line (pino). Anything that could hold the ACL token is redacted by path
 * as a second line of defence: the token is never passed to a log call in the first place.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string, destination: NodeJS.WritableStream = process.stdout): Logger {
  return pino(
    {
      name: 'befw',
      level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: ['token', '*.token', 'config.token', 'headers["x-consul-token"]'], censor: '[redacted]' },
    },
    destination as pino.DestinationStream,
  );
}
