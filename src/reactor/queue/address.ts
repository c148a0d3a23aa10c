/**
 * Where a beanstalkd listens: `host:port`, `[ipv6]:port`, or `unix:/absolute/path`.
 */
export type QueueAddress =
  | { readonly kind: 'tcp'; readonly host: string; readonly port: number; readonly text: string }
  | { readonly kind: 'unix'; readonly path: string; readonly text: string };

const HOST = /^[A-Za-z0-9.-]{1,253}$/;

export function parseQueueAddress(text: string): QueueAddress | string {
  if (text.startsWith('unix:')) {
    const path = text.slice(5);
    if (!path.startsWith('/') || /[\u0000-\u001f]/.test(path) || path.length > 107)
      return 'expected unix:/absolute/path (at most 107 characters)';
    return { kind: 'unix', path, text };
  }
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return 'expected [ipv6]:port';
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!/^[0-9A-Fa-f:.]{2,45}$/.test(host)) return 'expected [ipv6]:port';
  } else {
    const colon = text.lastIndexOf(':');
    if (colon <= 0) return 'expected host:port, [ipv6]:port or unix:/path';
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (!HOST.test(host)) return 'expected host:port, [ipv6]:port or unix:/path';
  }
  if (!/^[1-9][0-9]{0,4}$/.test(portText) || Number(portText) > 65535) return `bad port "${portText}"`;
  return { kind: 'tcp', host, port: Number(portText), text };
}
