/**
 * The web-download URI filter and HTTP source. Every connection goes to 127.0.0.1; host names
 * other than `localhost` are answered by an injected lookup, so no test depends on real DNS.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';

import { InvalidInputError } from '../../src/domain/errors.js';
import type { ResolvedAddress, UriFilterOptions } from '../../src/import/uri-filter.js';
import {
  defaultUriFilterOptions,
  resolveImportUri,
  validateImportUri,
} from '../../src/import/uri-filter.js';
import type { WebSourceOptions } from '../../src/import/web-source.js';
import {
  WebSourceHttpError,
  defaultWebSourceOptions,
  openWebSource,
} from '../../src/import/web-source.js';

const PUBLIC = '203.0.113.10';

/** A fake DNS: names of the test domain, and what they resolve to. */
const ZONE: Record<string, string[]> = {
  'images.example.com': [PUBLIC],
  'mirror.example.com': ['2001:db8::10'],
  'internal.example.com': ['10.1.2.3'],
  'metadata.example.com': ['169.254.169.254'],
  'ec2v6.example.com': ['fd00:ec2::254'],
  'mapped.example.com': ['::ffff:192.168.0.1'],
  'mixed.example.com': ['10.0.0.1', PUBLIC],
  'xn--bcher-kva.example': [PUBLIC],
};

const lookedUp: string[] = [];

async function fakeLookup(host: string): Promise<ResolvedAddress[]> {
  lookedUp.push(host);
  const answers = ZONE[host];
  if (!answers)
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
  return answers.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
}

function filter(overrides: Partial<UriFilterOptions> = {}): UriFilterOptions {
  return { ...defaultUriFilterOptions(), lookup: fakeLookup, ...overrides };
}

async function refused(uri: string, options: UriFilterOptions): Promise<void> {
  await assert.rejects(validateImportUri(uri, options), (error: unknown) => {
    assert.ok(error instanceof InvalidInputError, `${uri}: ${String(error)}`);
    assert.match(error.message, /^URI for web-download does not pass filtering: /);
    return true;
  });
}

async function accepted(uri: string, options: UriFilterOptions): Promise<void> {
  await validateImportUri(uri, options);
}

describe('web-download URI filter: schemes', () => {
  it('allows http and https by default and nothing else', async () => {
    await accepted('http://images.example.com/cirros.img', filter());
    await accepted('https://images.example.com/cirros.img', filter());
    await accepted('HTTPS://images.example.com/cirros.img', filter());
    for (const uri of [
      'ftp://images.example.com/cirros.img',
      'file:///etc/passwd',
      'gopher://images.example.com/',
      'data:text/plain,hello',
    ]) {
      await refused(uri, filter());
    }
  });

  it('uses the deny-list only when the allow-list is empty', async () => {
    const denyFtp = filter({ allowedSchemes: [], disallowedSchemes: ['ftp'] });
    await refused('ftp://images.example.com/x', denyFtp);
    await accepted('gopher://images.example.com/x', denyFtp);
    await accepted('http://images.example.com/x', denyFtp);

    const both = filter({ allowedSchemes: ['https'], disallowedSchemes: ['https'] });
    await accepted('https://images.example.com/x', both);
    await refused('http://images.example.com/x', both);
  });

  it('refuses URIs without a host', async () => {
    for (const uri of ['', 'not a uri', 'http:///images.example.com/', 'http://:80/', 'x']) {
      await refused(uri, filter());
    }
  });
});

