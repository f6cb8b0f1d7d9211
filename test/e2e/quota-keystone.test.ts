/**
 * Keystone unified limits (use_keystone_limits) against the real Keystone: every check point
 * answers 413 once its limit is passed, GET /v2/info/usage reports usage and limits, racing
 * creates cannot take a project past image_count_total, the openstack CLI shows a refusal as
 * a readable message, and `glance usage` prints what GET /v2/info/usage reports.
 *
 * The limits are set in Keystone through its API with the admin's token, and converge on the
 * values of test/support/keystone-limits.ts whatever an earlier run left. The small limits
 * are a project override for alpha only; the registered defaults, which every other project
 * gets, are generous. Suites that run in keystone mode without use_keystone_limits never read
 * any of them. The glimpse service user is given the reader role on the system, which it
 * needs to read the limits of other projects.
 *
 * Needs Keystone on 127.0.0.1:5000 (scripts/keystone.sh start), and the Debian packages
 * python3-openstackclient and python3-glanceclient for the CLI cases. Without them those
 * cases are skipped, except under CI (CI=true), where they fail.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';

import { json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import {
  ADMIN_PASSWORD,
  getToken,
  keystoneProblem,
  keystoneServerEnv,
  passwordLoginEnv,
  type KeystoneToken,
  keystoneAppOptions,
} from '../support/keystone.js';
import {
  ALPHA_LIMITS as ALPHA,
  ensureAlphaLimits,
  ensureDefaultLimits,
  overLimitMessage,
  type Resource,
} from '../support/keystone-limits.js';
import {
  OPENSTACK_MISSING,
  cloudsDir,
  openstackEnv,
  openstackSkipReason,
} from '../support/openstack-cli.js';
import {
  GLANCE_MISSING,
  findOnPath,
  glanceSkipReason,
  runCommand,
  runGlance,
  startServer,
  stopServer,
  tableRows,
  type CommandResult,
  type ServerProcess,
} from '../support/server-process.js';
import { expectStatus, sendAs } from '../support/token-requests.js';

type Headers = Record<string, string>;
type Image = Record<string, unknown> & { id: string; status: string };

const MiB = 1024 * 1024;
const REQUEST_TIMEOUT_MS = 15_000;
const COMMAND_TIMEOUT_MS = 90_000;

const problem = await keystoneProblem();
const openstackPath = await findOnPath('openstack');
const glancePath = await findOnPath('glance');
const databases = await testDatabases();

/** A server process validating tokens with Keystone and applying its unified limits. */
function startLimitedServer(): Promise<ServerProcess> {
  return startServer({ env: { ...keystoneServerEnv(), GLIMPSE_USE_KEYSTONE_LIMITS: 'true' } });
}

// ---------------------------------------------------------------------------------------------
// The API

function limitsOptions(): Record<string, unknown> {
  return keystoneAppOptions({ use_keystone_limits: true });
}

const headersOf = (token: KeystoneToken): Headers => ({
  'x-auth-token': token.token,
  accept: 'application/json',
});

function createImage(t: TestApp, token: KeystoneToken): Promise<LightMyRequestResponse> {
  return t.request({
    method: 'POST',
    url: '/v2/images',
    headers: headersOf(token),
    payload: JSON.stringify({ name: 'limited', disk_format: 'raw', container_format: 'bare' }),
  });
}

async function createdImage(t: TestApp, token: KeystoneToken): Promise<Image> {
  const response = await createImage(t, token);
  assert.equal(response.statusCode, 201, response.body);
  return json<Image>(response);
}

function putData(
  t: TestApp,
  token: KeystoneToken,
  id: string,
  size: number,
  target: 'file' | 'stage' = 'file',
): Promise<LightMyRequestResponse> {
  return sendAs(t, token, 'PUT', `/v2/images/${id}/${target}`, Buffer.alloc(size, 7));
}

