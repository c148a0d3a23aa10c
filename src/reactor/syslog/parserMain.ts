/**
 * `befw syslog`: the composition root of the parser. Builds the pipeline, the listeners and the
 * queue producer from the config, logs what it is doing (one JSON event a line), reports bad
 * input at a bounded rate (the counters keep the full tally), and stops cleanly on SIGTERM:
 * listeners close first, then pending jobs get a few seconds to reach the queue.
 */
import { hostname } from 'node:os';
import type { Logger } from 'pino';
import { JobProducer } from '../queue/producer.js';
import { ControlListener } from '../queue/control.js';
import { loadJobKeys } from '../queue/jobAuth.js';
import { NetSet } from '../../core/netMatch.js';
import { SyslogListeners } from './listeners.js';
import { type Problem, SyslogPipeline } from './pipeline.js';
import { OBSERVE_FLUSH_MS } from './observeAggregate.js';
import { type ParserConfig, type ReactorConfig, configuredProtection } from '../config/reactorConfig.js';

/** At most this many problem lines per window; the rest are only counted. */
const PROBLEM_LOG_BURST = 20;
const PROBLEM_LOG_WINDOW_MS = 10_000;

export interface RunningParser {
  readonly listeners: SyslogListeners;
  readonly pipeline: SyslogPipeline;
  readonly producer: JobProducer;
  readonly control: ControlListener;
  stop(): Promise<void>;
  readonly done: Promise<void>;
}

export function problemLogger(log: Logger): (p: Problem) => void {
  let windowStart = 0;
  let inWindow = 0;
  let unlogged = 0;
  return (p) => {
    const now = Date.now();
    if (now - windowStart >= PROBLEM_LOG_WINDOW_MS) {
      if (unlogged > 0)
        log.warn({ event: 'input-rejected-unlogged', count: unlogged, windowMs: PROBLEM_LOG_WINDOW_MS }, 'more rejected input than logged');
      windowStart = now;
      inWindow = 0;
      unlogged = 0;
    }
    if (inWindow >= PROBLEM_LOG_BURST) {
      unlogged++;
      return;
    }
    inWindow++;
    log.warn({ event: 'input-rejected', ...p }, 'input rejected');
  };
}

export async function startParser(config: ReactorConfig, log: Logger): Promise<RunningParser> {
  const parser = config.parser as ParserConfig;
  const parserId = `${hostname()}:${process.pid}`;
  for (const w of config.warnings) log.warn({ event: 'config-warning', warning: w }, w);
  const keys = await loadJobKeys(config.queue.hmacKeyFile ?? '');
  const producer = new JobProducer(
    config.queue.servers,
    {
      tubePrefix: config.queue.tubePrefix,
      ttrSec: config.queue.ttrSec,
      connectTimeoutMs: config.queue.connectTimeoutMs,
      maxPending: parser.maxPendingJobs,
      keys,
    },
    log,
    (job, server, id) =>
      log.info(
        {
          event: 'job-queued',
          job: { id: job.id, event: job.event, trigger: job.trigger, subject: job.subject, count: job.count, device: job.device },
          server,
          queueId: id,
          lineToQueueMs: Date.now() - job.lineReceivedMs,
        },
        'job queued',
      ),
  );
  const protect = new NetSet(configuredProtection(config).flatMap((p) => p.nets.cidrs));
  const pipeline = new SyslogPipeline(parser, protect, (job) => producer.submit(job), problemLogger(log), parserId);
  const control = new ControlListener(config.queue.servers, config.queue.tubePrefix, keys, config.queue.connectTimeoutMs, log, (m) => {
    const forgotten = pipeline.forget(m.subject);
    log.info({ event: 'forgotten', subject: m.subject, entries: forgotten, by: m.by }, 'subject forgotten (unban)');
  });
  const controlDone = control.start();
  const listeners = new SyslogListeners(parser, pipeline, log);
  try {
    await listeners.start();
  } catch (err) {
    await listeners.stop();
    producer.close();
    control.stop();
    throw new Error(`cannot listen: ${(err as Error).message}`, { cause: err });
  }
  log.info(
    {
      event: 'listening',
      listeners: listeners.bound.map((b) => ({ name: b.config.name, port: b.port, proxyProtocol: b.config.proxyProtocol })),
      triggers: parser.triggers.triggers.map((t) => t.name),
      queue: config.queue.servers.map((s) => s.text),
      controlTube: control.tube,
    },
    'syslog parser listening',
  );

  const stats = (): Record<string, unknown> => ({
    event: 'stats',
    ...pipeline.counters,
    connections: listeners.connections,
    tracked: pipeline.tracked,
    trackedPerLevel: pipeline.trackedPerLevel,
    trackedEvicted: pipeline.evicted,
    queue: { ...producer.counters, pending: producer.pendingCount },
    memoryMb: Math.round(process.memoryUsage().rss / 1048576),
  });
  const statsTimer = setInterval(() => {
    pipeline.sweep(Date.now());
    log.info(stats(), 'parser stats');
  }, parser.statsIntervalMs);
  statsTimer.unref();
  // Observe-mode sums leave at their interval even when no line comes to carry them out.
  const observeTimer = setInterval(() => pipeline.flushObserved(Date.now()), OBSERVE_FLUSH_MS);
  observeTimer.unref();

  let resolveDone!: () => void;
  const done = new Promise<void>((r) => (resolveDone = r));
  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      clearInterval(statsTimer);
      clearInterval(observeTimer);
      await listeners.stop();
      control.stop();
      await controlDone;
      // What observe mode summed so far goes out with the rest.
      pipeline.flushObserved(Number.MAX_SAFE_INTEGER);
      const drained = await producer.drain(5000);
      if (!drained)
        log.error({ event: 'jobs-lost-at-stop', pending: producer.pendingCount }, 'queue unreachable at stop: pending jobs lost');
      producer.close();
      log.info(stats(), 'parser stopped');
      resolveDone();
    })();
    return stopping;
  };
  return { listeners, pipeline, producer, control, stop, done };
}
