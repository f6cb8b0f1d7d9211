/**
 * Interoperable import driven by the real `openstack` command (python3-openstackclient) against
 * a Glimpse process in noauth mode, with a web-download source served by this test process.
 *
 * Pointing the CLI at the server without Keystone: `--os-auth-type none --os-endpoint <url>`
 * makes openstackclient send its image calls to <url> without a token (noauth then treats the
 * caller as an admin).
 *
 * What the client can do depends on its release. `openstack image create --import --file`
 * (openstackclient 5.x and later) creates the image, stages the file and imports it with
 * glance-direct. The `openstack image stage` and `openstack image import` commands, and with
 * them web-download, came in later releases; Debian 12 ships openstackclient 6.0.0, which has
 * neither, so those tests run only where the commands exist. The same two workflows are then
 * also driven with the `glance` command (python3-glanceclient), which has had them for long:
 * `image-create-via-import --import-method web-download --uri` and `image-stage` followed by
 * `image-import --import-method glance-direct`.
 *
 * Without the openstack command the suite is skipped, and without glance its part is, except
 * under CI (CI=true), where they fail.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';

import { OPENSTACK_MISSING, openstackSkipReason } from '../support/openstack-cli.js';
import {
  findOnPath,
  GLANCE_MISSING,
  glanceSkipReason,
  runCommand,
  runGlance,
  showTable,
  startServer,
  stopServer,
  withoutPrefix,
  type CommandResult,
  type ServerProcess,
} from '../support/server-process.js';
import { RouteServer } from '../support/web-server.js';
const COMMAND_TIMEOUT_MS = 60_000;
/** Until an import has finished. */
const IMPORT_TIMEOUT_MS = 30_000;

const isCi = process.env.CI === 'true';
const openstackPath = await findOnPath('openstack');
const glancePath = await findOnPath('glance');

interface ImageJson {
  id: string;
  name: string;
  status: string;
  size: number | null;
  checksum: string | null;
  /** openstackclient moves fields it does not know, such as the hashes, in here. */
  properties?: Record<string, unknown>;
  [field: string]: unknown;
}

interface TaskRow {
  status: string;
  message: string;
  input: { import_req: { method: { name: string; uri?: string } } };
}

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');
const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');

/** Runs a command with standard input closed and no OS_* variables of the developer's shell. */
function run(command: string, args: string[]): Promise<CommandResult> {
  const env = withoutPrefix(process.env, 'OS_');
  return runCommand(command, args, { env, timeoutMs: COMMAND_TIMEOUT_MS });
}

/** The usage text of an openstack subcommand, or null when this release lacks it. */
async function usage(words: string[]): Promise<string | null> {
  if (openstackPath === null) return null;
  // An unknown command lists the near matches and still exits 0.
  const help = await run(openstackPath, [...words, '--help']);
  return help.stdout.includes(`usage: openstack ${words.join(' ')}`) ? help.stdout : null;
}

const stageUsage = await usage(['image', 'stage']);
const importUsage = await usage(['image', 'import']);

function missing(command: string): string {
  const version = 'this openstackclient release';
  return `${version} has no \`openstack ${command}\` command (it came in later releases)`;
}

const noClient = openstackPath === null && glancePath === null && !isCi;

