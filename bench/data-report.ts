/** Tables and target checks of the data group. */
import type { Check, Measurement } from './data.js';
import { GiB, MiB } from './data-source.js';
import type { MachineLimits } from './machine-limits.js';
import { formatNumber, table, type GroupReport, type TargetCheck } from './report.js';

export type RunKey =
  | 'upload'
  | 'uploads'
  | 'download'
  | 'downloads'
  | 'webDownload'
  | 'stage'
  | 'glanceImport'
  | 'downloadNoVerify'
  | 'uploadNoFsync';

export interface DataSizes {
  large: number;
  small: number;
  concurrency: number;
}

export interface DataRun {
  key: RunKey;
  label: string;
  /** Transfers running at the same time. */
  count: number;
  bytesEach: number;
  measurement: Measurement;
  check: Check;
}

export interface DataLimits extends MachineLimits {
  /** A flushed write of a new file that is kept, measured by this group. */
  keptFileFlushed: number;
}

export interface DataFigures {
  sizes: DataSizes;
  limits: DataLimits;
  /** Server's resident memory right after start-up. */
  idleRssMiB: number;
  runs: DataRun[];
}

/** Rounds of the machine limits, the best of which is kept; 1 with --quick. */
export const LIMIT_ROUNDS = 2;

/** Share of a ceiling a scenario must reach. */
const CEILING_SHARE = 0.9;
const NO_FSYNC_UPLOAD_MBS = 450;
const CONCURRENT_UPLOAD_RSS_MIB = 150;

const SETTINGS: Record<RunKey, string> = {
  upload: 'default (flushed)',
  uploads: 'default (flushed)',
  download: 'default (verified)',
  downloads: 'default (verified)',
  webDownload: 'default',
  stage: 'default',
  glanceImport: 'default',
  downloadNoVerify: 'verify_download_checksum off',
  uploadNoFsync: 'filesystem_store_fsync off',
};

const mbs = (value: number) => formatNumber(value);

function size(bytes: number): string {
  return bytes >= GiB ? `${formatNumber(bytes / GiB)} GiB` : `${formatNumber(bytes / MiB)} MiB`;
}

function find(figures: DataFigures, key: RunKey): DataRun | undefined {
  return figures.runs.find((run) => run.key === key);
}

function cpuCell(measurement: Measurement): string {
  const { server, client, other } = measurement.cpu;
  return `${server} / ${client} / ${other}`;
}

function runRow(run: DataRun): string[] {
  const { measurement } = run;
  const data = run.count === 1 ? size(run.bytesEach) : `${run.count} × ${size(run.bytesEach)}`;
  return [
    run.label,
    SETTINGS[run.key],
    data,
    formatNumber(measurement.seconds, 2),
    mbs(measurement.mbPerSecond),
    formatNumber(measurement.peakRssMiB),
    formatNumber(serverCpuPerGB(measurement), 2),
    cpuCell(measurement),
    run.check ?? 'matches',
  ];
}

/** CPU time the server spent per GB moved: comparable across runs when other work competes. */
function serverCpuPerGB(measurement: Measurement): number {
  return ((measurement.cpu.server / 100) * measurement.seconds) / (measurement.bytes / 1e9);
}

const RUN_HEADERS = [
  'Scenario',
  'Server settings',
  'Data',
  'Wall s',
  'MB/s',
  'Peak server RSS MiB',
  'Server CPU s/GB',
  'CPU % server / client / other',
  'Data check',
];

function limitsTable(limits: DataLimits): string {
  const rows: Array<[string, number]> = [
    ['MD5, one thread', limits.md5],
    ['SHA-512, one thread', limits.sha512],
    ['MD5 and SHA-512 in one thread', limits.md5AndSha512],
    ["The server's parallel hasher (MD5 and SHA-512 on worker threads)", limits.parallelHasher],
    ['Loopback HTTP upload (server discards)', limits.httpUpload],
    ['Loopback HTTP download (client discards)', limits.httpDownload],
    ['Disk write, flushed (fsync before close)', limits.diskWriteFlushed],
    ['Disk write, unflushed (page cache)', limits.diskWriteUnflushed],
    ['Disk write, flushed, of a new file that is kept (as an image is)', limits.keptFileFlushed],
    ['Disk write with O_DIRECT, flushed (as the file store writes)', limits.diskWriteDirect],
    [
      'Disk read with O_DIRECT, two reads in flight (as the file store reads)',
      limits.diskReadDirect,
    ],
  ];
  return table(
    ['Ceiling', 'MB/s'],
    rows.map(([name, value]) => [name, mbs(value)]),
    new Set([1]),
  );
}

