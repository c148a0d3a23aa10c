/**
 * The shape of the reactor config as a JSON schema (ajv): keys, types, ranges and name patterns.
 * Unknown keys are errors everywhere, so a typo never turns into a silent default. The first
 * error is turned into a JSON path and a sentence a person can act on.
 *
 * The schema is also the type: RawReactorConfig is derived from it (config/schemaType.ts), and
 * checkShape hands back the validated value with that type, so reactorConfig.ts reads it without
 * casts and tsc rejects code that reads a key the schema does not have, or forgets it is optional.
 */
import type { ErrorObject } from 'ajv';
import { lazyValidator } from '../../config/lazyValidator.js';
import type { Agreeing, FromSchema } from '../../config/schemaType.js';
import { SET_NAME } from '../../core/kvLayout.js';
import { BUILTIN_GROUPS } from '../syslog/triggers.js';

const EVENT = '^[a-z0-9][a-z0-9-]{0,63}$';
const NAME = '^[A-Za-z0-9._-]{1,64}$';
const PATH = { type: 'string', pattern: '^/[^\\u0000-\\u001f]{0,4095}$' } as const;
const CIDRS = { type: 'array', maxItems: 10000, items: { type: 'string', maxLength: 64 } } as const;
const int = (minimum: number, maximum: number): { type: 'integer'; minimum: number; maximum: number } => ({
  type: 'integer',
  minimum,
  maximum,
});
const DAY = 86400;

const ACTION = {
  type: 'object',
  required: ['type'],
  properties: { type: { enum: ['ban', 'vyos-address-group', 'vyos-disable-interface', 'user-lease', 'observe'] } },
  allOf: [
    {
      if: { properties: { type: { const: 'ban' } } },
      then: {
        additionalProperties: false,
        properties: {
          type: {},
          set: { type: 'string', pattern: SET_NAME.source },
          scope: { enum: ['world', 'dc', 'node'] },
          dc: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' },
          node: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' },
          bantimeSec: int(1, 365 * DAY),
          factor: { type: 'number', minimum: 1, maximum: 100 },
          maxBantimeSec: int(1, 10 * 365 * DAY),
          forgetAfterSec: int(0, 10 * 365 * DAY),
          prefixV4: int(8, 32),
          prefixV6: int(16, 128),
        },
      },
    },
    {
      if: { properties: { type: { const: 'vyos-address-group' } } },
      then: {
        additionalProperties: false,
        required: ['type', 'devices', 'group', 'ipv6Group'],
        properties: {
          type: {},
          devices: {
            oneOf: [{ enum: ['source', 'all'] }, { type: 'array', minItems: 1, maxItems: 1000, items: { type: 'string', pattern: NAME } }],
          },
          group: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$' },
          ipv6Group: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9._-]{0,30}$' },
          save: { type: 'boolean' },
          bantimeSec: int(1, 365 * DAY),
        },
      },
    },
    {
      if: { properties: { type: { const: 'vyos-disable-interface' } } },
      then: { additionalProperties: false, properties: { type: {}, save: { type: 'boolean' } } },
    },
    {
      // Observe mode (responder/observeAction.ts): non-clients into befw-observed/<tag>/<addr>.
      if: { properties: { type: { const: 'observe' } } },
      then: { additionalProperties: false, properties: { type: {}, ttlSec: int(60, 365 * DAY) } },
    },
    {
      if: { properties: { type: { const: 'user-lease' } } },
      then: {
        additionalProperties: false,
        required: ['networks'],
        properties: {
          type: {},
          leaseSec: int(60, 30 * DAY),
          loginSec: int(60, 30 * DAY),
          maxLeaseSec: int(60, 365 * DAY),
          networks: { ...CIDRS, minItems: 1 },
        },
      },
    },
  ],
} as const;

const SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['queue'],
  properties: {
    $schema: { type: 'string' },
    logLevel: { enum: ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] },
    protect: CIDRS,
    ignore: CIDRS,
    queue: {
      type: 'object',
      additionalProperties: false,
      required: ['servers'],
      properties: {
        servers: { type: 'array', minItems: 1, maxItems: 64, items: { type: 'string', maxLength: 200 } },
        tubePrefix: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9+/;.$()_-]{0,100}$' },
        ttrSec: int(2, 3600),
        maxAttempts: int(1, 1000),
        retryDelaySec: int(0, DAY),
        retryDelayMaxSec: int(0, 7 * DAY),
        connectTimeoutSec: int(1, 300),
        hmacKeyFile: PATH,
      },
    },
    parser: {
      type: 'object',
      additionalProperties: false,
      required: ['listeners'],
      properties: {
        listeners: {
          type: 'array',
          minItems: 1,
          maxItems: 64,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['protocol', 'port'],
            properties: {
              protocol: { enum: ['tcp', 'udp'] },
              address: { type: 'string', maxLength: 45 },
              port: int(1, 65535),
              proxyProtocol: { type: 'boolean' },
            },
          },
        },
        trustedProxies: CIDRS,
        allowedDevices: CIDRS,
        devices: {
          type: 'array',
          maxItems: 10000,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'addresses'],
            properties: {
              name: { type: 'string', pattern: NAME },
              addresses: { ...CIDRS, minItems: 1 },
              hostnames: { type: 'array', maxItems: 1000, items: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,255}$' } },
              udpActions: {
                type: 'array',
                uniqueItems: true,
                items: { enum: ['ban', 'vyos-address-group', 'vyos-disable-interface', 'user-lease', 'observe'] },
              },
              events: { type: 'array', uniqueItems: true, maxItems: 100, items: { type: 'string', pattern: EVENT } },
            },
          },
        },
        limits: {
          type: 'object',
          additionalProperties: false,
          properties: {
            maxMessageBytes: int(256, 1 << 20),
            maxLineBytes: int(256, 1 << 20),
            maxConnections: int(1, 100000),
            idleTimeoutSec: int(1, DAY),
            proxyHeaderTimeoutSec: int(1, 300),
            maxTracked: int(100, 10_000_000),
            maxPendingJobs: int(1, 1_000_000),
            maxConnectionsPerDevice: int(1, 100000),
            maxRepeat: int(1, 1_000_000),
          },
        },
        builtinTriggers: { type: 'array', uniqueItems: true, items: { enum: BUILTIN_GROUPS } },
        triggers: {
          type: 'array',
          maxItems: 1000,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['name', 'event', 'pattern'],
            properties: {
              name: { type: 'string', pattern: NAME },
              event: { type: 'string', pattern: EVENT },
              programs: { type: 'array', maxItems: 100, items: { type: 'string', pattern: '^[^\\s\\[\\]:]{1,48}$' } },
              pattern: { type: 'string', minLength: 1, maxLength: 4096 },
              subject: { type: 'string', pattern: '^[A-Za-z_][A-Za-z0-9_]{0,31}$' },
              subjectKind: { enum: ['ip', 'name'] },
              perDevice: { type: 'boolean' },
            },
          },
        },
        thresholds: {
          type: 'object',
          propertyNames: { pattern: EVENT },
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            required: ['maxRetry', 'findTimeSec'],
            properties: { maxRetry: int(1, 1_000_000), findTimeSec: int(1, 30 * DAY) },
          },
        },
        dedupSec: int(0, 30 * DAY),
        statsIntervalSec: int(1, DAY),
      },
    },
    responder: {
      type: 'object',
      additionalProperties: false,
      required: ['actions'],
      properties: {
        consul: {
          type: 'object',
          additionalProperties: false,
          properties: {
            address: { type: 'string', pattern: '^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$' },
            tokenFile: PATH,
            dc: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,128}$' },
            timeoutSec: int(1, 300),
          },
        },
        managementNets: CIDRS,
        banBudgetPerMinute: int(1, 1_000_000),
        protectedListRefreshSec: int(1, 300),
        vyosSweepSec: int(1, 3600),
        stateKvPrefix: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,64}(/[A-Za-z0-9._-]{1,64}){0,4}$' },
        concurrency: int(1, 64),
        actions: {
          type: 'object',
          propertyNames: { pattern: EVENT },
          additionalProperties: { type: 'array', minItems: 1, maxItems: 16, items: ACTION },
        },
        devices: {
          type: 'object',
          propertyNames: { pattern: NAME },
          additionalProperties: {
            type: 'object',
            additionalProperties: false,
            required: ['url', 'keyFile', 'addresses'],
            properties: {
              url: { type: 'string', pattern: '^https?://[^\\s]{1,500}$' },
              keyFile: PATH,
              caFile: PATH,
              addresses: { ...CIDRS, minItems: 1 },
              timeoutSec: int(1, 300),
              interfaces: {
                type: 'array',
                maxItems: 1000,
                uniqueItems: true,
                items: { type: 'string', pattern: '^[a-z]{1,10}[0-9]{1,5}(\\.[0-9]{1,4})?$' },
              },
            },
          },
        },
      },
    },
  },
} as const;