describe(
  'interoperable import with the openstack CLI',
  { skip: noClient && OPENSTACK_MISSING },
  () => {
    let server: ServerProcess | undefined;
    const source = new RouteServer();
    let dir = '';

    before(async () => {
      await source.listen();
      server = await startServer({
        env: {
          GLIMPSE_ALLOWED_HOSTS: '127.0.0.1',
          GLIMPSE_ALLOWED_PORTS: `80,443,${source.port}`,
        },
      });
      dir = await mkdtemp(join(tmpdir(), 'glimpse-cli-import-'));
    });

    after(async () => {
      if (server) await stopServer(server);
      await source.close();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    function url(): string {
      assert.ok(server, 'the server has not started');
      return server.url;
    }

    function serverLog(): string {
      return `glimpse output (tail):\n${server?.output().slice(-4000) ?? ''}`;
    }

    /** A file of random bytes in the test directory. */
    async function dataFile(name: string, size: number): Promise<{ path: string; data: Buffer }> {
      const data = randomBytes(size);
      const path = join(dir, name);
      await writeFile(path, data);
      return { path, data };
    }

    /** A web-download source body; its URI. */
    function serve(path: string, data: Buffer): string {
      return source.route(path, (_request, response) => {
        response.writeHead(200, { 'content-length': String(data.length) }).end(data);
      });
    }

    async function tasksOf(id: string): Promise<TaskRow[]> {
      const response = await fetch(`${url()}/v2/images/${id}/tasks`, {
        signal: AbortSignal.timeout(COMMAND_TIMEOUT_MS),
      });
      const text = await response.text();
      assert.equal(response.status, 200, text);
      return (JSON.parse(text) as { tasks: TaskRow[] }).tasks;
    }

    /** The image went through one successful import task of this method. */
    async function assertImportedWith(id: string, method: string, uri?: string): Promise<void> {
      const tasks = await tasksOf(id);
      assert.equal(tasks.length, 1, JSON.stringify(tasks));
      const [task] = tasks;
      assert.equal(task?.status, 'success', task?.message);
      assert.equal(task?.input.import_req.method.name, method);
      if (uri !== undefined) assert.equal(task?.input.import_req.method.uri, uri);
    }

    // -------------------------------------------------------------------------------------------
    // openstack

    describe('openstack', { skip: openstackSkipReason(openstackPath) }, () => {
      before(() => {
        if (openstackPath === null) throw new Error(`${OPENSTACK_MISSING}; CI requires it`);
      });

      async function openstack(args: string[]): Promise<string> {
        const argv = ['--os-auth-type', 'none', '--os-endpoint', url(), ...args];
        const result = await run(openstackPath ?? 'openstack', argv);
        assert.equal(
          result.code,
          0,
          `openstack ${args.join(' ')} exited with ${result.code}:\n` +
            `${result.stderr}${result.stdout}\n${serverLog()}`,
        );
        return result.stdout;
      }

      const show = async (id: string) =>
        JSON.parse(await openstack(['image', 'show', id, '-f', 'json'])) as ImageJson;

      async function createQueued(name: string): Promise<string> {
        const created = JSON.parse(
          await openstack([
            ...['image', 'create', '--disk-format', 'raw', '--container-format', 'bare'],
            ...[name, '-f', 'json'],
          ]),
        ) as ImageJson;
        assert.equal(created.status, 'queued');
        return created.id;
      }

      /** Shows the image until its import has finished; it must end active with data's hashes. */
      async function assertActive(id: string, data: Buffer): Promise<void> {
        const deadline = Date.now() + IMPORT_TIMEOUT_MS;
        let image = await show(id);
        while (image.status !== 'active') {
          assert.ok(
            ['queued', 'uploading', 'importing'].includes(image.status),
            `${id} is ${image.status}\n${serverLog()}`,
          );
          if (Date.now() > deadline) assert.fail(`${id} is still ${image.status}\n${serverLog()}`);
          await sleep(200);
          image = await show(id);
        }
        assert.equal(image.size, data.length);
        assert.equal(image.checksum, md5(data));
        const hash = image.os_hash_value ?? image.properties?.os_hash_value;
        assert.equal(hash, sha512(data));
      }

      it('creates an image with --import, which stages the file and imports it', async () => {
        const { path, data } = await dataFile('direct.raw', 300 * 1024 + 5);
        const created = JSON.parse(
          await openstack([
            ...['image', 'create', '--import', '--file', path],
            ...['--disk-format', 'raw', '--container-format', 'bare', 'cli-import', '-f', 'json'],
          ]),
        ) as ImageJson;
        assert.equal(created.name, 'cli-import');
        await assertActive(created.id, data);
        await assertImportedWith(created.id, 'glance-direct');
      });

      it(
        'stages with openstack image stage and imports with glance-direct',
        { skip: stageUsage === null || importUsage === null ? missing('image stage') : false },
        async () => {
          const { path, data } = await dataFile('staged.raw', 200 * 1024);
          const id = await createQueued('cli-staged');
          await openstack(['image', 'stage', '--file', path, id]);
          assert.equal((await show(id)).status, 'uploading');
          await openstack(['image', 'import', '--method', 'glance-direct', id]);
          await assertActive(id, data);
          await assertImportedWith(id, 'glance-direct');
        },
      );

      it(
        'imports from a URI with openstack image import and web-download',
        { skip: importUsage?.includes('--uri') ? false : missing('image import --uri') },
        async () => {
          const data = randomBytes(250 * 1024 + 1);
          const uri = serve('/openstack-web.raw', data);
          const id = await createQueued('cli-web');
          await openstack(['image', 'import', '--method', 'web-download', '--uri', uri, id]);
          await assertActive(id, data);
          await assertImportedWith(id, 'web-download', uri);
          assert.equal(source.hits('/openstack-web.raw'), 1);
        },
      );
    });

    // -------------------------------------------------------------------------------------------
    // glance, for the workflows an older openstack command cannot drive

    describe('glance', { skip: glanceSkipReason(glancePath) }, () => {
      before(() => {
        if (glancePath === null) throw new Error(`${GLANCE_MISSING}; CI requires it`);
      });

      async function glance(args: string[]): Promise<Record<string, string>> {
        const result = await runGlance(glancePath ?? 'glance', url(), args);
        assert.equal(
          result.code,
          0,
          `glance ${args.join(' ')} exited with ${result.code}:\n` +
            `${result.stderr}${result.stdout}\n${serverLog()}`,
        );
        return result.stdout.includes('| Property') ? showTable(result.stdout) : {};
      }

      async function assertActive(id: string, data: Buffer): Promise<void> {
        const deadline = Date.now() + IMPORT_TIMEOUT_MS;
        let image = await glance(['image-show', id]);
        while (image.status !== 'active') {
          assert.ok(
            ['queued', 'uploading', 'importing'].includes(image.status ?? ''),
            `${id} is ${image.status}\n${serverLog()}`,
          );
          if (Date.now() > deadline) assert.fail(`${id} is still ${image.status}\n${serverLog()}`);
          await sleep(200);
          image = await glance(['image-show', id]);
        }
        assert.equal(image.size, String(data.length));
        assert.equal(image.checksum, md5(data));
        assert.equal(image.os_hash_value, sha512(data));
      }

      it('lists the import methods with import-info', async () => {
        const result = await runGlance(glancePath ?? 'glance', url(), ['import-info']);
        assert.equal(result.code, 0, result.stderr);
        // A JSON document, wrapped over table rows.
        const info = JSON.parse(showTable(result.stdout)['import-methods'] ?? 'null') as {
          value: string[];
        };
        assert.deepEqual(info.value, ['glance-direct', 'web-download']);
      });

      it('creates an image by web-download with image-create-via-import', async () => {
        const data = randomBytes(180 * 1024 + 7);
        const uri = serve('/glance-web.raw', data);
        const created = await glance([
          ...['image-create-via-import', '--import-method', 'web-download', '--uri', uri],
          ...['--disk-format', 'raw', '--container-format', 'bare', '--name', 'glance-web'],
        ]);
        const id = created.id ?? '';
        assert.match(id, /^[0-9a-f-]{36}$/);
        await assertActive(id, data);
        await assertImportedWith(id, 'web-download', uri);
        assert.equal(source.hits('/glance-web.raw'), 1);
      });

      it('stages with image-stage and imports with image-import glance-direct', async () => {
        const { path, data } = await dataFile('glance-staged.raw', 120 * 1024 + 3);
        const created = await glance([
          ...['image-create', '--disk-format', 'raw', '--container-format', 'bare'],
          ...['--name', 'glance-staged'],
        ]);
        const id = created.id ?? '';
        assert.equal(created.status, 'queued');
        await glance(['image-stage', '--file', path, id]);
        assert.equal((await glance(['image-show', id])).status, 'uploading');
        await glance(['image-import', '--import-method', 'glance-direct', id]);
        await assertActive(id, data);
        await assertImportedWith(id, 'glance-direct');
      });

      it('refuses a web-download source the server does not allow', async () => {
        const created = await glance([
          ...['image-create', '--disk-format', 'raw', '--container-format', 'bare'],
          ...['--name', 'glance-refused'],
        ]);
        const id = created.id ?? '';
        const result = await runGlance(glancePath ?? 'glance', url(), [
          ...['image-import', '--import-method', 'web-download'],
          ...['--uri', 'http://169.254.169.254/latest', id],
        ]);
        assert.notEqual(result.code, 0, result.stdout);
        assert.match(result.stderr, /400|does not pass filtering/);
        assert.equal((await glance(['image-show', id])).status, 'queued');
        assert.deepEqual(await tasksOf(id), []);
      });
    });
  },
);