describe('web-download URI filter: hosts', () => {
  it('accepts only allow-listed hosts and then ignores the deny-list', async () => {
    const allow = filter({ allowedHosts: ['images.example.com'] });
    await accepted('http://images.example.com/x', allow);
    await refused('http://mirror.example.com/x', allow);
    await refused(`http://${PUBLIC}/x`, allow);

    const both = filter({
      allowedHosts: ['images.example.com'],
      disallowedHosts: ['images.example.com'],
    });
    await accepted('http://images.example.com/x', both);
  });

  it('refuses deny-listed hosts, by name and by the addresses a name resolves to', async () => {
    await refused(
      'http://images.example.com/x',
      filter({ disallowedHosts: ['images.example.com'] }),
    );
    await accepted(
      'http://mirror.example.com/x',
      filter({ disallowedHosts: ['images.example.com'] }),
    );
    await refused('http://images.example.com/x', filter({ disallowedHosts: [PUBLIC] }));
    await refused(`http://${PUBLIC}/x`, filter({ disallowedHosts: [PUBLIC] }));
    await refused('http://mirror.example.com/x', filter({ disallowedHosts: ['[2001:db8::10]'] }));
  });

  it('matches hosts case-insensitively and ignores the trailing dot of a full name', async () => {
    const allow = filter({ allowedHosts: ['Images.Example.COM.'] });
    await accepted('http://IMAGES.example.com/x', allow);
    await accepted('http://images.example.com./x', allow);
    await refused(
      'http://images.example.com./x',
      filter({ disallowedHosts: ['images.example.com'] }),
    );
  });

  it('compares international names in their IDNA form', async () => {
    lookedUp.length = 0;
    await accepted('http://bücher.example/x', filter());
    assert.deepEqual(lookedUp, ['xn--bcher-kva.example']);
    await accepted('http://xn--bcher-kva.example/x', filter({ allowedHosts: ['BÜCHER.example'] }));
    await refused(
      'http://bücher.example/x',
      filter({ disallowedHosts: ['xn--bcher-kva.example'] }),
    );
  });

  it('refuses names that do not resolve', async () => {
    await refused('http://nowhere.example.com/x', filter());
  });

  it('refuses IPv4 literals that are not in dotted-decimal form', async () => {
    const open = filter({ refusePrivateAddresses: false });
    for (const host of [
      '0x7f.1',
      '0x7f000001',
      '2130706433',
      '127.1',
      '0177.0.0.1',
      '127.000.0.1',
      '127.0.0.1.',
      '１２７.０.０.１',
      '%31%32%37.0.0.1',
      '1.2.3',
      '12345',
      '256.1.1.1',
    ]) {
      await refused(`http://${host}/x`, open);
    }
    await accepted('http://127.0.0.1/x', open);
    await accepted(`http://${PUBLIC}/x`, filter());
  });

  it('reads IPv6 literals by value', async () => {
    await accepted('http://[2001:db8::1]/x', filter());
    await accepted('http://[2001:DB8:0:0:0:0:0:1]/x', filter({ allowedHosts: ['2001:db8::1'] }));
    await refused('http://[2001:db8::1]/x', filter({ disallowedHosts: ['[2001:db8:0::1]'] }));
    await refused('http://[2001:db8::1%25eth0]/x', filter());
    await refused('http://[2001:db8::1::2]/x', filter());
  });

  it('refuses what URL parsers read differently', async () => {
    for (const uri of [
      'http://images.example.com\\@127.0.0.1/x',
      'http://images.example.com\t/x',
      'http://images .example.com/x',
      ' http://images.example.com/x',
    ]) {
      await refused(uri, filter({ refusePrivateAddresses: false }));
    }
    // The host follows the last '@'; what precedes it is userinfo.
    await refused('http://images.example.com@127.0.0.1/x', filter());
    await refused('http://images.example.com%2f@127.0.0.1/x', filter());
  });

  it('allows credentials in the URI and keeps them out of messages', async () => {
    await accepted('http://user:secret@images.example.com/x', filter());
    await assert.rejects(
      validateImportUri('http://user:secret@images.example.com:8080/x', filter()),
      {
        message:
          'URI for web-download does not pass filtering: http://***@images.example.com:8080/x',
      },
    );
  });
});

describe('web-download URI filter: ports', () => {
  it('allows only 80 and 443 when the URI names a port', async () => {
    await refused('http://images.example.com:8080/x', filter());
    await refused('http://images.example.com:0/x', filter());
    await accepted('http://images.example.com:80/x', filter());
    await accepted('https://images.example.com:443/x', filter());
    await accepted('http://images.example.com:443/x', filter());
  });

  it('does not check the default port of a URI without one', async () => {
    await accepted('http://images.example.com/x', filter({ allowedPorts: [8080] }));
    await accepted(
      'https://images.example.com/x',
      filter({ allowedPorts: [], disallowedPorts: [443] }),
    );
    await accepted('http://images.example.com:/x', filter({ allowedPorts: [8080] }));
  });

  it('uses the deny-list only when the allow-list is empty', async () => {
    const deny = filter({ allowedPorts: [], disallowedPorts: [8080] });
    await refused('http://images.example.com:8080/x', deny);
    await accepted('http://images.example.com:8081/x', deny);
    const both = filter({ allowedPorts: [8080], disallowedPorts: [8080] });
    await accepted('http://images.example.com:8080/x', both);
    await refused('http://images.example.com:80/x', both);
  });
});

