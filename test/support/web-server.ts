/**
 * A small web server on 127.0.0.1 holding files in memory, for the http store: GET and HEAD,
 * single byte ranges (206, or 416 past the end), 404 for anything it does not hold.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface WebServer {
  /** Path → bytes; change it at any time. */
  readonly files: Map<string, Buffer>;
  /** The path of every request, in the order they came. */
  readonly requests: string[];
  readonly port: number;
  /** http://127.0.0.1:<port><path>. */
  url(path: string): string;
  close(): Promise<void>;
}

export async function startWebServer(): Promise<WebServer> {
  const files = new Map<string, Buffer>();
  const requests: string[] = [];
  const server = http.createServer((request, response) => {
    requests.push(request.url ?? '');
    const data = files.get(request.url ?? '');
    if (!data) return void response.writeHead(404).end();
    const head = request.method === 'HEAD';
    const range = /^bytes=(\d+)-(\d*)$/.exec(request.headers.range ?? '');
    if (!range) {
      response.writeHead(200, { 'content-length': String(data.length) });
      return void response.end(head ? undefined : data);
    }
    const start = Number(range[1]);
    const end = Math.min(range[2] ? Number(range[2]) : data.length - 1, data.length - 1);
    if (start >= data.length) {
      response.writeHead(416, { 'content-range': `bytes */${data.length}` });
      return void response.end();
    }
    response.writeHead(206, {
      'content-length': String(end - start + 1),
      'content-range': `bytes ${start}-${end}/${data.length}`,
    });
    response.end(head ? undefined : data.subarray(start, end + 1));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    files,
    requests,
    port,
    url: (path) => `http://127.0.0.1:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
