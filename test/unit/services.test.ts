import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { collectServices, parsePortSpec, portText, serviceSetName } from '../../src/core/services.js';
import { planRegistrations, registrationFor } from '../../src/core/registrations.js';
import type { AgentService, FileService } from '../../src/core/types.js';

function svc(id: string, port: number, tags: string[], name = id): AgentService {
  return { id, name, port, tags };
}

function file(name: string, port: number, extra: Partial<FileService> = {}): FileService {
  return { file: `/etc/befw.service.d/${name}.json`, name, port, protocol: 'tcp', mode: 'default', ports: [], ...extra };
}

describe('parsePortSpec', () => {
  test('PORT/PROTO and FROM:TO/PROTO', () => {
    assert.deepEqual(parsePortSpec('8443/tcp'), { ok: true, range: { proto: 'tcp', from: 8443, to: 8443 } });
    assert.deepEqual(parsePortSpec('53/udp'), { ok: true, range: { proto: 'udp', from: 53, to: 53 } });
    assert.deepEqual(parsePortSpec('30000:30100/udp'), { ok: true, range: { proto: 'udp', from: 30000, to: 30100 } });
    assert.deepEqual(parsePortSpec('1:65535/tcp'), { ok: true, range: { proto: 'tcp', from: 1, to: 65535 } });
    assert.deepEqual(parsePortSpec('7:7/tcp'), { ok: true, range: { proto: 'tcp', from: 7, to: 7 } });
  });

  test('tags that are not port tags at all are null', () => {
    for (const tag of ['befw', 'udp', 'enforcing', 'local', 'v1.2', 'http', 'tcp/8080', '', 'a:b'])
      assert.equal(parsePortSpec(tag), null, tag);
  });

  test('bad port tags are errors', () => {
    for (const tag of [
      '0/tcp',
      '65536/tcp',
      '99999/tcp',
      '100:50/tcp',
      '8080/sctp',
      '8080/TCP',
      '1:2:3/tcp',
      '123456/tcp',
      ':80/tcp',
      '80:/tcp',
      '0:10/udp',
    ]) {
      const r = parsePortSpec(tag);
      assert.ok(r !== null && !r.ok, `${tag} should be an error`);
    }
  });

  test('portText', () => {
    assert.equal(portText({ proto: 'tcp', from: 80, to: 80 }), '80');
    assert.equal(portText({ proto: 'udp', from: 30000, to: 30100 }), '30000:30100');
  });
});

describe('serviceSetName', () => {
  test('lower-cased, stripped to [a-z0-9._-], then _proto_port', () => {
    assert.equal(serviceSetName('Web', 'tcp', 8080), 'web_tcp_8080');
    assert.equal(serviceSetName('DNS', 'udp', 53), 'dns_udp_53');
    assert.equal(serviceSetName('my service!$/x', 'tcp', 1), 'myservicex_tcp_1');
    assert.equal(serviceSetName('a.b-c_d', 'tcp', 2), 'a.b-c_d_tcp_2');
    assert.equal(serviceSetName('Ünïcode', 'tcp', 3), 'ncode_tcp_3');
  });
});

