/**
 * The TypeScript type a JSON schema describes, derived from the schema itself (written `as const`),
 * so a schema and the type of what it validated are one source: `lazyValidator<FromSchema<typeof
 * SCHEMA>>(SCHEMA)` gives a type guard, and code reading the validated value is checked against
 * the schema. (ajv's own `JSONSchemaType<T>` goes the other way, but demands `nullable: true` on
 * every optional key, which would let `null` through where befw refuses it today.)
 *
 * It knows the keywords befw's schemas use, and no more:
 *   - `const`, `enum`; `type` (a name or a list of names);
 *   - arrays with `items`;
 *   - objects: `properties` (optional unless `required`), `additionalProperties` (false, or the
 *     schema of every other key's value), `patternProperties`; keys a schema leaves open without
 *     a schema are not in the type;
 *   - `oneOf`/`anyOf`: a union;
 *   - `allOf` whose items are all `if: {properties: {K: {const: C}}}, then: S`: a union tagged by K
 *     (each branch is S with K = C), intersected with the rest of the schema.
 * Keywords that only narrow values (pattern, minimum, maxLength, propertyNames, ...) leave the
 * type as it is. What it does not understand widens (to `unknown`, or to the rest of the schema
 * for an `allOf` of another form) rather than giving a wrong type.
 */

type Simplify<T> = { [K in keyof T]: T[K] } & {};

type TypeName = 'string' | 'integer' | 'number' | 'boolean' | 'null';

type Primitive<N> = N extends 'string'
  ? string
  : N extends 'integer' | 'number'
    ? number
    : N extends 'boolean'
      ? boolean
      : N extends 'null'
        ? null
        : never;

type Props<S> = S extends { readonly properties: infer P } ? P : object;
type RequiredKeys<S> = S extends { readonly required: readonly (infer R)[] } ? R : never;

/** Other keys' values: an index signature, which must also admit the named keys' values. */
type Rest<S> = S extends { readonly additionalProperties: false }
  ? S extends { readonly patternProperties: infer PP }
    ? { readonly [key: string]: FromSchema<PP[keyof PP]> | FromSchema<Props<S>[keyof Props<S>]> }
    : object
  : S extends { readonly additionalProperties: infer A extends object }
    ? { readonly [key: string]: FromSchema<A> | FromSchema<Props<S>[keyof Props<S>]> }
    : object;

type ObjectOf<S> = Simplify<
  { readonly [K in keyof Props<S> & RequiredKeys<S>]: FromSchema<Props<S>[K]> } & {
    readonly [K in Exclude<keyof Props<S>, RequiredKeys<S>>]?: FromSchema<Props<S>[K]>;
  } & Rest<S>
>;

/** One `if`/`then` item of an `allOf`: the `then` schema with the `if`'s constant keys. */
type Branch<B> = B extends { readonly if: { readonly properties: infer P }; readonly then: infer T }
  ? Omit<FromSchema<T>, keyof P> & { readonly [K in keyof P]: FromSchema<P[K]> }
  : unknown;

type IsObject<S> = S extends
  | { readonly type: 'object' }
  | { readonly properties: object }
  | { readonly additionalProperties: unknown }
  | { readonly patternProperties: object }
  ? true
  : false;

export type FromSchema<S> = S extends { readonly const: infer C }
  ? C
  : S extends { readonly enum: readonly (infer E)[] }
    ? E
    : S extends { readonly oneOf: readonly (infer U)[] }
      ? FromSchema<U>
      : S extends { readonly anyOf: readonly (infer U)[] }
        ? FromSchema<U>
        : S extends { readonly allOf: readonly (infer B)[] }
          ? Simplify<FromSchema<Omit<S, 'allOf'>> & Branch<B>>
          : S extends { readonly type: 'array'; readonly items: infer I }
            ? readonly FromSchema<I>[]
            : IsObject<S> extends true
              ? ObjectOf<S>
              : S extends { readonly type: infer N extends TypeName | readonly TypeName[] }
                ? Primitive<N extends readonly (infer M)[] ? M : N>
                : unknown;

/**
 * True when A and B are the same type, written either way: the same keys, each as optional and as
 * readonly in both, with the same value types. (Mutual assignability would miss an optional key
 * that only one of them has.)
 */
export type SameShape<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;

/**
 * T, when T (a type written by hand, with its documentation) and the type of schema S are the
 * same; otherwise a type no code can use as a T, so tsc stops where the validated value is
 * first used: `lazyValidator<Agreeing<Job, typeof JOB_SCHEMA>>(JOB_SCHEMA)`.
 */
export type Agreeing<T, S> = SameShape<T, FromSchema<S>> extends true ? T : { readonly schemaAndTypeDisagree: S };
