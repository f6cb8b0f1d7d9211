/**
 * Runs Glimpse as a real child process (dist/glimpse.mjs, the bundle `npm start` runs) for
 * end-to-end suites, and
 * runs outside commands such as the `glance` CLI of python-glanceclient against it.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../glimpse.mjs', import.meta.url));
const STARTUP_TIMEOUT_MS = 20_000;
/** How long a process gets to exit after a signal before the next, harder step. */
const EXIT_TIMEOUT_MS = 10_000;
const GLANCE_TIMEOUT_MS = 30_000;

export const GLANCE_MISSING =
  'the glance command is not installed (Debian package python3-glanceclient); ' +
  'install it with scripts/install-test-peers.sh';

export interface ServerProcess {
  readonly url: string;
  readonly port: number;
  readonly child: ChildProcess;
  readonly dataDir: string;
  /** Whether stopServer removes dataDir (true when startServer created it). */
  readonly ownsDataDir: boolean;
  /** Everything the process wrote, for failure messages. */
  output(): string;
}

export interface ServerOptions {
  /** Data directory to run on; a fresh temporary one, removed on stop, when absent. */
  readonly dataDir?: string;
  /** Further GLIMPSE_* settings (GLIMPSE_DATABASE_URL, ...). */
  readonly env?: Readonly<Record<string, string>>;
  /** The port to listen on, when it must be a known one; a free one otherwise. */
  readonly port?: number;
}

export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

// ---------------------------------------------------------------------------------------------
// The server process

/** Starts the bundled server on a free port and waits until it answers HTTP. */
export async function startServer(options: ServerOptions = {}): Promise<ServerProcess> {
  const port = options.port ?? (await freePort());
  const dataDir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'glimpse-e2e-')));
  // Settings inherited from a developer's shell must not change what the test runs against.
  const env: NodeJS.ProcessEnv = {
    ...withoutPrefix(process.env, 'GLIMPSE_'),
    GLIMPSE_PORT: String(port),
    GLIMPSE_DATA_DIR: dataDir,
    GLIMPSE_LOG_LEVEL: 'warn',
    ...options.env,
  };

  const child = spawn(process.execPath, ['--enable-source-maps', MAIN], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const started: ServerProcess = {
    url: `http://127.0.0.1:${port}`,
    port,
    child,
    dataDir,
    ownsDataDir: options.dataDir === undefined,
    output: () => output,
  };
  try {
    await waitUntilAnswering(started);
  } catch (error) {
    await stopServer(started);
    throw error;
  }
  return started;
}

/** A port nobody listens on right now (the server binds it a moment later). */
export async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const address = probe.address();
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no TCP port assigned');
  return address.port;
}

async function waitUntilAnswering(server: ServerProcess): Promise<void> {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) {
      throw new Error(`glimpse exited with ${server.child.exitCode}:\n${server.output()}`);
    }
    try {
      // Any HTTP answer will do: upstream answers /versions with 300 Multiple Choices.
      await fetch(`${server.url}/versions`, { signal: AbortSignal.timeout(1000) });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  throw new Error(`glimpse did not answer within ${STARTUP_TIMEOUT_MS} ms:\n${server.output()}`);
}

/**
 * Stops the server with SIGTERM (SIGKILL if it does not exit in time), then removes its data
 * directory if startServer created it. A process that already exited is left as it is.
 */
export async function stopServer(server: ServerProcess): Promise<void> {
  if (isRunning(server.child)) {
    if (!(await signalAndWait(server.child, 'SIGTERM'))) {
      await signalAndWait(server.child, 'SIGKILL');
    }
  }
  if (server.ownsDataDir) await rm(server.dataDir, { recursive: true, force: true });
}

/**
 * Kills the server with SIGKILL, as a crash or the OOM killer would, and waits until the
 * process is gone (and reaped, so that its pid no longer answers).
 */
export async function killServer(server: ServerProcess): Promise<void> {
  if (!isRunning(server.child)) throw new Error('the server is not running');
  if (!(await signalAndWait(server.child, 'SIGKILL'))) {
    throw new Error(`glimpse (pid ${server.child.pid}) survived SIGKILL`);
  }
}

function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** Sends the signal; true once the process exited, false if it still runs at the deadline. */
async function signalAndWait(child: ChildProcess, signal: NodeJS.Signals): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const exited = new Promise<boolean>((resolve) => {
    child.once('exit', () => resolve(true));
    timer = setTimeout(() => resolve(false), EXIT_TIMEOUT_MS);
  });
  child.kill(signal);
  try {
    return await exited;
  } finally {
    clearTimeout(timer);
  }
}

// ---------------------------------------------------------------------------------------------
// Outside commands

/** The full path of an executable on PATH, or null. */
export async function findOnPath(command: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const candidate = join(dir, command);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory; keep looking.
    }
  }
  return null;
}

/** The environment without variables starting with prefix. */
export function withoutPrefix(env: NodeJS.ProcessEnv, prefix: string): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith(prefix)));
}

