/**
 * Small web servers on 127.0.0.1: one holding files in memory, for the http store (GET and
 * HEAD, single byte ranges: 206, or 416 past the end; 404 for anything it does not hold), and
 * one whose paths each answer as a test sets them up, for web-download sources.
 */
import http from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
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

/** How a path answers a request; hit counts the requests of that path, from 1. */
export type Route = (request: IncomingMessage, response: ServerResponse, hit: number) => void;

/** A server answering each path with the route set for it, counting the requests of each. */
export class RouteServer {
  readonly #routes = new Map<string, Route>();
  readonly #hits = new Map<string, number>();
  readonly #server = http.createServer((request, response) => this.#handle(request, response));
  #port = 0;

  /** Listens on a free port; the server itself. */
  async listen(): Promise<this> {
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(0, '127.0.0.1', resolve);
    });
    this.#port = (this.#server.address() as AddressInfo).port;
    return this;
  }

  get port(): number {
    return this.#port;
  }

  url(path: string): string {
    return `http://127.0.0.1:${this.#port}${path}`;
  }

  hits(path: string): number {
    return this.#hits.get(path) ?? 0;
  }

  /** Answers the requests of path with route; the path's URL. */
  route(path: string, route: Route): string {
    this.#routes.set(path, route);
    return this.url(path);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  #handle(request: IncomingMessage, response: ServerResponse): void {
    const path = request.url ?? '';
    const hit = this.hits(path) + 1;
    this.#hits.set(path, hit);
    const route = this.#routes.get(path);
    if (route) route(request, response, hit);
    else response.writeHead(404).end('no such test body');
  }
}
