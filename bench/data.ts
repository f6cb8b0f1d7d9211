/**
 * The image data path against a running server: uploads, downloads and imports of generated
 * streams (data-source.ts), each checked against the expected bytes and checksums, and timed
 * while the server's memory and CPU are watched.
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';

import { Agent, request, type Dispatcher } from 'undici';

import { matchesAt, streamChunks, type ExpectedHashes, type StreamSpec } from './data-source.js';
import { cpuShares, cpuSnapshot, type CpuShares } from './machine.js';

const JSON_TYPE = { 'content-type': 'application/json' };
const OCTETS = 'application/octet-stream';
const RSS_SAMPLE_MS = 50;
/** Often enough that an import's end is seen within 1% of its duration, yet cheap to serve. */
const IMPORT_POLL_MS = 25;
const IMPORT_TIMEOUT_MS = 300_000;
const IMPORT_LOCK = 'os_glance_import_task';

export interface ImageView {
  id: string;
  status: string;
  size: number | null;
  checksum: string | null;
  os_hash_algo: string | null;
  os_hash_value: string | null;
  [property: string]: unknown;
}

/** What one measured scenario cost the server. */
export interface Measurement {
  bytes: number;
  seconds: number;
  /** Decimal megabytes (10^6 bytes) per second. */
  mbPerSecond: number;
  peakRssMiB: number;
  cpu: CpuShares;
}

/** A problem with the data, or null when it matched what was sent. */
export type Check = string | null;

// ---------------------------------------------------------------------------------------------
// Watching the server

