/**
 * A TCP proxy on 127.0.0.1 in front of a real server, for tests that need the connection to a
 * store to fail: cut every open connection, refuse new ones, or cut each connection after the
 * server has sent some bytes (a download that dies midway).
 */
import { createServer, connect, type Server, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';

export interface TcpProxyTarget {
  readonly host: string;
  readonly port: number;
}

export interface TcpProxy {
  readonly port: number;
  /** http://127.0.0.1:<port>, for HTTP servers behind the proxy. */
  readonly url: string;
  /** Destroys every open connection (both sides). */
  cutAll(): void;
  /** While on, new connections are closed as soon as they are accepted. */
  refuse(on: boolean): void;
  /**
   * Destroys each connection once `bytes` bytes have come from the server through it (counted
   * per connection, from when it opened); null turns this off. Applies to open connections too.
   */
  cutAfterBytes(bytes: number | null): void;
  /** Bytes the server has sent through the proxy so far, over all connections. */
  bytesFromServer(): number;
  close(): Promise<void>;
}

interface Pair {
  readonly client: Socket;
  readonly server: Socket;
  /** Bytes passed from the server to the client. */
  downstream: number;
  /** Whether the byte limit ended the connection. */
  cut: boolean;
}

export async function startTcpProxy(target: TcpProxyTarget): Promise<TcpProxy> {
  const pairs = new Set<Pair>();
  const totals = { fromServer: 0 };
  let refusing = false;
  let cutAfter: number | null = null;

  const proxy: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const server = connect(target.port, target.host);
    const pair: Pair = { client, server, downstream: 0, cut: false };
    pairs.add(pair);
    const destroy = (): void => {
      client.destroy();
      server.destroy();
      pairs.delete(pair);
    };
    client.on('error', destroy).on('close', destroy);
    // A server that closes its side gets the client's closed too, once the data is through.
    server.on('error', destroy).on('end', () => client.end());
    server.on('close', () => {
      pairs.delete(pair);
      if (!client.writableEnded) client.end();
    });
    client.pipe(server);
    server.on('data', (data: Buffer) => {
      totals.fromServer += data.length;
      forward(pair, data, cutAfter);
    });
    // Backpressure from a slow client reaches the server.
    client.on('drain', () => server.resume());
  });

  await new Promise<void>((resolve, reject) => {
    proxy.once('error', reject);
    proxy.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = proxy.address() as AddressInfo;

  const cutAll = (): void => {
    for (const pair of [...pairs]) {
      pair.client.destroy();
      pair.server.destroy();
      pairs.delete(pair);
    }
  };
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    cutAll,
    refuse(on) {
      refusing = on;
    },
    cutAfterBytes(bytes) {
      cutAfter = bytes;
    },
    bytesFromServer: () => totals.fromServer,
    async close() {
      cutAll();
      await new Promise<void>((resolve) => proxy.close(() => resolve()));
    },
  };
}

/** Passes server data to the client, up to the byte limit, then ends the connection. */
function forward(pair: Pair, data: Buffer, limit: number | null): void {
  if (pair.cut) return;
  const room = limit === null ? data.length : Math.max(0, limit - pair.downstream);
  if (room < data.length) {
    pair.cut = true;
    pair.downstream += room;
    // The bytes within the limit still reach the client; nothing after them does.
    pair.client.end(data.subarray(0, room));
    pair.server.destroy();
    return;
  }
  pair.downstream += data.length;
  if (!pair.client.write(data)) pair.server.pause();
}