describe('collectServices', () => {
  test('primary port, udp tag, extra ports, enforcing mode', () => {
    const r = collectServices(
      [svc('web', 8080, ['befw', 'enforcing', '8443/tcp', '30000:30100/udp', 'v2'], 'Web'), svc('dns', 53, ['befw', 'udp', '53/tcp'])],
      [],
    );
    assert.deepEqual(r.diagnostics, []);
    assert.deepEqual(r.services, [
      {
        name: 'dns',
        set: 'dns_udp_53',
        mode: 'default',
        ports: [
          { proto: 'udp', from: 53, to: 53 },
          { proto: 'tcp', from: 53, to: 53 },
        ],
        origin: 'consul:dns',
      },
      {
        name: 'Web',
        set: 'web_tcp_8080',
        mode: 'enforcing',
        ports: [
          { proto: 'tcp', from: 8080, to: 8080 },
          { proto: 'tcp', from: 8443, to: 8443 },
          { proto: 'udp', from: 30000, to: 30100 },
        ],
        origin: 'consul:web',
      },
    ]);
  });

  test('services without the befw tag are ignored', () => {
    const r = collectServices([svc('consul', 8300, []), svc('redis', 6379, ['cache', 'BEFW', 'befw-x'])], []);
    assert.deepEqual(r.services, []);
    assert.deepEqual(r.diagnostics, []);
  });

  test('local agent services are skipped: the file is the source', () => {
    const r = collectServices([svc('api', 9000, ['befw', 'local'])], []);
    assert.deepEqual(r.services, []);
    const withFile = collectServices([svc('api', 9000, ['befw', 'local', 'enforcing'])], [file('api', 9000)]);
    assert.equal(withFile.services.length, 1);
    assert.equal(withFile.services[0]!.origin, 'file:/etc/befw.service.d/api.json');
    assert.equal(withFile.services[0]!.mode, 'default');
    assert.deepEqual(withFile.diagnostics, []);
  });

  test('bad port tags are diagnosed and the service is still enforced', () => {
    const r = collectServices([svc('web', 8080, ['befw', '8080/sctp', '0/tcp', '9000:8000/tcp', '8443/tcp'])], []);
    assert.equal(r.services.length, 1);
    assert.deepEqual(r.services[0]!.ports, [
      { proto: 'tcp', from: 8080, to: 8080 },
      { proto: 'tcp', from: 8443, to: 8443 },
    ]);
    assert.deepEqual(
      r.diagnostics.map((d) => [d.code, d.severity, d.subject]),
      [
        ['bad-port', 'error', 'service web'],
        ['bad-port', 'error', 'service web'],
        ['bad-port', 'error', 'service web'],
      ],
    );
  });

  test('bad primary port or unusable name: not enforced, diagnosed', () => {
    const r = collectServices(
      [svc('zero', 0, ['befw']), svc('big', 70000, ['befw']), svc('frac', 80.5, ['befw']), svc('sym', 80, ['befw'], '!!!')],
      [],
    );
    assert.deepEqual(r.services, []);
    assert.deepEqual(r.diagnostics.map((d) => [d.code, d.subject]).sort(), [
      ['bad-service', 'service big'],
      ['bad-service', 'service frac'],
      ['bad-service', 'service sym'],
      ['bad-service', 'service zero'],
    ]);
  });

  test('duplicate ports are listed once', () => {
    const r = collectServices([svc('web', 8080, ['befw', '8080/tcp', '8443/tcp', '8443/tcp'])], []);
    assert.deepEqual(r.services[0]!.ports, [
      { proto: 'tcp', from: 8080, to: 8080 },
      { proto: 'tcp', from: 8443, to: 8443 },
    ]);
  });

  test('file services', () => {
    const r = collectServices(
      [],
      [file('Api', 9000, { protocol: 'udp', mode: 'enforcing', ports: [{ proto: 'tcp', from: 9443, to: 9443 }] })],
    );
    assert.deepEqual(r.services, [
      {
        name: 'Api',
        set: 'api_udp_9000',
        mode: 'enforcing',
        ports: [
          { proto: 'udp', from: 9000, to: 9000 },
          { proto: 'tcp', from: 9443, to: 9443 },
        ],
        origin: 'file:/etc/befw.service.d/Api.json',
      },
    ]);
  });

  test('two services mapping to the same set are merged; enforcing wins, with a diagnostic', () => {
    const r = collectServices(
      [svc('web-a', 8080, ['befw', '9000/tcp'], 'web'), svc('web-b', 8080, ['befw', 'enforcing', '9001/tcp'], 'WEB')],
      [],
    );
    assert.equal(r.services.length, 1);
    const s = r.services[0]!;
    assert.equal(s.set, 'web_tcp_8080');
    assert.equal(s.mode, 'enforcing');
    assert.equal(s.origin, 'consul:web-a,consul:web-b');
    assert.deepEqual(s.ports.map(portText), ['8080', '9000', '9001']);
    assert.equal(r.diagnostics.length, 1);
    assert.equal(r.diagnostics[0]!.code, 'service-conflict');
    assert.equal(r.diagnostics[0]!.subject, 'set web_tcp_8080');
  });

  test('same set, same mode: merged without a diagnostic', () => {
    const r = collectServices([svc('a', 80, ['befw'], 'x'), svc('b', 80, ['befw'], 'X')], [file('x', 80)]);
    assert.equal(r.services.length, 1);
    assert.equal(r.services[0]!.mode, 'default');
    assert.deepEqual(r.diagnostics, []);
  });

  test('output is sorted by set and independent of input order', () => {
    const agent = [svc('c', 3, ['befw']), svc('a', 1, ['befw']), svc('b', 2, ['befw', 'enforcing']), svc('b2', 2, ['befw'], 'b')];
    const one = collectServices(agent, []);
    const two = collectServices([...agent].reverse(), []);
    assert.deepEqual(
      one.services.map((s) => s.set),
      ['a_tcp_1', 'b_tcp_2', 'c_tcp_3'],
    );
    assert.deepEqual(JSON.stringify(one), JSON.stringify(two));
  });
});

describe('registrations', () => {
  test('a file service is registered with befw, local, mode and port tags', () => {
    const f = file('api', 9000, {
      protocol: 'udp',
      mode: 'enforcing',
      ports: [
        { proto: 'tcp', from: 9443, to: 9443 },
        { proto: 'udp', from: 100, to: 200 },
      ],
    });
    assert.deepEqual(registrationFor(f), {
      id: 'api',
      name: 'api',
      port: 9000,
      tags: ['befw', 'local', 'udp', 'enforcing', '9443/tcp', '100:200/udp'],
    });
  });

  test('registers new or changed, deregisters local ones whose file is gone, never touches others', () => {
    const files = [file('api', 9000), file('same', 7000), file('changed', 7100)];
    const agent = [
      svc('same', 7000, ['befw', 'local']),
      svc('changed', 7100, ['befw', 'local', 'enforcing']),
      svc('gone', 7200, ['befw', 'local']),
      svc('foreign', 7300, ['befw']),
      svc('other-local', 7400, ['local']),
    ];
    const p = planRegistrations(agent, files);
    assert.deepEqual(p.register.map((r) => r.id).sort(), ['api', 'changed']);
    assert.deepEqual(p.deregister, ['gone']);
  });

  test('a registered file service round-trips through collectServices to the same set', () => {
    const f = file('api', 9000, { protocol: 'udp', mode: 'enforcing', ports: [{ proto: 'tcp', from: 9443, to: 9443 }] });
    const reg = registrationFor(f);
    const asAgent = collectServices([{ ...reg, tags: reg.tags.filter((t) => t !== 'local') }], []);
    const asFile = collectServices([], [f]);
    assert.deepEqual(
      asAgent.services.map((s) => [s.set, s.mode, s.ports]),
      asFile.services.map((s) => [s.set, s.mode, s.ports]),
    );
  });
});
