/**
 * `npm run demo`: the agent's main job in a sandbox. Two network namespaces joined by a veth
 * pair, a Consul dev agent and the befw agent in the "node" one, a client in the other. Shows a
 * connection refused, a grant written to Consul, the same connection accepted, and the grant
 * revoked; then the syslog reactor blocking a brute force. Everything is removed at the end
 * (also on Ctrl-C or failure). Needs root, beanstalkd and logger.
 */
import { ReactorLab } from '../test/helpers/reactorLab.js';
import { NODE_V4, NODE_V6, Sandbox, clientV4, clientV6, nowSec, sleep } from '../test/helpers/sandbox.js';

const PORT = 8080;
const SET = 'web_tcp_8080';

function describe(r: string): string {
  return r === 'open' ? 'open' : r === 'timeout' ? 'refused (dropped)' : r === 'refused' ? 'refused (rejected)' : r;
}

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

async function main(): Promise<void> {
  say('befw demo: starting a sandbox (network namespaces, Consul dev agent)...');
  const sb = await Sandbox.create();
  process.once('SIGINT', () => {
    void sb.destroy().then(() => process.exit(130));
  });
  try {
    await sb.registerService({ name: 'web', port: PORT, tags: ['befw', 'enforcing'] });
    await sb.listen([PORT]);
    say(`  node ${NODE_V4} / ${NODE_V6}: service "web" on ${PORT}/tcp, mode enforcing, registered in Consul`);
    const config = sb.writeFile(
      'befw.conf',
      [`state=${sb.dir}/state.bin`, `services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, 'set.rules_allow=203.0.113.0/28'].join('\n'),
    );
    const agent = sb.startAgent(config);
    while (!agent.events().some((e) => e.event === 'applied' && e.source === 'consul')) await sleep(50);
    say('  befw agent running in the node namespace; first plan applied');

    const client = clientV4(2);
    say(`\n1. ${client} -> ${NODE_V4}:${PORT} before any grant: ${describe(await sb.probe(client, NODE_V4, PORT))}`);

    const expiry = nowSec() + 3600;
    const key = `befw/$service$/${SET}/${client}`;
    await sb.kvPut(key, String(expiry));
    say(`2. consul kv put ${key} ${expiry}   (expires in 1h)`);
    const took = await sb.waitFor('open', client, NODE_V4, PORT, 10_000);
    say(`   ${client} -> ${NODE_V4}:${PORT}: open, ${took} ms after the write`);
    say(
      `   another client ${clientV4(3)}: ${describe(await sb.probe(clientV4(3), NODE_V4, PORT))}; over IPv6 ${clientV6(2)}: ${describe(await sb.probe(clientV6(2), NODE_V6, PORT))}`,
    );

    say('\n3. befw show:');
    say(sb.befw(['show', '-c', config]).stdout.replace(/^/gm, '   '));

    await sb.kvDelete(key);
    say(`4. consul kv delete ${key}`);
    const gone = await sb.waitFor('blocked', client, NODE_V4, PORT, 10_000);
    say(`   ${client} -> ${NODE_V4}:${PORT}: refused again, ${gone} ms after the delete`);

    say('\n5. the BEFW chain in the node namespace (iptables -S BEFW):');
    say(sb.inNode('iptables', ['-S', 'BEFW']).replace(/^/gm, '   '));

    await bruteForceBlocked(sb);
    await agent.stop();
    say('agent stopped (SIGTERM leaves the firewall as it is); removing the sandbox.');
  } finally {
    await sb.destroy();
  }
}

/**
 * Part two, the syslog reactor: a brute force reported by syslog ends with the attacker refused
 * on every port. logger (as a device's rsyslog) -> `befw syslog` -> beanstalkd ->
 * `befw responder` -> Consul rules_deny -> the agent.
 */
async function bruteForceBlocked(sb: Sandbox): Promise<void> {
  const lab = new ReactorLab(sb);
  const SSH = 2222; // a default-mode service: open to everyone until someone is banned
  await sb.registerService({ name: 'ssh', port: SSH, tags: ['befw'] });
  await sb.listen([SSH]);
  await lab.beanstalkd(11300);
  const config = lab.writeConfig('reactor.json', {
    protect: ['203.0.113.0/28'],
    queue: { servers: ['127.0.0.1:11300'] },
    parser: {
      listeners: [{ protocol: 'tcp', address: NODE_V4, port: 5514 }],
      allowedDevices: ['198.51.100.0/24'],
      thresholds: { 'ssh-auth-failure': { maxRetry: 5, findTimeSec: 600 } },
    },
    responder: { actions: { 'ssh-auth-failure': [{ type: 'ban', bantimeSec: 3600, factor: 2 }] } },
  });
  await lab.parser(config, 'parser.log');
  const responder = await lab.responder(config, 'responder.log');
  const attacker = clientV4(5);
  say(`\n6. syslog reactor: befw syslog on ${NODE_V4}:5514, beanstalkd, befw responder (ban into rules_deny)`);
  say(`   ${attacker} -> ${NODE_V4}:${SSH} ("ssh", default mode): ${describe(await sb.probe(attacker, NODE_V4, SSH))}`);
  const lines = Array.from(
    { length: 6 },
    (_, i) => `Failed password for ${i % 2 === 0 ? 'root' : 'invalid user admin'} from ${attacker} port ${47336 + i} ssh2`,
  );
  lab.logger(sb.clientNs, ['-T', '-n', NODE_V4, '-P', '5514', '-t', 'sshd', '--id=2755', '-p', 'auth.info'], lines);
  say(`7. logger (as ${clientV4(2)}'s rsyslog) sends 6 lines like "sshd[2755]: ${lines[0]}"`);
  const took = await sb.waitFor('blocked', attacker, NODE_V4, SSH, 10_000);
  const ban = await responder.waitFor((e) => e.event === 'action' && e.result === 'banned', 5000, 'the ban');
  say(
    `   ${attacker} -> ${NODE_V4}:${SSH}: ${describe(await sb.probe(attacker, NODE_V4, SSH))} after ${took} ms; on ${PORT} too: ${describe(await sb.probe(attacker, NODE_V4, PORT))}`,
  );
  say(
    `   responder: ${String(ban.key)} = ${String(ban.expiry)} (bantime ${String(ban.bantimeSec)} s, offence ${String(ban.offence)}), ${String(ban.lineToActionMs)} ms from log line to ban`,
  );
  say('8. befw queue stats:');
  say(sb.befw(['queue', 'stats', '-c', config]).stdout.replace(/^/gm, '   '));
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
