/**
 * Drives a real Glimpse process with the `glance` command of python-glanceclient, the client
 * operators actually use, and checks what it prints at each step of an image's life.
 *
 * Needs the Debian package python3-glanceclient (scripts/install-test-peers.sh installs it).
 * Without it the suite is skipped, except under CI (CI=true), where it fails.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const GLANCE_TIMEOUT_MS = 30_000;
const STARTUP_TIMEOUT_MS = 20_000;

const MISSING =
  'the glance command is not installed (Debian package python3-glanceclient); ' +
  'install it with scripts/install-test-peers.sh';

/** Fields image-create sets or defaults, as glance prints them. */
const AS_CREATED: Readonly<Record<string, string>> = {
  name: 'cli-cirros',
  disk_format: 'qcow2',
  container_format: 'bare',
  os_distro: 'cirros',
  visibility: 'public',
  status: 'queued',
  protected: 'False',
  size: 'None',
  checksum: 'None',
};

const isCi = process.env.CI === 'true';
const glancePath = await findOnPath('glance');

interface Server {
  readonly url: string;
  readonly child: ChildProcess;
  readonly dataDir: string;
  /** Everything the process wrote, for failure messages. */
  output(): string;
}

interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let server: Server | undefined;

describe('the glance CLI against a running Glimpse', { skip: skipReason() }, () => {
  let imageId = '';
  let otherId = '';

  before(async () => {
    if (glancePath === null) throw new Error(`${MISSING}; CI requires it`);
    server = await startServer();
  });

  after(async () => {
    if (server) await stopServer(server);
  });

  it('image-create prints a queued image with the given fields', async () => {
    const shown = showTable(
      await glanceOk(
        'image-create',
        ...['--name', 'cli-cirros', '--disk-format', 'qcow2', '--container-format', 'bare'],
        ...['--property', 'os_distro=cirros', '--visibility', 'public'],
      ),
    );
    assert.match(shown.id ?? '', UUID);
    imageId = shown.id ?? '';
    assert.deepEqual(pick(shown, Object.keys(AS_CREATED)), AS_CREATED);
    assert.deepEqual(tagsOf(shown), []);

    // A second, private image that every filter below must leave out.
    const other = showTable(
      await glanceOk(
        'image-create',
        ...['--name', 'cli-other', '--disk-format', 'raw', '--container-format', 'bare'],
        ...['--property', 'os_distro=debian', '--visibility', 'private'],
      ),
    );
    otherId = other.id ?? '';
    assert.match(otherId, UUID);
    assert.notEqual(otherId, imageId);
  });

  it('image-list filters by property, visibility and tag', async () => {
    assert.deepEqual(await listIds(), [imageId, otherId].sort());
    assert.deepEqual(await listIds('--property-filter', 'os_distro=cirros'), [imageId]);
    assert.deepEqual(await listIds('--visibility', 'public'), [imageId]);
    assert.deepEqual(await listIds('--visibility', 'private'), [otherId]);
    assert.deepEqual(await listIds('--tag', 't1'), []);
  });

  it('image-show prints the stored image', async () => {
    const shown = showTable(await glanceOk('image-show', imageId));
    assert.equal(shown.id, imageId);
    assert.deepEqual(pick(shown, Object.keys(AS_CREATED)), AS_CREATED);
  });

  it('image-update renames, adds a property and removes another', async () => {
    const printed = showTable(
      await glanceOk(
        'image-update',
        ...['--name', 'cli-renamed', '--property', 'k=v', '--remove-property', 'os_distro'],
        imageId,
      ),
    );
    const shown = showTable(await glanceOk('image-show', imageId));
    for (const image of [printed, shown]) {
      assert.equal(image.name, 'cli-renamed');
      assert.equal(image.k, 'v');
      assert.equal(image.os_distro, undefined, 'os_distro should be gone');
      assert.equal(image.status, 'queued');
    }
    assert.deepEqual(await listIds('--property-filter', 'os_distro=cirros'), []);
    assert.deepEqual(await listIds('--property-filter', 'k=v'), [imageId]);
  });

  it('image-tag-update adds a tag that image-show and image-list see', async () => {
    const rows = tableRows(await glanceOk('image-tag-update', imageId, 't1'));
    assert.deepEqual(rows, [
      ['ID', 'Tags'],
      [imageId, "['t1']"],
    ]);
    assert.deepEqual(tagsOf(showTable(await glanceOk('image-show', imageId))), ['t1']);
    assert.deepEqual(await listIds('--tag', 't1'), [imageId]);
  });

  it('image-tag-delete removes the tag', async () => {
    const result = await glanceOk('image-tag-delete', imageId, 't1');
    assert.equal(result.trim(), '');
    assert.deepEqual(tagsOf(showTable(await glanceOk('image-show', imageId))), []);
    assert.deepEqual(await listIds('--tag', 't1'), []);
  });

  it('image-delete removes the image, after which image-show fails', async () => {
    await glanceOk('image-delete', imageId);

    const result = await glance('image-show', imageId);
    assert.notEqual(result.code, 0, `image-show of a deleted image succeeded:\n${result.stdout}`);
    assert.match(result.stderr, /404 Not Found/);
    assert.deepEqual(await listIds(), [otherId]);
  });
});

