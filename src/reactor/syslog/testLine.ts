/**
 * `befw syslog --test 'LINE'`: what the parser would make of one line, without a socket or a
 * queue: how it parses, whether the device may send it, which trigger matches with which
 * subject, whether the subject is protected, and the job it makes once the event's threshold is
 * crossed (the line run through a pipeline whose thresholds are all 1, so the job is exactly the
 * one that would be queued, its count being this line's weight).
 */
import type { ReactorJob, Transport } from '../queue/job.js';
import { type DevicePolicy, type ReactorConfig, configuredProtection, thresholdFor } from '../config/reactorConfig.js';
import { NetSet } from '../../core/netMatch.js';
import { type Problem, SyslogPipeline } from './pipeline.js';
import { type SyslogParse, parseSyslog } from './syslogMessage.js';
import type { ThresholdRule } from './thresholds.js';

export interface LineReport {
  readonly parse: SyslogParse;
  readonly device: { readonly address: string; readonly transport: Transport; readonly policy: DevicePolicy | null };
  readonly matches: readonly {
    readonly trigger: string;
    readonly event: string;
    readonly subject: string;
    readonly threshold: ThresholdRule;
  }[];
  readonly problems: readonly Problem[];
  readonly jobs: readonly ReactorJob[];
}

export function explainLine(config: ReactorConfig, line: string, address: string, transport: Transport): LineReport {
  const parser = config.parser;
  if (parser === null) throw new Error('no /parser section');
  const policy = parser.devices.lookup(address);
  const parse = parseSyslog(line);
  const matches: LineReport['matches'][number][] = [];
  if (parse.ok)
    for (const m of parser.triggers.match(parse.value.app, parse.value.msg))
      matches.push({
        trigger: m.trigger.name,
        event: m.trigger.event,
        subject: m.subject,
        threshold: thresholdFor(parser, m.trigger.event),
      });
  const problems: Problem[] = [];
  const jobs: ReactorJob[] = [];
  if (policy !== null) {
    const once = new Map(parser.triggers.events.map((e) => [e, { maxRetry: 1, findTimeMs: 1 }]));
    const protect = new NetSet(configuredProtection(config).flatMap((p) => p.nets.cidrs));
    const pipeline = new SyslogPipeline(
      { ...parser, thresholds: once },
      protect,
      (j) => jobs.push(j),
      (p) => problems.push(p),
      'test',
    );
    pipeline.handleText(line, { address, via: 'direct', listener: 'test', transport, policy }, Date.now());
    if (pipeline.counters.ignored > 0)
      problems.push({ reason: 'protected', detail: 'the subject is protected by the config: no job', device: address, listener: 'test' });
  } else {
    problems.push({ reason: 'device-not-allowed', detail: `${address} is not one of parser.devices`, device: address, listener: 'test' });
  }
  return { parse, device: { address, transport, policy }, matches, problems, jobs };
}
