/**
 * `npm run demo`: the agent's main job in a sandbox. Two network namespaces joined by a veth
 * pair, a Consul dev agent and the befw agent in the "node" one, a client in the other. Shows a
 * connection refused, a grant written to Consul, the same connection accepted, and the grant
 * revoked. Everything is removed at the end (also on Ctrl-C or failure). Needs root.
 */
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
    const config = sb.writeFile('befw.conf', [`state=${sb.dir}/state.bin`, `services=${sb.dir}/services`, `ipsets=${sb.dir}/ipsets`, 'set.rules_allow=203.0.113.0/28'].join('\n'));
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
    say(`   another client ${clientV4(3)}: ${describe(await sb.probe(clientV4(3), NODE_V4, PORT))}; over IPv6 ${clientV6(2)}: ${describe(await sb.probe(clientV6(2), NODE_V6, PORT))}`);

    say('\n3. befw show:');
    say(sb.befw(['show', '-c', config]).stdout.replace(/^/gm, '   '));

    await sb.kvDelete(key);
    say(`4. consul kv delete ${key}`);
    const gone = await sb.waitFor('blocked', client, NODE_V4, PORT, 10_000);
    say(`   ${client} -> ${NODE_V4}:${PORT}: refused again, ${gone} ms after the delete`);

    say('\n5. the BEFW chain in the node namespace (iptables -S BEFW):');
    say(sb.inNode('iptables', ['-S', 'BEFW']).replace(/^/gm, '   '));
    await agent.stop();
    say('agent stopped (SIGTERM leaves the firewall as it is); removing the sandbox.');
  } finally {
    await sb.destroy();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`demo failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
