/**
 * The access matrix with real Keystone tokens: who may do what to an image of project alpha,
 * for each visibility, as upstream Glance's default policies (secure RBAC, project scope) and
 * its controllers decide.
 *
 * Callers are alpha-{admin,member,reader}, beta-{admin,member,reader}, and "no role": an
 * UNSCOPED token of alpha-norole. Keystone refuses that user a token scoped to a project (it
 * has no role anywhere) but does issue an unscoped one, which Glimpse must treat as a caller
 * with no project and no roles.
 *
 * Subjects are images owned by alpha: public, private, shared with beta as a `pending` member,
 * shared with beta as an `accepted` member, and community. Reads (list, show, download, member
 * list) use one active image per subject; every other cell gets a fresh image, so that one
 * cell's effect cannot leak into another.
 *
 * How the expected codes follow from upstream:
 * - an image the caller cannot see (glance/db/utils.py:is_image_visible, then get_image) is a
 *   404; a visible image whose policy refuses the call is a 403
 *   (glance/api/v2/policy.py:ImageAPIPolicy._enforce);
 * - beta's members see a shared image whatever their membership status, but only an accepted
 *   membership puts it in their lists;
 * - admin in any project is admin for every image;
 * - member calls first look the image up with the visibility test alone, then refuse any image
 *   that is not shared with 403 "Only shared images have members", and only then check policy
 *   (glance/api/v2/image_members.py). So the no-role caller, which can find a public or
 *   community image but fails get_image, gets 403 there, not 404.
 *
 * Needs Keystone on 127.0.0.1:5000 (scripts/keystone.sh start); skipped without it, except
 * under CI (CI=true), where it fails.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { LightMyRequestResponse } from 'fastify';

import { json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases } from '../support/databases.js';
import {
  KEYSTONE_URL,
  USER_PASSWORD,
  getToken,
  keystoneProblem,
  projectId,
  keystoneAppOptions,
} from '../support/keystone.js';

// ---------------------------------------------------------------------------------------------
// The matrix

type Subject = 'public' | 'private' | 'shared-pending' | 'shared-accepted' | 'community';

type Operation =
  | 'list'
  | 'show'
  | 'create'
  | 'create for alpha'
  | 'update'
  | 'delete'
  | 'upload'
  | 'download'
  | 'deactivate'
  | 'reactivate'
  | 'tag add'
  | 'member add'
  | 'member list'
  | 'publicize'
  | 'communitize';

/** 200 from GET /v2/images?visibility=all, with the subject image in the list. */
const IN = 'in';
/** 200 from GET /v2/images?visibility=all, without the subject image. */
const OUT = 'out';
/** Not a request of its own (both shared columns would create the same shared image). */
const NA = 'n/a';

type Cell = number | typeof IN | typeof OUT | typeof NA;
type Row = readonly [Operation, Subject, Cell, Cell, Cell, Cell, Cell, Cell, Cell];

/**
 * Operation × subject → the status each caller gets, in the order of CALLERS. For `create`
 * and `create for alpha` the subject is the visibility asked for in the body; `create for
 * alpha` sends `owner: <alpha's id>`.
 */