export function rssMiB(pid: number): number {
  try {
    const match = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** Times `work`, sampling the server's resident memory every 50 ms while it runs. */
export async function measure(
  serverPid: number,
  bytes: number,
  work: () => Promise<void>,
): Promise<Measurement> {
  let peakRssMiB = rssMiB(serverPid);
  const sample = () => (peakRssMiB = Math.max(peakRssMiB, rssMiB(serverPid)));
  const timer = setInterval(sample, RSS_SAMPLE_MS);
  const before = cpuSnapshot(serverPid, null);
  const started = performance.now();
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  const seconds = (performance.now() - started) / 1000;
  sample();
  const cpu = cpuShares(before, cpuSnapshot(serverPid, null), false);
  return { bytes, seconds, mbPerSecond: bytes / 1e6 / seconds, peakRssMiB, cpu };
}

// ---------------------------------------------------------------------------------------------
// Talking to the server

export class DataClient {
  readonly #agent: Dispatcher;

  constructor(readonly url: string) {
    // One connection per concurrent transfer; nothing else shares this pool.
    this.#agent = new Agent({ keepAliveTimeout: 30_000 });
  }

  async close(): Promise<void> {
    await this.#agent.close();
  }

  async #json(method: Dispatcher.HttpMethod, path: string, body?: unknown): Promise<unknown> {
    const response = await request(`${this.url}${path}`, {
      method,
      dispatcher: this.#agent,
      headers: body === undefined ? {} : JSON_TYPE,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) {
      throw new Error(`${method} ${path}: ${response.statusCode} ${text}`);
    }
    return text === '' ? null : JSON.parse(text);
  }

  async createImage(name: string): Promise<string> {
    const body = { name, disk_format: 'raw', container_format: 'bare' };
    return ((await this.#json('POST', '/v2/images', body)) as ImageView).id;
  }

  async deleteImage(id: string): Promise<void> {
    await this.#json('DELETE', `/v2/images/${id}`);
  }

  image(id: string): Promise<ImageView> {
    return this.#json('GET', `/v2/images/${id}`) as Promise<ImageView>;
  }

  /**
   * PUT to /file (upload) or /stage (glance-direct), streaming the chunks as they come; `store`
   * names the target store (X-Image-Meta-Store).
   */
  async send(id: string, target: 'file' | 'stage', spec: StreamSpec, store?: string) {
    const headers: Record<string, string> = {
      'content-type': OCTETS,
      'content-length': String(spec.bytes),
    };
    if (store !== undefined) headers['x-image-meta-store'] = store;
    const response = await request(`${this.url}/v2/images/${id}/${target}`, {
      method: 'PUT',
      dispatcher: this.#agent,
      headers,
      body: Readable.from(streamChunks(spec), { objectMode: false }),
    });
    const text = await response.body.text();
    if (response.statusCode !== 204) {
      throw new Error(`PUT ${target} of ${id}: ${response.statusCode} ${text}`);
    }
  }

  /**
   * Downloads the image, comparing every byte with the stream it was made from, and its MD5
   * and SHA-512 with those expected; `store` is the store to read first (?prefer=). Done
   * after a timed download: checking costs the client CPU the timed client does not spend.
   */
  async download(id: string, spec: StreamSpec, store?: string): Promise<Check> {
    const response = await this.#get(id, store);
    if (response.statusCode !== 200) return answered(response);
    let received = 0;
    let problem: Check = null;
    for await (const chunk of response.body as AsyncIterable<Buffer>) {
      if (problem === null && !matchesAt(spec, received, chunk)) {
        problem = `downloaded bytes differ from those sent near offset ${received}`;
      }
      received += chunk.length;
    }
    if (problem === null && received !== spec.bytes) {
      problem = `downloaded ${received} of ${spec.bytes} bytes`;
    }
    return problem;
  }

  /**
   * Downloads the image as the loopback ceiling's client does, counting the bytes and
   * nothing more; the timed half of a download scenario.
   */
  async fetch(id: string, spec: StreamSpec, store?: string): Promise<Check> {
    const response = await this.#get(id, store);
    if (response.statusCode !== 200) return answered(response);
    let received = 0;
    for await (const chunk of response.body as AsyncIterable<Buffer>) received += chunk.length;
    return received === spec.bytes ? null : `downloaded ${received} of ${spec.bytes} bytes`;
  }

  #get(id: string, store: string | undefined) {
    const query = store === undefined ? '' : `?prefer=${encodeURIComponent(store)}`;
    return request(`${this.url}/v2/images/${id}/file${query}`, { dispatcher: this.#agent });
  }

  async startImport(id: string, method: Record<string, string>): Promise<void> {
    await this.#json('POST', `/v2/images/${id}/import`, { method });
  }

  /** Polls until the import made the image active; fails with the task's message if not. */
  async waitUntilActive(id: string): Promise<void> {
    const deadline = performance.now() + IMPORT_TIMEOUT_MS;
    while (performance.now() < deadline) {
      const image = await this.image(id);
      if (image.status === 'active') return;
      // A failed import puts the image back to queued and releases its lock.
      if (image.status === 'queued' && image[IMPORT_LOCK] === undefined) {
        throw new Error(`import of ${id} failed: ${await this.#taskMessage(id)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, IMPORT_POLL_MS));
    }
    throw new Error(`import of ${id} not active after ${IMPORT_TIMEOUT_MS / 1000} s`);
  }

  async #taskMessage(id: string): Promise<string> {
    const body = (await this.#json('GET', `/v2/images/${id}/tasks`)) as {
      tasks?: Array<{ status?: string; message?: string }>;
    };
    const task = body.tasks?.[0];
    return task ? `${task.status ?? '?'}: ${task.message ?? ''}` : 'no task';
  }

  /** Compares what the server recorded for the image with the data sent. */
  async checkImage(id: string, spec: StreamSpec, expected: ExpectedHashes): Promise<Check> {
    const image = await this.image(id);
    const problems: string[] = [];
    if (image.status !== 'active') problems.push(`status ${image.status}`);
    if (image.size !== spec.bytes) problems.push(`size ${image.size}`);
    if (image.checksum !== expected.md5) problems.push(`checksum ${image.checksum}`);
    if (image.os_hash_algo !== 'sha512') problems.push(`os_hash_algo ${image.os_hash_algo}`);
    if (image.os_hash_value !== expected.sha512) problems.push('os_hash_value differs');
    return problems.length === 0 ? null : `image ${id}: ${problems.join(', ')}`;
  }
}

async function answered(response: Dispatcher.ResponseData): Promise<Check> {
  const text = await response.body.text();
  return `GET file answered ${response.statusCode} ${text}`;
}

// ---------------------------------------------------------------------------------------------
// A web server for web-download

export interface StreamServer {
  /** Address of the stream, e.g. http://127.0.0.1:port/image. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

async function serve(spec: StreamSpec, res: ServerResponse): Promise<void> {
  res.writeHead(200, { 'content-type': OCTETS, 'content-length': String(spec.bytes) });
  for (const chunk of streamChunks(spec)) {
    if (res.destroyed) return;
    if (!res.write(chunk)) await once(res, 'drain');
  }
  res.end();
}

/** Serves the stream on 127.0.0.1 to any GET, as an image's origin server would. */
export async function serveStream(spec: StreamSpec): Promise<StreamServer> {
  const server = createServer((_req, res) => {
    serve(spec, res).catch(() => res.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/image`,
    port,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}
