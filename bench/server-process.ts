/**
 * Runs the real server as a child process, the way an operator would (`npm start` runs `node
 * --max-semi-space-size=2 dist/glimpse.mjs`), so that the figures include Fastify, logging and
 * the database driver as deployed.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';

import { request } from 'undici';

/** The bundled server, next to this file's compiled copy (dist/bench → dist). */
const MAIN = fileURLToPath(new URL('../glimpse.mjs', import.meta.url));
/** The flags `npm start` gives node. */
const START_FLAGS = ['--max-semi-space-size=2'];

const POLL_MS = 3;
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 5_000;

export interface ServerOptions {
  dataDir: string;
  /** Empty for SQLite in dataDir. */
  databaseUrl: string;
  /** API processes (the `workers` option); 1 when absent. */
  workers?: number;
  /** Extra arguments to node before the script, e.g. --cpu-prof. */
  nodeArgs?: string[];
}

export interface RunningServer {
  readonly url: string;
  readonly pid: number;
  /** Spawn to the first successful GET /versions, in milliseconds. */
  readonly startupMs: number;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  if (address === null || typeof address === 'string') throw new Error('no TCP port');
  return address.port;
}

/** The caller's GLIMPSE_* variables would override ours (or be rejected as unknown). */
function childEnvironment(port: number, options: ServerOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('GLIMPSE_')) env[key] = value;
  }
  env.GLIMPSE_PORT = String(port);
  env.GLIMPSE_DATA_DIR = options.dataDir;
  // At info every request writes a log line; that would measure pino, not the service.
  env.GLIMPSE_LOG_LEVEL = 'warn';
  if (options.databaseUrl !== '') env.GLIMPSE_DATABASE_URL = options.databaseUrl;
  if (options.workers !== undefined) env.GLIMPSE_WORKERS = String(options.workers);
  return env;
}

export async function startServer(options: ServerOptions): Promise<RunningServer> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const started = performance.now();
  // The data directory is the working directory, so a glimpse.json lying around is not read.
  const child = spawn(process.execPath, [...START_FLAGS, ...(options.nodeArgs ?? []), MAIN], {
    cwd: options.dataDir,
    env: childEnvironment(port, options),
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });

  try {
    await waitUntilReady(url, child);
  } catch (error) {
    child.kill('SIGKILL');
    throw new Error(`server did not start: ${(error as Error).message}\n${stderr}`);
  }
  const startupMs = performance.now() - started;
  return { url, pid: child.pid ?? -1, startupMs, stop: () => stopChild(child) };
}

async function waitUntilReady(url: string, child: ChildProcess): Promise<void> {
  const deadline = performance.now() + READY_TIMEOUT_MS;
  while (performance.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`exited with code ${child.exitCode}`);
    try {
      const response = await request(`${url}/versions`);
      await response.body.dump();
      if (response.statusCode === 200 || response.statusCode === 300) return;
    } catch {
      // Not listening yet.
    }
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
  throw new Error(`no answer on ${url}/versions within ${READY_TIMEOUT_MS} ms`);
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