describe('web-download URI filter: private and special addresses', () => {
  const literals = [
    '127.0.0.1',
    '127.255.0.9',
    '10.0.0.1',
    '172.16.5.4',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '169.254.1.1',
    '100.64.0.1',
    '100.127.255.254',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '[::1]',
    '[::]',
    '[fe80::1]',
    '[fc00::1]',
    '[fd12:3456::1]',
    '[fd00:ec2::254]',
    '[ff02::1]',
    '[::ffff:127.0.0.1]',
    '[::ffff:7f00:1]',
    '[::ffff:10.0.0.1]',
    '[::127.0.0.1]',
    '[64:ff9b::169.254.169.254]',
    '[2002:c0a8:101::1]',
  ];

  it('refuses literals in those ranges by default', async () => {
    for (const host of literals) await refused(`http://${host}/x`, filter());
  });

  it('accepts them when the refusal is turned off or the address is allow-listed', async () => {
    const open = filter({ refusePrivateAddresses: false });
    for (const host of literals) await accepted(`http://${host}/x`, open);
    await accepted('http://[::1]/x', filter({ allowedHosts: ['::1'] }));
    await accepted('http://[::ffff:127.0.0.1]/x', filter({ allowedHosts: ['127.0.0.1'] }));
  });

  it('accepts addresses next to those ranges', async () => {
    for (const host of ['172.32.0.1', '100.128.0.1', '11.0.0.1', '[2001:db8::1]', '[fe00::1]']) {
      await accepted(`http://${host}/x`, filter());
    }
  });

  it('refuses names that resolve into them', async () => {
    for (const name of ['internal', 'metadata', 'ec2v6', 'mapped']) {
      await refused(`http://${name}.example.com/x`, filter());
    }
    await accepted(
      'http://internal.example.com/x',
      filter({ allowedHosts: ['internal.example.com'] }),
    );
    await accepted('http://internal.example.com/x', filter({ allowedHosts: ['10.1.2.3'] }));
  });

  it('keeps only the acceptable answers of a name', async () => {
    const target = await resolveImportUri('http://mixed.example.com/x', filter());
    assert.deepEqual(target.addresses, [{ address: PUBLIC, family: 4 }]);
  });

  it('refuses localhost unless the name or its address is allow-listed', async () => {
    const system = { lookup: undefined };
    await refused('http://localhost/x', filter(system));
    await refused('http://LOCALHOST./x', filter(system));
    await accepted('http://localhost/x', filter({ ...system, allowedHosts: ['localhost'] }));
    const byAddress = await resolveImportUri(
      'http://localhost/x',
      filter({ ...system, allowedHosts: ['127.0.0.1'] }),
    );
    assert.deepEqual(byAddress.addresses, [{ address: '127.0.0.1', family: 4 }]);
    // Listing the name does not vouch for the literal address.
    await refused('http://127.0.0.1/x', filter({ ...system, allowedHosts: ['localhost'] }));
  });
});

// ---------------------------------------------------------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface Listener {
  server: Server;
  port: number;
  connections: number;
  requests: IncomingMessage[];
}

async function listen(handler: Handler): Promise<Listener> {
  const server = createServer();
  const listener: Listener = { server, port: 0, connections: 0, requests: [] };
  server.on('connection', () => (listener.connections += 1));
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    listener.requests.push(req);
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  listener.port = (server.address() as AddressInfo).port;
  return listener;
}

async function stop(listener: Listener): Promise<void> {
  listener.server.closeAllConnections();
  await new Promise<void>((resolve) => listener.server.close(() => resolve()));
}

