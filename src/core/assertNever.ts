/**
 * The end of an exhaustive `switch` over a union: `default: return assertNever(x, 'action type')`.
 * tsc rejects the call while a member of the union is unhandled (`x` is not yet `never`), so a
 * new member cannot slip through to a silent default; at run time it throws, for values that
 * reached the switch without passing the checks that the type describes.
 */

/** A value the types rule out turned up at run time: a bug, never a user's error. */
export class UnexpectedValueError extends Error {
  constructor(
    readonly what: string,
    readonly value: unknown,
  ) {
    super(`unexpected ${what}: ${describe(value)}`);
    this.name = 'UnexpectedValueError';
  }
}

function describe(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}...` : value);
  if (typeof value === 'object' && value !== null) {
    const tag = 'type' in value ? value.type : 'kind' in value ? value.kind : undefined;
    return typeof tag === 'string' ? `object of type ${JSON.stringify(tag)}` : 'object';
  }
  return String(value);
}

export function assertNever(x: never, what = 'value'): never {
  throw new UnexpectedValueError(what, x);
}