// prettier-ignore
const MATRIX: readonly Row[] = [
  //                                        |---- alpha ----| |---- beta -----|
  // operation           subject            admin memb. read. admin memb. read. no role
  ['list',               'public',          IN,   IN,   IN,   IN,   IN,   IN,   403],
  ['list',               'private',         IN,   IN,   IN,   IN,   OUT,  OUT,  403],
  ['list',               'shared-pending',  IN,   IN,   IN,   IN,   OUT,  OUT,  403],
  ['list',               'shared-accepted', IN,   IN,   IN,   IN,   IN,   IN,   403],
  ['list',               'community',       IN,   IN,   IN,   IN,   IN,   IN,   403],

  ['show',               'public',          200,  200,  200,  200,  200,  200,  404],
  ['show',               'private',         200,  200,  200,  200,  404,  404,  404],
  ['show',               'shared-pending',  200,  200,  200,  200,  200,  200,  404],
  ['show',               'shared-accepted', 200,  200,  200,  200,  200,  200,  404],
  ['show',               'community',       200,  200,  200,  200,  200,  200,  404],

  ['create',             'public',          201,  403,  403,  201,  403,  403,  403],
  ['create',             'private',         201,  201,  403,  201,  201,  403,  403],
  ['create',             'shared-pending',  201,  201,  403,  201,  201,  403,  403],
  ['create',             'shared-accepted', NA,   NA,   NA,   NA,   NA,   NA,   NA],
  ['create',             'community',       201,  201,  403,  201,  201,  403,  403],

  ['create for alpha',   'public',          201,  403,  403,  201,  403,  403,  403],
  ['create for alpha',   'private',         201,  201,  403,  201,  403,  403,  403],
  ['create for alpha',   'shared-pending',  201,  201,  403,  201,  403,  403,  403],
  ['create for alpha',   'shared-accepted', NA,   NA,   NA,   NA,   NA,   NA,   NA],
  ['create for alpha',   'community',       201,  201,  403,  201,  403,  403,  403],

  ['update',             'public',          200,  200,  403,  200,  403,  403,  404],
  ['update',             'private',         200,  200,  403,  200,  404,  404,  404],
  ['update',             'shared-pending',  200,  200,  403,  200,  403,  403,  404],
  ['update',             'shared-accepted', 200,  200,  403,  200,  403,  403,  404],
  ['update',             'community',       200,  200,  403,  200,  403,  403,  404],

  ['delete',             'public',          204,  204,  403,  204,  403,  403,  404],
  ['delete',             'private',         204,  204,  403,  204,  404,  404,  404],
  ['delete',             'shared-pending',  204,  204,  403,  204,  403,  403,  404],
  ['delete',             'shared-accepted', 204,  204,  403,  204,  403,  403,  404],
  ['delete',             'community',       204,  204,  403,  204,  403,  403,  404],

  ['upload',             'public',          204,  204,  403,  204,  403,  403,  404],
  ['upload',             'private',         204,  204,  403,  204,  404,  404,  404],
  ['upload',             'shared-pending',  204,  204,  403,  204,  403,  403,  404],
  ['upload',             'shared-accepted', 204,  204,  403,  204,  403,  403,  404],
  ['upload',             'community',       204,  204,  403,  204,  403,  403,  404],

  ['download',           'public',          200,  200,  403,  200,  200,  403,  404],
  ['download',           'private',         200,  200,  403,  200,  404,  404,  404],
  ['download',           'shared-pending',  200,  200,  403,  200,  200,  403,  404],
  ['download',           'shared-accepted', 200,  200,  403,  200,  200,  403,  404],
  ['download',           'community',       200,  200,  403,  200,  200,  403,  404],

  ['deactivate',         'public',          204,  204,  403,  204,  403,  403,  404],
  ['deactivate',         'private',         204,  204,  403,  204,  404,  404,  404],
  ['deactivate',         'shared-pending',  204,  204,  403,  204,  403,  403,  404],
  ['deactivate',         'shared-accepted', 204,  204,  403,  204,  403,  403,  404],
  ['deactivate',         'community',       204,  204,  403,  204,  403,  403,  404],

  ['reactivate',         'public',          204,  204,  403,  204,  403,  403,  404],
  ['reactivate',         'private',         204,  204,  403,  204,  404,  404,  404],
  ['reactivate',         'shared-pending',  204,  204,  403,  204,  403,  403,  404],
  ['reactivate',         'shared-accepted', 204,  204,  403,  204,  403,  403,  404],
  ['reactivate',         'community',       204,  204,  403,  204,  403,  403,  404],

  ['tag add',            'public',          204,  204,  403,  204,  403,  403,  404],
  ['tag add',            'private',         204,  204,  403,  204,  404,  404,  404],
  ['tag add',            'shared-pending',  204,  204,  403,  204,  403,  403,  404],
  ['tag add',            'shared-accepted', 204,  204,  403,  204,  403,  403,  404],
  ['tag add',            'community',       204,  204,  403,  204,  403,  403,  404],

  ['member add',         'public',          403,  403,  403,  403,  403,  403,  403],
  ['member add',         'private',         403,  403,  403,  403,  404,  404,  404],
  ['member add',         'shared-pending',  200,  200,  403,  200,  403,  403,  404],
  ['member add',         'shared-accepted', 200,  200,  403,  200,  403,  403,  404],
  ['member add',         'community',       403,  403,  403,  403,  403,  403,  403],

  ['member list',        'public',          403,  403,  403,  403,  403,  403,  403],
  ['member list',        'private',         403,  403,  403,  403,  404,  404,  404],
  ['member list',        'shared-pending',  200,  200,  200,  200,  200,  200,  404],
  ['member list',        'shared-accepted', 200,  200,  200,  200,  200,  200,  404],
  ['member list',        'community',       403,  403,  403,  403,  403,  403,  403],

  ['publicize',          'public',          200,  403,  403,  200,  403,  403,  404],
  ['publicize',          'private',         200,  403,  403,  200,  404,  404,  404],
  ['publicize',          'shared-pending',  200,  403,  403,  200,  403,  403,  404],
  ['publicize',          'shared-accepted', 200,  403,  403,  200,  403,  403,  404],
  ['publicize',          'community',       200,  403,  403,  200,  403,  403,  404],

  ['communitize',        'public',          200,  200,  403,  200,  403,  403,  404],
  ['communitize',        'private',         200,  200,  403,  200,  404,  404,  404],
  ['communitize',        'shared-pending',  200,  200,  403,  200,  403,  403,  404],
  ['communitize',        'shared-accepted', 200,  200,  403,  200,  403,  403,  404],
  ['communitize',        'community',       200,  200,  403,  200,  403,  403,  404],
];

