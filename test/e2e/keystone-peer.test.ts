/**
 * Checks the Keystone that scripts/keystone.sh runs, and its fixtures, the way the
 * authentication suites use them: project-scoped tokens carrying implied roles, users refused a
 * token where they have no role, a service user validating tokens, revocation, and the image
 * endpoints in the catalog.
 *
 * Needs Keystone on 127.0.0.1:5000 (scripts/install-test-peers.sh keystone installs and starts
 * it). Without it the suite is skipped, except under CI (CI=true), where it fails.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  KEYSTONE_URL,
  KeystoneError,
  getToken,
  keystoneProblem,
  projectId,
  revokeToken,
  serviceCredentials,
} from '../support/keystone.js';

interface ValidationBody {
  token?: {
    project?: { id?: string };
    user?: { id?: string };
    roles?: Array<{ name?: string }>;
  };
}

interface CatalogBody {
  catalog?: Array<{
    type?: string;
    name?: string;
    endpoints?: Array<{ interface?: string; region_id?: string; url?: string }>;
  }>;
}

const problem = await keystoneProblem();

describe('the Keystone test peer', { skip: problem ?? false }, () => {
  it('gives alpha-member a token on alpha with member and the implied reader', async () => {
    const issued = await getToken('alpha-member', 'alpha');
    assert.equal(issued.projectId, await projectId('alpha'));
    assert.deepEqual([...issued.roles].sort(), ['member', 'reader']);
    assert.ok(issued.token.length > 0);
    assert.ok(issued.expiresAt.getTime() > Date.now(), 'the token is still valid');
  });

  it('gives alpha-admin admin with both implied roles', async () => {
    const issued = await getToken('alpha-admin', 'alpha');
    assert.deepEqual([...issued.roles].sort(), ['admin', 'member', 'reader']);
  });

  it('gives beta-reader a token on beta with reader only', async () => {
    const issued = await getToken('beta-reader', 'beta');
    assert.equal(issued.projectId, await projectId('beta'));
    assert.notEqual(issued.projectId, await projectId('alpha'));
    assert.deepEqual(issued.roles, ['reader']);
  });

  it('refuses a token to a user without a role on the project', async () => {
    await assertRefused(getToken('alpha-norole', 'alpha'), 401);
    await assertRefused(getToken('beta-norole', 'beta'), 401);
    await assertRefused(getToken('alpha-member', 'beta'), 401);
  });

  it('refuses a wrong password', async () => {
    await assertRefused(getToken('alpha-member', 'alpha', 'not-the-password'), 401);
  });

  it('gives the glimpse service user service and admin on project service', async () => {
    const service = serviceCredentials();
    assert.equal(service.authUrl, KEYSTONE_URL);
    assert.equal(service.username, 'glimpse');
    assert.equal(service.projectName, 'service');
    assert.equal(service.userDomainName, 'Default');
    assert.equal(service.projectDomainName, 'Default');

    const issued = await getToken(service.username, service.projectName, service.password);
    assert.equal(issued.projectId, await projectId('service'));
    for (const role of ['service', 'admin', 'member', 'reader']) {
      assert.ok(issued.roles.includes(role), `role ${role} in ${issued.roles.join(', ')}`);
    }
  });

  it('lets the service user validate a token, until it is revoked', async () => {
    const service = serviceCredentials();
    const serviceToken = await getToken(service.username, service.projectName, service.password);
    const user = await getToken('alpha-member', 'alpha');

    const valid = await validate(user.token, serviceToken.token);
    assert.equal(valid.status, 200);
    const body = valid.body as ValidationBody;
    assert.equal(body.token?.project?.id, user.projectId);
    assert.equal(body.token?.user?.id, user.userId);
    const roles = (body.token?.roles ?? []).map((role) => role.name).sort();
    assert.deepEqual(roles, ['member', 'reader']);

    await revokeToken(user.token);
    assert.equal((await validate(user.token, serviceToken.token)).status, 404);
    // The service token itself is unaffected, and revoking twice is harmless.
    assert.equal((await validate(serviceToken.token, serviceToken.token)).status, 200);
    await revokeToken(user.token);
  });

  it('lists the image service in RegionOne and RegionTwo', async () => {
    const user = await getToken('alpha-reader', 'alpha');
    const response = await fetch(`${KEYSTONE_URL}/auth/catalog`, {
      headers: { accept: 'application/json', 'x-auth-token': user.token },
    });
    assert.equal(response.status, 200);
    const catalog = ((await response.json()) as CatalogBody).catalog ?? [];
    const image = catalog.filter((service) => service.type === 'image');
    assert.equal(image.length, 1, 'one image service');
    assert.equal(image[0]?.name, 'glance');

    const endpoints = (image[0]?.endpoints ?? [])
      .map((endpoint) => `${endpoint.region_id} ${endpoint.interface} ${endpoint.url}`)
      .sort();
    assert.deepEqual(endpoints, [
      'RegionOne admin http://127.0.0.1:9292',
      'RegionOne internal http://127.0.0.1:9292',
      'RegionOne public http://127.0.0.1:9292',
      'RegionTwo admin http://127.0.0.1:9393',
      'RegionTwo internal http://127.0.0.1:9393',
      'RegionTwo public http://127.0.0.1:9393',
    ]);
  });
});

/** GET /v3/auth/tokens as a service does it: its own token authorises checking subject. */
async function validate(
  subject: string,
  serviceToken: string,
): Promise<{ status: number; body: unknown }> {
  const response = await fetch(`${KEYSTONE_URL}/auth/tokens`, {
    headers: {
      accept: 'application/json',
      'x-auth-token': serviceToken,
      'x-subject-token': subject,
    },
  });
  const text = await response.text();
  return { status: response.status, body: text ? (JSON.parse(text) as unknown) : null };
}

async function assertRefused(attempt: Promise<unknown>, status: number): Promise<void> {
  await assert.rejects(attempt, (error: unknown) => {
    assert.ok(error instanceof KeystoneError, String(error));
    assert.equal(error.status, status, error.message);
    return true;
  });
}
