/**
 * Types derived from JSON schemas (src/config/schemaType.ts) and assertNever. The type checks are
 * compile-time: each `const ...: SameShape<...> = true` line only compiles while the derived type
 * is the expected one, so `npm run build` is the test; the asserts keep the runner honest.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { UnexpectedValueError, assertNever } from '../../src/core/assertNever.js';
import { lazyValidator } from '../../src/config/lazyValidator.js';
import type { Agreeing, FromSchema, SameShape } from '../../src/config/schemaType.js';
import type { RawConfig } from '../../src/config/config.js';
import type { ActionKind, RawAction } from '../../src/reactor/config/reactorSchema.js';

const TAGGED = {
  type: 'object',
  required: ['kind'],
  properties: { kind: { enum: ['a', 'b'] } },
  allOf: [
    {
      if: { properties: { kind: { const: 'a' } } },
      then: { additionalProperties: false, required: ['n'], properties: { kind: {}, n: { type: 'integer' } } },
    },
    {
      if: { properties: { kind: { const: 'b' } } },
      then: {
        additionalProperties: false,
        properties: { kind: {}, s: { type: ['string', 'null'] }, l: { type: 'array', items: { enum: ['x'] } } },
      },
    },
  ],
} as const;

const MAPS = {
  type: 'object',
  additionalProperties: false,
  required: ['m'],
  properties: {
    m: { type: 'object', additionalProperties: { type: 'boolean' } },
    o: { oneOf: [{ const: 'all' }, { type: 'array', items: { type: 'string' } }] },
  },
  patternProperties: { '^x-': { type: 'string' } },
} as const;

describe('types from JSON schemas', () => {
  test('scalars, lists, optional and required keys, maps, unions', () => {
    type Maps = FromSchema<typeof MAPS>;
    const checks: [
      SameShape<Maps['m'], { readonly [key: string]: boolean }>,
      SameShape<Maps['o'], 'all' | readonly string[] | undefined>,
      SameShape<Maps['x-note'], string | { readonly [key: string]: boolean } | readonly string[]>,
      SameShape<keyof Maps, string | number>,
    ] = [true, true, true, true];
    assert.deepEqual(checks, [true, true, true, true]);
    const validate = lazyValidator<FromSchema<typeof MAPS>>(MAPS, { strict: true })();
    assert.ok(validate({ m: { on: true }, o: 'all', 'x-note': 'n' }));
    assert.ok(!validate({ m: {}, y: 'n' }));
  });

  test('an allOf of if/then branches is a union tagged by the constant', () => {
    type Want =
      { readonly kind: 'a'; readonly n: number } | { readonly kind: 'b'; readonly s?: string | null; readonly l?: readonly 'x'[] };
    const tagged: SameShape<FromSchema<typeof TAGGED>, Want> = true;
    assert.equal(tagged, true);
    const kinds: Agreeing<FromSchema<typeof TAGGED>['kind'], typeof TAGGED.properties.kind> = 'b';
    assert.equal(kinds, 'b');
  });

  test('a hand-written type that differs from the schema is not Agreeing', () => {
    const extraKey: SameShape<
      Agreeing<{ readonly n: number; readonly extra?: string }, (typeof TAGGED.allOf)[0]['then']>,
      { readonly n: number }
    > = false;
    assert.equal(extraKey, false);
  });

  test("befw's own schemas", () => {
    const level: SameShape<RawConfig['log_level'], 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | undefined> = true;
    const kinds: SameShape<ActionKind, RawAction['type']> = true;
    const actionKinds: SameShape<ActionKind, 'ban' | 'vyos-address-group' | 'vyos-disable-interface' | 'user-lease' | 'observe'> = true;
    assert.deepEqual([level, kinds, actionKinds], [true, true, true]);
  });

  test('a lazy validator narrows to the derived type', () => {
    const validate = lazyValidator<FromSchema<typeof TAGGED>>(TAGGED, { strict: true })();
    const value: unknown = JSON.parse('{"kind":"a","n":3}');
    assert.ok(validate(value));
    assert.equal(value.kind === 'a' ? value.n : null, 3);
    assert.equal(validate({ kind: 'a', n: 3, s: 'no' }), false);
    assert.equal(validate({ kind: 'b', s: null, l: ['x'] }), true);
  });
});

describe('assertNever', () => {
  test('throws a typed error naming what it got', () => {
    const shape = { type: 'circle' } as { type: 'circle' };
    assert.throws(
      () => (shape.type === 'circle' ? assertNever(shape as never, 'shape') : null),
      (err: unknown) =>
        err instanceof UnexpectedValueError && err.what === 'shape' && err.message === 'unexpected shape: object of type "circle"',
    );
    assert.throws(() => assertNever('x' as never), /^UnexpectedValueError: unexpected value: "x"$/);
  });
});
