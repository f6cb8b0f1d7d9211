/**
 * The Keystone (OpenStack Identity) the authentication suites run against: the one
 * scripts/keystone.sh starts on 127.0.0.1:5000, with its fixtures, all in domain Default:
 *
 * - projects alpha and beta, each with users <project>-admin (role admin), <project>-member
 *   (member), <project>-reader (reader) and <project>-norole (no role, so Keystone refuses it a
 *   token scoped to the project); admin implies member, which implies reader;
 * - project service with the service user glimpse (roles service and admin);
 * - an image service whose endpoints are http://127.0.0.1:9292 in RegionOne and
 *   http://127.0.0.1:9393 in RegionTwo.
 *
 * Under CI (CI=true) an unreachable Keystone fails the run instead of skipping.
 */
import { explain } from './errors.js';
import { withoutPrefix } from './server-process.js';

/** Identity API root, without a trailing slash. */
export const KEYSTONE_URL = (
  process.env.GLIMPSE_TEST_KEYSTONE_URL ?? 'http://127.0.0.1:5000/v3'
).replace(/\/+$/, '');

/** Password of every fixture user; scripts/keystone.sh reads the same variable. */
export const USER_PASSWORD = process.env.GLIMPSE_TEST_KEYSTONE_USER_PASSWORD ?? 'secret';

/** Password of Keystone's bootstrap user admin (project admin). */
export const ADMIN_PASSWORD = process.env.GLIMPSE_TEST_KEYSTONE_ADMIN_PASSWORD ?? 'admin-secret';

const DOMAIN = 'Default';
const PROBE_TIMEOUT_MS = 3_000;
const REQUEST_TIMEOUT_MS = 15_000;
/** A cached admin token is replaced when less than this is left of its life. */
const RENEW_MARGIN_MS = 60_000;

const isCi = process.env.CI === 'true';

export interface KeystoneToken {
  /** The token itself, as sent in X-Auth-Token. */
  readonly token: string;
  readonly expiresAt: Date;
  /** Role names on the project, implied roles included (admin ⇒ member ⇒ reader). */
  readonly roles: readonly string[];
  readonly projectId: string;
  readonly userId: string;
}

/** What Glimpse needs to validate tokens as the glimpse service user. */
export interface ServiceCredentials {
  readonly authUrl: string;
  readonly username: string;
  readonly password: string;
  readonly projectName: string;
  readonly userDomainName: string;
  readonly projectDomainName: string;
}

/** Keystone answered, but not with what was asked for; status is its HTTP status. */
export class KeystoneError extends Error {
  readonly status: number;

  constructor(message: string, status: number) {
    super(message);
    this.name = 'KeystoneError';
    this.status = status;
  }
}

interface TokenBody {
  token?: {
    expires_at?: string;
    roles?: Array<{ name?: string }>;
    project?: { id?: string };
    user?: { id?: string };
  };
}

interface ProjectsBody {
  projects?: Array<{ id?: string; name?: string }>;
}

let probe: Promise<string | null> | undefined;

/**
 * Why the Keystone suites cannot run here, or null when they can: Keystone answers at
 * KEYSTONE_URL and the glimpse fixture user can log in. Under CI a problem throws instead.
 */
export function keystoneProblem(): Promise<string | null> {
  probe ??= findProblem().then((problem) => {
    if (problem && isCi) throw new Error(`${problem}; CI requires Keystone`);
    if (problem) process.stdout.write(`# skipping Keystone suites: ${problem}\n`);
    return problem;
  });
  return probe;
}

async function findProblem(): Promise<string | null> {
  try {
    const response = await fetch(KEYSTONE_URL, { signal: AbortSignal.timeout(PROBE_TIMEOUT_MS) });
    await response.arrayBuffer();
    if (response.status !== 200) {
      return `Keystone at ${KEYSTONE_URL} answered ${response.status}`;
    }
  } catch (error) {
    return (
      `Keystone at ${KEYSTONE_URL} is unreachable (${explain(error)}); ` +
      'start it with scripts/keystone.sh start'
    );
  }
  const service = serviceCredentials();
  try {
    await getToken(service.username, service.projectName, service.password);
  } catch (error) {
    return (
      `Keystone at ${KEYSTONE_URL} answers, but the fixture user ${service.username} cannot ` +
      `log in (${explain(error)}); create the fixtures with scripts/keystone.sh fixtures`
    );
  }
  return null;
}

/**
 * Logs user in with a password and a token scoped to project (both in domain Default). Throws a
 * KeystoneError when Keystone refuses, e.g. status 401 for a user without a role on project.
 */
