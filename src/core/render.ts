/**
 * Renders the plan's chain rules (data) into `iptables-restore` text at the edge. Two forms:
 * the chain alone, for `--noflush` (declaring `:BEFW` flushes just that chain, in the same
 * transaction as the new rules), and the whole base table with the chain filled in, for the
 * install at start. Only kernel set names, validated ports and fixed words reach the text.
 */
import { v6Name } from './setNames.js';
import type { BaseTemplate, ServiceTemplate } from './templates.js';
import type { ChainRule } from './types.js';

export const CHAIN = 'BEFW';
export type IpFamily = 4 | 6;

export function chainRuleLines(rules: readonly ChainRule[], family: IpFamily, template: ServiceTemplate): string[] {
  const setName = (base: string): string => (family === 4 ? base : v6Name(base));
  const out: string[] = [];
  for (const r of rules) {
    if (r.kind === 'loopback') {
      out.push(`-A ${CHAIN} -i lo -j ACCEPT`);
      continue;
    }
    if (r.kind === 'peers') {
      out.push(`-A ${CHAIN} -p ${r.proto} -m set --match-set ${setName(r.set)} src -m multiport --ports ${r.ports.join(',')} -j ACCEPT`);
      continue;
    }
    if (r.kind === 'static') {
      out.push(`-A ${CHAIN} -m set --match-set ${setName(r.set)} src -j ${r.target}`);
      continue;
    }
    for (const line of template.lines) {
      if (line.only !== null && line.only !== r.mode) continue;
      out.push(
        line.text
          .replaceAll('{SET}', setName(r.set))
          .replaceAll('{NAME}', r.service)
          .replaceAll('{PROTO}', r.proto)
          .replaceAll('{PORT}', r.port),
      );
    }
  }
  return out;
}

/** `--noflush` input replacing the BEFW chain; `insertJump` adds the INPUT jump in the same transaction. */
export function renderChainRestore(rules: readonly ChainRule[], family: IpFamily, template: ServiceTemplate, insertJump: boolean): string {
  const lines = ['*filter', `:${CHAIN} - [0:0]`, ...chainRuleLines(rules, family, template)];
  if (insertJump) lines.push(`-I INPUT 1 -j ${CHAIN}`);
  lines.push('COMMIT', '');
  return lines.join('\n');
}

/** The base table with the BEFW chain's rules placed right before COMMIT. */
export function renderBaseRestore(base: BaseTemplate, rules: readonly ChainRule[], family: IpFamily, template: ServiceTemplate): string {
  const icmp = family === 4 ? 'icmp' : 'ipv6-icmp';
  const lines = base.text.replaceAll('{ICMP}', icmp).split('\n');
  const commit = lines.findIndex((l) => l.trim() === 'COMMIT');
  const chain = chainRuleLines(rules, family, template);
  return [...lines.slice(0, commit), ...chain, ...lines.slice(commit)].join('\n').replace(/\n*$/, '\n');
}
