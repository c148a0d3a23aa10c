/**
 * One syslog message, as text, into its parts: RFC 5424 when the PRI is followed by a version,
 * RFC 3164 (BSD) otherwise, including what relays really send: no PRI (a bare line), no
 * hostname, ISO timestamps (rsyslog's forwarding format), a day padded with a space.
 * rsyslog's "message repeated N times: [ ... ]" is unwrapped: the inner line gives the message
 * and N is how many occurrences it stands for, but only into the program that logged the wrapper:
 * an inner line naming another program is refused (anyone may log as nginx; that must not count
 * as sshd). The pipeline caps N.
 *
 * Pure and allocation-light: this runs for every message, at 100,000 messages a second.
 * A line that claims a format and breaks it (a bad PRI, a 5424 header with a missing field or a
 * broken structured-data element) is an error; a 3164 line without a header is not, because
 * RFC 3164 says such a line is all message.
 */

export interface SyslogMessage {
  readonly format: '5424' | '3164' | 'bare';
  /** Facility * 8 + severity; null when the line had no PRI. */
  readonly pri: number | null;
  readonly timestamp: string | null;
  readonly hostname: string | null;
  /** APP-NAME (5424) or TAG without its [pid] (3164). */
  readonly app: string | null;
  readonly procid: string | null;
  readonly msgid: string | null;
  readonly msg: string;
  /** Occurrences this message stands for: N for "message repeated N times", else 1. */
  readonly repeat: number;
  /**
   * Set when a "message repeated" wrapper names another program than the one that logged it
   * (`logger -t nginx 'message repeated 9 times: [ ... sshd[1]: Failed password ...]'`): it is
   * not unwrapped, so it matches nothing, and the pipeline counts it.
   */
  readonly repeatRefused?: true;
}

export type SyslogParse = { readonly ok: true; readonly value: SyslogMessage } | { readonly ok: false; readonly error: string };

const MONTHS = new Set(['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']);
const ISO_TS = /^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})$/;
const REPEATED = /^message repeated ([1-9][0-9]{0,8}) times: \[(.*)\]\s*$/s;
const MAX_TAG = 48;

