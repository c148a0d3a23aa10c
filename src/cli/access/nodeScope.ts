/**
 * `--node NODE` without `--dc`: the datacenter is the node's own, looked up in the catalog of
 * every datacenter the local agent knows. A node no datacenter has is refused (even with
 * --force: there is no datacenter to guess, and an entry under the wrong one is read by nobody);
 * a node name found in more than one datacenter must be told apart with --dc.
 */
import { closest } from '../../core/suggest.js';
import { shortNodeName } from '../../core/kvLayout.js';
import { CatalogView } from './checks.js';
import { type CommonOpts, withContext } from './context.js';
import { RefusedError, UsageError, quoted } from './errors.js';
import { type ScopeSel, scopeFromOptions } from './layout.js';

export interface NodeScopeOpts {
  readonly dc?: string;
  readonly node?: string;
}

/** A valid datacenter name that stands in for the one to look up, so the node's own text is checked before Consul is asked. */
const ANY_DC = 'dc';

/** Checks the --dc/--node text without Consul (a node alone is fine: its dc is looked up later). */
export function checkScopeOptions(opts: NodeScopeOpts): void {
  scopeFromOptions(opts.node !== undefined && opts.dc === undefined ? { node: opts.node, dc: ANY_DC } : opts);
}

/** The datacenters whose catalog lists `node` (short, lower-case name), and every datacenter searched. */
export async function findNodeDcs(view: CatalogView, node: string): Promise<{ found: string[]; searched: string[]; near: string | null }> {
  const short = shortNodeName(node);
  const searched = await view.datacenters();
  const found: string[] = [];
  const names = new Set<string>();
  for (const dc of searched) {
    const nodes = (await view.nodes(dc)).map((n) => shortNodeName(n.name));
    if (nodes.includes(short)) found.push(dc);
    for (const n of nodes) names.add(n);
  }
  return { found, searched, near: found.length > 0 ? null : closest(short, [...names].sort()) };
}

/** `--dc` for a `--node` given alone: its one datacenter in the catalog. */
export async function nodeDatacenter(view: CatalogView, node: string): Promise<string> {
  let r: Awaited<ReturnType<typeof findNodeDcs>>;
  try {
    r = await findNodeDcs(view, node);
  } catch (err) {
    throw new RefusedError(
      `${quoted('--node', node)} without --dc: the catalog could not be read to find its datacenter (${(err as Error).message}); give --dc DC; nothing written`,
    );
  }
  const [only, ...more] = r.found;
  if (only !== undefined && more.length === 0) return only;
  if (only !== undefined) throw new UsageError(quoted('--node', node), `is in ${r.found.join(' and ')}: say which with --dc`);
  const hint = r.near === null ? ';' : `; did you mean ${r.near}?`;
  const where = `${r.searched.length === 1 ? 'datacenter' : 'datacenters'} ${r.searched.join(', ') || '(none)'}`;
  throw new RefusedError(
    `${quoted('--node', node)}: no such node in the catalog of ${where}${hint} nothing written (for a node not registered yet, give --dc DC and --force)`,
  );
}

/** The scope of --dc/--node, looking up the node's datacenter when only --node is given. */
export async function scopeWithNodeDc(opts: NodeScopeOpts & CommonOpts): Promise<ScopeSel> {
  checkScopeOptions(opts);
  if (opts.node === undefined || opts.dc !== undefined) return scopeFromOptions(opts);
  const node = opts.node;
  const dc = await withContext(opts, (ctx) => nodeDatacenter(new CatalogView(ctx.consul), node));
  return scopeFromOptions({ dc, node });
}
