/**
 * The backends, in one map (Renovate's registry shape): `firewall=` names one, and everything
 * the agent and the CLI need from it goes through its entry. Adding a backend is one folder under
 * src/dataplane/ and one line here.
 */
import type { Plan } from '../core/types.js';
import type { Dataplane } from './dataplane.js';
import { type CommandRunner, type LineSpawner, spawnLines } from './exec.js';
import { createDataplane } from './iptables/driver.js';
import { IPSET, RESTORE_ARGS } from './iptables/ipset.js';
import { BackendError, type Flavour, detectBackend, toolsFor } from './iptables/iptables.js';
import { isBefwTemplateJson, translateBefwTemplates } from './iptables/befwTemplates.js';
import { renderChainRestore } from './iptables/render.js';
import { retireIptables } from './iptables/retire.js';
import { kernelNamesFor } from './iptables/setNames.js';
import { DEFAULT_SERVICE_TEMPLATE, type ServiceTemplate, parseBaseTemplate, parseServiceTemplate } from './iptables/templates.js';
import { createNftDataplane, removeStaleTransactions } from './nft/driver.js';
import { GenerationWatch } from './nft/genWatch.js';
import { NFT } from './nft/readBack.js';
import { renderFull } from './nft/render.js';
import { dropNftTable } from './nft/retire.js';

export type BackendName = 'iptables' | 'nft';

export interface TemplateFile {
  readonly file: string;
  readonly text: string;
}

export interface BackendFiles {
  /** `rules=`: the per-service rule template (iptables). */
  readonly rules: TemplateFile | null;
  /** `base_rules=`: the base ruleset (iptables). */
  readonly base: TemplateFile | null;
}

export interface BackendSetup extends BackendFiles {
  readonly runner: CommandRunner;
  readonly iptablesTools: 'auto' | Flavour;
  readonly spawnLines?: LineSpawner;
  readonly now?: () => number;
}

export interface Backend {
  readonly name: BackendName;
  /** What runs, for logs, status and doctor (`nftables 1.0.6, table inet befw`). */
  readonly description: string;
  /** What the operator should know (a template this backend does not use). */
  readonly notes: readonly string[];
  readonly dataplane: Dataplane;
}

export interface BackendFactory {
  /** Commands worth keeping a process started for: the write on the propagation path. */
  readonly prewarm: readonly (readonly [string, readonly string[]])[];
  /** Checks the tools and parses the templates; touches nothing in the kernel. */
  prepare(setup: BackendSetup): Promise<Backend>;
  /** The plan as this backend writes it (`befw plan`); needs no tools. */
  render(plan: Plan, files: BackendFiles, nowMs: number): string;
}

/** befw's own template, or BEFW's JSON templates translated (befwTemplates.ts). */
function serviceTemplate(files: BackendFiles): ServiceTemplate {
  if (files.rules === null) return DEFAULT_SERVICE_TEMPLATE;
  const { text, file } = files.rules;
  return isBefwTemplateJson(text) ? translateBefwTemplates(text, file) : parseServiceTemplate(text, file);
}

const iptables: BackendFactory = {
  prewarm: [[IPSET, RESTORE_ARGS]],
  async prepare(setup) {
    const template = serviceTemplate(setup);
    const base = setup.base === null ? null : parseBaseTemplate(setup.base.text, setup.base.file);
    const detected = await detectBackend(setup.runner, setup.iptablesTools);
    const runner = setup.runner;
    return {
      name: 'iptables',
      description: `iptables + ipset, ${detected.backend === 'nft' ? 'nf_tables' : 'legacy'} tools (${detected.how}), chain BEFW`,
      notes: template.notes ?? [],
      dataplane: createDataplane(runner, toolsFor(detected.backend), { template, base, dropNftTable: () => dropNftTable(runner) }),
    };
  },
  render(plan, files) {
    const template = serviceTemplate(files);
    const names = kernelNamesFor(plan);
    return [4, 6]
      .map(
        (f) =>
          `# ${f === 4 ? 'iptables' : 'ip6tables'}-restore --noflush\n${renderChainRestore(plan.rules, f === 4 ? 4 : 6, template, false, names)}`,
      )
      .join('\n');
  },
};

const nft: BackendFactory = {
  prewarm: [[NFT, ['-f', '-']]],
  async prepare(setup) {
    if (setup.base !== null)
      throw new BackendError('base_rules= is for the iptables backend; keep the nftables base ruleset in /etc/nftables.conf');
    const v = await setup.runner.run(NFT, ['--version']);
    if (v.code !== 0)
      throw new BackendError(`firewall=nft but nft does not run: ${v.stderr.trim() || 'not installed (apt install nftables)'}`);
    await removeStaleTransactions();
    const watch = new GenerationWatch(setup.spawnLines ?? spawnLines);
    const runner = setup.runner;
    return {
      name: 'nft',
      description: `nftables (${v.stdout.trim().split('\n')[0] ?? 'nft'}), table inet befw`,
      notes:
        setup.rules === null
          ? []
          : [`rules=${setup.rules.file} is an iptables rule template: the nftables backend writes its own rules and does not use it`],
      dataplane: createNftDataplane(runner, {
        watch,
        now: setup.now ?? Date.now,
        retireIptables: (owned) => retireIptables(runner, owned, { onSpawn: (pid) => watch.ours(pid) }),
      }),
    };
  },
  render(plan, _files, nowMs) {
    return renderFull(plan, nowMs).text;
  },
};

export const BACKENDS: Readonly<Record<BackendName, BackendFactory>> = { iptables, nft };