/** Output beyond this fails a command: the CLIs' JSON listings stay far below it. */
const COMMAND_MAX_BUFFER = 4 * 1024 * 1024;

export interface CommandOptions {
  readonly env: NodeJS.ProcessEnv;
  readonly timeoutMs: number;
  readonly cwd?: string;
  /**
   * Standard input is closed by default; 'empty' gives it /dev/null, for a command that must
   * find no data there rather than none at all.
   */
  readonly stdin?: 'closed' | 'empty';
}

/** Runs command; its exit code and output, whatever the code (only a failure to run throws). */
export function runCommand(
  command: string,
  args: readonly string[],
  options: CommandOptions,
): Promise<CommandResult> {
  const redirect = options.stdin === 'empty' ? '</dev/null' : '<&-';
  const { env, cwd, timeoutMs: timeout } = options;
  return new Promise((resolve, reject) => {
    execFile(
      '/bin/sh',
      ['-c', `exec "$@" ${redirect}`, 'sh', command, ...args],
      { env, cwd, timeout, maxBuffer: COMMAND_MAX_BUFFER },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error);
        else resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

/**
 * Runs glance against the server at url, sending token (any will do for a server in noauth
 * mode). Standard input is closed rather than empty: glanceclient treats a non-terminal stdin
 * as image data and would upload it after image-create.
 */
export function runGlance(
  glancePath: string,
  url: string,
  args: string[],
  token = 'any-token',
): Promise<CommandResult> {
  const argv = [
    ...['--os-image-url', url, '--os-auth-token', token],
    ...['--os-image-api-version', '2'],
    ...args,
  ];
  // OS_* variables (OS_CLOUD, OS_AUTH_URL, ...) would point glance elsewhere.
  return runCommand(glancePath, argv, {
    env: withoutPrefix(process.env, 'OS_'),
    timeoutMs: GLANCE_TIMEOUT_MS,
  });
}

/** Why a suite that runs glance is skipped: glance is missing, outside CI (which needs it). */
export function glanceSkipReason(glancePath: string | null): string | false {
  return glancePath === null && process.env.CI !== 'true' ? GLANCE_MISSING : false;
}

/** A suite that runs glance against a server of its own. */
export interface GlanceSuite {
  /** The suite's skip option: why it cannot run here, or false. */
  readonly skip: string | false;
  /** Starts the server; fails when glance is missing (under CI, which needs it). */
  startServer(): Promise<void>;
  stopServer(): Promise<void>;
  /** Runs glance against the server (with standard input closed, see runGlance). */
  glance(...args: string[]): Promise<CommandResult>;
  /** stdout of a glance call that must succeed. */
  glanceOk(...args: string[]): Promise<string>;
}

export async function glanceSuite(): Promise<GlanceSuite> {
  const glancePath = await findOnPath('glance');
  let server: ServerProcess | undefined;
  const glance = (...args: string[]): Promise<CommandResult> => {
    if (!server) throw new Error('the server is not running');
    return runGlance(glancePath ?? 'glance', server.url, args);
  };
  const glanceOk = async (...args: string[]): Promise<string> => {
    const result = await glance(...args);
    assert.equal(
      result.code,
      0,
      `glance ${args.join(' ')} exited with ${result.code}:\n${result.stderr}${result.stdout}` +
        `\nglimpse output (tail):\n${server?.output().slice(-4000) ?? ''}`,
    );
    return result.stdout;
  };
  return {
    skip: glanceSkipReason(glancePath),
    async startServer() {
      if (glancePath === null) throw new Error(`${GLANCE_MISSING}; CI requires it`);
      server = await startServer();
    },
    async stopServer() {
      if (server) await stopServer(server);
    },
    glance,
    glanceOk,
  };
}

// ---------------------------------------------------------------------------------------------
// Reading glance's tables

/** Cells of every `| a | b |` line, header row included. */
export function tableRows(output: string): string[][] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('|'))
    .map((line) =>
      line
        .split('|')
        .slice(1, -1)
        .map((cell) => cell.trim()),
    );
}

/**
 * A Property/Value table (image-show, image-create, image-update) as an object. glance wraps
 * values wider than its column (80 characters) onto rows with an empty Property cell; a value
 * without spaces, such as a SHA-512 hex digest, is cut at the column width, so the pieces are
 * joined back without a separator.
 */
export function showTable(output: string): Record<string, string> {
  const [header, ...rows] = tableRows(output);
  assert.deepEqual(header, ['Property', 'Value'], `not a property table:\n${output}`);
  const shown: Record<string, string> = {};
  let last: string | null = null;
  for (const [key = '', value = ''] of rows) {
    if (key === '' && last !== null) {
      shown[last] += value;
    } else {
      shown[key] = value;
      last = key;
    }
  }
  return shown;
}

/** The keys of a shown table, with `<absent>` for those it lacks. */
export function pickShown(
  shown: Record<string, string>,
  keys: readonly string[],
): Record<string, string> {
  return Object.fromEntries(keys.map((key) => [key, shown[key] ?? '<absent>']));
}