/** The reactor config as written (JSON, before defaults and meaning checks). */
export type RawReactorConfig = FromSchema<typeof SCHEMA>;
export type RawParser = NonNullable<RawReactorConfig['parser']>;
export type RawResponder = NonNullable<RawReactorConfig['responder']>;
/** One entry of /responder/actions/<event>: a union tagged by `type`, one member per `if`/`then` branch of ACTION. */
export type RawAction = FromSchema<typeof ACTION>;
/** The action types the schema accepts; tsc refuses this type if one has no `if`/`then` branch (and so no member in RawAction). */
export type ActionKind = Agreeing<RawAction['type'], typeof ACTION.properties.type>;

const validator = lazyValidator<RawReactorConfig>(SCHEMA, { allErrors: false, strict: true, allowUnionTypes: true });

function pointer(path: string, extra?: string): string {
  const p = extra === undefined ? path : `${path}/${extra}`;
  return p === '' ? '/' : p;
}

function explain(e: ErrorObject): { path: string; reason: string } {
  const p = e.params as Record<string, unknown>;
  // A bad key of a map (an event or device name): ajv names it beside the error.
  if (e.propertyName !== undefined)
    return {
      path: pointer(e.instancePath, e.propertyName),
      reason: 'bad name (events: lower-case letters, digits and "-"; devices: letters, digits, ".", "_", "-")',
    };
  if (e.schemaPath.includes('/oneOf/'))
    return { path: pointer(e.instancePath), reason: 'expected "source", "all" or a list of device names' };
  switch (e.keyword) {
    case 'additionalProperties':
      return { path: pointer(e.instancePath, String(p.additionalProperty)), reason: 'unknown key' };
    case 'required':
      return { path: pointer(e.instancePath, String(p.missingProperty)), reason: 'is required' };
    case 'enum':
      return {
        path: pointer(e.instancePath),
        reason: `expected one of ${(p.allowedValues as unknown[]).map((v) => JSON.stringify(v)).join(', ')}`,
      };
    case 'pattern':
      return { path: pointer(e.instancePath), reason: `has a bad form (must match ${String(p.pattern)})` };
    case 'oneOf':
      return { path: pointer(e.instancePath), reason: 'expected "source", "all" or a list of device names' };
    default:
      return { path: pointer(e.instancePath), reason: e.message ?? e.keyword };
  }
}

export type Shape =
  { readonly ok: true; readonly config: RawReactorConfig } | { readonly ok: false; readonly path: string; readonly reason: string };

/** `raw`, typed, when it has the right shape; else where and why not. */
export function checkShape(raw: unknown): Shape {
  const validate = validator();
  if (validate(raw)) return { ok: true, config: raw };
  const e = validate.errors?.[0];
  return { ok: false, ...(e === undefined ? { path: '/', reason: 'invalid' } : explain(e)) };
}