function fail(error: string): SyslogParse {
  return { ok: false, error };
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** Index after `<PRI>`, with the PRI value, or an error text. */
function readPri(s: string): { end: number; pri: number } | string {
  let i = 1;
  let v = 0;
  while (i < s.length && i <= 4 && isDigit(s.charCodeAt(i))) {
    v = v * 10 + (s.charCodeAt(i) - 48);
    i++;
  }
  const digits = i - 1;
  if (digits === 0 || s.charCodeAt(i) !== 62 /* > */) return 'bad PRI (expected <0> to <191>)';
  if (digits > 3 || v > 191 || (digits > 1 && s.charCodeAt(1) === 48)) return 'bad PRI (expected <0> to <191>)';
  return { end: i + 1, pri: v };
}

export function parseSyslog(line: string): SyslogParse {
  if (line.length === 0) return fail('empty message');
  let pri: number | null = null;
  let at = 0;
  if (line.charCodeAt(0) === 60 /* < */) {
    const p = readPri(line);
    if (typeof p === 'string') return fail(p);
    pri = p.pri;
    at = p.end;
    // "<PRI>1 " is RFC 5424; an RFC 3164 header never starts with a lone small number.
    let j = at;
    while (j < line.length && j - at < 3 && isDigit(line.charCodeAt(j))) j++;
    if (j > at && line.charCodeAt(j) === 32 && j - at <= 2) {
      const version = Number(line.slice(at, j));
      if (version !== 1) return fail(`unsupported syslog version ${version}`);
      return parse5424(line, j + 1, pri);
    }
  }
  const r = parse3164(line, at, pri);
  return unwrapRepeated(r);
}

/** Next space-delimited token from `at`: [value, index after the space] or null at end of line. */
function token(s: string, at: number, max: number): [string, number] | null {
  const sp = s.indexOf(' ', at);
  const end = sp < 0 ? s.length : sp;
  if (end === at || end - at > max) return null;
  for (let k = at; k < end; k++) {
    const c = s.charCodeAt(k);
    if (c < 33 || c > 126) return null;
  }
  return [s.slice(at, end), sp < 0 ? s.length : sp + 1];
}

function nil(v: string): string | null {
  return v === '-' ? null : v;
}

function parse5424(s: string, at: number, pri: number): SyslogParse {
  const ts = token(s, at, 64);
  if (ts === null) return fail('RFC 5424: bad TIMESTAMP');
  if (ts[0] !== '-' && !ISO_TS.test(ts[0])) return fail('RFC 5424: TIMESTAMP is not an RFC 3339 time');
  const host = token(s, ts[1], 255);
  if (host === null) return fail('RFC 5424: bad HOSTNAME');
  const app = token(s, host[1], 48);
  if (app === null) return fail('RFC 5424: bad APP-NAME');
  const proc = token(s, app[1], 128);
  if (proc === null) return fail('RFC 5424: bad PROCID');
  const msgid = token(s, proc[1], 32);
  if (msgid === null) return fail('RFC 5424: bad MSGID');
  const sdEnd = skipStructuredData(s, msgid[1]);
  if (typeof sdEnd === 'string') return fail(`RFC 5424: ${sdEnd}`);
  let msg = '';
  if (sdEnd < s.length) {
    if (s.charCodeAt(sdEnd) !== 32) return fail('RFC 5424: expected a space after STRUCTURED-DATA');
    msg = s.slice(sdEnd + 1);
    if (msg.charCodeAt(0) === 0xfeff) msg = msg.slice(1);
  }
  const base: SyslogMessage = {
    format: '5424',
    pri,
    timestamp: nil(ts[0]),
    hostname: nil(host[0]),
    app: nil(app[0]),
    procid: nil(proc[0]),
    msgid: nil(msgid[0]),
    msg,
    repeat: 1,
  };
  return unwrapRepeated({ ok: true, value: base });
}

/** Index after STRUCTURED-DATA ("-" or one or more [id param="value" ...] elements). */
function skipStructuredData(s: string, at: number): number | string {
  if (at >= s.length) return 'missing STRUCTURED-DATA';
  if (s.charCodeAt(at) === 45 /* - */) return at + 1;
  if (s.charCodeAt(at) !== 91 /* [ */) return 'STRUCTURED-DATA must be "-" or start with "["';
  let i = at;
  while (i < s.length && s.charCodeAt(i) === 91) {
    i++;
    const idStart = i;
    while (i < s.length && isSdName(s.charCodeAt(i))) i++;
    if (i === idStart || i - idStart > 32) return 'bad SD-ID';
    for (;;) {
      const c = s.charCodeAt(i);
      if (c === 93 /* ] */) {
        i++;
        break;
      }
      if (c !== 32) return 'bad SD-ELEMENT';
      i++;
      const nameStart = i;
      while (i < s.length && isSdName(s.charCodeAt(i))) i++;
      if (i === nameStart || i - nameStart > 32) return 'bad SD-PARAM name';
      if (s.charCodeAt(i) !== 61 /* = */ || s.charCodeAt(i + 1) !== 34 /* " */) return 'bad SD-PARAM (expected name="value")';
      i += 2;
      for (;;) {
        if (i >= s.length) return 'unterminated SD-PARAM value';
        const v = s.charCodeAt(i);
        if (v === 92 /* \ */) {
          i += 2;
          continue;
        }
        i++;
        if (v === 34) break;
      }
    }
  }
  return i;
}

function isSdName(c: number): boolean {
  return c >= 33 && c <= 126 && c !== 61 && c !== 93 && c !== 34 && c !== 32;
}

/** Length of a 3164 timestamp at `at` ("Mmm dd hh:mm:ss" or ISO), or 0. */
function timestampLength(s: string, at: number): number {
  if (s.length - at >= 15 && MONTHS.has(s.slice(at, at + 3)) && s.charCodeAt(at + 3) === 32) {
    const d1 = s.charCodeAt(at + 4);
    const d2 = s.charCodeAt(at + 5);
    const ok =
      (d1 === 32 || isDigit(d1)) &&
      isDigit(d2) &&
      s.charCodeAt(at + 6) === 32 &&
      isDigit(s.charCodeAt(at + 7)) &&
      isDigit(s.charCodeAt(at + 8)) &&
      s.charCodeAt(at + 9) === 58 &&
      isDigit(s.charCodeAt(at + 10)) &&
      isDigit(s.charCodeAt(at + 11)) &&
      s.charCodeAt(at + 12) === 58 &&
      isDigit(s.charCodeAt(at + 13)) &&
      isDigit(s.charCodeAt(at + 14));
    return ok ? 15 : 0;
  }
  if (isDigit(s.charCodeAt(at)) && s.charCodeAt(at + 4) === 45 /* - */) {
    const sp = s.indexOf(' ', at);
    const end = sp < 0 ? s.length : sp;
    return end - at <= 35 && ISO_TS.test(s.slice(at, end)) ? end - at : 0;
  }
  return 0;
}

/** TAG[pid]: at `at` → [tag, pid, index of the message] or null when there is no valid tag. */
function readTag(s: string, at: number): [string, string | null, number] | null {
  let i = at;
  const limit = Math.min(s.length, at + MAX_TAG);
  while (i < limit) {
    const c = s.charCodeAt(i);
    if (c === 58 /* : */ || c === 91 /* [ */ || c <= 32 || c > 126) break;
    i++;
  }
  if (i === at || i >= s.length) return null;
  const tag = s.slice(at, i);
  let pid: string | null = null;
  if (s.charCodeAt(i) === 91) {
    const close = s.indexOf(']', i);
    if (close < 0 || close - i - 1 > 128 || close === i + 1) return null;
    pid = s.slice(i + 1, close);
    if (pid.includes(' ')) return null;
    i = close + 1;
  }
  if (s.charCodeAt(i) !== 58) return null;
  i++;
  if (s.charCodeAt(i) === 32) i++;
  return [tag, pid, i];
}

function parse3164(s: string, at: number, pri: number | null): SyslogParse {
  const tsLen = timestampLength(s, at);
  if (tsLen === 0 || s.charCodeAt(at + tsLen) !== 32) {
    // No header: RFC 3164 makes the whole rest the message.
    return {
      ok: true,
      value: { format: 'bare', pri, timestamp: null, hostname: null, app: null, procid: null, msgid: null, msg: s.slice(at), repeat: 1 },
    };
  }
  const timestamp = s.slice(at, at + tsLen);
  let i = at + tsLen + 1;
  // HOSTNAME, unless the next word is already the TAG (local logs without a hostname).
  let hostname: string | null = null;
  const direct = readTag(s, i);
  const sp = s.indexOf(' ', i);
  const wordEnd = sp < 0 ? s.length : sp;
  const wordIsTag = direct !== null && direct[2] <= wordEnd + 1 && s.charCodeAt(wordEnd - 1) === 58;
  if (!wordIsTag && sp > i && sp - i <= 255) {
    hostname = s.slice(i, sp);
    i = sp + 1;
  }
  const tag = wordIsTag ? direct : readTag(s, i);
  if (tag === null) {
    return {
      ok: true,
      value: { format: '3164', pri, timestamp, hostname, app: null, procid: null, msgid: null, msg: s.slice(i), repeat: 1 },
    };
  }
  return {
    ok: true,
    value: { format: '3164', pri, timestamp, hostname, app: tag[0], procid: tag[1], msgid: null, msg: s.slice(tag[2]), repeat: 1 },
  };
}

function unwrapRepeated(r: SyslogParse): SyslogParse {
  if (!r.ok) return r;
  const outer = r.value;
  if (!outer.msg.startsWith('message repeated ')) return r;
  const m = REPEATED.exec(outer.msg);
  if (m === null) return r;
  const repeat = Number(m[1]);
  const innerText = (m[2] ?? '').trim();
  if (innerText === '') return fail('"message repeated" without a message');
  // The inner text is either the bare message, or (some relays) a whole 3164 line without PRI.
  const inner = parse3164(innerText, 0, null);
  if (inner.ok && inner.value.format === '3164') {
    const v = inner.value;
    // Only the program that logged the wrapper may vouch for its repeats.
    if (v.app !== null && v.app !== outer.app) return { ok: true, value: { ...outer, repeatRefused: true } };
    return { ok: true, value: { ...outer, msg: v.msg, repeat } };
  }
  return { ok: true, value: { ...outer, msg: innerText, repeat } };
}
