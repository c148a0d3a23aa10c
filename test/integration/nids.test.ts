/**
 * Trap ports (nids=true) and observe mode end to end, every part real except rsyslog's imklog
 * (see test/helpers/kmsgForward.ts for why):
 *
 *   client ns: TCP connection attempts to the node's trap ports (a port scan), to a service in
 *              mode observe (clients and non-clients)
 *   node ns:   befw agent -> iptables/nft LOG rules ("befw-trap ", "befw-obs:SET ")
 *   host:      the kernel's log ring (/dev/kmsg) -> kmsgForward (in the node ns) --TCP, RFC 5424,
 *              facility kern, octet-counted--> befw syslog (port-scan and observe triggers)
 *              -> beanstalkd -> befw responder (default actions: ban in rules_deny at world scope;
 *              observe into befw-observed/) -> Consul -> the agent refuses the scanner
 *   CLI:       befw observed, befw client add --from-observed
 *
 * The kernel logs packets of other network namespaces only with net.netfilter.nf_log_all_netns=1
 * (a host-wide switch, off by default since Linux 4.11): the test sets it and puts back the value
 * it found.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type AgentProcess, HELPERS, NODE_V4, Sandbox, clientV4, mgmtV4, nsExec, sleep } from '../helpers/sandbox.js';
import { type LabProcess, ReactorLab, labConfig } from '../helpers/reactorLab.js';
import type { ChildProcess } from 'node:child_process';

const WEB = 8080;
const APP = 9000;
const PARSER_PORT = 5141;
const ATTACKER = clientV4(5);
const OTHER = clientV4(6);
const VICTIM = clientV4(8);
const GRANTED = clientV4(3);
/** Plays a forged source: the client namespace drops the SYN-ACKs sent to it, so its handshakes never complete. */
const FORGED = clientV4(9);
const STRANGER = clientV4(4);
const MGMT = mgmtV4(3);
const NF_LOG_ALL_NETNS = '/proc/sys/net/netfilter/nf_log_all_netns';

