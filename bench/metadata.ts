/**
 * Image metadata API under load: show, list, filtered list, create, update and delete, each at
 * concurrency 1 (latency of one caller) and 32 (throughput), against 2,000 images.
 */
import type { Request } from 'autocannon';
import { request } from 'undici';

import type { Backend } from './backend.js';
import { runLoad, type LoadResult } from './load.js';
import { analyze } from './postgres.js';
import type { BenchSettings } from './report.js';
import type { RunningServer } from './server-process.js';

export const IMAGE_COUNT = 2_000;
export const CONCURRENCIES = [1, 32] as const;

const FILL_CONCURRENCY = 16;
/** Every tenth image is a debian one with an extra tag: what the filter scenario finds. */
const RARE_EVERY = 10;
const WARMUP_SECONDS = 1;
/** Share of the deletable pool the concurrency-1 run may use; the rest goes to 32. */
const SERIAL_DELETE_SHARE = 0.3;

const JSON_TYPE = { 'content-type': 'application/json' };
const PATCH_TYPE = { 'content-type': 'application/openstack-images-v2.1-json-patch' };
/** Path of a delete request when the pool ran dry: a 404 that shows in non-2xx. */
const EXHAUSTED = '/v2/images/00000000-0000-0000-0000-000000000000';

export type ScenarioKey = 'show' | 'list' | 'filter' | 'create' | 'patch' | 'delete';

export interface Dataset {
  /** The images made before measuring; show and patch pick among them. */
  readonly ids: string[];
  /** Images made by the create scenario, each deleted at most once by the delete scenario. */
  readonly deletable: string[];
}

interface Plan {
  requests: Request[];
  maxRequests?: number;
}

export interface Scenario {
  readonly key: ScenarioKey;
  readonly label: string;
  plan(dataset: Dataset, connections: number): Plan;
}

export interface ScenarioRun {
  scenario: Scenario;
  result: LoadResult;
}

export interface DatabaseFigures {
  /** Median start-up on an empty database (the server creates the schema). */
  startupMs: number;
  /** The start-ups it is the median of. */
  startupSamples: number[];
  runs: ScenarioRun[];
}

function imageBody(index: number): string {
  const rare = index % RARE_EVERY === 0;
  return JSON.stringify({
    name: `img-${index}`,
    disk_format: 'qcow2',
    container_format: 'bare',
    tags: rare ? ['t1', 'rare'] : ['t1'],
    os_distro: rare ? 'debian' : 'ubuntu',
  });
}

function pick(ids: readonly string[]): string {
  return ids[Math.floor(Math.random() * ids.length)] ?? '';
}

function fixed(path: string): Plan {
  return { requests: [{ method: 'GET', path }] };
}

function showPlan(dataset: Dataset): Plan {
  return {
    requests: [
      {
        method: 'GET',
        setupRequest: (req) => ({ ...req, path: `/v2/images/${pick(dataset.ids)}` }),
      },
    ],
  };
}

function createPlan(dataset: Dataset): Plan {
  const collect = (status: number, body: string) => {
    if (status === 201) dataset.deletable.push((JSON.parse(body) as { id: string }).id);
  };
  const body = imageBody(1);
  return {
    requests: [
      { method: 'POST', path: '/v2/images', headers: JSON_TYPE, body, onResponse: collect },
    ],
  };
}

function patchPlan(dataset: Dataset): Plan {
  let counter = 0;
  const setupRequest = (req: Request): Request => ({
    ...req,
    path: `/v2/images/${pick(dataset.ids)}`,
    // A new name each time, so every request really writes a row.
    body: JSON.stringify([{ op: 'replace', path: '/name', value: `x-${counter++}` }]),
  });
  return { requests: [{ method: 'PATCH', headers: PATCH_TYPE, setupRequest }] };
}

/**
 * Every delete request takes an id out of the pool when it is built, so no id is ever deleted
 * twice; the run stops when its share of the pool is used up, even before the duration ends.
 */
function deletePlan(dataset: Dataset, connections: number): Plan {
  const pool = dataset.deletable;
  const share = connections === 1 ? SERIAL_DELETE_SHARE : 1;
  const setupRequest = (req: Request): Request => {
    const id = pool.pop();
    return { ...req, path: id === undefined ? EXHAUSTED : `/v2/images/${id}` };
  };
  return {
    requests: [{ method: 'DELETE', setupRequest }],
    maxRequests: Math.max(connections, Math.floor(pool.length * share)),
  };
}

export const SCENARIOS: readonly Scenario[] = [
  { key: 'show', label: 'GET /v2/images/{id}', plan: showPlan },
  { key: 'list', label: 'GET /v2/images?limit=25', plan: () => fixed('/v2/images?limit=25') },
  {
    key: 'filter',
    label: 'GET /v2/images?limit=25&os_distro=debian',
    plan: () => fixed('/v2/images?limit=25&os_distro=debian'),
  },
  { key: 'create', label: 'POST /v2/images', plan: createPlan },
  { key: 'patch', label: 'PATCH /v2/images/{id} (replace /name)', plan: patchPlan },
  { key: 'delete', label: 'DELETE /v2/images/{id}', plan: deletePlan },
];

/** Creates the images the scenarios work on, a few requests at a time. */
export async function fill(url: string, count: number): Promise<string[]> {
  const ids: string[] = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const index = next++;
      const response = await request(`${url}/v2/images`, {
        method: 'POST',
        headers: JSON_TYPE,
        body: imageBody(index),
      });
      const text = await response.body.text();
      if (response.statusCode !== 201) {
        throw new Error(`creating image ${index}: ${response.statusCode} ${text}`);
      }
      ids.push((JSON.parse(text) as { id: string }).id);
    }
  };
  await Promise.all(Array.from({ length: FILL_CONCURRENCY }, worker));
  return ids;
}

async function measure(
  backend: Backend,
  server: RunningServer,
  plan: Plan,
  connections: number,
  durationSeconds: number,
): Promise<LoadResult> {
  return runLoad({
    url: server.url,
    connections,
    durationSeconds,
    requests: plan.requests,
    maxRequests: plan.maxRequests,
    serverPid: server.pid,
    databaseCommand: backend.databaseCommand,
  });
}

/** Fills the server, then runs every scenario at every concurrency, after a short warm-up. */
export async function benchScenarios(
  backend: Backend,
  server: RunningServer,
  settings: BenchSettings,
): Promise<ScenarioRun[]> {
  const dataset: Dataset = { ids: await fill(server.url, IMAGE_COUNT), deletable: [] };
  if (backend.kind === 'postgres') await analyze(backend.databaseUrl);
  const runs: ScenarioRun[] = [];
  for (const scenario of SCENARIOS) {
    if (!settings.quick) {
      const warmup = scenario.plan(dataset, CONCURRENCIES[1]);
      await measure(backend, server, warmup, CONCURRENCIES[1], WARMUP_SECONDS);
    }
    for (const connections of CONCURRENCIES) {
      const plan = scenario.plan(dataset, connections);
      const result = await measure(backend, server, plan, connections, settings.durationSeconds);
      settings.log(
        `  ${scenario.label} c=${connections}: ${Math.round(result.perSecond)} req/s, ` +
          `p50 ${result.p50Ms.toFixed(2)} ms, non-2xx ${result.non2xx}`,
      );
      runs.push({ scenario, result });
    }
  }
  return runs;
}