export async function getToken(
  user: string,
  project: string,
  password: string = USER_PASSWORD,
): Promise<KeystoneToken> {
  const auth = {
    identity: {
      methods: ['password'],
      password: { user: { name: user, domain: { name: DOMAIN }, password } },
    },
    scope: { project: { name: project, domain: { name: DOMAIN } } },
  };
  const { status, token, text } = await requestToken(auth);
  if (status !== 201) {
    throw new KeystoneError(
      `Keystone refused ${user} a token on project ${project}: ${status} ${text}`,
      status,
    );
  }

  const body = (JSON.parse(text) as TokenBody).token;
  const expiresAt = body?.expires_at;
  const projectId = body?.project?.id;
  const userId = body?.user?.id;
  if (!token || !expiresAt || !projectId || !userId) {
    throw new KeystoneError(`Keystone issued an incomplete token for ${user}: ${text}`, 201);
  }
  return {
    token,
    expiresAt: new Date(expiresAt),
    roles: (body.roles ?? []).flatMap((role) => (role.name ? [role.name] : [])),
    projectId,
    userId,
  };
}

/** Keystone's answer to POST /auth/tokens: its status, the token it issued, its body. */
export interface TokenAnswer {
  readonly status: number;
  readonly token: string | null;
  readonly text: string;
}

/** Asks Keystone for a token with auth, the `auth` object of POST /auth/tokens. */
export async function requestToken(auth: object): Promise<TokenAnswer> {
  const response = await fetch(`${KEYSTONE_URL}/auth/tokens`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json' },
    body: JSON.stringify({ auth }),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  return { status: response.status, token: response.headers.get('x-subject-token'), text };
}

/** The glimpse service user, as Glimpse's keystone_* options would name it. */
export function serviceCredentials(): ServiceCredentials {
  return {
    authUrl: KEYSTONE_URL,
    username: 'glimpse',
    password: USER_PASSWORD,
    projectName: 'service',
    userDomainName: DOMAIN,
    projectDomainName: DOMAIN,
  };
}

/** GLIMPSE_* settings that make a Glimpse process validate tokens with this Keystone. */
/** Configuration options that put an in-process Glimpse in keystone mode. */
export function keystoneAppOptions(
  overrides: Record<string, unknown> = {},
): Record<string, unknown> {
  const service = serviceCredentials();
  return {
    auth_strategy: 'keystone',
    keystone_auth_url: service.authUrl,
    keystone_username: service.username,
    keystone_password: service.password,
    keystone_project_name: service.projectName,
    keystone_user_domain_name: service.userDomainName,
    keystone_project_domain_name: service.projectDomainName,
    ...overrides,
  };
}

/** The same settings as GLIMPSE_* variables, for a server child process. */
export function keystoneServerEnv(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(keystoneAppOptions()).map(([name, value]) => [
      `GLIMPSE_${name.toUpperCase()}`,
      String(value),
    ]),
  );
}

/** Revokes token with the admin's token. A token Keystone already rejects is not an error. */
export async function revokeToken(token: string): Promise<void> {
  const response = await adminRequest('DELETE', '/auth/tokens', { 'x-subject-token': token });
  const text = await response.text();
  if (response.status !== 204 && response.status !== 404) {
    throw new KeystoneError(
      `Keystone refused to revoke a token: ${response.status} ${text}`,
      response.status,
    );
  }
}

const projectIds = new Map<string, string>();

/** The id of the project called name in domain Default. */
export async function projectId(name: string): Promise<string> {
  const known = projectIds.get(name);
  if (known) return known;
  const query = new URLSearchParams({ name, domain_id: 'default' });
  const response = await adminRequest('GET', `/projects?${query}`);
  const text = await response.text();
  if (response.status !== 200) {
    throw new KeystoneError(`Keystone refused to list projects: ${text}`, response.status);
  }
  const id = (JSON.parse(text) as ProjectsBody).projects?.find((p) => p.name === name)?.id;
  if (!id) throw new KeystoneError(`Keystone has no project ${name} in domain ${DOMAIN}`, 404);
  projectIds.set(name, id);
  return id;
}

let admin: KeystoneToken | undefined;

async function adminRequest(
  method: string,
  path: string,
  headers: Record<string, string> = {},
): Promise<Response> {
  if (!admin || admin.expiresAt.getTime() - Date.now() < RENEW_MARGIN_MS) {
    admin = await getToken('admin', 'admin', ADMIN_PASSWORD);
  }
  return fetch(`${KEYSTONE_URL}${path}`, {
    method,
    headers: { accept: 'application/json', 'x-auth-token': admin.token, ...headers },
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
}

/**
 * The environment of an OpenStack CLI logged in to this Keystone as user of project with a
 * password. OS_* variables of the developer's shell are left out: they would point it
 * elsewhere.
 */
export function passwordLoginEnv(user: string, project: string): NodeJS.ProcessEnv {
  return {
    ...withoutPrefix(process.env, 'OS_'),
    OS_AUTH_URL: KEYSTONE_URL,
    OS_USERNAME: user,
    OS_PASSWORD: USER_PASSWORD,
    OS_PROJECT_NAME: project,
    OS_USER_DOMAIN_NAME: DOMAIN,
    OS_PROJECT_DOMAIN_NAME: DOMAIN,
    OS_IDENTITY_API_VERSION: '3',
  };
}
