/**
 * Token handling in keystone mode, against the real Keystone: missing, unknown and revoked
 * tokens, a token of another project, service tokens beside user tokens, and what callers get
 * when Keystone cannot be reached or refuses Glimpse's own service credentials.
 *
 * Validated tokens are cached for `token_cache_seconds` (default 300). That is a deliberate
 * trade-off, as with keystonemiddleware's token cache: a revoked token keeps working until its
 * cache entry ages out, in exchange for not asking Keystone on every request. The suites below
 * pin both sides of it.
 *
 * Needs Keystone on 127.0.0.1:5000 (scripts/keystone.sh start); skipped without it, except
 * under CI (CI=true), where it fails.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';

import { json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import {
  KEYSTONE_URL,
  getToken,
  keystoneProblem,
  revokeToken,
  serviceCredentials,
  type KeystoneToken,
  keystoneAppOptions,
} from '../support/keystone.js';
import { freePort } from '../support/server-process.js';

const [sqlite] = await testDatabases();
const problem = await keystoneProblem();

/** What Glimpse sends with every 401: where to get a token (the identity root, no /v3). */
const CHALLENGE = `Keystone uri="${KEYSTONE_URL.replace(/\/v3$/, '')}"`;

function startKeystoneApp(overrides: Record<string, unknown> = {}): Promise<TestApp> {
  assert.ok(sqlite, 'SQLite is always available');
  return startTestApp(sqlite, keystoneAppOptions(overrides));
}

function get(
  t: TestApp,
  url: string,
  headers: Record<string, string> = {},
): Promise<LightMyRequestResponse> {
  return t.request({ method: 'GET', url, headers });
}

/** Everything a client sees of a response, for checking that nothing leaks. */
function visible(response: LightMyRequestResponse): string {
  return `${JSON.stringify(response.headers)}\n${response.body}`;
}

/** A response body or header that carries a stack trace or a Node.js error. */
const STACK_OR_ERROR = /\bat \S+ \(|\.js:\d+|node:internal|ECONNREFUSED|Error:/;

describe('Keystone tokens', { skip: problem ?? false }, () => {
  /** Validations cached for the default 300 seconds. */
  let cached: TestApp;
  /** Every request validated with Keystone (token_cache_seconds 0). */
  let uncached: TestApp;
  let alphaMember: KeystoneToken;
  let betaMember: KeystoneToken;
  let privateImage: string;

  before(async () => {
    [cached, uncached, alphaMember, betaMember] = await Promise.all([
      startKeystoneApp(),
      startKeystoneApp({ token_cache_seconds: 0 }),
      getToken('alpha-member', 'alpha'),
      getToken('beta-member', 'beta'),
    ]);
    const created = await cached.request({
      method: 'POST',
      url: '/v2/images',
      headers: { 'x-auth-token': alphaMember.token, 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'alpha private', visibility: 'private' }),
    });
    assert.equal(created.statusCode, 201, created.body);
    privateImage = json<{ id: string }>(created).id;
  });
  after(async () => {
    await cached?.close();
    await uncached?.close();
  });

  it('answers 401 with a challenge naming Keystone to a request without a token', async () => {
    const response = await get(cached, '/v2/images');
    assert.equal(response.statusCode, 401, response.body);
    // With the default Keystone this is exactly: Keystone uri="http://127.0.0.1:5000".
    assert.equal(response.headers['www-authenticate'], CHALLENGE);
  });

  it('answers 401 with the challenge to a token Keystone does not know', async () => {
    const response = await get(cached, '/v2/images', { 'x-auth-token': 'not-a-real-token' });
    assert.equal(response.statusCode, 401, response.body);
    assert.equal(response.headers['www-authenticate'], CHALLENGE);
  });

  it('accepts a valid token and takes the project from Keystone', async () => {
    const response = await get(cached, `/v2/images/${privateImage}`, {
      'x-auth-token': alphaMember.token,
    });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(json(response).owner, alphaMember.projectId);
  });

  it("answers 404 to a beta token asking for alpha's private image", async () => {
    const shown = await get(cached, `/v2/images/${privateImage}`, {
      'x-auth-token': betaMember.token,
    });
    assert.equal(shown.statusCode, 404, shown.body);
    const listed = await get(cached, '/v2/images?visibility=all', {
      'x-auth-token': betaMember.token,
    });
    assert.equal(listed.statusCode, 200, listed.body);
    const ids = json<{ images: Array<{ id: string }> }>(listed).images.map((i) => i.id);
    assert.equal(ids.includes(privateImage), false, 'the image is not listed for beta');
  });

  it('refuses a revoked token at once when validations are not cached', async () => {
    const doomed = await getToken('alpha-member', 'alpha');
    const headers = { 'x-auth-token': doomed.token };
    assert.equal((await get(uncached, '/v2/images', headers)).statusCode, 200);

    await revokeToken(doomed.token);
    const refused = await get(uncached, '/v2/images', headers);
    assert.equal(refused.statusCode, 401, refused.body);
    assert.equal(refused.headers['www-authenticate'], CHALLENGE);
  });

  it('keeps a revoked token working while its validation is cached, by design', async () => {
    const doomed = await getToken('alpha-member', 'alpha');
    const headers = { 'x-auth-token': doomed.token };
    assert.equal((await get(cached, '/v2/images', headers)).statusCode, 200);

    await revokeToken(doomed.token);
    // Keystone no longer accepts it, as an app without a cache shows...
    assert.equal((await get(uncached, '/v2/images', headers)).statusCode, 401);
    // ...but the app that validated it before the revocation trusts it for up to 300 s.
    const stillCached = await get(cached, '/v2/images', headers);
    assert.equal(stillCached.statusCode, 200, stillCached.body);
  });

  it('refuses a revoked token once its cache lifetime has passed', async () => {
    const shortCache = await startKeystoneApp({ token_cache_seconds: 1 });
    try {
      const doomed = await getToken('alpha-member', 'alpha');
      const headers = { 'x-auth-token': doomed.token };
      assert.equal((await get(shortCache, '/v2/images', headers)).statusCode, 200);
      // The cache entry ends at most one second after this.
      const validatedBy = Date.now();

      await revokeToken(doomed.token);
      if (Date.now() - validatedBy < 800) {
        const cachedAnswer = await get(shortCache, '/v2/images', headers);
        assert.equal(cachedAnswer.statusCode, 200, 'still inside the 1 s cache lifetime');
      }
      await sleep(Math.max(0, validatedBy + 1_100 - Date.now()));
      const refused = await get(shortCache, '/v2/images', headers);
      assert.equal(refused.statusCode, 401, refused.body);
    } finally {
      await shortCache.close();
    }
  });

  it('accepts a valid service token beside the user token', async () => {
    const service = serviceCredentials();
    const serviceToken = await getToken(service.username, service.projectName, service.password);
    const response = await get(cached, `/v2/images/${privateImage}`, {
      'x-auth-token': alphaMember.token,
      'x-service-token': serviceToken.token,
    });
    assert.equal(response.statusCode, 200, response.body);
    // The service token does not lend its project: beta is still refused alpha's image.
    const beta = await get(cached, `/v2/images/${privateImage}`, {
      'x-auth-token': betaMember.token,
      'x-service-token': serviceToken.token,
    });
    assert.equal(beta.statusCode, 404, beta.body);
  });

  it('answers 401 to an invalid service token beside a valid user token', async () => {
    // A valid user token does not make up for an invalid service token.
    const response = await get(cached, '/v2/images', {
      'x-auth-token': alphaMember.token,
      'x-service-token': 'not-a-real-service-token',
    });
    assert.equal(response.statusCode, 401, response.body);
    assert.equal(response.headers['www-authenticate'], CHALLENGE);
  });
});

