/**
 * Errors of the operator commands. Each names what was wrong and where (the argument or option,
 * or the KV key), so `main` can print it as the one line an operator sees.
 */
import { printable } from '../../core/address.js';

/** Bad input on the command line: nothing was written. */
export class UsageError extends Error {
  constructor(
    /** The argument or option, e.g. `--ttl "5x"` or `address "999.1.1.1"`. */
    readonly subject: string,
    readonly reason: string,
  ) {
    super(`${subject}: ${reason}`);
    this.name = 'UsageError';
  }
}

/** A write or delete that Consul refused or that lost a race; says what was (not) done. */
export class AccessError extends Error {
  constructor(
    readonly key: string,
    readonly reason: string,
  ) {
    super(`${printable(key, 200)}: ${reason}`);
    this.name = 'AccessError';
  }
}

/** `--ttl "5x"`: the way an option's value is quoted in messages. */
export function quoted(subject: string, value: string): string {
  return `${subject} "${printable(value, 80)}"`;
}

/**
 * A command refused because what it would write cannot be meant as given (a set, datacenter or
 * node the catalog does not know, a catalog that could not be read to check): nothing was
 * written. The message says what to check, and which option overrides the refusal.
 */
export class RefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefusedError';
  }
}
