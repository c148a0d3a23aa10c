/**
 * Renders the plan's chain rules (data) into `iptables-restore` text at the edge. Two forms:
 * the chain alone, for `--noflush` (declaring `:BEFW` flushes just that chain, in the same
 * transaction as the new rules), and the whole base table with the chain filled in, for the
 * install at start. Only kernel set names (the plan's logical names through `KernelNames`),
 * validated ports and fixed words reach the text.
 */
import { type ChainRule, logPrefix, userChainOf } from '../../core/types.js';
import { OBSERVE_LOG_RATE, observeLogPrefix, observeLogs } from '../../core/observe.js';
import { TRAP_HASHLIMIT_NAME, TRAP_LOG_PER_SOURCE, TRAP_LOG_PREFIX, TRAP_LOG_RATE } from '../../core/trap.js';
import { type KernelNames, kernelNamesFor } from './setNames.js';
import type { BaseTemplate, ServiceTemplate } from './templates.js';

export const CHAIN = 'BEFW';
export type IpFamily = 4 | 6;

/**
 * What follows `-j` for a static set: the verdict, LOG with a prefix naming the set, NFLOG to
 * group 0 (what BEFW's bare `-j NFLOG` gives: befw/fwiptables.go:220-223), RETURN, or a user chain.
 */
function jumpText(r: Extract<ChainRule, { kind: 'static' }>): string {
  if (r.target === 'LOG') return `LOG --log-prefix "${logPrefix(r.set)}"`;
  if (r.target === 'NFLOG') return 'NFLOG --nflog-group 0';
  return userChainOf(r.target) ?? r.target;
}

/** `names`: the plan's ipset names (kernelNamesFor(plan)); by default the names these rules alone give. */
export function chainRuleLines(
  rules: readonly ChainRule[],
  family: IpFamily,
  template: ServiceTemplate,
  names: KernelNames = kernelNamesFor({ sets: [], rules }),
): string[] {
  const setName = (logical: string): string => names.set(logical, family === 4 ? 'inet' : 'inet6');
  const out: string[] = [];
  const head = template.head?.[family] ?? [];
  let headDone = false;
  for (const r of rules) {
    // BEFW's header rules sit after its static sets and ahead of the services (fwiptables.go:196-231).
    if (r.kind === 'service' && !headDone) {
      out.push(...head);
      headDone = true;
    }
    if (r.kind === 'loopback') {
      out.push(`-A ${CHAIN} -i lo -j ACCEPT`);
      continue;
    }
    if (r.kind === 'peers') {
      // New connections to Consul's ports; from Consul's ports only replies (ESTABLISHED): a
      // peer choosing source port 8301 must not reach every other port of the node.
      const m = `-p ${r.proto} -m set --match-set ${setName(r.set)} src -m multiport`;
      out.push(`-A ${CHAIN} ${m} --dports ${r.ports.join(',')} -j ACCEPT`);
      out.push(`-A ${CHAIN} ${m} --sports ${r.ports.join(',')} -m conntrack --ctstate ESTABLISHED -j ACCEPT`);
      continue;
    }
    if (r.kind === 'static') {
      out.push(`-A ${CHAIN} -m set --match-set ${setName(r.set)} src -j ${jumpText(r)}`);
      continue;
    }
    if (r.kind === 'trap') {
      // New connections only: a connection attempt is one line, not one per packet. Per source
      // first (one flooding source, forged or not, cannot spend the budget of the others), then
      // the global cap that keeps the journal bounded.
      const perSource = `-m hashlimit --hashlimit-upto ${TRAP_LOG_PER_SOURCE.perSecond}/sec --hashlimit-burst ${TRAP_LOG_PER_SOURCE.burst} --hashlimit-mode srcip --hashlimit-name ${TRAP_HASHLIMIT_NAME[family]}`;
      const limit = `-m conntrack --ctstate NEW ${perSource} -m limit --limit ${TRAP_LOG_RATE.perSecond}/sec --limit-burst ${TRAP_LOG_RATE.burst}`;
      out.push(`-A ${CHAIN} -p tcp -m multiport --dports ${r.ports.join(',')} ${limit} -j LOG --log-prefix "${TRAP_LOG_PREFIX}"`);
      continue;
    }
    // Observe is default mode plus a log line: the template's default lines apply to it.
    const mode = r.mode === 'observe' ? 'default' : r.mode;
    for (const line of template.lines) {
      if (line.only !== null && line.only !== mode) continue;
      out.push(
        line.text
          .replaceAll('{SET}', setName(r.set))
          .replaceAll('{NAME}', r.service)
          .replaceAll('{PROTO}', r.proto)
          .replaceAll('{PORT}', r.port),
      );
    }
    if (r.mode === 'observe' && observeLogs(r.proto)) {
      // After the template's ACCEPT of members: only non-clients reach it. Only connections that
      // completed the handshake (a forged source never sends the ACK), once each: packet 2 in the
      // original direction is the client's first ACK. connbytes turns conntrack accounting on.
      const once = '-m conntrack --ctstate ESTABLISHED -m connbytes --connbytes 2:2 --connbytes-dir original --connbytes-mode packets';
      const limit = `-m limit --limit ${OBSERVE_LOG_RATE.perSecond}/sec --limit-burst ${OBSERVE_LOG_RATE.burst}`;
      out.push(`-A ${CHAIN} -p ${r.proto} --dport ${r.port} ${once} ${limit} -j LOG --log-prefix "${observeLogPrefix(r.set)}"`);
    }
  }
  if (!headDone) out.push(...head);
  out.push(...(template.tail?.[family] ?? []));
  return out;
}

/** `--noflush` input replacing the BEFW chain; `insertJump` adds the INPUT jump in the same transaction. */
export function renderChainRestore(
  rules: readonly ChainRule[],
  family: IpFamily,
  template: ServiceTemplate,
  insertJump: boolean,
  names: KernelNames = kernelNamesFor({ sets: [], rules }),
): string {
  const lines = ['*filter', `:${CHAIN} - [0:0]`, ...chainRuleLines(rules, family, template, names)];
  if (insertJump) lines.push(`-I INPUT 1 -j ${CHAIN}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The base table with the BEFW chain's rules placed right before COMMIT. */
export function renderBaseRestore(
  base: BaseTemplate,
  rules: readonly ChainRule[],
  family: IpFamily,
  template: ServiceTemplate,
  names: KernelNames = kernelNamesFor({ sets: [], rules }),
): string {
  const icmp = family === 4 ? 'icmp' : 'ipv6-icmp';
  const lines = base.text.replaceAll('{ICMP}', icmp).split('\n');
  const commit = lines.findIndex((l) => l.trim() === 'COMMIT');
  const chain = chainRuleLines(rules, family, template, names);
  return [...lines.slice(0, commit), ...chain, ...lines.slice(commit)].join('\n').replace(/\n*$/, '\n');
}
