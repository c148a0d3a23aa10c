/**
 * The parser's sockets: TCP (both RFC 6587 framings) and UDP (one message per datagram), each
 * optionally behind the PROXY protocol. Who may talk is decided before a byte is parsed:
 *   - on a PROXY listener only trusted proxies may connect, and the header must arrive within a
 *     deadline; the device is the address the header names (the proxy itself for LOCAL/UNKNOWN);
 *   - on a plain listener the peer is the device;
 *   - either way the device must be one of parser.devices (for a proxied device, checked at its
 *     first byte of data: a load balancer's health check, a header and nothing else, is not an
 *     attack).
 * A datagram's source address can be forged, a PROXY header in a datagram too: everything read
 * over UDP is marked so, and may trigger only what the device allows for UDP (thresholds.ts).
 *
 * Fair bounds, so that one device cannot lock the others out: at most maxConnectionsPerDevice
 * connections per device; at the listener's maxConnections, a newcomer takes the least recently
 * useful connection of the device holding the most (when that device holds more than the
 * newcomer would); a connection that delivers no complete message for idleTimeout is closed
 * (a byte now and then does not keep it). Also bounded: header size and time, line and message
 * size (in the deframer), datagram size. Everything refused is counted through the pipeline and
 * never throws out of a handler.
 */
import { type Socket as DgramSocket, type RemoteInfo, createSocket } from 'node:dgram';
import { type Server, type Socket, createServer } from 'node:net';
import type { Logger } from 'pino';
import { StreamDeframer } from './framing.js';
import { canonicalIp } from '../../core/netMatch.js';
import type { Sender, SyslogPipeline } from './pipeline.js';
import { V2_MAX, parseProxyHeader } from './proxyProtocol.js';
import type { DevicePolicy, ListenerConfig, ParserConfig } from '../config/reactorConfig.js';

interface Slot {
  readonly sock: Socket;
  key: string;
  /** When it last delivered a complete message (or connected). */
  lastMessageMs: number;
}

/** One TCP listener's connections, by the device (or, before its header, the proxy) they belong to. */
class Slots {
  readonly byKey = new Map<string, Set<Slot>>();
  readonly all = new Set<Slot>();

  count(key: string): number {
    return this.byKey.get(key)?.size ?? 0;
  }

  add(slot: Slot): void {
    this.all.add(slot);
    let set = this.byKey.get(slot.key);
    if (set === undefined) this.byKey.set(slot.key, (set = new Set()));
    set.add(slot);
  }

  remove(slot: Slot): void {
    this.all.delete(slot);
    const set = this.byKey.get(slot.key);
    set?.delete(slot);
    if (set?.size === 0) this.byKey.delete(slot.key);
  }

  rekey(slot: Slot, key: string): void {
    this.remove(slot);
    slot.key = key;
    this.add(slot);
  }

  /** The least recently useful connection of the key holding the most, when it holds more than `than`. */
  victim(than: number): Slot | null {
    let top: Set<Slot> | null = null;
    for (const set of this.byKey.values()) if (top === null || set.size > top.size) top = set;
    if (top === null || top.size <= than) return null;
    let oldest: Slot | null = null;
    for (const s of top) if (oldest === null || s.lastMessageMs < oldest.lastMessageMs) oldest = s;
    return oldest;
  }
}

export interface BoundListener {
  readonly config: ListenerConfig;
  /** The port actually bound (differs from the config only for port 0 in tests). */
  readonly port: number;
}

