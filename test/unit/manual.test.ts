import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Command } from 'commander';
import { BEFW_CLI_COMMANDS } from '../../src/cli/befwCli.js';
import { buildProgram } from '../../src/cli/main.js';
import {
  befwCliManPage,
  befwConfManPage,
  befwManPage,
  bashCompletion,
  configKeyDocs,
  roff,
  viewOf,
  zshCompletion,
} from '../../src/cli/manual.js';

const EXAMPLE = readFileSync(new URL('../../../befw.conf.example', import.meta.url), 'utf8');

/** What `--help` prints for one command: its subcommand names and its option flags. */
interface HelpFacts {
  readonly path: string[];
  readonly commands: string[];
  readonly flags: string[];
}

function section(help: string, title: string): string[] {
  const lines = help.split('\n');
  const start = lines.indexOf(`${title}:`);
  if (start < 0) return [];
  const out: string[] = [];
  for (const l of lines.slice(start + 1)) {
    if (!l.startsWith(' ')) break;
    // A term starts two spaces in; continuation lines of a description are indented further.
    if (/^ {2}\S/.test(l)) out.push(l.trim().split(/ {2,}/)[0] ?? '');
  }
  return out;
}

/** Every command reachable through --help, read from the help text itself, not from the generator. */
function helpFacts(cmd: Command, parent: string[] = []): HelpFacts[] {
  const path = [...parent, cmd.name()];
  const help = cmd.helpInformation();
  const commands = section(help, 'Commands').map((t) => t.split(/[ |]/)[0] ?? '');
  const flags = section(help, 'Options').flatMap((t) => t.split(/[ ,]+/).filter((w) => /^--?[A-Za-z]/.test(w)));
  const own: HelpFacts = { path, commands, flags };
  const children = commands
    .map((name) => cmd.commands.find((c) => c.name() === name))
    .filter((c): c is Command => c !== undefined)
    .flatMap((c) => helpFacts(c, path));
  return [own, ...children];
}

