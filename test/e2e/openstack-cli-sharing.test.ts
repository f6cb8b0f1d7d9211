/**
 * Shares an image between two projects with the `openstack` command (python3-openstackclient),
 * logged in through the real Keystone, against a Glimpse process in keystone mode: alpha
 * creates a shared image with data and offers it to beta, beta accepts, lists and downloads
 * it, alpha withdraws it, and beta can no longer see or download it.
 *
 * Pointing the CLI at the test server: the catalog's image endpoint is http://127.0.0.1:9292,
 * not the test port, and openstackclient has no --os-image-url option; nor does it read
 * OS_IMAGE_ENDPOINT_OVERRIDE, because with command-line parsing only its own options reach the
 * SDK's configuration. What it does honour is `image_endpoint_override` in a clouds.yaml,
 * selected with OS_CLIENT_CONFIG_FILE and OS_CLOUD, while the credentials still come from the
 * OS_* variables. The members are given as project ids: a user with only the member role
 * cannot look project names up in Keystone, and openstackclient would then send the name
 * itself as the member id.
 *
 * Needs Keystone on 127.0.0.1:5000 (scripts/keystone.sh start) and the Debian package
 * python3-openstackclient. Without them the suite is skipped, except under CI (CI=true), where
 * it fails.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { getToken, keystoneProblem, keystoneServerEnv, projectId } from '../support/keystone.js';
import {
  OPENSTACK_MISSING,
  cloudsDir,
  openstackEnv,
  openstackSkipReason,
} from '../support/openstack-cli.js';
import {
  findOnPath,
  runCommand,
  startServer,
  stopServer,
  type CommandResult,
  type ServerProcess,
} from '../support/server-process.js';

/** Each command logs in to Keystone and makes a few calls; Keystone can be slow. */
const COMMAND_TIMEOUT_MS = 90_000;

const openstackPath = await findOnPath('openstack');
const problem = await keystoneProblem();

function skipReason(): string | false {
  return problem ?? openstackSkipReason(openstackPath);
}

interface ImageJson {
  id: string;
  name: string;
  status: string;
  visibility: string;
  size: number;
  checksum: string;
}

interface MemberJson {
  image_id: string;
  member_id: string;
  status: string;
}

interface ListedImage {
  ID: string;
  Name: string;
  Status: string;
}

describe('sharing an image with the openstack CLI', { skip: skipReason() }, () => {
  let server: ServerProcess | undefined;
  let dir = '';
  let data: Buffer = Buffer.alloc(0);
  let betaId = '';
  let imageId = '';

  before(async () => {
    if (openstackPath === null) throw new Error(`${OPENSTACK_MISSING}; CI requires it`);
    server = await startServer({ env: keystoneServerEnv() });
    dir = await cloudsDir(server.url);
    data = randomBytes(5000);
    await writeFile(join(dir, 'image.raw'), data);
    betaId = await projectId('beta');
  });

  after(async () => {
    if (server) await stopServer(server);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  /** Runs openstack as user of project, with standard input closed. */
  function openstack(user: string, project: string, args: string[]): Promise<CommandResult> {
    const env = openstackEnv(dir, user, project);
    const command = openstackPath ?? 'openstack';
    return runCommand(command, args, { env, cwd: dir, timeoutMs: COMMAND_TIMEOUT_MS });
  }

  async function openstackOk(user: string, project: string, args: string[]): Promise<string> {
    const result = await openstack(user, project, args);
    assert.equal(
      result.code,
      0,
      `openstack ${args.join(' ')} as ${user} exited with ${result.code}:\n` +
        `${result.stderr}${result.stdout}\nglimpse output (tail):\n` +
        (server?.output().slice(-4000) ?? ''),
    );
    return result.stdout;
  }

  const asAlpha = (...args: string[]) => openstackOk('alpha-member', 'alpha', args);
  const asBeta = (...args: string[]) => openstackOk('beta-member', 'beta', args);

  async function betaListing(): Promise<string[]> {
    const listed = JSON.parse(await asBeta('image', 'list', '-f', 'json')) as ListedImage[];
    return listed.map((image) => image.ID);
  }

  it('lets alpha-member create a shared image with data', async () => {
    const created = JSON.parse(
      await asAlpha(
        ...['image', 'create', '--file', join(dir, 'image.raw')],
        ...['--disk-format', 'raw', '--container-format', 'bare', '--shared'],
        ...['cli-shared', '-f', 'json'],
      ),
    ) as ImageJson;
    assert.match(created.id, /^[0-9a-f-]{36}$/);
    assert.equal(created.name, 'cli-shared');
    assert.equal(created.visibility, 'shared');
    imageId = created.id;

    const shown = JSON.parse(await asAlpha('image', 'show', imageId, '-f', 'json')) as ImageJson;
    assert.equal(shown.status, 'active');
    assert.equal(shown.size, data.length);
    assert.equal(shown.checksum, createHash('md5').update(data).digest('hex'));
  });

  it('lets alpha-member offer it to beta, which does not list it before accepting', async () => {
    const member = JSON.parse(
      await asAlpha('image', 'add', 'project', imageId, betaId, '-f', 'json'),
    ) as MemberJson;
    assert.deepEqual(
      { image_id: member.image_id, member_id: member.member_id, status: member.status },
      { image_id: imageId, member_id: betaId, status: 'pending' },
    );
    assert.equal((await betaListing()).includes(imageId), false, 'pending images are not listed');
  });

  it('lets beta-member accept it, list it and download the same bytes', async () => {
    await asBeta('image', 'set', '--accept', imageId);
    assert.ok((await betaListing()).includes(imageId), 'the accepted image is listed');

    const out = join(dir, 'downloaded.raw');
    await asBeta('image', 'save', '--file', out, imageId);
    assert.ok((await readFile(out)).equals(data), 'the downloaded bytes are the uploaded ones');
  });

  it('lets alpha-member withdraw it, and then beta can neither see nor download it', async () => {
    await asAlpha('image', 'remove', 'project', imageId, betaId);

    const shown = await openstack('beta-member', 'beta', ['image', 'show', imageId]);
    assert.notEqual(shown.code, 0, `image show still works:\n${shown.stdout}`);
    assert.match(shown.stderr, /No Image found/);

    const out = join(dir, 'after-removal.raw');
    const saved = await openstack('beta-member', 'beta', [
      'image',
      'save',
      '--file',
      out,
      imageId,
    ]);
    assert.notEqual(saved.code, 0, 'image save still works');
    assert.equal(existsSync(out), false, 'nothing was downloaded');
    assert.equal((await betaListing()).includes(imageId), false, 'no longer listed');

    // The same through the API, so that a CLI failure for another reason cannot pass as this.
    const beta = await getToken('beta-member', 'beta');
    for (const path of [`/v2/images/${imageId}`, `/v2/images/${imageId}/file`]) {
      const response = await fetch(`${server?.url ?? ''}${path}`, {
        headers: { 'x-auth-token': beta.token },
        signal: AbortSignal.timeout(30_000),
      });
      await response.arrayBuffer();
      assert.equal(response.status, 404, `GET ${path} as beta`);
    }
  });
});
