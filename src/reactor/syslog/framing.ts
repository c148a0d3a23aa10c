/**
 * Syslog over TCP (RFC 6587): splits a byte stream into messages. Both framings are accepted,
 * and decided per frame, because a relay may switch and senders mix them in practice:
 *   - octet counting: `MSGLEN SP MSG`, MSGLEN a decimal without leading zero;
 *   - non-transparent framing: MSG terminated by LF (a CR before it is dropped).
 * A frame that starts with a digit is octet-counted only if the digits are followed by a space;
 * otherwise the digits are the start of an LF-terminated line (some senders omit the PRI).
 *
 * Bounds: an LF line longer than maxLineBytes and an octet-counted message larger than
 * maxMessageBytes are skipped up to their end (the stream stays in sync) and reported. A length
 * field of more than nine digits cannot be skipped safely and is fatal for the connection.
 * Messages are handed out as (buffer, start, end) views, without copies for the common case of a
 * message that lies inside one chunk.
 */

export type FramingProblem = 'line-too-long' | 'message-too-large' | 'bad-octet-count';

export interface FramingLimits {
  readonly maxLineBytes: number;
  readonly maxMessageBytes: number;
}

export interface FramingSink {
  message(buf: Buffer, start: number, end: number, framing: 'lf' | 'octet'): void;
  /** fatal: the stream cannot be resynchronised and the connection should be closed. */
  problem(kind: FramingProblem, fatal: boolean): void;
}

const LF = 0x0a;
const CR = 0x0d;
const SP = 0x20;
const D0 = 0x30;
const D9 = 0x39;
const MAX_LEN_DIGITS = 9;

const enum State {
  Start,
  Length,
  Body,
  Line,
  SkipLine,
  SkipBody,
  Dead,
}

export class StreamDeframer {
  private state = State.Start;
  private length = 0;
  private digits = 0;
  /** Bytes of the current frame already seen (line prefix, or body being filled). */
  private pending: Buffer | null = null;
  private pendingLen = 0;
  private remaining = 0;

  constructor(
    private readonly limits: FramingLimits,
    private readonly sink: FramingSink,
  ) {}

  get dead(): boolean {
    return this.state === State.Dead;
  }

  /** Feeds a chunk; returns false once the stream is unusable (the caller closes it). */
  push(chunk: Buffer): boolean {
    const len = chunk.length;
    let i = 0;
    while (i < len) {
      switch (this.state) {
        case State.Start: {
          const b = chunk[i] as number;
          if (b === LF || b === CR) {
            i++; // empty line between frames: nothing to report
          } else if (b > D0 && b <= D9) {
            this.state = State.Length;
            this.length = 0;
            this.digits = 0;
          } else {
            this.state = State.Line;
          }
          break;
        }
        case State.Length: {
          const b = chunk[i] as number;
          if (b >= D0 && b <= D9) {
            this.length = this.length * 10 + (b - D0);
            this.digits++;
            i++;
            if (this.digits > MAX_LEN_DIGITS) {
              this.fail('bad-octet-count');
              return false;
            }
          } else if (b === SP) {
            i++;
            if (this.length > this.limits.maxMessageBytes) {
              this.sink.problem('message-too-large', false);
              this.remaining = this.length;
              this.state = State.SkipBody;
            } else {
              this.remaining = this.length;
              this.pending = null;
              this.pendingLen = 0;
              this.state = State.Body;
            }
          } else {
            // Not a length after all: the digits begin an LF-terminated line.
            const prefix = Buffer.from(String(this.length).padStart(this.digits, '0'));
            this.pending = prefix;
            this.pendingLen = prefix.length;
            this.state = State.Line;
          }
          break;
        }
        case State.Body: {
          const avail = len - i;
          if (this.pending === null && avail >= this.remaining) {
            const end = i + this.remaining;
            this.state = State.Start;
            this.sink.message(chunk, i, end, 'octet');
            i = end;
            break;
          }
          if (this.pending === null) this.pending = Buffer.allocUnsafe(this.length);
          const take = Math.min(avail, this.remaining);
          chunk.copy(this.pending, this.pendingLen, i, i + take);
          this.pendingLen += take;
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) {
            const body = this.pending;
            this.pending = null;
            this.pendingLen = 0;
            this.state = State.Start;
            this.sink.message(body, 0, body.length, 'octet');
          }
          break;
        }
        case State.Line: {
          const nl = chunk.indexOf(LF, i);
          if (nl < 0) {
            const add = len - i;
            if (this.pendingLen + add > this.limits.maxLineBytes) {
              this.sink.problem('line-too-long', false);
              this.pending = null;
              this.pendingLen = 0;
              this.state = State.SkipLine;
            } else {
              const part = chunk.subarray(i, len);
              this.pending = this.pending === null ? Buffer.from(part) : Buffer.concat([this.pending, part]);
              this.pendingLen = this.pending.length;
            }
            i = len;
            break;
          }
          let end = nl;
          if (this.pending === null) {
            if (end > i && chunk[end - 1] === CR) end--;
            this.state = State.Start;
            if (end - i > this.limits.maxLineBytes) this.sink.problem('line-too-long', false);
            else this.sink.message(chunk, i, end, 'lf');
          } else {
            const whole = Buffer.concat([this.pending, chunk.subarray(i, nl)]);
            this.pending = null;
            this.pendingLen = 0;
            this.state = State.Start;
            let wEnd = whole.length;
            if (wEnd > 0 && whole[wEnd - 1] === CR) wEnd--;
            if (wEnd > this.limits.maxLineBytes) this.sink.problem('line-too-long', false);
            else this.sink.message(whole, 0, wEnd, 'lf');
          }
          i = nl + 1;
          break;
        }
        case State.SkipLine: {
          const nl = chunk.indexOf(LF, i);
          if (nl < 0) {
            i = len;
          } else {
            i = nl + 1;
            this.state = State.Start;
          }
          break;
        }
        case State.SkipBody: {
          const take = Math.min(len - i, this.remaining);
          this.remaining -= take;
          i += take;
          if (this.remaining === 0) this.state = State.Start;
          break;
        }
        case State.Dead:
          return false;
      }
    }
    return true;
  }

  /**
   * End of stream. A last LF line without its LF is still a message (several senders omit the
   * final trailer); a truncated octet-counted frame is not.
   */
  end(): void {
    if (this.state === State.Line && this.pending !== null && this.pendingLen > 0) {
      const p = this.pending;
      let e = p.length;
      if (p[e - 1] === CR) e--;
      if (e > 0) this.sink.message(p, 0, e, 'lf');
    } else if (this.state === State.Body || (this.state === State.Length && this.digits > 0)) {
      this.sink.problem('bad-octet-count', true);
    }
    this.pending = null;
    this.pendingLen = 0;
    this.state = State.Dead;
  }

  private fail(kind: FramingProblem): void {
    this.state = State.Dead;
    this.pending = null;
    this.sink.problem(kind, true);
  }
}