function skipReason(): string | false {
  return glancePath === null && !isCi ? MISSING : false;
}

async function findOnPath(command: string): Promise<string | null> {
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

// ---------------------------------------------------------------------------------------------
// The server process

async function startServer(): Promise<Server> {
  const port = await freePort();
  const dataDir = await mkdtemp(join(tmpdir(), 'glimpse-e2e-'));
  // Settings inherited from a developer's shell must not change what the test runs against.
  const env: NodeJS.ProcessEnv = {
    ...withoutPrefix(process.env, 'GLIMPSE_'),
    GLIMPSE_PORT: String(port),
    GLIMPSE_DATA_DIR: dataDir,
    GLIMPSE_LOG_LEVEL: 'warn',
  };

  const child = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const collect = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-20_000);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);

  const started: Server = {
    url: `http://127.0.0.1:${port}`,
    child,
    dataDir,
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
async function freePort(): Promise<number> {
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

async function waitUntilAnswering(server: Server): Promise<void> {
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

async function stopServer(server: Server): Promise<void> {
  if (server.child.exitCode === null && server.child.signalCode === null) {
    const exited = new Promise((resolve) => server.child.once('exit', resolve));
    server.child.kill('SIGTERM');
    await exited;
  }
  await rm(server.dataDir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// Running glance

/**
 * Runs glance against the server. Standard input is closed rather than empty: glanceclient
 * treats a non-terminal stdin as image data and would upload it after image-create.
 */
function glance(...args: string[]): Promise<CliResult> {
  if (!server) throw new Error('the server is not running');
  const argv = [
    ...['--os-image-url', server.url, '--os-auth-token', 'any-token'],
    ...['--os-image-api-version', '2'],
    ...args,
  ];
  return new Promise((resolve, reject) => {
    execFile(
      '/bin/sh',
      ['-c', 'exec "$@" <&-', 'sh', glancePath ?? 'glance', ...argv],
      // OS_* variables (OS_CLOUD, OS_AUTH_URL, ...) would point glance elsewhere.
      { env: withoutPrefix(process.env, 'OS_'), timeout: GLANCE_TIMEOUT_MS },
      (error, stdout, stderr) => {
        if (error && typeof error.code !== 'number') reject(error);
        else resolve({ code: error ? Number(error.code) : 0, stdout, stderr });
      },
    );
  });
}

/** stdout of a glance call that must succeed. */
async function glanceOk(...args: string[]): Promise<string> {
  const result = await glance(...args);
  assert.equal(
    result.code,
    0,
    `glance ${args.join(' ')} exited with ${result.code}:\n${result.stderr}${result.stdout}` +
      `\nglimpse output (tail):\n${server?.output().slice(-4000) ?? ''}`,
  );
  return result.stdout;
}

/** The environment without variables starting with prefix. */
function withoutPrefix(env: NodeJS.ProcessEnv, prefix: string): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !name.startsWith(prefix)));
}

// ---------------------------------------------------------------------------------------------
// Reading glance's tables

/** Cells of every `| a | b |` line, header row included. */
function tableRows(output: string): string[][] {
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

/** A Property/Value table (image-show, image-create, image-update) as an object. */
function showTable(output: string): Record<string, string> {
  const [header, ...rows] = tableRows(output);
  assert.deepEqual(header, ['Property', 'Value'], `not a property table:\n${output}`);
  return Object.fromEntries(rows.map(([key = '', value = '']) => [key, value]));
}

/** glance prints tags as JSON (`["t1"]`) in property tables. */
function tagsOf(shown: Record<string, string>): string[] {
  return JSON.parse(shown.tags ?? 'null') as string[];
}

async function listIds(...filters: string[]): Promise<string[]> {
  const [header, ...rows] = tableRows(await glanceOk('image-list', ...filters));
  assert.deepEqual(header, ['ID', 'Name']);
  return rows.map(([id = '']) => id).sort();
}

function pick(shown: Record<string, string>, keys: readonly string[]): Record<string, string> {
  return Object.fromEntries(keys.map((key) => [key, shown[key] ?? '<absent>']));
}
