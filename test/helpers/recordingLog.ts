/**
 * A real pino logger (the one the daemons use) writing into memory: tests read back the events
 * it logged as parsed JSON objects.
 */
import { type Logger, createLogger } from '../../src/log/logger.js';

export interface LogEvent {
  readonly level: number;
  readonly msg: string;
  readonly event?: string;
  readonly [field: string]: unknown;
}

export interface RecordingLog {
  readonly log: Logger;
  readonly events: LogEvent[];
  /** The events whose `event` field is `name`. */
  named(name: string): LogEvent[];
}

export function recordingLog(level = 'debug'): RecordingLog {
  const events: LogEvent[] = [];
  const sink = {
    write(line: string): boolean {
      events.push(JSON.parse(line) as LogEvent);
      return true;
    },
  };
  const log = createLogger(level, sink as unknown as NodeJS.WritableStream);
  return { log, events, named: (name) => events.filter((e) => e.event === name) };
}