interface Caller {
  readonly name: string;
  readonly user: string;
  /** Project the token is scoped to; null for the unscoped token. */
  readonly project: string | null;
}

/** The columns of MATRIX, in order. */
const CALLERS: readonly Caller[] = [
  { name: 'alpha-admin', user: 'alpha-admin', project: 'alpha' },
  { name: 'alpha-member', user: 'alpha-member', project: 'alpha' },
  { name: 'alpha-reader', user: 'alpha-reader', project: 'alpha' },
  { name: 'beta-admin', user: 'beta-admin', project: 'beta' },
  { name: 'beta-member', user: 'beta-member', project: 'beta' },
  { name: 'beta-reader', user: 'beta-reader', project: 'beta' },
  { name: 'no role', user: 'alpha-norole', project: null },
];

// ---------------------------------------------------------------------------------------------
// Running a cell

/** What a subject image must be before the call: read-only cells share one per subject. */
type State = 'queued' | 'active' | 'deactivated';

interface World {
  readonly t: TestApp;
  /** Token of each caller, by name. */
  readonly tokens: ReadonlyMap<string, string>;
  readonly alphaId: string;
  readonly betaId: string;
}

interface OperationSpec {
  /** The state a fresh subject is put in; absent for create, which needs no subject. */
  readonly state?: State;
  /** Whether cells share one subject per visibility (the call changes nothing). */
  readonly readOnly?: boolean;
  /** Makes the call and reports the cell it observed. */
  run(world: World, token: string, subject: Subject, id: string): Promise<Cell>;
}

const DATA = Buffer.from('matrix image data\n');
const PATCH = 'application/openstack-images-v2.1-json-patch';

