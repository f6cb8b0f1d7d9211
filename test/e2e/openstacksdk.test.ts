/**
 * openstacksdk (Debian's python3-openstacksdk), the library under the `openstack` command and
 * many tools, drives Glimpse unmodified: image create with data and download (which the SDK
 * checks against the checksum), stage and glance-direct import, and web-download import. The
 * newer openstackclient commands `image stage` and `image import` are thin wrappers of these
 * SDK calls. The client script is test/e2e/clients/openstacksdk_client.py.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { access, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';

import {
  startServer,
  stopServer,
  withoutPrefix,
  type ServerProcess,
} from '../support/server-process.js';
import { startWebServer, type WebServer } from '../support/web-server.js';

/** Debian's interpreter, which has the SDK; the first python3 on PATH may not. */
const PYTHON = '/usr/bin/python3';
const CLIENT = fileURLToPath(
  new URL('../../../test/e2e/clients/openstacksdk_client.py', import.meta.url),
);
const TIMEOUT_MS = 90_000;

const md5 = (data: Buffer) => createHash('md5').update(data).digest('hex');
const sha512 = (data: Buffer) => createHash('sha512').update(data).digest('hex');

async function sdkProblem(): Promise<string | null> {
  try {
    await access(PYTHON);
    await runPython(['-c', 'import openstack']);
    return null;
  } catch {
    return 'openstacksdk is not installed (Debian package python3-openstacksdk)';
  }
}

function runPython(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      PYTHON,
      args,
      { env: withoutPrefix(withoutPrefix(process.env, 'OS_'), 'PYTHON'), timeout: TIMEOUT_MS },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}

const problem = await sdkProblem();
if (problem && process.env.CI === 'true') throw new Error(`${problem}; CI requires it`);
if (problem) process.stdout.write(`# skipping openstacksdk suite: ${problem}\n`);

describe('openstacksdk against Glimpse', { skip: problem ?? false }, () => {
  let server: ServerProcess;
  let web: WebServer;
  let dir: string;

  before(async () => {
    web = await startWebServer();
    dir = await mkdtemp(join(tmpdir(), 'glimpse-sdk-'));
    server = await startServer({
      env: {
        GLIMPSE_ALLOWED_HOSTS: '127.0.0.1',
        GLIMPSE_ALLOWED_PORTS: `80,443,${web.port}`,
      },
    });
  });
  after(async () => {
    if (server) await stopServer(server);
    await web?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  async function sdk(scenario: string, argument: string) {
    const output = await runPython([CLIENT, server.url, scenario, argument]);
    return JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as Record<string, unknown>;
  }

  async function file(data: Buffer): Promise<string> {
    const path = join(dir, `${randomBytes(4).toString('hex')}.raw`);
    await writeFile(path, data);
    return path;
  }

  it('creates an image with data and downloads it, checksum checked', async () => {
    const data = randomBytes(700_000);
    const image = await sdk('upload', await file(data));
    assert.equal(image.status, 'active');
    assert.equal(image.checksum, md5(data));
    assert.equal(image.os_hash_value, sha512(data));
    assert.equal(image.downloaded_md5, md5(data));
  });

  it('stages data and imports it with glance-direct', async () => {
    const data = randomBytes(1_500_000);
    const image = await sdk('glance-direct', await file(data));
    assert.equal(image.staged_status, 'uploading');
    assert.equal(image.status, 'active');
    assert.equal(image.size, data.length);
    assert.equal(image.checksum, md5(data));
  });

  it('imports with web-download', async () => {
    const data = randomBytes(900_000);
    web.files.set('/sdk.raw', data);
    const image = await sdk('web-download', web.url('/sdk.raw'));
    assert.equal(image.status, 'active');
    assert.equal(image.os_hash_value, sha512(data));
  });
});