function importTable(figures: DataFigures): string {
  const upload = find(figures, 'upload');
  const web = find(figures, 'webDownload');
  const stage = find(figures, 'stage');
  const direct = find(figures, 'glanceImport');
  const row = (method: string, seconds: number | undefined, bytes: number) => [
    method,
    seconds === undefined ? '' : formatNumber(seconds, 2),
    seconds === undefined ? '' : mbs(bytes / 1e6 / seconds),
  ];
  const bytes = figures.sizes.large;
  const seconds = (run: DataRun | undefined) => run?.measurement.seconds;
  const both =
    stage && direct ? stage.measurement.seconds + direct.measurement.seconds : undefined;
  return table(
    ['Method', 'Wall s', 'MB/s'],
    [
      row('Upload (PUT /file)', seconds(upload), bytes),
      row('web-download: POST import → active', seconds(web), bytes),
      row('glance-direct: PUT /stage', seconds(stage), bytes),
      row('glance-direct: POST import → active', seconds(direct), bytes),
      row('glance-direct: both steps', both, bytes),
    ],
    new Set([1, 2]),
  );
}

function percent(value: number, of: number): string {
  return `${formatNumber((value / of) * 100)}%`;
}

function missing(target: string): TargetCheck {
  return { target, measured: 'no run', met: null };
}

/**
 * An upload can go no faster than its slowest stage: writing with a flush, or hashing. The
 * server hashes MD5 and SHA-512 on two threads, so hashing is bounded by the slower algorithm
 * alone; the parallel hasher's own figure (message passing included) is what it achieves. The
 * higher of the two is taken, which makes the target the stricter one. The disk figure is the
 * flushed write of a file through the page cache, as the target was set; of the two such
 * figures the lower is taken (`diskWriteFlushed` runs right after a delete and can reuse the
 * memory it freed, which an upload of a new image cannot). The file store writes with
 * O_DIRECT, whose own ceiling is shown beside it, and the CPU time the server and the client
 * need per GB bounds what two cores can do.
 */
function durableUploadTarget(figures: DataFigures): TargetCheck {
  const { limits } = figures;
  const hashing = Math.max(limits.parallelHasher, Math.min(limits.md5, limits.sha512));
  const disk = Math.min(limits.diskWriteFlushed, limits.keptFileFlushed);
  const ceiling = Math.min(disk, hashing);
  const target =
    `Upload of ${size(figures.sizes.large)}, flushed: ≥ ${percent(CEILING_SHARE, 1)} of ` +
    'min(flushed disk write, hashing)';
  const run = find(figures, 'upload');
  if (!run) return missing(target);
  const rate = run.measurement.mbPerSecond;
  return {
    target,
    measured:
      `${mbs(rate)} MB/s = ${percent(rate, ceiling)} of ${mbs(ceiling)} MB/s ` +
      `(flushed disk: new kept file ${mbs(limits.keptFileFlushed)}, after a delete ` +
      `${mbs(limits.diskWriteFlushed)}, O_DIRECT ${mbs(limits.diskWriteDirect)}; hashing ` +
      `${mbs(hashing)}; ${cpuCeiling(run.measurement)})`,
    met: rate >= CEILING_SHARE * ceiling,
  };
}

/** What two cores could move at the CPU time per GB this run cost the server and the client. */
function cpuCeiling(measurement: Measurement): string {
  const perGB = (share: number) =>
    ((share / 100) * measurement.seconds) / (measurement.bytes / 1e9);
  const server = perGB(measurement.cpu.server);
  const client = perGB(measurement.cpu.client);
  const ceiling = (2 * 1000) / (server + client);
  return (
    `CPU: server ${formatNumber(server, 2)} + client ${formatNumber(client, 2)} s/GB, ` +
    `so two cores move at most ${mbs(ceiling)} MB/s`
  );
}

function noFsyncUploadTarget(figures: DataFigures): TargetCheck {
  const target = `Upload of ${size(figures.sizes.large)}, fsync off: ≥ ${NO_FSYNC_UPLOAD_MBS} MB/s`;
  const run = find(figures, 'uploadNoFsync');
  if (!run) return missing(target);
  const rate = run.measurement.mbPerSecond;
  return {
    target,
    measured:
      `${mbs(rate)} MB/s (unflushed disk write ${mbs(figures.limits.diskWriteUnflushed)}; ` +
      `${cpuCeiling(run.measurement)})`,
    met: rate >= NO_FSYNC_UPLOAD_MBS,
  };
}

function downloadTarget(figures: DataFigures, key: RunKey, how: string): TargetCheck {
  const ceiling = figures.limits.httpDownload;
  const target =
    `Download of ${size(figures.sizes.large)}, ${how}: ≥ ${percent(CEILING_SHARE, 1)} of ` +
    'loopback HTTP download';
  const run = find(figures, key);
  if (!run) return missing(target);
  const rate = run.measurement.mbPerSecond;
  return {
    target,
    measured:
      `${mbs(rate)} MB/s = ${percent(rate, ceiling)} of ${mbs(ceiling)} MB/s ` +
      `(O_DIRECT disk read ${mbs(figures.limits.diskReadDirect)}; ` +
      `${cpuCeiling(run.measurement)})`,
    met: rate >= CEILING_SHARE * ceiling,
  };
}