const OPERATIONS: Readonly<Record<Operation, OperationSpec>> = {
  list: {
    state: 'active',
    readOnly: true,
    async run({ t }, token, _subject, id) {
      const response = await call(t, token, 'GET', `/v2/images?visibility=all&id=${id}`);
      if (response.statusCode !== 200) return response.statusCode;
      const ids = json<{ images: Array<{ id: string }> }>(response).images.map((i) => i.id);
      return ids.includes(id) ? IN : OUT;
    },
  },
  show: {
    state: 'active',
    readOnly: true,
    run: async ({ t }, token, _subject, id) =>
      (await call(t, token, 'GET', `/v2/images/${id}`)).statusCode,
  },
  create: {
    run: async ({ t }, token, subject) =>
      (await call(t, token, 'POST', '/v2/images', createBody(subject))).statusCode,
  },
  'create for alpha': {
    run: async ({ t, alphaId }, token, subject) =>
      (await call(t, token, 'POST', '/v2/images', { ...createBody(subject), owner: alphaId }))
        .statusCode,
  },
  update: {
    state: 'queued',
    run: async ({ t }, token, _subject, id) => patch(t, token, id, 'name', 'renamed'),
  },
  delete: {
    state: 'queued',
    run: async ({ t }, token, _subject, id) =>
      (await call(t, token, 'DELETE', `/v2/images/${id}`)).statusCode,
  },
  upload: {
    state: 'queued',
    run: async ({ t }, token, _subject, id) => (await upload(t, token, id)).statusCode,
  },
  download: {
    state: 'active',
    readOnly: true,
    async run({ t }, token, _subject, id) {
      const response = await call(t, token, 'GET', `/v2/images/${id}/file`);
      if (response.statusCode === 200) {
        assert.deepEqual(response.rawPayload, DATA, 'the downloaded bytes are the uploaded ones');
      }
      return response.statusCode;
    },
  },
  deactivate: {
    state: 'active',
    run: async ({ t }, token, _subject, id) =>
      (await call(t, token, 'POST', `/v2/images/${id}/actions/deactivate`)).statusCode,
  },
  reactivate: {
    state: 'deactivated',
    run: async ({ t }, token, _subject, id) =>
      (await call(t, token, 'POST', `/v2/images/${id}/actions/reactivate`)).statusCode,
  },
  'tag add': {
    state: 'queued',
    run: async ({ t }, token, _subject, id) =>
      (await call(t, token, 'PUT', `/v2/images/${id}/tags/matrix`)).statusCode,
  },
  'member add': {
    state: 'queued',
    // A project that is not a member yet (beta already is of both shared subjects).
    run: async ({ t }, token, _subject, id) =>
      (await call(t, token, 'POST', `/v2/images/${id}/members`, { member: randomProject() }))
        .statusCode,
  },
  'member list': {
    state: 'active',
    readOnly: true,
    run: async ({ t }, token, _subject, id) =>
      (await call(t, token, 'GET', `/v2/images/${id}/members`)).statusCode,
  },
  publicize: {
    state: 'queued',
    run: async ({ t }, token, _subject, id) => patch(t, token, id, 'visibility', 'public'),
  },
  communitize: {
    state: 'queued',
    run: async ({ t }, token, _subject, id) => patch(t, token, id, 'visibility', 'community'),
  },
};

function visibilityOf(subject: Subject): string {
  return subject.startsWith('shared') ? 'shared' : subject;
}

function createBody(subject: Subject): Record<string, unknown> {
  return {
    name: `created ${subject}`,
    visibility: visibilityOf(subject),
    disk_format: 'raw',
    container_format: 'bare',
  };
}

function randomProject(): string {
  return randomUUID().replaceAll('-', '');
}

