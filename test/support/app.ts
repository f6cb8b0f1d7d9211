/** Builds an in-process Glimpse for API tests, answering through Fastify's inject. */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { InjectOptions, LightMyRequestResponse } from 'fastify';

import { buildApplication, type Application } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import type { OptionName } from '../../src/config/schema.js';
import { createLogger } from '../../src/logger.js';
import type { TestDatabase } from './databases.js';

export interface TestApp {
  readonly app: Application;
  readonly dataDir: string;
  /** The metadata database URL the app was given: empty for SQLite in `dataDir`. */
  readonly databaseUrl: string;
  request(options: InjectOptions): Promise<LightMyRequestResponse>;
  /** The error-level lines the app logged so far: an error logged is a bug or an outage. */
  loggedErrors(): string[];
  close(): Promise<void>;
}

/** Identity headers of a project member (noauth mode trusts them). */
export function asProject(project: string, roles = 'member', user = `${project}-user`) {
  return { 'x-project-id': project, 'x-user-id': user, 'x-roles': roles };
}

export async function startTestApp(
  database: TestDatabase,
  options: Partial<Record<OptionName, unknown>> = {},
): Promise<TestApp> {
  const dataDir = await mkdtemp(join(tmpdir(), 'glimpse-test-'));
  const db = await database.create();
  const config = loadConfig(
    {},
    { data_dir: dataDir, database_url: db.url, log_level: 'silent', ...options },
  );
  const errors: string[] = [];
  const logger =
    options.log_level === undefined
      ? createLogger('error', { write: (line: string) => void errors.push(line) })
      : createLogger(config.log_level);
  const app = await buildApplication(config, logger);

  return {
    app,
    dataDir,
    databaseUrl: db.url,
    request: (request) => app.http.inject(request),
    loggedErrors: () => [...errors],
    async close() {
      await app.close();
      await db.drop();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

/** JSON body of a response, failing with the body text when it is not JSON. */
export function json<T = Record<string, unknown>>(response: LightMyRequestResponse): T {
  try {
    return JSON.parse(response.body) as T;
  } catch {
    throw new Error(`expected JSON, got ${response.statusCode}: ${response.body}`);
  }
}

/** POST /v2/images that must succeed; the image it created. */
export async function createImage<T extends { id: string }>(
  t: TestApp,
  body: Record<string, unknown>,
  headers: Record<string, string>,
): Promise<T> {
  const response = await t.request({
    method: 'POST',
    url: '/v2/images',
    headers,
    payload: JSON.stringify(body),
  });
  assert.equal(response.statusCode, 201, response.body);
  return json<T>(response);
}

/** GET /v2/images/{id} that must succeed. */
export async function showImage<T extends { id: string }>(
  t: TestApp,
  id: string,
  headers: Record<string, string>,
): Promise<T> {
  const response = await t.request({ method: 'GET', url: `/v2/images/${id}`, headers });
  assert.equal(response.statusCode, 200, response.body);
  return json<T>(response);
}