describe('Keystone unreachable', { skip: problem ?? false }, () => {
  const password = 'service-password-that-must-not-leak';
  const urlSecret = 'url-secret-that-must-not-leak';
  let port: number;
  /** One app with a plain auth URL, one whose auth URL carries credentials. */
  let apps: TestApp[] = [];

  before(async () => {
    // Nobody listens on this port: freePort binds it and closes it again.
    port = await freePort();
    const options = { keystone_password: password, keystone_timeout_seconds: 2 };
    apps = await Promise.all([
      startKeystoneApp({ ...options, keystone_auth_url: `http://127.0.0.1:${port}/v3` }),
      startKeystoneApp({
        ...options,
        keystone_auth_url: `http://glimpse:${urlSecret}@127.0.0.1:${port}/v3`,
      }),
    ]);
  });
  after(async () => {
    for (const t of apps) await t.close();
  });

  it('answers 503 to a token, with a body that leaks nothing', async () => {
    for (const t of apps) {
      for (const accept of ['application/json', 'text/html', 'text/plain']) {
        const response = await get(t, '/v2/images', { 'x-auth-token': 'some-token', accept });
        assert.equal(response.statusCode, 503, response.body);
        const seen = visible(response);
        assert.match(response.body, /Keystone/, 'says which service is missing');
        for (const secret of [password, urlSecret, `:${port}`, '127.0.0.1']) {
          assert.equal(seen.includes(secret), false, `${secret} leaked:\n${seen}`);
        }
        assert.doesNotMatch(seen, STACK_OR_ERROR);
        assert.equal(response.headers['www-authenticate'], undefined, 'not an auth error');
      }
    }
  });

  it('keeps credentials in the auth URL out of the 401 challenge', async () => {
    for (const t of apps) {
      const response = await get(t, '/v2/images');
      assert.equal(response.statusCode, 401, response.body);
      const challenge = String(response.headers['www-authenticate']);
      assert.match(challenge, /^Keystone uri="http:\/\/[^"]*127\.0\.0\.1:\d+"$/);
      const seen = visible(response);
      assert.equal(seen.includes(urlSecret), false, `URL credentials leaked:\n${seen}`);
    }
  });
});

describe('Glimpse with a wrong service password', { skip: problem ?? false }, () => {
  const password = 'not-the-service-password';
  let t: TestApp;
  let user: KeystoneToken;

  before(async () => {
    [t, user] = await Promise.all([
      startKeystoneApp({ keystone_password: password }),
      getToken('alpha-member', 'alpha'),
    ]);
  });
  after(() => t?.close());

  it('answers 503 naming the keystone_* options, neither a 401 nor an allow', async () => {
    for (const accept of ['application/json', 'text/plain']) {
      const response = await get(t, '/v2/images', { 'x-auth-token': user.token, accept });
      assert.equal(response.statusCode, 503, response.body);
      assert.match(response.body, /keystone_\*? ?options|keystone_[a-z_]+/);
      assert.equal(response.headers['www-authenticate'], undefined, 'not blamed on the caller');
      const seen = visible(response);
      assert.equal(seen.includes(password), false, `the password leaked:\n${seen}`);
      assert.doesNotMatch(seen, STACK_OR_ERROR);
    }
  });
});
