/**
 * The PROXY protocol header (HAProxy's proxy-protocol.txt), versions 1 and 2, as a load balancer
 * sends it ahead of the proxied stream (`send-proxy`, `send-proxy-v2`) or ahead of a datagram
 * (version 2 only). Pure: bytes in, a verdict out.
 *
 * The header is parsed strictly: a v1 line is at most 107 bytes with CRLF, TCP4/TCP6 addresses
 * must parse as addresses of that family and ports as 0..65535 without leading zeros; a v2 header
 * must carry version 2, a known command, and an address block as long as its family needs. TLVs
 * are skipped, but their total is bounded. LOCAL (v2) and UNKNOWN (v1) mean "no client address":
 * the connection's own peer stands for the sender, as the specification says.
 */
import { canonicalIp } from '../../core/netMatch.js';

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ');
/** 107 bytes is the largest v1 header the specification allows, CRLF included. */
export const V1_MAX = 107;
/** v2 fixed part (16) + largest address block (216, unix) + room for TLVs HAProxy sends. */
export const V2_MAX = 16 + 216 + 1024;

export interface ProxySource {
  readonly address: string;
  readonly port: number;
}

export type ProxyParse =
  | { readonly kind: 'incomplete' }
  | { readonly kind: 'error'; readonly reason: string }
  /** source null: LOCAL / UNKNOWN, use the connection's peer. */
  | {
      readonly kind: 'ok';
      readonly version: 1 | 2;
      readonly length: number;
      readonly source: ProxySource | null;
      readonly transport: 'stream' | 'dgram' | 'unspec';
    };

const INCOMPLETE: ProxyParse = { kind: 'incomplete' };

function error(reason: string): ProxyParse {
  return { kind: 'error', reason };
}

/** Parses a header at the start of `buf`; `datagram` refuses v1, which has no datagram form. */
export function parseProxyHeader(buf: Buffer, datagram = false): ProxyParse {
  if (buf.length === 0) return INCOMPLETE;
  const first = buf[0];
  if (first === V2_SIGNATURE[0]) return parseV2(buf, datagram);
  if (first === V1_PREFIX[0]) {
    if (datagram) return error('PROXY protocol v1 cannot carry a datagram');
    return parseV1(buf);
  }
  return error('no PROXY protocol header');
}

function startsWithPrefix(buf: Buffer, prefix: Buffer): boolean | null {
  const n = Math.min(buf.length, prefix.length);
  for (let i = 0; i < n; i++) if (buf[i] !== prefix[i]) return false;
  return buf.length >= prefix.length ? true : null;
}

const PORT = /^(?:0|[1-9][0-9]{0,4})$/;

function parsePort(text: string): number | null {
  if (!PORT.test(text)) return null;
  const n = Number(text);
  return n <= 65535 ? n : null;
}

function parseV1(buf: Buffer): ProxyParse {
  const pre = startsWithPrefix(buf, V1_PREFIX);
  if (pre === false) return error('no PROXY protocol header');
  if (pre === null) return INCOMPLETE;
  const limit = Math.min(buf.length, V1_MAX);
  let crlf = -1;
  for (let i = V1_PREFIX.length; i < limit - 1; i++) {
    if (buf[i] === 0x0d && buf[i + 1] === 0x0a) {
      crlf = i;
      break;
    }
  }
  if (crlf < 0) return buf.length >= V1_MAX ? error('PROXY v1 header longer than 107 bytes') : INCOMPLETE;
  const line = buf.toString('latin1', 0, crlf);
  if (!/^[\x20-\x7e]*$/.test(line)) return error('PROXY v1 header holds non-printable bytes');
  const parts = line.split(' ');
  const proto = parts[1];
  const length = crlf + 2;
  if (proto === 'UNKNOWN') return { kind: 'ok', version: 1, length, source: null, transport: 'unspec' };
  if (proto !== 'TCP4' && proto !== 'TCP6') return error(`PROXY v1 protocol "${proto ?? ''}" is not TCP4, TCP6 or UNKNOWN`);
  if (parts.length !== 6) return error('PROXY v1 header needs: PROXY proto src dst srcport dstport');
  const [, , srcText = '', dstText = '', sportText = '', dportText = ''] = parts;
  const src = canonicalIp(srcText);
  const dst = canonicalIp(dstText);
  if (src === null || dst === null) return error('PROXY v1 header holds a bad address');
  const v6 = proto === 'TCP6';
  // TCP4 must hold dotted quads; TCP6 must hold IPv6 text (a mapped IPv4 is allowed there).
  if (!v6 && (srcText.includes(':') || dstText.includes(':'))) return error('PROXY v1 TCP4 header holds an IPv6 address');
  if (v6 && (!srcText.includes(':') || !dstText.includes(':'))) return error('PROXY v1 TCP6 header holds an IPv4 address');
  const sport = parsePort(sportText);
  const dport = parsePort(dportText);
  if (sport === null || dport === null) return error('PROXY v1 header holds a bad port');
  return { kind: 'ok', version: 1, length, source: { address: src, port: sport }, transport: 'stream' };
}