/** Runs the generated bash completion for each line of words; returns the candidates per line. */
function complete(script: string, cases: string[][]): string[][] {
  const calls = cases
    .map((words) => {
      const quoted = words.map((w) => `'${w.replace(/'/g, `'\\''`)}'`).join(' ');
      return `COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; COMPREPLY=(); _befw; echo "\${COMPREPLY[*]}"`;
    })
    .join('\n');
  const r = spawnSync('bash', ['--norc', '-c', `${script}\n${calls}`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout
    .split('\n')
    .slice(0, cases.length)
    .map((l) => l.split(' ').filter(Boolean));
}

test('every command and option --help shows is completed by the generated bash script', () => {
  const program = buildProgram();
  const facts = helpFacts(program);
  assert.ok(facts.length > 20, `expected the whole tree, found ${facts.length} commands`);
  assert.ok(facts.some((f) => f.path.join(' ') === 'befw guard status'));
  const script = bashCompletion(viewOf(program));
  const cases = facts.flatMap((f) => [
    [...f.path, ''],
    [...f.path, '-'],
  ]);
  const got = complete(script, cases);
  facts.forEach((f, i) => {
    const subs = got[2 * i] ?? [];
    const opts = got[2 * i + 1] ?? [];
    for (const c of f.commands) assert.ok(subs.includes(c), `${f.path.join(' ')} <TAB>: ${c} missing from [${subs.join(' ')}]`);
    for (const o of f.flags) assert.ok(opts.includes(o), `${f.path.join(' ')} -<TAB>: ${o} missing from [${opts.join(' ')}]`);
  });
});

test('the completion skips option values, completes files for -c, argument choices, and never offers hidden commands', () => {
  const program = buildProgram();
  const script = bashCompletion(viewOf(program));
  const [afterHoist, afterValue, choices, top, file] = complete(script, [
    ['befw', '-c', '/etc/befw.conf', 'gu'],
    ['befw', 'guard', 'hold', '--for', '1h', '--'],
    ['befw', 'completion', ''],
    ['befw', ''],
    ['befw', 'status', '-c', '/etc/host'],
  ]);
  assert.deepEqual(afterHoist, ['guard']);
  assert.ok(afterValue?.includes('--json') && afterValue.includes('--for'), afterValue?.join(' '));
  assert.deepEqual(choices, ['bash', 'zsh']);
  assert.ok(!(top ?? []).includes('manual'), 'the hidden manual command is not offered');
  assert.ok((file ?? []).includes('/etc/hostname'), `file names after -c: ${(file ?? []).join(' ')}`);
  assert.match(zshCompletion(viewOf(program)), /bashcompinit[\s\S]*complete -F _befw befw/);
});

test('befw(1) has a section for every command with each of its options, as --help shows them', () => {
  const program = buildProgram();
  const page = befwManPage(viewOf(program));
  const sections = new Map<string, string>();
  for (const part of page.split('\n.SS "').slice(1)) {
    const heading = part.slice(0, part.indexOf('"'));
    sections.set(heading, part);
  }
  for (const f of helpFacts(program).slice(1)) {
    const name = roff(f.path.join(' '));
    const body = sections.get(name);
    assert.ok(body !== undefined, `no section for ${f.path.join(' ')} (have: ${[...sections.keys()].slice(0, 5).join(', ')}...)`);
    for (const o of f.flags.filter((o) => o !== '--help' && o !== '-h'))
      assert.ok(body.includes(roff(o)), `${f.path.join(' ')}: ${o} missing from its man section`);
  }
  assert.ok(!sections.has('befw manual'), 'hidden commands stay out of the page');
  assert.match(page, /^\.TH BEFW 1 /);
});

test('a new option or command shows up in completion and man page with no other change', () => {
  const program = buildProgram();
  const guard = program.commands.find((c) => c.name() === 'guard');
  guard?.commands.find((c) => c.name() === 'status')?.option('--zz-new-flag <file>', 'a flag added after the generator was written');
  program.command('zz-new-command').description('a command added later');
  const view = viewOf(program);
  assert.match(befwManPage(view), /\\-\\-zz\\-new\\-flag/);
  assert.match(befwManPage(view), /befw zz\\-new\\-command/);
  const [opts, subs] = complete(bashCompletion(view), [
    ['befw', 'guard', 'status', '--zz'],
    ['befw', 'zz'],
  ]);
  assert.deepEqual(opts, ['--zz-new-flag']);
  assert.deepEqual(subs, ['zz-new-command']);
});

test('befw-cli(1) lists every befw-cli command; befw.conf(5) every key of the example config', async () => {
  const cli = await befwCliManPage();
  for (const c of BEFW_CLI_COMMANDS) assert.match(cli, new RegExp(`^\\.B befw\\\\-cli ${c}`, 'm'), c);
  const conf = befwConfManPage(EXAMPLE);
  const keys = [...EXAMPLE.matchAll(/^#?([a-z_][a-z0-9_]*(?:\.[a-z0-9._-]+)?)=/gm)].map((m) => m[1] ?? '');
  assert.ok(keys.length > 30, `keys in the example: ${keys.length}`);
  for (const k of keys) assert.ok(conf.includes(`\\fB${roff(k)}=`), `befw.conf(5) lacks ${k}`);
  const docs = configKeyDocs(EXAMPLE);
  assert.match(docs.keys.find((k) => k.key === 'address')?.text ?? '', /Consul agent/);
  assert.equal(docs.keys.find((k) => k.key === 'address')?.active, true);
  assert.equal(docs.keys.find((k) => k.key === 'dc')?.active, false);
});

test('a name that is not a plain word never reaches the completion script', () => {
  const program = buildProgram();
  program.command('x$(touch /tmp/pwned)');
  assert.throws(() => bashCompletion(viewOf(program)), /not a plain word/);
});

test('roff: hyphens and backslashes escaped, no line of text read as a request', () => {
  assert.equal(roff('a-b\\c'), 'a\\-b\\ec');
  assert.equal(roff(".SH evil\n'br"), "\\&.SH evil\n\\&'br");
  // A description written by anyone cannot inject a request into the page.
  const program = buildProgram();
  program.command('zz').description('.so /etc/shadow\nline two');
  const page = befwManPage(viewOf(program));
  assert.ok(!/^\.so /m.test(page));
});
