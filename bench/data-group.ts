/**
 * The data scenario group: this machine's ceilings (hashing, loopback HTTP, disk), then
 * uploads, downloads and imports against a server with SQLite metadata and a file store, on
 * one data directory: first with default settings, then with flushing and download
 * verification off, then with web-download allowed to fetch from this process.
 */
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { closeHashPool } from '../src/pipeline/hashing.js';
import {
  dataReport,
  LIMIT_ROUNDS,
  type DataFigures,
  type DataRun,
  type DataSizes,
  type RunKey,
} from './data-report.js';
import { DataClient, measure, rssMiB, serveStream, type Check, type Measurement } from './data.js';
import {
  expectedHashes,
  GiB,
  MiB,
  streamChunks,
  type ExpectedHashes,
  type StreamSpec,
} from './data-source.js';
import { measureMachineLimits } from './machine-limits.js';
import type { BenchSettings, ScenarioGroup } from './report.js';
import { startServer, type RunningServer } from './server-process.js';

const FULL: DataSizes = { large: GiB, small: 256 * MiB, concurrency: 8 };
/** --quick: an eighth of the data, enough to check that every scenario works. */
const QUICK: DataSizes = { large: GiB / 8, small: 32 * MiB, concurrency: 8 };

/** Seed of the kept-file ceiling's data; the scenarios use 0 to concurrency. */
const KEPT_FILE_SEED = 1000;

/** A stream with the checksums it must come back with. */
interface Payload {
  spec: StreamSpec;
  hashes: ExpectedHashes;
}

/** What the scenarios share while one server runs. */
interface Session {
  server: RunningServer;
  client: DataClient;
  settings: BenchSettings;
  runs: DataRun[];
}

async function payloads(sizes: DataSizes): Promise<{ large: Payload; small: Payload[] }> {
  const specs: StreamSpec[] = [{ seed: 0, bytes: sizes.large }];
  for (let index = 1; index <= sizes.concurrency; index++) {
    specs.push({ seed: index, bytes: sizes.small });
  }
  const hashes = await expectedHashes(specs);
  const all = specs.map((spec, index) => ({ spec, hashes: hashes[index] as ExpectedHashes }));
  return { large: all[0] as Payload, small: all.slice(1) };
}

/** Options go in glimpse.json in the data directory, which is the server's working directory. */
async function withServer(
  dataDir: string,
  options: Record<string, unknown>,
  settings: BenchSettings,
  work: (session: Session) => Promise<void>,
): Promise<{ runs: DataRun[]; idleRssMiB: number }> {
  await writeFile(join(dataDir, 'glimpse.json'), JSON.stringify(options));
  const server = await startServer({ dataDir, databaseUrl: '' });
  const client = new DataClient(server.url);
  const session: Session = { server, client, settings, runs: [] };
  try {
    const idleRssMiB = rssMiB(server.pid);
    await work(session);
    return { runs: session.runs, idleRssMiB };
  } finally {
    await client.close();
    await server.stop();
  }
}

/** A failed request is reported with the scenario rather than ending the whole run. */
async function checked(work: () => Promise<Check[]>): Promise<Check[]> {
  try {
    return await work();
  } catch (error) {
    return [(error as Error).message];
  }
}

/** Runs and records one scenario; checks run after the clock stops. */
async function record(
  session: Session,
  run: Omit<DataRun, 'measurement' | 'check'>,
  bytes: number,
  work: () => Promise<Check[]>,
  after: () => Promise<Check[]> = async () => [],
): Promise<Measurement> {
  let checks: Check[] = [];
  const measurement = await measure(session.server.pid, bytes, async () => {
    checks = await checked(work);
  });
  checks.push(...(await checked(after)));
  const check = checks.find((problem) => problem !== null) ?? null;
  session.runs.push({ ...run, measurement, check });
  const { mbPerSecond, seconds, peakRssMiB } = measurement;
  session.settings.log(
    `  ${run.label}: ${mbPerSecond.toFixed(0)} MB/s, ${seconds.toFixed(2)} s, ` +
      `peak RSS ${peakRssMiB.toFixed(0)} MiB${check === null ? '' : `, PROBLEM: ${check}`}`,
  );
  return measurement;
}

async function upload(session: Session, key: RunKey, label: string, payload: Payload) {
  const { client } = session;
  const id = await client.createImage(label);
  const run = { key, label, count: 1, bytesEach: payload.spec.bytes };
  await record(
    session,
    run,
    payload.spec.bytes,
    async () => [await client.send(id, 'file', payload.spec).then(() => null)],
    async () => [await client.checkImage(id, payload.spec, payload.hashes)],
  );
  return id;
}

async function uploadMany(session: Session, payloads: Payload[]): Promise<string[]> {
  const { client } = session;
  const ids = await Promise.all(payloads.map((_, index) => client.createImage(`small-${index}`)));
  const bytesEach = payloads[0]?.spec.bytes ?? 0;
  const run = {
    key: 'uploads' as const,
    label: `${payloads.length} concurrent uploads`,
    count: payloads.length,
    bytesEach,
  };
  const sends = () =>
    Promise.all(
      payloads.map((p, i) => client.send(ids[i] ?? '', 'file', p.spec).then(() => null)),
    );
  const checks = () =>
    Promise.all(payloads.map((p, i) => client.checkImage(ids[i] ?? '', p.spec, p.hashes)));
  await record(session, run, bytesEach * payloads.length, sends, checks);
  return ids;
}

