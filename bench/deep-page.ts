/**
 * Keyset pagination check: with 100,000 images, a page 50,000 rows deep should cost what the
 * first page costs. Rows are written straight into the tables the server created (API calls
 * would take minutes), with the column layout of src/db/sql/migrations/0001-images.ts.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';

import Database from 'better-sqlite3';
import { request } from 'undici';

import { median, openBackend, STARTUP_SAMPLES, type Backend } from './backend.js';
import { runLoad, type LoadResult } from './load.js';
import { analyze, withDatabase } from './postgres.js';
import type { BenchSettings, DatabaseKind } from './report.js';
import type { RunningServer } from './server-process.js';

export const DEEP_IMAGE_COUNT = 100_000;
export const DEEP_POSITION = 50_000;
const CONCURRENCIES = [1, 32] as const;
/** One second apart, so the default order (created_at desc, id desc) is the insertion order. */
const FIRST_CREATED = Date.parse('2020-01-01T00:00:00.000Z');
const PAGE = 25;

export interface DeepPageRun {
  page: 'first' | 'deep';
  result: LoadResult;
}

export interface DeepPageFigures {
  /** Start-up of a server whose database already holds the schema and 100,000 images. */
  startupMs: number;
  /** The start-ups it is the median of. */
  startupSamples: number[];
  runs: DeepPageRun[];
}

/** Same shape as what the API writes: a queued shared image with one tag and one property. */
function insertSqlite(dataDir: string): void {
  const db = new Database(join(dataDir, 'glimpse.sqlite'));
  try {
    const image = db.prepare(
      `INSERT INTO images (id, name, status, visibility, protected, os_hidden, owner,
         container_format, disk_format, min_ram, min_disk, created_at, updated_at, deleted)
       VALUES (?, ?, 'queued', 'shared', 0, 0, NULL, 'bare', 'qcow2', 0, 0, ?, ?, 0)`,
    );
    const tag = db.prepare(`INSERT INTO image_tags (image_id, value) VALUES (?, 't1')`);
    const property = db.prepare(
      `INSERT INTO image_properties (image_id, name, value) VALUES (?, 'os_distro', 'ubuntu')`,
    );
    db.transaction(() => {
      for (let index = 0; index < DEEP_IMAGE_COUNT; index++) {
        const id = randomUUID();
        const created = new Date(FIRST_CREATED + index * 1000).toISOString();
        image.run(id, `deep-${index}`, created, created);
        tag.run(id);
        property.run(id);
      }
    })();
  } finally {
    db.close();
  }
}

/** Generated inside PostgreSQL in three statements. */
async function insertPostgres(url: string): Promise<void> {
  await withDatabase(url, async (client) => {
    await client.query(
      `INSERT INTO images (id, name, status, visibility, protected, os_hidden, owner,
         container_format, disk_format, min_ram, min_disk, created_at, updated_at, deleted)
       SELECT gen_random_uuid()::text, 'deep-' || g, 'queued', 'shared', 0, 0, NULL,
         'bare', 'qcow2', 0, 0, t.at, t.at, 0
       FROM generate_series(0, $1::int - 1) AS g,
         LATERAL (SELECT to_char(to_timestamp($2::bigint / 1000.0 + g) AT TIME ZONE 'UTC',
           'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS at) AS t`,
      [DEEP_IMAGE_COUNT, FIRST_CREATED],
    );
    await client.query(`INSERT INTO image_tags (image_id, value) SELECT id, 't1' FROM images`);
    await client.query(
      `INSERT INTO image_properties (image_id, name, value)
       SELECT id, 'os_distro', 'ubuntu' FROM images`,
    );
  });
  await analyze(url);
}

const MARKER_SQL = `SELECT id FROM images WHERE deleted = 0
  ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ${DEEP_POSITION - 1}`;

async function markerAt(backend: Backend): Promise<string> {
  if (backend.kind === 'sqlite') {
    const db = new Database(join(backend.dataDir, 'glimpse.sqlite'), { readonly: true });
    try {
      return (db.prepare(MARKER_SQL).get() as { id: string }).id;
    } finally {
      db.close();
    }
  }
  return withDatabase(backend.databaseUrl, async (client) => {
    const result = await client.query<{ id: string }>(MARKER_SQL);
    const row = result.rows[0];
    if (!row) throw new Error('no image at the deep position');
    return row.id;
  });
}

/** A wrong marker would measure an error page; make sure the deep page is a full one. */
async function checkPage(url: string, path: string): Promise<void> {
  const response = await request(`${url}${path}`);
  const body = (await response.body.json()) as { images?: unknown[] };
  if (response.statusCode !== 200 || body.images?.length !== PAGE) {
    throw new Error(`${path}: status ${response.statusCode}, ${body.images?.length} images`);
  }
}

async function populate(backend: Backend, settings: BenchSettings): Promise<void> {
  // The server creates the schema; then it stops, so the rows go in without competition.
  const schemaServer = await backend.start();
  await schemaServer.stop();
  const started = performance.now();
  if (backend.kind === 'sqlite') insertSqlite(backend.dataDir);
  else await insertPostgres(backend.databaseUrl);
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  settings.log(`  inserted ${DEEP_IMAGE_COUNT} images in ${seconds} s`);
}

/** Both pages in turn, so the first measured run does not pay for JIT and cold caches. */
async function warmUp(backend: Backend, server: RunningServer, paths: string[]): Promise<void> {
  await runLoad({
    url: server.url,
    connections: 8,
    durationSeconds: 1,
    requests: paths.map((path) => ({ method: 'GET', path })),
    serverPid: server.pid,
    databaseCommand: backend.databaseCommand,
  });
}

async function comparePages(
  backend: Backend,
  server: RunningServer,
  marker: string,
  settings: BenchSettings,
): Promise<DeepPageRun[]> {
  const paths = {
    first: `/v2/images?limit=${PAGE}`,
    deep: `/v2/images?limit=${PAGE}&marker=${marker}`,
  };
  await checkPage(server.url, paths.first);
  await checkPage(server.url, paths.deep);
  if (!settings.quick) await warmUp(backend, server, [paths.first, paths.deep]);

  const runs: DeepPageRun[] = [];
  for (const connections of CONCURRENCIES) {
    for (const page of ['first', 'deep'] as const) {
      const result = await runLoad({
        url: server.url,
        connections,
        // Half the scenario duration: four runs per database must fit the time budget.
        durationSeconds: Math.max(1, settings.durationSeconds / 2),
        requests: [{ method: 'GET', path: paths[page] }],
        serverPid: server.pid,
        databaseCommand: backend.databaseCommand,
      });
      settings.log(`  ${page} page c=${connections}: ${Math.round(result.perSecond)} req/s`);
      runs.push({ page, result });
    }
  }
  return runs;
}

export async function benchDeepPage(
  kind: DatabaseKind,
  settings: BenchSettings,
): Promise<DeepPageFigures> {
  const backend = await openBackend(kind);
  try {
    await populate(backend, settings);
    const marker = await markerAt(backend);
    const startups: number[] = [];
    for (let sample = 1; sample < STARTUP_SAMPLES; sample++) {
      const probe = await backend.start();
      startups.push(probe.startupMs);
      await probe.stop();
    }
    const server = await backend.start();
    startups.push(server.startupMs);
    try {
      const runs = await comparePages(backend, server, marker, settings);
      return { startupMs: median(startups), startupSamples: startups, runs };
    } finally {
      await server.stop();
    }
  } finally {
    await backend.cleanup();
  }
}
