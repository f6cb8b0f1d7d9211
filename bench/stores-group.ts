/**
 * The stores scenario group: one server with three stores (the file store, OpenStack Swift's
 * native API and Swift's S3 API, from the Swift that scripts/swift.sh runs), and a large
 * upload to each followed by a download from each, checked byte for byte and against the
 * expected checksums, with the server's peak memory.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { DataClient, measure, rssMiB, type Check, type Measurement } from './data.js';
import { expectedHashes, GiB, MiB, type ExpectedHashes, type StreamSpec } from './data-source.js';
import {
  formatNumber,
  table,
  type BenchSettings,
  type GroupReport,
  type ScenarioGroup,
} from './report.js';
import { startServer } from './server-process.js';

const SWIFT = process.env.GLIMPSE_BENCH_SWIFT ?? 'http://127.0.0.1:8080';
const SWIFT_USER = 'test:tester';
const SWIFT_KEY = 'testing';
const STORES = ['local', 'swift', 's3'] as const;
type StoreId = (typeof STORES)[number];

const KIND: Record<StoreId, string> = {
  local: 'file (flushed)',
  swift: 'Swift, native API (200 MiB segments)',
  s3: 'S3 API of Swift (multipart, 10 MiB parts)',
};

interface StoreRun {
  store: StoreId;
  direction: 'upload' | 'download';
  measurement: Measurement;
  check: Check;
}

/** Why Swift cannot be used, or null when it hands out tokens. */
async function swiftProblem(): Promise<string | null> {
  try {
    const response = await fetch(`${SWIFT}/auth/v1.0`, {
      headers: { 'x-auth-user': SWIFT_USER, 'x-auth-key': SWIFT_KEY },
      signal: AbortSignal.timeout(5000),
    });
    await response.arrayBuffer();
    return response.ok ? null : `Swift at ${SWIFT} answered ${response.status}`;
  } catch (error) {
    return `Swift at ${SWIFT} does not answer (${(error as Error).message})`;
  }
}

function storeConfig(suffix: string): Record<string, unknown> {
  return {
    enabled_backends: STORES.map((id) => `${id}:${id === 'local' ? 'file' : id}`),
    default_backend: 'local',
    store_options: {
      swift: {
        swift_store_auth_address: `${SWIFT}/auth/v1.0`,
        swift_store_auth_version: '1',
        swift_store_user: SWIFT_USER,
        swift_store_key: SWIFT_KEY,
        swift_store_container: `glimpse-bench-swift-${suffix}`,
      },
      s3: {
        s3_store_host: SWIFT,
        s3_store_access_key: SWIFT_USER,
        s3_store_secret_key: SWIFT_KEY,
        s3_store_bucket: `glimpse-bench-s3-${suffix}`,
        s3_store_create_bucket_on_put: true,
      },
    },
  };
}

async function runStores(
  settings: BenchSettings,
  bytes: number,
): Promise<{
  runs: StoreRun[];
  idleRssMiB: number;
}> {
  const spec: StreamSpec = { seed: 7, bytes };
  const [hashes] = (await expectedHashes([spec])) as [ExpectedHashes];
  const dataDir = await mkdtemp(join(tmpdir(), 'glimpse-bench-stores-'));
  await writeFile(join(dataDir, 'glimpse.json'), JSON.stringify(storeConfig(String(Date.now()))));
  const server = await startServer({ dataDir, databaseUrl: '' });
  const client = new DataClient(server.url);
  const runs: StoreRun[] = [];
  const idleRssMiB = rssMiB(server.pid);
  const ids: string[] = [];
  try {
    for (const store of STORES) {
      const id = await client.createImage(`bench-${store}`);
      ids.push(id);
      let check: Check = null;
      const up = await measure(server.pid, bytes, async () => {
        await client.send(id, 'file', spec, store);
      });
      check = await client.checkImage(id, spec, hashes);
      runs.push({ store, direction: 'upload', measurement: up, check });
      settings.log(`  ${store} upload: ${up.mbPerSecond.toFixed(0)} MB/s`);

      const down = await measure(server.pid, bytes, async () => {
        check = await client.fetch(id, spec, store);
      });
      check ??= await client.download(id, spec, store);
      runs.push({ store, direction: 'download', measurement: down, check });
      settings.log(`  ${store} download: ${down.mbPerSecond.toFixed(0)} MB/s`);
    }
  } finally {
    // Deleting the images empties the container and the bucket (which stay, empty).
    for (const id of ids) await client.deleteImage(id).catch(() => undefined);
    await client.close();
    await server.stop();
    await rm(dataDir, { recursive: true, force: true });
  }
  return { runs, idleRssMiB };
}

function report(bytes: number, result: Awaited<ReturnType<typeof runStores>>): GroupReport {
  const rows = result.runs.map((run) => {
    const { measurement } = run;
    const cpuPerGB = ((measurement.cpu.server / 100) * measurement.seconds) / (bytes / 1e9);
    return [
      run.direction,
      `${run.store}: ${KIND[run.store]}`,
      formatNumber(measurement.seconds, 2),
      formatNumber(measurement.mbPerSecond),
      formatNumber(measurement.peakRssMiB),
      formatNumber(cpuPerGB, 2),
      `${measurement.cpu.server} / ${measurement.cpu.client} / ${measurement.cpu.other}`,
      run.check ?? 'matches',
    ];
  });
  const headers = [
    'Transfer',
    'Store',
    'Wall s',
    'MB/s',
    'Peak server RSS MiB',
    'Server CPU s/GB',
    'CPU % server / client / other',
    'Data check',
  ];
  const size = bytes >= GiB ? `${bytes / GiB} GiB` : `${bytes / MiB} MiB`;
  const notes = [
    `- One stream of ${size} per transfer, uploaded with \`X-Image-Meta-Store\` and downloaded`,
    '  with `?prefer=` (verification on), through one server with SQLite metadata. Swift runs',
    '  on the same 2 cores (scripts/swift.sh: one proxy, one object server, one replica), so',
    '  its own CPU is in the "other" column and bounds both Swift figures.',
    `- Server RSS right after start-up: ${formatNumber(result.idleRssMiB)} MiB.`,
  ].join('\n');
  const matched = result.runs.every((run) => run.check === null);
  return {
    title: 'Stores: file, Swift and S3',
    sections: [notes, table(headers, rows, new Set([2, 3, 4, 5]))],
    targets: [
      {
        target: 'Stores: every upload and download to file, Swift and S3 matches',
        measured: `${result.runs.length} transfers, ${matched ? 'all matched' : 'NOT all matched'}`,
        met: matched,
      },
    ],
  };
}

export const storesGroup: ScenarioGroup = {
  name: 'stores',
  async run(settings) {
    const problem = await swiftProblem();
    if (problem) {
      return {
        title: 'Stores: file, Swift and S3',
        sections: [`Not measured: ${problem}. Start it with \`scripts/swift.sh start\`.`],
        targets: [],
      };
    }
    const bytes = settings.quick ? GiB / 8 : GiB;
    settings.log('stores: file, Swift and S3');
    return report(bytes, await runStores(settings, bytes));
  },
};
