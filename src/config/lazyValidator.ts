/**
 * An ajv validator compiled on first use. Compiling a schema costs tens of milliseconds, and the
 * CLI imports every command's module: compiling all of them at import made every `befw`
 * invocation pay for schemas it never used.
 */
import { Ajv, type Options, type ValidateFunction } from 'ajv';

export function lazyValidator<T>(schema: object, options: Options = {}): () => ValidateFunction<T> {
  let compiled: ValidateFunction<T> | null = null;
  return () => (compiled ??= new Ajv(options).compile<T>(schema));
}