export class SyslogListeners {
  private readonly servers: Server[] = [];
  private readonly dgrams: DgramSocket[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly timers: NodeJS.Timeout[] = [];
  readonly bound: BoundListener[] = [];

  constructor(
    private readonly parser: ParserConfig,
    private readonly pipeline: SyslogPipeline,
    private readonly log: Logger,
  ) {}

  get connections(): number {
    return this.sockets.size;
  }

  async start(): Promise<void> {
    for (const l of this.parser.listeners) {
      if (l.protocol === 'tcp') await this.startTcp(l);
      else await this.startUdp(l);
    }
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    await Promise.all(
      this.servers
        .map((s) => new Promise<void>((resolve) => s.close(() => resolve())))
        .concat(this.dgrams.map((d) => new Promise<void>((resolve) => d.close(() => resolve()))))
        .concat(this.endSockets()),
    );
  }

  private endSockets(): Promise<void>[] {
    return [...this.sockets].map(
      (s) =>
        new Promise<void>((resolve) => {
          s.once('close', () => resolve());
          s.end();
          setTimeout(() => s.destroy(), 1000).unref();
        }),
    );
  }

  private startTcp(l: ListenerConfig): Promise<void> {
    const slots = new Slots();
    const server = createServer({ noDelay: true }, (sock) => this.onConnection(sock, l, slots));
    // Idle: no complete message for idleTimeout. Checked a few times per period, not per byte.
    const idle = this.parser.idleTimeoutMs;
    const sweep = setInterval(
      () => {
        const now = Date.now();
        for (const s of slots.all) if (now - s.lastMessageMs >= idle) s.sock.destroy();
      },
      Math.max(100, Math.min(5000, Math.floor(idle / 4))),
    );
    sweep.unref();
    this.timers.push(sweep);
    server.on('error', (err) => this.log.error({ event: 'listener-error', listener: l.name, err: err.message }, 'listener error'));
    this.servers.push(server);
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: l.address, port: l.port, ipv6Only: false }, () => {
        server.off('error', reject);
        const a = server.address();
        this.bound.push({ config: l, port: typeof a === 'object' && a !== null ? a.port : l.port });
        resolve();
      });
    });
  }

  private onConnection(sock: Socket, l: ListenerConfig, slots: Slots): void {
    sock.on('error', () => undefined); // resets by the peer are normal; 'close' cleans up
    // Gone before we looked (a load balancer's connect-only health check resets at once): nothing to count.
    if (sock.remoteAddress === undefined) {
      sock.destroy();
      return;
    }
    const peer = canonicalIp(sock.remoteAddress) ?? '';
    const refuse = (reason: string, detail: string, device: string | null): void => {
      this.pipeline.problem({ reason, detail, device, listener: l.name });
      sock.destroy();
    };
    if (l.proxyProtocol && !this.parser.trustedProxies.has(peer))
      return refuse('untrusted-proxy', `${peer} is not in trustedProxies`, peer);
    const directPolicy = l.proxyProtocol ? null : this.parser.devices.lookup(peer);
    if (!l.proxyProtocol && directPolicy === null) return refuse('device-not-allowed', `${peer} is not one of parser.devices`, peer);
    const key = l.proxyProtocol ? `proxy ${peer}` : peer;
    const perDevice = this.parser.maxConnectionsPerDevice;
    if (!l.proxyProtocol && slots.count(key) >= perDevice)
      return refuse('too-many-connections', `${peer} already holds ${perDevice} connections (maxConnectionsPerDevice)`, peer);
    if (slots.all.size >= this.parser.maxConnections) {
      const victim = slots.victim(slots.count(key) + 1);
      if (victim === null) return refuse('too-many-connections', `connection refused at the limit of ${this.parser.maxConnections}`, peer);
      this.pipeline.problem({
        reason: 'connection-evicted',
        detail: `at the limit of ${this.parser.maxConnections}: the least useful connection of ${victim.key} made room for ${peer}`,
        device: victim.key,
        listener: l.name,
      });
      slots.remove(victim);
      victim.sock.destroy();
    }
    const slot: Slot = { sock, key, lastMessageMs: Date.now() };
    slots.add(slot);
    this.sockets.add(sock);
    sock.once('close', () => {
      this.sockets.delete(sock);
      slots.remove(slot);
    });

    let sender: Sender | null =
      directPolicy === null ? null : { address: peer, via: 'direct', listener: l.name, transport: 'tcp', policy: directPolicy };
    let header: Buffer | null = null;
    // A proxied device outside allowedDevices is refused at its first byte of data, not at the
    // header: a load balancer's health check (a header, then nothing) must not count as an attack.
    let notAllowed: string | null = null;
    const deframer = new StreamDeframer(this.parser, {
      message: (buf, start, end) => {
        if (sender === null) return;
        const now = Date.now();
        slot.lastMessageMs = now;
        this.pipeline.handleBuffer(buf, start, end, sender, now);
      },
      problem: (kind, fatal) =>
        this.pipeline.problem({
          reason: kind,
          detail: fatal ? 'stream out of step; connection closed' : 'skipped to the end of the frame',
          device: sender?.address ?? peer,
          listener: l.name,
        }),
    });
    const headerTimer = l.proxyProtocol
      ? setTimeout(
          () => refuse('bad-proxy-header', `no PROXY header within ${this.parser.proxyHeaderTimeoutMs} ms`, peer),
          this.parser.proxyHeaderTimeoutMs,
        )
      : null;

    sock.on('data', (chunk: Buffer) => {
      if (sender === null) {
        header = header === null ? chunk : Buffer.concat([header, chunk]);
        const h = parseProxyHeader(header);
        if (h.kind === 'incomplete') {
          if (header.length > V2_MAX) refuse('bad-proxy-header', 'PROXY header too long', peer);
          return;
        }
        if (headerTimer !== null) clearTimeout(headerTimer);
        if (h.kind === 'error') return refuse('bad-proxy-header', h.reason, peer);
        const device = h.source?.address ?? peer;
        const policy: DevicePolicy | null = this.parser.devices.lookup(device);
        if (policy === null) notAllowed = `${device} (via ${peer}) is not one of parser.devices`;
        else if (slots.count(device) >= perDevice)
          return refuse('too-many-connections', `${device} (via ${peer}) already holds ${perDevice} connections`, device);
        else slots.rekey(slot, device);
        sender = {
          address: device,
          via: h.version === 1 ? 'proxy-v1' : 'proxy-v2',
          listener: l.name,
          transport: 'tcp',
          policy: policy ?? { name: 'none', hostnames: null, udpActions: [] },
        };
        const rest = header.subarray(h.length);
        header = null;
        if (rest.length > 0) {
          if (notAllowed !== null) return refuse('device-not-allowed', notAllowed, device);
          if (!deframer.push(rest)) sock.destroy();
        }
        return;
      }
      if (notAllowed !== null) return refuse('device-not-allowed', notAllowed, sender.address);
      if (!deframer.push(chunk)) sock.destroy();
    });
    sock.on('end', () => {
      if (headerTimer !== null) clearTimeout(headerTimer);
      if (sender !== null && notAllowed === null) deframer.end();
      sock.end();
    });
    sock.on('close', () => {
      if (headerTimer !== null) clearTimeout(headerTimer);
    });
  }

  private startUdp(l: ListenerConfig): Promise<void> {
    const v6 = l.address.includes(':');
    const sock = createSocket({ type: v6 ? 'udp6' : 'udp4', ipv6Only: false });
    sock.on('message', (msg, rinfo) => this.onDatagram(msg, rinfo, l));
    sock.on('error', (err) => this.log.error({ event: 'listener-error', listener: l.name, err: err.message }, 'listener error'));
    this.dgrams.push(sock);
    return new Promise((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: l.address, port: l.port }, () => {
        sock.off('error', reject);
        this.bound.push({ config: l, port: sock.address().port });
        resolve();
      });
    });
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo, l: ListenerConfig): void {
    const peer = canonicalIp(rinfo.address) ?? '';
    let start = 0;
    let address = peer;
    if (l.proxyProtocol) {
      if (!this.parser.trustedProxies.has(peer)) {
        this.pipeline.problem({ reason: 'untrusted-proxy', detail: `${peer} is not in trustedProxies`, device: peer, listener: l.name });
        return;
      }
      const h = parseProxyHeader(msg, true);
      if (h.kind !== 'ok') {
        this.pipeline.problem({
          reason: 'bad-proxy-header',
          detail: h.kind === 'error' ? h.reason : 'datagram shorter than its PROXY header',
          device: peer,
          listener: l.name,
        });
        return;
      }
      start = h.length;
      address = h.source?.address ?? peer;
    }
    // Both the datagram's source and a PROXY header in it can be forged: transport udp.
    const policy = this.parser.devices.lookup(address);
    if (policy === null) {
      this.pipeline.problem({
        reason: 'device-not-allowed',
        detail: `${address} is not one of parser.devices`,
        device: address,
        listener: l.name,
      });
      return;
    }
    const sender: Sender = { address, via: l.proxyProtocol ? 'proxy-v2' : 'direct', listener: l.name, transport: 'udp', policy };
    let end = msg.length;
    // One message per datagram (RFC 5426); trailing LF, CR or NUL are not part of it.
    while (end > start && (msg[end - 1] === 0x0a || msg[end - 1] === 0x0d || msg[end - 1] === 0)) end--;
    if (end - start > this.parser.maxMessageBytes) {
      this.pipeline.problem({
        reason: 'message-too-large',
        detail: `datagram of ${end - start} bytes is above ${this.parser.maxMessageBytes}`,
        device: sender.address,
        listener: l.name,
      });
      return;
    }
    if (end > start) this.pipeline.handleBuffer(msg, start, end, sender, Date.now());
  }
}