async function imageStatus(t: TestApp, token: KeystoneToken, id: string): Promise<string> {
  const response = await expectStatus(sendAs(t, token, 'GET', `/v2/images/${id}`), 200);
  return json<Image>(response).status;
}

/** The 413 of a resource over its limit, with the figures upstream's message gives. */
function assertOverLimit(
  response: LightMyRequestResponse,
  project: string,
  resource: Resource,
  usage: number,
  delta: number,
): void {
  assert.equal(response.statusCode, 413, response.body);
  const message = json<{ message: string }>(response).message;
  const expected = overLimitMessage(project, resource, usage, delta);
  assert.ok(message.includes(expected), `${message}\ndoes not include\n${expected}`);
}

async function usageOf(t: TestApp, token: KeystoneToken) {
  const response = await expectStatus(sendAs(t, token, 'GET', '/v2/info/usage'), 200);
  return json<{ usage: Record<string, { usage: number; limit: number }> }>(response).usage;
}

// ---------------------------------------------------------------------------------------------

describe('Keystone unified limits', { skip: problem ?? false }, () => {
  let alphaId = '';
  let alpha: KeystoneToken;
  let admin: KeystoneToken;

  before(async () => {
    alphaId = await ensureAlphaLimits(await ensureDefaultLimits());
    alpha = await getToken('alpha-member', 'alpha');
    admin = await getToken('admin', 'admin', ADMIN_PASSWORD);
  });

  for (const database of databases) {
    describe(`at every check point on ${database.name}`, { skip: database.skip ?? false }, () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp(database, limitsOptions());
      });
      after(() => t?.close());

      // Each step builds on the usage the previous ones left.
      let stored = '';
      let staged = '';

      it('reports no usage and alpha’s limits on GET /v2/info/usage', async () => {
        assert.deepEqual(await usageOf(t, alpha), {
          image_size_total: { usage: 0, limit: 2 },
          image_stage_total: { usage: 0, limit: 1 },
          image_count_total: { usage: 0, limit: 5 },
          image_count_uploading: { usage: 0, limit: 1 },
        });
      });

      it('refuses an upload whose declared size passes image_size_total', async () => {
        const image = await createdImage(t, alpha);
        assertOverLimit(
          await putData(t, alpha, image.id, 3 * MiB),
          alphaId,
          'image_size_total',
          0,
          3,
        );
        assert.equal(await imageStatus(t, alpha, image.id), 'queued');

        const response = await putData(t, alpha, image.id, 2 * MiB);
        assert.equal(response.statusCode, 204, response.body);
        stored = image.id;
      });

      it('refuses staging whose declared size passes image_stage_total', async () => {
        const image = await createdImage(t, alpha);
        const refused = await putData(t, alpha, image.id, 2 * MiB, 'stage');
        assertOverLimit(refused, alphaId, 'image_stage_total', 0, 2);
        assert.equal(await imageStatus(t, alpha, image.id), 'queued');

        const response = await putData(t, alpha, image.id, MiB, 'stage');
        assert.equal(response.statusCode, 204, response.body);
        assert.equal(await imageStatus(t, alpha, image.id), 'uploading');
        staged = image.id;
      });

      it('refuses an upload or staging past image_count_uploading', async () => {
        const image = await createdImage(t, alpha);
        // The staged image is uploading; this one would be the second.
        const upload = await putData(t, alpha, image.id, 1000);
        assertOverLimit(upload, alphaId, 'image_count_uploading', 2, 0);
        assert.equal(await imageStatus(t, alpha, image.id), 'queued');

        const stage = await putData(t, alpha, image.id, 1000, 'stage');
        assertOverLimit(stage, alphaId, 'image_count_uploading', 2, 0);
        assert.equal(await imageStatus(t, alpha, image.id), 'queued');
      });

      it('refuses an import while the project is over image_size_total', async () => {
        // Limits apply to the caller's project: an admin of another project can still add
        // data to alpha's image, which takes alpha past its limit.
        const image = await createdImage(t, alpha);
        const response = await putData(t, admin, image.id, MiB);
        assert.equal(response.statusCode, 204, response.body);

        const refused = await t.request({
          method: 'POST',
          url: `/v2/images/${staged}/import`,
          headers: headersOf(alpha),
          payload: JSON.stringify({ method: { name: 'glance-direct' } }),
        });
        assertOverLimit(refused, alphaId, 'image_size_total', 3, 0);
        assert.equal(await imageStatus(t, alpha, staged), 'uploading');
        assert.equal(await imageStatus(t, alpha, stored), 'active');
      });

      it('refuses a create past image_count_total', async () => {
        await createdImage(t, alpha);
        assertOverLimit(await createImage(t, alpha), alphaId, 'image_count_total', 5, 1);
        // Other projects have the registered defaults.
        await createdImage(t, admin);
      });

      it('reports the usage the steps left on GET /v2/info/usage', async () => {
        assert.deepEqual(await usageOf(t, alpha), {
          image_size_total: { usage: 3, limit: 2 },
          image_stage_total: { usage: 1, limit: 1 },
          image_count_total: { usage: 5, limit: 5 },
          image_count_uploading: { usage: 1, limit: 1 },
        });
      });
    });

    describe(`racing creates on ${database.name}`, { skip: database.skip ?? false }, () => {
      let t: TestApp;
      before(async () => {
        t = await startTestApp(database, limitsOptions());
      });
      after(() => t?.close());

      it('lets no more than image_count_total of 20 parallel creates in', async () => {
        // One request first, so that the token and the limits are cached: the race is for
        // the database, not for Keystone.
        await usageOf(t, alpha);
        const responses = await Promise.all(
          Array.from({ length: 20 }, () => createImage(t, alpha)),
        );
        const statuses = responses.map((response) => response.statusCode).sort();
        assert.deepEqual(statuses, [...Array(5).fill(201), ...Array(15).fill(413)]);

        const listed = await t.request({
          method: 'GET',
          url: '/v2/images',
          headers: headersOf(alpha),
        });
        const images = json<{ images: Image[] }>(listed).images;
        assert.equal(images.filter((image) => image.owner === alphaId).length, 5);
      });
    });
  }

  describe('with the openstack CLI', { skip: openstackSkipReason(openstackPath) }, () => {
    let server: ServerProcess | undefined;
    let dir = '';

    before(async () => {
      if (openstackPath === null) throw new Error(`${OPENSTACK_MISSING}; CI requires it`);
      server = await startLimitedServer();
      dir = await cloudsDir(server.url);
    });

    after(async () => {
      if (server) await stopServer(server);
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    function openstack(args: string[]): Promise<CommandResult> {
      const env = openstackEnv(dir, 'alpha-member', 'alpha');
      return runCommand(openstackPath ?? 'openstack', args, {
        env,
        cwd: dir,
        timeoutMs: COMMAND_TIMEOUT_MS,
        // Standard input is empty: image create would otherwise wait to read data from it.
        stdin: 'empty',
      });
    }

    it('prints the refusal of a create past image_count_total', async () => {
      for (let count = 0; count < ALPHA.image_count_total; count += 1) {
        const response = await fetch(`${server?.url ?? ''}/v2/images`, {
          method: 'POST',
          headers: { 'x-auth-token': alpha.token, 'content-type': 'application/json' },
          body: JSON.stringify({ name: `filler-${count}` }),
          signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
        });
        assert.equal(response.status, 201, await response.text());
      }

      const result = await openstack(['image', 'create', 'past-the-limit']);
      assert.notEqual(result.code, 0, `image create succeeded:\n${result.stdout}`);
      const output = `${result.stderr}${result.stdout}`;
      assert.match(output, /413/);
      assert.match(
        output,
        /Resource image_count_total is over limit of 5 due to current usage 5 and delta 1/,
      );
      assert.doesNotMatch(output, /Traceback/);
    });
  });

  describe('with the glance CLI', { skip: glanceSkipReason(glancePath) }, () => {
    let server: ServerProcess | undefined;
    let home = '';

    before(async () => {
      if (glancePath === null) throw new Error(`${GLANCE_MISSING}; CI requires it`);
      server = await startLimitedServer();
      home = await mkdtemp(join(tmpdir(), 'glimpse-glance-home-'));
      // Some of every resource: 1.5 MiB stored (counted as 1), 1 MiB staged, three images.
      await send('PUT', `/v2/images/${await newImage()}/file`, Buffer.alloc(1.5 * MiB, 1));
      await send('PUT', `/v2/images/${await newImage()}/stage`, Buffer.alloc(MiB, 2));
      await newImage();
    });

    after(async () => {
      if (server) await stopServer(server);
      if (home) await rm(home, { recursive: true, force: true });
    });

    /** alpha's request to the server; fails the test unless answered with 2xx. */
    async function send(method: string, path: string, body?: Buffer | object) {
      const headers: Headers = { 'x-auth-token': alpha.token, accept: 'application/json' };
      const data = Buffer.isBuffer(body);
      if (body) headers['content-type'] = data ? 'application/octet-stream' : 'application/json';
      const response = await fetch(`${server?.url ?? ''}${path}`, {
        method,
        headers,
        body: data || body === undefined ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await response.text();
      assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
      return text ? (JSON.parse(text) as unknown) : null;
    }

    async function newImage(): Promise<string> {
      const raw = { disk_format: 'raw', container_format: 'bare' };
      return ((await send('POST', '/v2/images', raw)) as Image).id;
    }

    /** GET /v2/info/usage as the rows `glance usage` should print, header first. */
    async function usageRows(): Promise<string[][]> {
      const { usage } = (await send('GET', '/v2/info/usage')) as {
        usage: Record<Resource, { usage: number; limit: number }>;
      };
      assert.deepEqual(usage, {
        image_size_total: { usage: 1, limit: 2 },
        image_stage_total: { usage: 1, limit: 1 },
        image_count_total: { usage: 3, limit: 5 },
        image_count_uploading: { usage: 1, limit: 1 },
      });
      const rows = Object.entries(usage).map(([quota, { limit, usage: used }]) => [
        quota,
        String(limit),
        String(used),
      ]);
      return [['Quota', 'Limit', 'Usage'], ...rows];
    }

    /**
     * glance as a user runs it: logged in to Keystone with a password, and the image API
     * version found by asking the server (glanceclient falls back to v1, which has no usage
     * command, when it cannot read the server's v2 schemas). HOME is the test's own, so the
     * schemas glanceclient keeps there are fetched from this server.
     */
    function glanceLoggedIn(args: string[]): Promise<CommandResult> {
      const env = { ...passwordLoginEnv('alpha-member', 'alpha'), HOME: home };
      const argv = ['--os-image-url', server?.url ?? '', ...args];
      return runCommand(glancePath ?? 'glance', argv, { env, timeoutMs: COMMAND_TIMEOUT_MS });
    }

    it('prints what GET /v2/info/usage reports, given a token', async () => {
      const url = server?.url ?? '';
      const result = await runGlance(glancePath ?? 'glance', url, ['usage'], alpha.token);
      assert.equal(result.code, 0, `glance usage failed:\n${result.stderr}${result.stdout}`);
      assert.deepEqual(tableRows(result.stdout), await usageRows());
    });

    it('prints the same after logging in and finding the API version', async () => {
      const result = await glanceLoggedIn(['usage']);
      assert.equal(result.code, 0, `glance usage failed:\n${result.stderr}${result.stdout}`);
      assert.doesNotMatch(result.stderr, /falling back to v1/);
      assert.deepEqual(tableRows(result.stdout), await usageRows());
    });
  });
});