function ipv4At(buf: Buffer, at: number): string {
  return `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
}

function ipv6At(buf: Buffer, at: number): string | null {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + i * 2).toString(16));
  return canonicalIp(groups.join(':'));
}

function parseV2(buf: Buffer, datagram: boolean): ProxyParse {
  const pre = startsWithPrefix(buf, V2_SIGNATURE);
  if (pre === false) return error('no PROXY protocol header');
  if (buf.length < 16) return INCOMPLETE;
  const verCmd = buf[12] as number;
  if (verCmd >> 4 !== 2) return error(`PROXY v2 header has version ${verCmd >> 4}`);
  const command = verCmd & 0x0f;
  if (command > 1) return error(`PROXY v2 header has unknown command ${command}`);
  const famProto = buf[13] as number;
  const family = famProto >> 4;
  const proto = famProto & 0x0f;
  const bodyLen = buf.readUInt16BE(14);
  const length = 16 + bodyLen;
  if (length > V2_MAX) return error(`PROXY v2 header of ${length} bytes is above the ${V2_MAX}-byte limit`);
  if (buf.length < length) return INCOMPLETE;
  if (family > 3 || proto > 2) return error(`PROXY v2 header has unknown family/transport 0x${famProto.toString(16)}`);
  const transport = proto === 1 ? 'stream' : proto === 2 ? 'dgram' : 'unspec';
  // LOCAL: health checks and the proxy's own traffic; addresses, if any, are to be ignored.
  if (command === 0) return { kind: 'ok', version: 2, length, source: null, transport };
  if (datagram && proto === 1) return error('PROXY v2 header announces a stream ahead of a datagram');
  if (!datagram && proto === 2) return error('PROXY v2 header announces a datagram on a stream');
  if (family === 0 || proto === 0) return { kind: 'ok', version: 2, length, source: null, transport };
  if (family === 3) return { kind: 'ok', version: 2, length, source: null, transport }; // unix sockets: no address
  const need = family === 1 ? 12 : 36;
  if (bodyLen < need) return error(`PROXY v2 address block of ${bodyLen} bytes is short (needs ${need})`);
  if (family === 1) {
    const address = ipv4At(buf, 16);
    return { kind: 'ok', version: 2, length, source: { address, port: buf.readUInt16BE(24) }, transport };
  }
  const address = ipv6At(buf, 16);
  if (address === null) return error('PROXY v2 header holds a bad IPv6 address');
  return { kind: 'ok', version: 2, length, source: { address, port: buf.readUInt16BE(48) }, transport };
}

/** Builds headers; used by tests, the benchmark and anyone who wants to check a proxy by hand. */
export function buildProxyV1(src: string, dst: string, sport: number, dport: number): Buffer {
  const proto = src.includes(':') ? 'TCP6' : 'TCP4';
  return Buffer.from(`PROXY ${proto} ${src} ${dst} ${sport} ${dport}\r\n`, 'latin1');
}

export function buildProxyV2(
  src: string,
  dst: string,
  sport: number,
  dport: number,
  opts: { dgram?: boolean; local?: boolean; tlv?: Buffer } = {},
): Buffer {
  const v6 = src.includes(':');
  const addrLen = v6 ? 36 : 12;
  const tlv = opts.tlv ?? Buffer.alloc(0);
  const out = Buffer.alloc(16 + addrLen + tlv.length);
  V2_SIGNATURE.copy(out, 0);
  out[12] = 0x20 | (opts.local === true ? 0 : 1);
  out[13] = ((v6 ? 2 : 1) << 4) | (opts.dgram === true ? 2 : 1);
  out.writeUInt16BE(addrLen + tlv.length, 14);
  const put = (addr: string, at: number): void => {
    if (!v6) {
      addr.split('.').forEach((o, i) => (out[at + i] = Number(o)));
      return;
    }
    const full = expandV6(addr);
    full.forEach((g, i) => out.writeUInt16BE(g, at + i * 2));
  };
  put(src, 16);
  put(dst, v6 ? 32 : 20);
  out.writeUInt16BE(sport, v6 ? 48 : 24);
  out.writeUInt16BE(dport, v6 ? 50 : 26);
  tlv.copy(out, 16 + addrLen);
  return out;
}

function expandV6(addr: string): number[] {
  const [head = '', tail] = addr.split('::');
  const h = head === '' ? [] : head.split(':');
  const t = tail === undefined || tail === '' ? [] : tail.split(':');
  const zeros = tail === undefined ? [] : Array<string>(8 - h.length - t.length).fill('0');
  return [...h, ...zeros, ...t].map((g) => parseInt(g, 16));
}