for (const backend of ['iptables', 'nft'] as const) {
  describe(`trap ports and observe mode, firewall=${backend} (scan -> kernel log -> parser -> responder -> Consul -> agent)`, () => {
    let sb: Sandbox;
    let lab: ReactorLab;
    let agent: AgentProcess;
    let parser: LabProcess;
    let responder: LabProcess;
    let forwarder: ChildProcess;
    let befwConf = '';
    let nfLogBefore = '0';
    let traps: number[] = [];

    const nodeIface = (): string => {
      const out = nsExec(sb.nodeNs, 'ip', ['-o', 'link', 'show']);
      const name = out
        .split('\n')
        .map((l) => /^\d+: ([^:@]+)/.exec(l)?.[1])
        .find((n) => n !== undefined && n !== 'lo');
      if (name === undefined) throw new Error('no veth in the node namespace');
      return name;
    };

    /** The trap ports as the kernel holds them. */
    const kernelTraps = (): number[] => {
      const text =
        backend === 'iptables'
          ? nsExec(sb.nodeNs, 'iptables', ['-S', 'BEFW'])
          : nsExec(sb.nodeNs, 'nft', ['list', 'chain', 'inet', 'befw', 'input']);
      const line = text.split('\n').find((l) => l.includes('befw-trap'));
      if (line === undefined) return [];
      const m = backend === 'iptables' ? /--dports ([0-9,]+)/.exec(line) : /dport \{ ([0-9, ]+) \}/.exec(line);
      return (m?.[1] ?? '')
        .split(/[, ]+/)
        .filter((x) => x !== '')
        .map(Number);
    };

    /** Until the agent applied a plan from `source` (consul; at a restart state.bin's comes first, as `saved`). */
    const waitApplied = async (a: AgentProcess, source = 'consul'): Promise<void> => {
      const deadline = Date.now() + 20_000;
      while (!a.events().some((e) => e.event === 'applied' && e.source === source)) {
        if (Date.now() > deadline) throw new Error(`agent never applied:\n${sb.log('agent.log').slice(-3000)}`);
        await sleep(50);
      }
    };

    const kv = async (key: string): Promise<string | null> => {
      const r = await sb.consul('GET', `/v1/kv/${key.split('/').map(encodeURIComponent).join('/')}`);
      if (r.status === 404) return null;
      const v = (JSON.parse(r.body) as { Value: string | null }[])[0]?.Value ?? null;
      return v === null ? null : Buffer.from(v, 'base64').toString();
    };

    before(async () => {
      nfLogBefore = readFileSync(NF_LOG_ALL_NETNS, 'utf8').trim();
      writeFileSync(NF_LOG_ALL_NETNS, '1');
      sb = await Sandbox.create();
      lab = new ReactorLab(sb);
      await sb.registerService({ name: 'web', port: WEB, tags: ['befw'] });
      await sb.registerService({ name: 'app', port: APP, tags: ['befw', 'observe'] });
      await sb.kvPut(`befw/$service$/app_tcp_${APP}/${GRANTED}`, '-1');
      await sb.listen([WEB, APP]);
      befwConf = sb.writeFile(
        'befw.conf',
        [
          `services=${sb.dir}/services`,
          `ipsets=${sb.dir}/ipsets`,
          `state=${sb.dir}/state.bin`,
          'set.rules_allow=203.0.113.0/28',
          `firewall=${backend}`,
          'nids=true',
          // The integrity check reads the rules back every second (and the members every 2 s).
          'integrity_interval=1',
          'integrity_full_interval=2',
        ].join('\n'),
      );
      agent = sb.startAgent(befwConf);
      await lab.beanstalkd(11300);
      const config = lab.writeConfig(
        'reactor.json',
        labConfig({
          protect: ['203.0.113.0/28'],
          parser: {
            listeners: [{ protocol: 'tcp', address: '127.0.0.1', port: PARSER_PORT }],
            // The node's own rsyslog forwards its kernel lines: the node is the device.
            allowedDevices: ['127.0.0.1/32'],
          },
          // No actions named: port-scan and observed get their defaults.
          responder: { consul: { address: '127.0.0.1:8500' }, actions: {} },
        }),
      );
      parser = await lab.parser(config, 'parser.log');
      responder = await lab.responder(config, 'responder.log');
      forwarder = sb.spawnIn(
        sb.nodeNs,
        process.execPath,
        [
          join(HELPERS, 'kmsgForward.js'),
          '--iface',
          nodeIface(),
          '--host',
          '127.0.0.1',
          '--port',
          String(PARSER_PORT),
          '--hostname',
          'node1',
        ],
        'kmsg-forward.log',
      );
      const ready = Date.now() + 10_000;
      while (!sb.log('kmsg-forward.log').includes('"ready"')) {
        if (Date.now() > ready || forwarder.exitCode !== null) throw new Error(`forwarder: ${sb.log('kmsg-forward.log')}`);
        await sleep(20);
      }
      await waitApplied(agent);
    });

    after(async () => {
      forwarder?.kill('SIGTERM');
      for (const p of [parser, responder]) await p?.stop();
      if (agent !== undefined) await agent.stop();
      if (sb !== undefined) await sb.destroy();
      writeFileSync(NF_LOG_ALL_NETNS, nfLogBefore);
    });

    it('picks 15 trap ports no service or listener uses, and keeps them across a restart (state.bin)', async () => {
      traps = kernelTraps();
      assert.equal(traps.length, 15, `trap rule: ${traps.join(',')}\n${sb.log('agent.log').slice(-4000)}`);
      // The node listens on Consul's ports, the services, the parser and beanstalkd.
      for (const used of [WEB, APP, 8300, 8301, 8302, 8500, 8600, PARSER_PORT, 11300]) assert.ok(!traps.includes(used), `trap on ${used}`);
      const logged = agent.events().find((e) => e.event === 'trap-ports') as { ports?: number[] } | undefined;
      assert.deepEqual(logged?.ports, traps);
      await agent.stop();
      agent = sb.startAgent(befwConf, 'agent-2.log');
      // state.bin, enforced before Consul answers, holds the ports; the later passes keep them
      // (the scan below and the last test use them).
      await waitApplied(agent, 'saved');
      assert.deepEqual(kernelTraps(), traps, 'the same ports after a restart');
    });

    it('a port scan from a client is banned fleet-wide; management scans and forged lines ban nobody', async () => {
      assert.equal(await sb.probe(ATTACKER, NODE_V4, WEB), 'open', 'the scanner reaches the service before the scan');
      // A forged kernel-looking line (facility user, as `logger -t kernel` gives) naming a victim on 12 ports.
      const forged = traps.slice(0, 12).map((port) => {
        const line = `<12>1 ${new Date().toISOString()} node1 kernel - - - befw-trap IN=x OUT= MAC=00:00 SRC=${VICTIM} DST=${NODE_V4} LEN=60 TOS=0x00 PREC=0x00 TTL=64 ID=1 DF PROTO=TCP SPT=1 DPT=${port} WINDOW=1 RES=0x00 SYN URGP=0`;
        return Buffer.from(`${Buffer.byteLength(line)} ${line}`);
      });
      const sent = lab.send(sb.nodeNs, { proto: 'tcp', host: '127.0.0.1', port: PARSER_PORT, payloads: forged });
      assert.equal(sent.code, 0, sent.stderr);
      // A management address scans every trap port: rules_allow accepts it before the trap.
      for (const port of traps) await sb.probe(MGMT, NODE_V4, port);
      if (backend === 'iptables') {
        // A flood from one source (a forged victim, say) at one trap port: the per-source limit
        // (hashlimit) lets 20 of its lines through, so the global budget is left for the scanner.
        // nft keeps the global limit only (README): there the flood would eat it.
        const flood = await Promise.all(Array.from({ length: 300 }, () => sb.probe(VICTIM, NODE_V4, traps[14] as number)));
        assert.ok(flood.every((r) => r !== 'open'));
      }
      // The scan: one connection attempt per trap port, as a SYN scan makes.
      for (const port of traps) assert.notEqual(await sb.probe(ATTACKER, NODE_V4, port), 'open');
      const scanned = Date.now();
      await sb.waitFor('blocked', ATTACKER, NODE_V4, WEB, 20_000);
      const scanToBan = Date.now() - scanned;
      assert.equal(await sb.probe(OTHER, NODE_V4, WEB), 'open', 'another client is untouched');
      assert.equal(await sb.probe(MGMT, NODE_V4, WEB), 'open', 'the management address is untouched');
      // Fleet-wide: a world-scope rules_deny entry, which every befw node enforces.
      const ban = await kv(`befw/$ipset$/rules_deny/${ATTACKER}`);
      assert.ok(ban !== null && Number(ban) > Date.now() / 1000, `ban entry: ${ban}`);
      const denies = JSON.parse((await sb.consul('GET', '/v1/kv/befw/$ipset$/rules_deny/?keys')).body) as string[];
      assert.deepEqual(denies, [`befw/$ipset$/rules_deny/${ATTACKER}`], 'neither the victim of forged lines nor the management address');
      const action = responder.events().find((e) => e.event === 'action' && e.result === 'banned') as
        { lineToActionMs?: number; job?: { event?: string; count?: number } } | undefined;
      assert.equal(action?.job?.event, 'port-scan');
      assert.equal(action?.job?.count, 11, 'more than 10 distinct ports');
      const stats = parser
        .events()
        .filter((e) => e.event === 'stats')
        .pop() as { problems?: Record<string, number> } | undefined;
      assert.ok((stats?.problems?.['wrong-facility'] ?? 0) >= 1 || parser.events().some((e) => e.reason === 'wrong-facility'));
      process.stdout.write(
        `# ${backend}: scan (15 trap ports) -> scanner refused on the node: ${scanToBan} ms; kernel line -> ban written: ${action?.lineToActionMs} ms\n`,
      );
    });

    it('observe mode: non-clients reach the service, are logged and listed by `befw observed`, and granted with --from-observed', async () => {
      // A forged source sends SYNs and never the ACK of the handshake: it must not be recorded.
      nsExec(sb.clientNs, 'nft', ['add', 'table', 'ip', 'forge']);
      nsExec(sb.clientNs, 'nft', ['add', 'chain', 'ip', 'forge', 'in', '{ type filter hook input priority 0; }']);
      nsExec(sb.clientNs, 'nft', [
        'add',
        'rule',
        'ip',
        'forge',
        'in',
        'ip',
        'daddr',
        FORGED,
        'tcp',
        'flags',
        '&',
        '(syn|ack)',
        '==',
        'syn|ack',
        'drop',
      ]);
      for (let i = 0; i < 4; i++)
        assert.equal(await sb.probe(FORGED, NODE_V4, APP, 300), 'timeout', 'the forged handshake never completes');
      for (let i = 0; i < 4; i++) {
        assert.equal(await sb.probe(STRANGER, NODE_V4, APP), 'open', 'observe drops nothing');
        assert.equal(await sb.probe(GRANTED, NODE_V4, APP), 'open');
      }
      // The parser sums sightings for a few seconds, then the responder writes them: wait for all four.
      type Shown = { observed: { address: string; count: number; first: number; last: number; nodes: string[] }[] };
      const read = (): Shown => {
        const shown = sb.befw(['observed', `app_tcp_${APP}`, '--json', '-c', befwConf]);
        assert.equal(shown.code, 0, shown.stderr);
        return JSON.parse(shown.stdout) as Shown;
      };
      const deadline = Date.now() + 20_000;
      let observed = read();
      while ((observed.observed.find((o) => o.address === STRANGER)?.count ?? 0) < 4 && Date.now() < deadline) {
        await sleep(200);
        observed = read();
      }
      const addrs = observed.observed.map((o) => o.address);
      assert.deepEqual(addrs, [STRANGER], 'the non-client only: a client is never logged, nor a source that never completed a handshake');
      const s = observed.observed[0]!;
      assert.equal(s.count, 4, 'one line per completed connection, not per packet');
      assert.deepEqual(s.nodes, ['node1']);
      assert.ok(s.first <= s.last && s.last <= Date.now() / 1000 + 1);
      const text = sb.befw(['observed', `app_tcp_${APP}`, '-c', befwConf]);
      process.stdout.write(`# ${backend}: befw observed app_tcp_${APP}:\n${text.stdout.replace(/^/gm, '#   ')}\n`);

      const granted = sb.befw(['client', 'add', `app_tcp_${APP}`, '--from-observed', '--min-count', '1', '--forever', '-c', befwConf]);
      assert.equal(granted.code, 0, granted.stderr + granted.stdout);
      assert.equal(await kv(`befw/$service$/app_tcp_${APP}/${STRANGER}`), '-1');
      const audit = await kv(`befw-audit/$service$/app_tcp_${APP}/${STRANGER}`);
      assert.match(audit ?? '', /from observed/);
      const none = sb.befw(['client', 'add', `app_tcp_${APP}`, '--from-observed', '--min-count', '1000', '--forever', '-c', befwConf]);
      assert.equal(none.code, 0);
      assert.match(none.stdout, /nothing written/);
    });

    it('the integrity check accepts the trap and observe rules as applied (no drift, no repair)', async () => {
      await sleep(2500);
      const drifts = agent.events().filter((e) => e.event === 'drift');
      assert.deepEqual(drifts, [], JSON.stringify(drifts));
      assert.deepEqual(kernelTraps(), traps);
    });
  });
}
