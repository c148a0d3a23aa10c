import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseServiceFile } from '../../src/agent/inputs/localFiles.js';

const FILE = '/etc/befw.service.d/web.json';

function bad(text: string, pattern?: RegExp, file = FILE): void {
  const r = parseServiceFile(text, file);
  assert.equal(r.service, undefined, `expected ${text} to be rejected`);
  assert.equal(r.diagnostics.length, 1);
  const d = r.diagnostics[0]!;
  assert.equal(d.severity, 'error');
  assert.equal(d.code, 'bad-service-file');
  assert.equal(d.subject.startsWith('/etc/befw.service.d/'), true);
  assert.match(d.message, /service not enforced/);
  assert.doesNotMatch(d.message, /[\u0000-\u001f\u007f]/, 'message must be printable');
  if (pattern !== undefined) assert.match(d.message, pattern);
}

describe('parseServiceFile', () => {
  test("BEFW's format", () => {
    const r = parseServiceFile('{"name":"web","port":8080,"protocol":"tcp","mode":"default","ports":["8443/tcp"]}', FILE);
    assert.deepEqual(r, {
      service: { file: FILE, name: 'web', port: 8080, protocol: 'tcp', mode: 'default', ports: [{ proto: 'tcp', from: 8443, to: 8443 }] },
      diagnostics: [],
    });
  });

  test('defaults: tcp, default mode, no extra ports', () => {
    assert.deepEqual(parseServiceFile('{"name":"api","port":9000}', FILE).service, {
      file: FILE,
      name: 'api',
      port: 9000,
      protocol: 'tcp',
      mode: 'default',
      ports: [],
    });
  });

  test('object ports, string ranges, udp and enforcing', () => {
    const r = parseServiceFile(
      JSON.stringify({
        name: 'Media',
        port: 5000,
        protocol: 'udp',
        mode: 'enforcing',
        ports: [{ port: 8443, protocol: 'tcp' }, { port: 9999 }, { port: 53, protocol: 'udp' }, '30000:30100/udp'],
      }),
      FILE,
    );
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(r.service, {
      file: FILE,
      name: 'Media',
      port: 5000,
      protocol: 'udp',
      mode: 'enforcing',
      ports: [
        { proto: 'tcp', from: 8443, to: 8443 },
        { proto: 'tcp', from: 9999, to: 9999 },
        { proto: 'udp', from: 53, to: 53 },
        { proto: 'udp', from: 30000, to: 30100 },
      ],
    });
  });

  test('bad JSON names the file', () => {
    bad('', /not JSON/);
    bad('{"name":"web",', /not JSON/);
    bad('not json at all\n\u0007\u001b[31m', /not JSON/);
    bad('x\n\u001b[31m', /not JSON/); // the parser quotes short input back, control characters and all
    bad('\u0007', /not JSON/);
    bad('{"name":"web"\n\n"port":8080}', /not JSON/);
  });

  test("BEFW's own test inputs: object ports with string ranges, no primary port, extra fields, any case, spaces", () => {
    // From BEFW's befw/legacy_test.go and samples: each is accepted by BEFW, so by befw.
    const svc = (text: string) => {
      const r = parseServiceFile(text, FILE);
      assert.deepEqual(r.diagnostics, [], text);
      return r.service;
    };
    assert.deepEqual(svc('{"name":"x","ports":[{"port":"1:42","protocol":"udp"}]}'), {
      file: FILE,
      name: 'x',
      port: 1,
      protocol: 'udp',
      mode: 'default',
      ports: [{ proto: 'udp', from: 1, to: 42 }],
    });
    assert.equal(svc('{"name":"web","port":8080,"protocol":"TCP"}')?.protocol, 'tcp');
    assert.equal(svc('{"name":"web app","port":8080,"description":"the web"}')?.name, 'web app');
    assert.equal(svc('{"name":"web","port":8080,"mode":"Enforcing"}')?.mode, 'enforcing');
    assert.deepEqual(svc('{"name":"web","port":8080,"ports":["8443"]}')?.ports, [{ proto: 'tcp', from: 8443, to: 8443 }]);
    assert.deepEqual(svc('{"name":"web","port":8080,"ports":["200:100/UDP"]}')?.ports, [{ proto: 'udp', from: 200, to: 200 }]);
    assert.deepEqual(svc('{"name":"web","port":8080,"ports":[{"port":80,"x":1}]}')?.ports, [{ proto: 'tcp', from: 80, to: 80 }]);
  });

  test('bad fields', () => {
    bad('null');
    bad('[]');
    bad('"web"');
    bad('{"port":8080}', /name/);
    bad('{"name":"web"}', /port/);
    bad('{"name":"web","port":0}', /port/);
    bad('{"name":"web","port":65536}', /port/);
    bad('{"name":"web","port":80.5}', /port/);
    bad('{"name":"web","port":"8080"}', /port/);
    bad('{"name":"","port":8080}', /name/);
    bad(`{"name":"${'a'.repeat(129)}","port":8080}`, /name/);
    bad('{"name":"a\\u0000b","port":8080}', /name/);
    bad('{"name":"web","port":8080,"protocol":"sctp"}', /protocol/);
    // BEFW reads an unknown mode as default (the port opens): befw refuses the file instead.
    bad('{"name":"web","port":8080,"mode":"strict"}', /mode/);
    bad('{"name":"web","port":8080,"ports":"8443/tcp"}', /ports/);
    bad('{"name":"web","port":8080,"ports":[8443]}', /ports/);
    bad('{"name":"web","port":8080,"ports":[{"port":0}]}', /range/);
    bad('{"name":"web","port":8080,"ports":[{"port":80,"protocol":"icmp"}]}', /protocol/);
  });

  test('bad port strings', () => {
    bad('{"name":"web","port":8080,"ports":["8443/sctp"]}', /8443\/sctp/);
    bad('{"name":"web","port":8080,"ports":["0/tcp"]}', /range/);
    bad('{"name":"web","port":8080,"ports":["http"]}', /http/);
    bad(`{"name":"web","port":8080,"ports":["${'9'.repeat(40)}/tcp"]}`);
  });

  test('the subject is the file, made printable', () => {
    const r = parseServiceFile('{', '/etc/befw.service.d/we\nird.json');
    assert.equal(r.diagnostics[0]!.subject, '/etc/befw.service.d/we\\x0aird.json');
  });
});
