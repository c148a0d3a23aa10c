/**
 * A reactor job: what the parser puts on the queue and a responder acts on. JSON, one tube per
 * event type (`<prefix><event>`), signed (jobAuth.ts). Responders validate every job they reserve
 * (ajv): a job is input from the network like any syslog line, and a bad one is reported and
 * buried, never acted on half-understood.
 *
 * Version 2 adds what the evidence is worth: the transport the lines came over (UDP can be
 * forged), the device's name in the parser's config, and for a job that rests on UDP lines the
 * actions the sending devices allow for UDP.
 */
import { lazyValidator } from '../../config/lazyValidator.js';
import type { Agreeing } from '../../config/schemaType.js';
import { printable } from '../../core/address.js';

export const JOB_VERSION = 2;

export type Transport = 'tcp' | 'udp';

export interface JobDevice {
  /** The sender: the PROXY header's source when a trusted proxy relayed it, else the peer. */
  readonly address: string;
  /** HOSTNAME from the syslog header, when there was one. */
  readonly hostname: string | null;
  readonly via: 'direct' | 'proxy-v1' | 'proxy-v2';
  readonly listener: string;
  /** The device's name in parser.devices (`allowed` for parser.allowedDevices). */
  readonly name: string;
  /** How the line arrived: tcp (from the device, or a trusted proxy over TCP) or udp (forgeable). */
  readonly transport: Transport;
}

export interface JobEvidence {
  /** The occurrences over TCP alone did not reach the threshold: the job may rest on forged datagrams. */
  readonly spoofable: boolean;
  /** For a spoofable job, the action types its devices allow for UDP; nothing else may run. */
  readonly udpActions: readonly string[];
}

export interface ReactorJob {
  readonly v: typeof JOB_VERSION;
  /** Unique per job; actions use it to stay idempotent under at-least-once delivery. */
  readonly id: string;
  readonly event: string;
  readonly trigger: string;
  /** What the event is about: an attacker's canonical address, an interface name. */
  readonly subject: string;
  readonly fields: Readonly<Record<string, string>>;
  /** Occurrences that crossed the threshold. */
  readonly count: number;
  readonly device: JobDevice;
  readonly evidence: JobEvidence;
  readonly firstSeenMs: number;
  /** When the parser received the line that crossed the threshold (the "log line" time). */
  readonly lineReceivedMs: number;
  readonly queuedMs: number;
  /** hostname:pid of the parser that made the job. */
  readonly parser: string;
  /** The line that crossed the threshold, printable and capped. */
  readonly sample: string;
}

export function tubeFor(prefix: string, event: string): string {
  return `${prefix}${event}`;
}

const MS = { type: 'integer', minimum: 0, maximum: 1e14 } as const;

const JOB_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: [
    'v',
    'id',
    'event',
    'trigger',
    'subject',
    'fields',
    'count',
    'device',
    'evidence',
    'firstSeenMs',
    'lineReceivedMs',
    'queuedMs',
    'parser',
    'sample',
  ],
  properties: {
    v: { const: JOB_VERSION },
    id: { type: 'string', pattern: '^[A-Za-z0-9-]{8,64}$' },
    event: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}$' },
    trigger: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
    subject: { type: 'string', pattern: '^[A-Za-z0-9._:@/-]{1,64}$' },
    fields: {
      type: 'object',
      maxProperties: 32,
      propertyNames: { pattern: '^[A-Za-z_][A-Za-z0-9_]{0,31}$' },
      additionalProperties: { type: 'string', maxLength: 256 },
    },
    count: { type: 'integer', minimum: 1, maximum: 1e12 },
    device: {
      type: 'object',
      additionalProperties: false,
      required: ['address', 'hostname', 'via', 'listener', 'name', 'transport'],
      properties: {
        address: { type: 'string', pattern: '^[0-9A-Fa-f.:]{2,45}$' },
        hostname: { type: ['string', 'null'], maxLength: 255 },
        via: { enum: ['direct', 'proxy-v1', 'proxy-v2'] },
        listener: { type: 'string', maxLength: 80 },
        name: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}$' },
        transport: { enum: ['tcp', 'udp'] },
      },
    },
    evidence: {
      type: 'object',
      additionalProperties: false,
      required: ['spoofable', 'udpActions'],
      properties: {
        spoofable: { type: 'boolean' },
        udpActions: { type: 'array', maxItems: 16, items: { type: 'string', pattern: '^[a-z0-9-]{1,64}$' } },
      },
    },
    firstSeenMs: MS,
    lineReceivedMs: MS,
    queuedMs: MS,
    parser: { type: 'string', maxLength: 300 },
    sample: { type: 'string', maxLength: 1024 },
  },
} as const;

// ReactorJob, written out with its documentation, and the schema must describe the same values:
// tsc refuses decodeJob below when they drift apart.
const jobValidator = lazyValidator<Agreeing<ReactorJob, typeof JOB_SCHEMA>>(JOB_SCHEMA, {
  allErrors: false,
  strict: true,
  allowUnionTypes: true,
});

export const MAX_JOB_BYTES = 16 * 1024;

export function encodeJob(job: ReactorJob): Buffer {
  return Buffer.from(JSON.stringify(job), 'utf8');
}

export type JobDecode = { readonly ok: true; readonly job: ReactorJob } | { readonly ok: false; readonly error: string };

/** Decodes and validates a job body; the error names the field (`/device/address: ...`). */
export function decodeJob(body: Buffer): JobDecode {
  if (body.length > MAX_JOB_BYTES) return { ok: false, error: `job body of ${body.length} bytes is above ${MAX_JOB_BYTES}` };
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return { ok: false, error: `not JSON: ${(err as Error).message}` };
  }
  const validateJob = jobValidator();
  if (!validateJob(raw)) {
    const e = validateJob.errors?.[0];
    if (e === undefined) return { ok: false, error: 'invalid job' };
    const p = e.params as Record<string, unknown>;
    const extra =
      e.keyword === 'additionalProperties'
        ? `/${String(p.additionalProperty)}`
        : e.keyword === 'required'
          ? `/${String(p.missingProperty)}`
          : '';
    return {
      ok: false,
      error:
        `${e.instancePath}${extra || ''}: ${e.keyword === 'additionalProperties' ? 'unknown field' : (e.message ?? e.keyword)}`.replace(
          /^:/,
          '/:',
        ),
    };
  }
  return { ok: true, job: raw };
}

/** A short printable excerpt of a body, for logging a job that could not be decoded. */
export function bodyExcerpt(body: Buffer): string {
  return printable(body.subarray(0, 200).toString('utf8'), 160);
}