function memoryTarget(figures: DataFigures): TargetCheck {
  const { concurrency, small } = figures.sizes;
  const target =
    `Peak server RSS during ${concurrency} concurrent uploads of ${size(small)}: ` +
    `< ${CONCURRENT_UPLOAD_RSS_MIB} MiB`;
  const run = find(figures, 'uploads');
  if (!run) return missing(target);
  const peak = run.measurement.peakRssMiB;
  return {
    target,
    measured: `${formatNumber(peak)} MiB (${formatNumber(figures.idleRssMiB)} MiB idle)`,
    met: peak < CONCURRENT_UPLOAD_RSS_MIB,
  };
}

function integrityTarget(figures: DataFigures): TargetCheck {
  const problems = figures.runs.filter((run) => run.check !== null);
  return {
    target: 'Data path: every checksum the server recorded and every byte downloaded match',
    measured:
      problems.length === 0
        ? `${figures.runs.length} scenarios, all matched`
        : problems.map((run) => `${run.label}: ${run.check}`).join('; '),
    met: problems.length === 0,
  };
}

function notes(figures: DataFigures): string {
  const { sizes } = figures;
  return [
    '- MB is 10^6 bytes. MB/s is the bytes of the scenario over its wall time: from the first ' +
      'request to the answer to the last (an upload ends at its 204, a download at its last ' +
      'byte, an import when polling `GET /v2/images/{id}` every 25 ms first sees `active`).',
    '- One server process (SQLite metadata, file store in a temp dir under the system temp ' +
      'dir, where the disk limits were measured) with default settings; restarted on the ' +
      'same data with `filesystem_store_fsync` and `verify_download_checksum` off; then ' +
      'restarted with default settings and web-download allowed to fetch from 127.0.0.1 at ' +
      'the port of a node:http server in the benchmark process that serves the ' +
      `${size(sizes.large)} stream.`,
    '- The data is a fixed pseudo-random 8 MiB buffer read at a different offset for every ' +
      '1 MiB chunk. Its MD5 and SHA-512 were computed before any timing, on two worker ' +
      'threads. After each upload or import the image must be active with that size, ' +
      '`checksum` and `os_hash_value`. A download is timed with a client that only counts ' +
      "the bytes, as the loopback ceiling's client does; then the same image is downloaded " +
      'again, untimed, and compared byte for byte with the data sent (so it has the same ' +
      'MD5 and SHA-512).',
    `- The ${size(sizes.large)} image is the one downloaded; the ${sizes.concurrency} ` +
      `concurrent downloads fetch the ${size(sizes.small)} images just uploaded. The file ` +
      'store writes and reads whole images with O_DIRECT, so downloads read from the disk, ' +
      'not the page cache. A verified download checks the CRC-32 recorded at upload.',
    '- Peak server RSS: VmRSS of the server process (its hash worker threads included) read ' +
      `every 50 ms; ${formatNumber(figures.idleRssMiB)} MiB right after start-up.`,
    '- The client (this process) runs on the same cores; the CPU column gives the share of ' +
      'one core used by the server, the client and everything else on the machine ("other": ' +
      'unrelated work competing for the cores). Server CPU s/GB is the CPU time, all its ' +
      'threads together, the server spent per GB moved.',
    `- Machine limits: \`measureMachineLimits\` over ${size(figures.limits.bytes)}, best of ` +
      `${LIMIT_ROUNDS} rounds (1 with --quick), in the same run, just before the scenarios, ` +
      'then a flushed write of a new file kept until the ' +
      'end. This VM hands memory freed by deleted files back to its host within a second or ' +
      'two: writing new data then faults every page back in (about 400 MB/s), while a write ' +
      "right after a delete reuses the freed pages at GB/s, as the limits' flushed write does " +
      "(it follows the unflushed one's delete). The group pauses 5 s after each delete, so " +
      'that every write meets the steady state of a server, which keeps the images it writes.',
  ].join('\n');
}

const IMPORT_KEYS = new Set<RunKey>(['webDownload', 'stage', 'glanceImport']);

function runsTable(runs: DataRun[]): string {
  return table(RUN_HEADERS, runs.map(runRow), new Set([3, 4, 5, 6]));
}

export function dataReport(figures: DataFigures): GroupReport {
  const transfers = figures.runs.filter((run) => !IMPORT_KEYS.has(run.key));
  const imports = figures.runs.filter((run) => IMPORT_KEYS.has(run.key));
  return {
    title: 'Image data path',
    sections: [
      notes(figures),
      `### Machine limits\n\n${limitsTable(figures.limits)}`,
      `### Uploads and downloads\n\n${runsTable(transfers)}`,
      `### Imports of ${size(figures.sizes.large)}, next to an upload\n\n${importTable(figures)}`,
      runsTable(imports),
    ],
    targets: [
      durableUploadTarget(figures),
      noFsyncUploadTarget(figures),
      downloadTarget(figures, 'download', 'verification on (default)'),
      downloadTarget(figures, 'downloadNoVerify', 'verification off'),
      memoryTarget(figures),
      integrityTarget(figures),
    ],
  };
}