async function collect(body: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk);
  return Buffer.concat(chunks);
}

describe('web-download source', () => {
  const image = randomBytes(300 * 1024 + 17);
  let main: Listener;
  let other: Listener;
  let base: string;

  function options(overrides: Partial<WebSourceOptions> = {}): WebSourceOptions {
    return {
      ...defaultWebSourceOptions(),
      allowedHosts: ['127.0.0.1'],
      allowedPorts: [main.port],
      connectTimeoutMs: 2000,
      readTimeoutMs: 2000,
      maxRedirects: 3,
      ...overrides,
    };
  }

  function requestsTo(path: string): number {
    return main.requests.filter((req) => req.url === path).length;
  }

  const routes: Record<string, Handler> = {
    '/image': (_req, res) => {
      res.writeHead(200, { 'content-length': String(image.length) });
      for (let at = 0; at < image.length; at += 64 * 1024)
        res.write(image.subarray(at, at + 65536));
      res.end();
    },
    '/chunked': (_req, res) => {
      res.writeHead(200);
      res.write(image.subarray(0, 1000));
      setTimeout(() => res.end(image.subarray(1000)), 20);
    },
    '/short': (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write(image.subarray(0, 400), () => res.socket?.destroy());
    },
    '/long': (_req, res) => {
      // Node's server does not hold a response to its Content-Length: 500 bytes too many.
      res.writeHead(200, { 'content-length': '1000' });
      res.end(image.subarray(0, 1500));
    },
    '/long-later': (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write(image.subarray(0, 1000), () => res.end(image.subarray(1000, 1500)));
    },
    '/missing': (_req, res) => {
      res.writeHead(404).end('no such image');
    },
    '/to-image': (_req, res) => {
      res.writeHead(302, { location: '/image' }).end();
    },
    '/to-absolute': (_req, res) => {
      res.writeHead(301, { location: `http://127.0.0.1:${main.port}/image` }).end();
    },
    '/to-metadata': (_req, res) => {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    },
    '/to-other-port': (_req, res) => {
      res.writeHead(307, { location: `http://127.0.0.1:${other.port}/image` }).end();
    },
    '/to-encoded': (_req, res) => {
      res.writeHead(302, { location: `http://0x7f.1:${main.port}/image` }).end();
    },
    '/loop': (_req, res) => {
      res.writeHead(302, { location: '/loop' }).end();
    },
    '/stall-body': (_req, res) => {
      res.writeHead(200, { 'content-length': '1000' });
      res.write(image.subarray(0, 10));
    },
    '/stall-headers': () => {},
    '/echo': (req, res) => {
      const body = JSON.stringify({ host: req.headers.host, auth: req.headers.authorization });
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    },
    '/to-localhost-echo': (_req, res) => {
      res.writeHead(302, { location: `http://localhost:${main.port}/echo` }).end();
    },
  };

  before(async () => {
    main = await listen((req, res) => {
      const route = routes[req.url ?? ''];
      if (route) route(req, res);
      else res.writeHead(500).end();
    });
    other = await listen((_req, res) => res.end('should not be reached'));
    base = `http://127.0.0.1:${main.port}`;
  });

  after(async () => {
    await stop(main);
    await stop(other);
  });

  it('streams a body that matches its Content-Length', async () => {
    const source = await openWebSource(`${base}/image`, options());
    assert.equal(source.contentLength, image.length);
    assert.deepEqual(await collect(source.body), image);
  });

  it('streams a chunked body without Content-Length', async () => {
    const source = await openWebSource(`${base}/chunked`, options());
    assert.equal(source.contentLength, null);
    assert.deepEqual(await collect(source.body), image);
  });

  it('fails when the body is shorter than its Content-Length', async () => {
    const source = await openWebSource(`${base}/short`, options());
    assert.equal(source.contentLength, 1000);
    await assert.rejects(collect(source.body), /failed after 400 of 1000 bytes|400 of its 1000/);
  });

  it('fails when the source sends more bytes than its Content-Length', async () => {
    for (const path of ['/long', '/long-later']) {
      const source = await openWebSource(`${base}${path}`, options());
      assert.equal(source.contentLength, 1000);
      await assert.rejects(collect(source.body), /more than its Content-Length of 1000 bytes/);
    }
  });

  it('throws the status of a non-2xx answer', async () => {
    await assert.rejects(openWebSource(`${base}/missing`, options()), (error: unknown) => {
      assert.ok(error instanceof WebSourceHttpError);
      assert.equal(error.status, 404);
      assert.match(error.message, /404/);
      return true;
    });
  });

  it('follows redirects to acceptable URIs', async () => {
    for (const path of ['/to-image', '/to-absolute']) {
      const source = await openWebSource(`${base}${path}`, options());
      assert.deepEqual(await collect(source.body), image);
    }
  });

  it('refuses a redirect to a metadata address', async () => {
    await assert.rejects(openWebSource(`${base}/to-metadata`, options()), {
      name: 'InvalidInputError',
      message:
        'URI for web-download does not pass filtering: http://169.254.169.254/latest/meta-data/',
    });
  });

  it('refuses a redirect to a port that is not allowed, before connecting', async () => {
    await assert.rejects(openWebSource(`${base}/to-other-port`, options()), InvalidInputError);
    assert.equal(other.connections, 0);
  });

  it('checks an absolute Location as it was sent', async () => {
    await assert.rejects(openWebSource(`${base}/to-encoded`, options()), InvalidInputError);
  });

  it('stops a redirect loop after maxRedirects', async () => {
    const before = requestsTo('/loop');
    await assert.rejects(openWebSource(`${base}/loop`, options()), /after 3 redirects/);
    assert.equal(requestsTo('/loop') - before, 4);
  });

  it('fails a body that stalls, after the read timeout', async () => {
    const source = await openWebSource(`${base}/stall-body`, options({ readTimeoutMs: 200 }));
    const started = Date.now();
    await assert.rejects(
      collect(source.body),
      /failed after 10 of 1000 bytes: no data for 200 ms/,
    );
    assert.ok(Date.now() - started < 2000);
  });

  it('fails a server that never answers, after the read timeout', async () => {
    const started = Date.now();
    await assert.rejects(openWebSource(`${base}/stall-headers`, options({ readTimeoutMs: 200 })));
    assert.ok(Date.now() - started < 2000);
  });

  it('connects to the address the filter accepted, keeping the name in Host', async () => {
    lookedUp.length = 0;
    const zone = async (host: string): Promise<ResolvedAddress[]> => {
      lookedUp.push(host);
      return [{ address: '127.0.0.1', family: 4 }];
    };
    const source = await openWebSource(
      `http://images.test:${main.port}/echo`,
      options({ allowedHosts: ['images.test'], lookup: zone }),
    );
    const echo = JSON.parse((await collect(source.body)).toString()) as { host: string };
    assert.equal(echo.host, `images.test:${main.port}`);
    assert.deepEqual(lookedUp, ['images.test']);
  });

  it('resolves localhost with the system resolver when it is allow-listed', async () => {
    const uri = `http://localhost:${main.port}/image`;
    await assert.rejects(openWebSource(uri, options({ allowedHosts: [] })), InvalidInputError);
    const source = await openWebSource(uri, options({ allowedHosts: ['localhost'] }));
    assert.deepEqual(await collect(source.body), image);
  });

  it('sends credentials as Basic auth and not to another host', async () => {
    const allow = options({ allowedHosts: ['127.0.0.1', 'localhost'] });
    const direct = await openWebSource(`http://us%40er:p%3Ass@127.0.0.1:${main.port}/echo`, allow);
    const echo = JSON.parse((await collect(direct.body)).toString()) as { auth?: string };
    assert.equal(echo.auth, `Basic ${Buffer.from('us@er:p:ss').toString('base64')}`);

    const uri = `http://user:secret@127.0.0.1:${main.port}/to-localhost-echo`;
    const redirected = await openWebSource(uri, allow);
    const after = JSON.parse((await collect(redirected.body)).toString()) as { auth?: string };
    assert.equal(after.auth, undefined);
  });

  it('frees the connection when the consumer stops early', async () => {
    const source = await openWebSource(`${base}/image`, options());
    for await (const chunk of source.body) {
      assert.ok(chunk.length > 0);
      break;
    }
  });
});
