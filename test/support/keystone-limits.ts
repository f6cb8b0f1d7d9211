/**
 * Keystone unified limits for the quota suites, set through Keystone's API with the admin's
 * system-scoped token (Keystone shows and changes project limits only for such tokens).
 * Every helper converges on the values asked for whatever an earlier run left: existing
 * limits, projects and users are looked up and updated, never created twice.
 */
import assert from 'node:assert/strict';

import {
  ADMIN_PASSWORD,
  KEYSTONE_URL,
  USER_PASSWORD,
  projectId,
  requestToken,
} from './keystone.js';

export type Resource =
  'image_size_total' | 'image_stage_total' | 'image_count_total' | 'image_count_uploading';

export type ResourceLimits = Readonly<Record<Resource, number>>;

/**
 * The registered limits, which every project without its own gets: enough not to matter. A
 * suite that needs small limits sets them on a project (alpha, or one of its own).
 */
export const REGISTERED_LIMITS: ResourceLimits = {
  image_size_total: 1000,
  image_stage_total: 1000,
  image_count_total: 100,
  image_count_uploading: 100,
};

/**
 * alpha's own limits (sizes in MiB). Every suite that sets them sets these values, so suites
 * running at the same time agree on them.
 */
export const ALPHA_LIMITS: ResourceLimits = {
  image_size_total: 2,
  image_stage_total: 1,
  image_count_total: 5,
  image_count_uploading: 1,
};

const REQUEST_TIMEOUT_MS = 15_000;
/** A cached token is replaced when less than this is left of its life. */
const RENEW_MARGIN_MS = 60_000;

let systemToken: { value: string; expiresAt: number } | undefined;

async function systemAdminToken(): Promise<string> {
  if (systemToken && systemToken.expiresAt - Date.now() > RENEW_MARGIN_MS) {
    return systemToken.value;
  }
  const password = {
    user: { name: 'admin', domain: { name: 'Default' }, password: ADMIN_PASSWORD },
  };
  const auth = {
    identity: { methods: ['password'], password },
    scope: { system: { all: true } },
  };
  const { status, token: value, text } = await requestToken(auth);
  assert.ok(status === 201 && value, `no system token for admin: ${text}`);
  const expiresAt = Date.parse(
    (JSON.parse(text) as { token: { expires_at: string } }).token.expires_at,
  );
  systemToken = { value, expiresAt };
  return value;
}

/** One call to Keystone's API as the system admin; fails the test on any error status. */
async function keystone(method: string, path: string, body?: unknown): Promise<unknown> {
  const response = await fetch(`${KEYSTONE_URL}${path}`, {
    method,
    headers: {
      'x-auth-token': await systemAdminToken(),
      'content-type': 'application/json',
      accept: 'application/json',
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await response.text();
  assert.ok(response.ok, `Keystone ${method} ${path}: ${response.status} ${text}`);
  return text ? (JSON.parse(text) as unknown) : {};
}

/** Keystone's id of the one service of type image, whose limits Glimpse reads. */
export async function imageServiceId(): Promise<string> {
  const body = (await keystone('GET', '/services?type=image')) as {
    services: Array<{ id: string }>;
  };
  assert.equal(body.services.length, 1, 'Keystone should list one image service');
  return body.services[0]?.id ?? '';
}

interface LimitRow {
  id: string;
  region_id: string | null;
  default_limit?: number;
  resource_limit?: number;
}

/** Makes the region-less registered limit (the default) of each resource equal its value. */
export async function ensureRegisteredLimits(service: string, limits: ResourceLimits) {
  for (const [resource, value] of Object.entries(limits)) {
    const query = new URLSearchParams({ service_id: service, resource_name: resource });
    const listed = (await keystone('GET', `/registered_limits?${query}`)) as {
      registered_limits: LimitRow[];
    };
    const existing = listed.registered_limits.find((limit) => limit.region_id === null);
    if (!existing) {
      const created = { service_id: service, resource_name: resource, default_limit: value };
      await keystone('POST', '/registered_limits', { registered_limits: [created] });
    } else if (existing.default_limit !== value) {
      const path = `/registered_limits/${existing.id}`;
      await keystone('PATCH', path, { registered_limit: { default_limit: value } });
    }
  }
}

/** Makes the project's own region-less limit of each resource given equal its value. */
export async function ensureProjectLimits(
  service: string,
  project: string,
  limits: Partial<ResourceLimits>,
) {
  for (const [resource, value] of Object.entries(limits)) {
    const query = new URLSearchParams({
      service_id: service,
      project_id: project,
      resource_name: resource,
    });
    const listed = (await keystone('GET', `/limits?${query}`)) as { limits: LimitRow[] };
    const existing = listed.limits.find((limit) => limit.region_id === null);
    if (!existing) {
      const created = {
        service_id: service,
        project_id: project,
        resource_name: resource,
        resource_limit: value,
      };
      await keystone('POST', '/limits', { limits: [created] });
    } else if (existing.resource_limit !== value) {
      await keystone('PATCH', `/limits/${existing.id}`, { limit: { resource_limit: value } });
    }
  }
}

/** The id of the entity of `kind` (projects, users, roles) called name, or null. */
async function findByName(kind: string, name: string, domain = true): Promise<string | null> {
  const query = new URLSearchParams({ name });
  if (domain) query.set('domain_id', 'default');
  const body = (await keystone('GET', `/${kind}?${query}`)) as Record<string, unknown>;
  const entries = body[kind] as Array<{ id: string; name: string }>;
  return entries.find((entry) => entry.name === name)?.id ?? null;
}

/**
 * A project of its own for a suite that changes limits (others reading the shared fixture
 * projects' limits at the same time are left alone), with the user `<project>-member`
 * holding the member role on it. Returns the project's id; the user logs in with
 * USER_PASSWORD.
 */
export async function ensureOwnProject(name: string): Promise<string> {
  const project =
    (await findByName('projects', name)) ??
    (
      (await keystone('POST', '/projects', {
        project: { name, domain_id: 'default', description: 'Glimpse quota tests' },
      })) as { project: { id: string } }
    ).project.id;
  const userName = `${name}-member`;
  const user =
    (await findByName('users', userName)) ??
    (
      (await keystone('POST', '/users', {
        user: { name: userName, domain_id: 'default', password: USER_PASSWORD },
      })) as { user: { id: string } }
    ).user.id;
  const role = await findByName('roles', 'member', false);
  assert.ok(role, 'Keystone has no member role');
  await keystone('PUT', `/projects/${project}/users/${user}/roles/${role}`);
  return project;
}

/** Sets the registered limits every project gets by default; the image service's id. */
export async function ensureDefaultLimits(): Promise<string> {
  const service = await imageServiceId();
  await ensureRegisteredLimits(service, REGISTERED_LIMITS);
  return service;
}

/** Gives alpha its own limits, ALPHA_LIMITS, on service; alpha's id. */
export async function ensureAlphaLimits(service: string): Promise<string> {
  const alphaId = await projectId('alpha');
  await ensureProjectLimits(service, alphaId, ALPHA_LIMITS);
  return alphaId;
}

/** What Glimpse says, as upstream words it, when a request takes project past a limit. */
export function overLimitMessage(
  project: string,
  resource: Resource,
  usage: number,
  delta: number,
  limit: number = ALPHA_LIMITS[resource],
): string {
  return (
    `Project ${project} is over a limit for [Resource ${resource} is over limit of ` +
    `${limit} due to current usage ${usage} and delta ${delta}]`
  );
}