async function download(
  session: Session,
  key: RunKey,
  label: string,
  images: Array<{ id: string; payload: Payload }>,
) {
  const bytesEach = images[0]?.payload.spec.bytes ?? 0;
  const run = { key, label, count: images.length, bytesEach };
  const { client } = session;
  await record(
    session,
    run,
    bytesEach * images.length,
    () => Promise.all(images.map(({ id, payload }) => client.fetch(id, payload.spec))),
    // Untimed: every byte compared with what was sent, so MD5 and SHA-512 match too.
    () => Promise.all(images.map(({ id, payload }) => client.download(id, payload.spec))),
  );
}

async function importing(session: Session, id: string, method: Record<string, string>) {
  await session.client.startImport(id, method);
  await session.client.waitUntilActive(id);
  return [];
}

async function webDownload(session: Session, payload: Payload, url: string): Promise<void> {
  const { client } = session;
  const { bytes } = payload.spec;
  const id = await client.createImage('web-download');
  await record(
    session,
    { key: 'webDownload', label: 'web-download', count: 1, bytesEach: bytes },
    bytes,
    () => importing(session, id, { name: 'web-download', uri: url }),
    async () => [await client.checkImage(id, payload.spec, payload.hashes)],
  );
}

async function glanceDirect(session: Session, payload: Payload): Promise<void> {
  const { client } = session;
  const { bytes } = payload.spec;
  const id = await client.createImage('glance-direct');
  const run = { count: 1, bytesEach: bytes };
  await record(session, { ...run, key: 'stage', label: 'glance-direct: stage' }, bytes, () =>
    client.send(id, 'stage', payload.spec).then(() => [null]),
  );
  await record(
    session,
    { ...run, key: 'glanceImport', label: 'glance-direct: import' },
    bytes,
    () => importing(session, id, { name: 'glance-direct' }),
    async () => [await client.checkImage(id, payload.spec, payload.hashes)],
  );
}

/**
 * This VM hands memory freed by deleted files back to its host within a second or two; writing
 * new data then costs a fault per page (about 400 MB/s), while a write right after a delete
 * reuses the freed pages at several GB/s. A pause after deleting puts the next write in the
 * steady state of a server, which keeps what it writes.
 */
const SETTLE_MS = 5_000;

function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
}

/** A flushed write of a new file that is kept, as an upload keeps its image, in MB/s. */
async function keptFileWrite(dir: string, bytes: number): Promise<number> {
  const started = performance.now();
  const file = await open(join(dir, 'kept-file.bin'), 'w');
  try {
    for (const chunk of streamChunks({ seed: KEPT_FILE_SEED, bytes })) await file.write(chunk);
    await file.datasync();
  } finally {
    await file.close();
  }
  return bytes / 1e6 / ((performance.now() - started) / 1000);
}

type Data = Awaited<ReturnType<typeof payloads>>;

/** Default settings: uploads, then downloads of what was uploaded. Returns the large image. */
async function transfers(session: Session, { large, small }: Data): Promise<string> {
  const largeId = await upload(session, 'upload', 'upload', large);
  const smallIds = await uploadMany(session, small);
  await download(session, 'download', 'download', [{ id: largeId, payload: large }]);
  const images = small.map((payload, index) => ({ id: smallIds[index] ?? '', payload }));
  await download(session, 'downloads', `${small.length} concurrent downloads`, images);
  return largeId;
}

async function ceilings(settings: BenchSettings, sizes: DataSizes, dataDir: string) {
  settings.log('data: machine limits');
  // Best of two rounds: one reading can fall on a moment when other work held the CPU.
  const rounds = settings.quick ? 1 : LIMIT_ROUNDS;
  const limits = await measureMachineLimits({ dir: tmpdir(), bytes: sizes.large, rounds });
  await closeHashPool();
  await settle();
  const keptFileFlushed = await keptFileWrite(dataDir, sizes.large);
  return { ...limits, keptFileFlushed };
}

async function scenarios(settings: BenchSettings, data: Data, dataDir: string) {
  const source = await serveStream(data.large.spec);
  try {
    settings.log('data: default settings');
    let largeId = '';
    const first = await withServer(dataDir, {}, settings, async (session) => {
      largeId = await transfers(session, data);
    });
    settings.log('data: fsync and download verification off');
    const fast = { filesystem_store_fsync: false, verify_download_checksum: false };
    const second = await withServer(dataDir, fast, settings, async (session) => {
      await download(session, 'downloadNoVerify', 'download', [
        { id: largeId, payload: data.large },
      ]);
      await upload(session, 'uploadNoFsync', 'upload', data.large);
    });
    settings.log('data: imports');
    const web = {
      allowed_hosts: ['127.0.0.1'],
      allowed_ports: ['80', '443', String(source.port)],
    };
    const third = await withServer(dataDir, web, settings, async (session) => {
      await webDownload(session, data.large, source.url);
      // web-download deleted its staged copy.
      await settle();
      await glanceDirect(session, data.large);
    });
    return { idleRssMiB: first.idleRssMiB, runs: [...first.runs, ...second.runs, ...third.runs] };
  } finally {
    await source.close();
  }
}

async function runGroup(settings: BenchSettings): Promise<DataFigures> {
  const sizes = settings.quick ? QUICK : FULL;
  settings.log('data: expected checksums');
  const data = await payloads(sizes);
  const dataDir = await mkdtemp(join(tmpdir(), 'glimpse-bench-data-'));
  try {
    const limits = await ceilings(settings, sizes, dataDir);
    return { sizes, limits, ...(await scenarios(settings, data, dataDir)) };
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }
}

export const dataGroup: ScenarioGroup = {
  name: 'data',
  async run(settings) {
    return dataReport(await runGroup(settings));
  },
};
