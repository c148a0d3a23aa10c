/**
 * Metrics and health over HTTP, off by default and bound to a loopback address when on:
 *   /metrics  Prometheus text (prom-client)
 *   /healthz  200 while the process runs and no reconcile has been stuck for minutes
 *   /readyz   200 once the first apply is done and Consul answers or state.bin is enforced
 */
import { type Server, createServer } from 'node:http';
import type { Metrics } from './metrics.js';

export interface Health {
  healthy(): { ok: boolean; detail: string };
  ready(): { ok: boolean; detail: string };
}

export async function startHttpEndpoint(host: string, port: number, metrics: Metrics, health: Health): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const reply = (code: number, body: string, type = 'text/plain; charset=utf-8'): void => {
      res.writeHead(code, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET') return reply(405, 'GET only\n');
    if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => reply(200, text, metrics.registry.contentType),
        (err: unknown) => reply(500, `${String(err)}\n`),
      );
      return;
    }
    if (path === '/healthz' || path === '/readyz') {
      const r = path === '/healthz' ? health.healthy() : health.ready();
      return reply(r.ok ? 200 : 503, `${r.detail}\n`);
    }
    reply(404, 'not found: /metrics, /healthz, /readyz\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}