function call(
  t: TestApp,
  token: string,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  url: string,
  body?: unknown,
): Promise<LightMyRequestResponse> {
  return t.request({
    method,
    url,
    headers: { 'x-auth-token': token, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
  });
}

async function patch(
  t: TestApp,
  token: string,
  id: string,
  field: string,
  value: string,
): Promise<number> {
  const response = await t.request({
    method: 'PATCH',
    url: `/v2/images/${id}`,
    headers: { 'x-auth-token': token, 'content-type': PATCH },
    payload: JSON.stringify([{ op: 'replace', path: `/${field}`, value }]),
  });
  return response.statusCode;
}

function upload(t: TestApp, token: string, id: string): Promise<LightMyRequestResponse> {
  return t.request({
    method: 'PUT',
    url: `/v2/images/${id}/file`,
    headers: { 'x-auth-token': token, 'content-type': 'application/octet-stream' },
    payload: DATA,
  });
}

/** Fails the setup, not the cell, when a step of making a subject goes wrong. */
function expectStatus(response: LightMyRequestResponse, status: number, step: string): void {
  assert.equal(
    response.statusCode,
    status,
    `setup: ${step} answered ${response.statusCode}: ${response.body}`,
  );
}

/** An image of alpha with the subject's visibility and membership, in the given state. */
async function makeSubject(world: World, subject: Subject, state: State): Promise<string> {
  const { t, tokens, betaId } = world;
  const owner = tokenOf(tokens, 'alpha-admin');
  const created = await call(t, owner, 'POST', '/v2/images', {
    name: `subject ${subject}`,
    visibility: visibilityOf(subject),
    disk_format: 'raw',
    container_format: 'bare',
  });
  expectStatus(created, 201, `creating the ${subject} subject`);
  const id = json<{ id: string }>(created).id;

  if (subject === 'shared-pending' || subject === 'shared-accepted') {
    const added = await call(t, owner, 'POST', `/v2/images/${id}/members`, { member: betaId });
    expectStatus(added, 200, 'adding beta as a member');
  }
  if (subject === 'shared-accepted') {
    const accepted = await call(t, tokenOf(tokens, 'beta-member'), 'PUT', memberUrl(id, betaId), {
      status: 'accepted',
    });
    expectStatus(accepted, 200, 'beta accepting the image');
  }
  if (state !== 'queued') expectStatus(await upload(t, owner, id), 204, 'uploading data');
  if (state === 'deactivated') {
    const deactivated = await call(t, owner, 'POST', `/v2/images/${id}/actions/deactivate`);
    expectStatus(deactivated, 204, 'deactivating');
  }
  return id;
}

function memberUrl(id: string, member: string): string {
  return `/v2/images/${id}/members/${member}`;
}

function tokenOf(tokens: ReadonlyMap<string, string>, caller: string): string {
  const token = tokens.get(caller);
  assert.ok(token, `no token for ${caller}`);
  return token;
}

function show(cell: Cell): string {
  return typeof cell === 'number' ? String(cell) : cell;
}

// ---------------------------------------------------------------------------------------------
// Tokens

/** POST /v3/auth/tokens with a password and no scope: a token without project or roles. */
async function unscopedToken(user: string): Promise<string> {
  const auth = {
    identity: {
      methods: ['password'],
      password: { user: { name: user, domain: { name: 'Default' }, password: USER_PASSWORD } },
    },
  };
  const response = await fetch(`${KEYSTONE_URL}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ auth }),
    signal: AbortSignal.timeout(15_000),
  });
  const text = await response.text();
  assert.equal(response.status, 201, `Keystone refused ${user} an unscoped token: ${text}`);
  const body = JSON.parse(text) as { token?: { project?: unknown; roles?: unknown } };
  assert.equal(body.token?.project, undefined, 'the token has no project');
  assert.equal(body.token?.roles, undefined, 'the token has no roles');
  const token = response.headers.get('x-subject-token');
  assert.ok(token, 'Keystone sent the token');
  return token;
}

/** One token per caller, asked for once for the whole file (Keystone is slow). */
async function callerTokens(): Promise<Map<string, string>> {
  const issued = await Promise.all(
    CALLERS.map(async (caller) => {
      const token = caller.project
        ? (await getToken(caller.user, caller.project)).token
        : await unscopedToken(caller.user);
      return [caller.name, token] as const;
    }),
  );
  return new Map(issued);
}

// ---------------------------------------------------------------------------------------------
// The suites

const problem = await keystoneProblem();
const databases = await testDatabases();
let tokensOnce: Promise<Map<string, string>> | undefined;

for (const database of databases) {
  const skip = problem ?? database.skip ?? false;
  describe(`the access matrix with Keystone tokens (${database.name})`, { skip }, () => {
    let world: World;
    /** The shared read-only subject of each visibility. */
    const readOnly = new Map<Subject, string>();

    before(async () => {
      const t = await startTestApp(database, keystoneAppOptions());
      tokensOnce ??= callerTokens();
      world = {
        t,
        tokens: await tokensOnce,
        alphaId: await projectId('alpha'),
        betaId: await projectId('beta'),
      };
      for (const subject of new Set(MATRIX.map((row) => row[1]))) {
        readOnly.set(subject, await makeSubject(world, subject, 'active'));
      }
    });
    after(() => world?.t.close());

    for (const [operation, subject, ...expected] of MATRIX) {
      if (expected.every((cell) => cell === NA)) continue;
      const spec = OPERATIONS[operation];
      const codes = expected.map(show).join(' ');

      it(`${operation} on the ${subject} image answers ${codes}`, async () => {
        const observed: Cell[] = [];
        for (const caller of CALLERS) {
          let id = '';
          if (spec.state !== undefined) {
            id = spec.readOnly
              ? (readOnly.get(subject) ?? assert.fail(`no ${subject} subject`))
              : await makeSubject(world, subject, spec.state);
          }
          observed.push(await spec.run(world, tokenOf(world.tokens, caller.name), subject, id));
        }
        const label = (cells: readonly Cell[]) =>
          CALLERS.map((caller, i) => `${caller.name}: ${show(cells[i] ?? NA)}`);
        assert.deepEqual(label(observed), label(expected));
      });
    }
  });
}
