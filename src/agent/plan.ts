/**
 * One plan computed the way the agent computes it, for `befw plan` and `befw show`: read a
 * snapshot from the local Consul agent and the local files, compile it for `now`. Nothing is
 * applied and nothing is watched.
 */
import type { Config } from '../config/config.js';
import { resolveToken } from '../config/load.js';
import { createConsulApi } from '../consul/client.js';
import { compile } from '../core/compile.js';
import type { Plan } from '../core/types.js';
import { readSnapshot } from './inputs/snapshot.js';
import { compileOptions } from './reconciler.js';

export async function computePlan(config: Config, now: number): Promise<Plan> {
  const token = await resolveToken(config);
  const consul = createConsulApi({ ...config.consul, token, timeoutMs: config.consulTimeout * 1000 });
  const snapshot = await readSnapshot(consul, config);
  return compile(snapshot, compileOptions(config), now);
}
