/** Tables and target checks of the metadata group. */
import { LABELS, STARTUP_SAMPLES } from './backend.js';
import { DEEP_IMAGE_COUNT, DEEP_POSITION, type DeepPageFigures } from './deep-page.js';
import type { LoadResult } from './load.js';
import {
  IMAGE_COUNT,
  type DatabaseFigures,
  type ScenarioKey,
  type ScenarioRun,
} from './metadata.js';
import {
  formatNumber,
  table,
  type DatabaseKind,
  type GroupReport,
  type TargetCheck,
} from './report.js';

export interface MetadataFigures {
  scenarios: Partial<Record<DatabaseKind, DatabaseFigures>>;
  deep: Partial<Record<DatabaseKind, DeepPageFigures>>;
  /** Why a database was left out, e.g. PostgreSQL not reachable. */
  skipped: string[];
  /** A bare Node.js HTTP server under the same client: what no Node service can exceed. */
  ceiling?: LoadResult;
  /** The scenarios again on SQLite, served by this many API processes. */
  workers?: { count: number; runs: ScenarioRun[] };
}

const TARGET_CONNECTIONS = 32;
export const CEILING_CONNECTIONS = TARGET_CONNECTIONS;
const SQLITE_TARGETS: Array<{ key: ScenarioKey; name: string; perSecond: number }> = [
  { key: 'show', name: 'show', perSecond: 8_000 },
  { key: 'list', name: 'list(25)', perSecond: 3_000 },
  { key: 'create', name: 'create', perSecond: 2_000 },
  { key: 'patch', name: 'patch', perSecond: 2_000 },
];
const POSTGRES_MAX_SLOWDOWN = 2;
/** Two runs of the same page differ by a few percent; "no slower" allows for that noise. */
const DEEP_PAGE_TOLERANCE = 0.9;
const STARTUP_LIMIT_MS = 500;

const rate = (result: LoadResult) => formatNumber(result.perSecond);
const millis = (value: number) => formatNumber(value, 2);

function find(
  figures: Pick<DatabaseFigures, 'runs'> | undefined,
  key: ScenarioKey,
  connections: number,
) {
  return figures?.runs.find(
    (run) => run.scenario.key === key && run.result.connections === connections,
  )?.result;
}

function cpuCell(result: LoadResult): string {
  const { server, client, database, other } = result.cpu;
  return [server, client, database, other].filter((share) => share !== null).join(' / ');
}

/** CPU time one request costs: comparable across runs even when other work shares the cores. */
function cpuPerRequest(result: LoadResult, share: number | null): string {
  if (share === null || result.perSecond === 0) return '';
  return formatNumber((share * 10_000) / result.perSecond);
}

function scenarioHeaders(kind: DatabaseKind, comparedTo: string | undefined): string[] {
  const headers = ['Scenario', 'Conc.', 'req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'run s'];
  if (kind === 'postgres') {
    headers.push('server µs CPU/req', 'PostgreSQL µs CPU/req');
    headers.push('CPU % server / client / PostgreSQL / other');
  } else {
    headers.push('server µs CPU/req', 'CPU % server / client / other');
  }
  if (comparedTo !== undefined) headers.push(`vs ${comparedTo}`);
  return headers;
}

/** A scenario table; `reference`, when given, fills a last column of req/s ratios to it. */
function scenarioTable(
  kind: DatabaseKind,
  runs: readonly ScenarioRun[],
  reference?: { label: string; figures: DatabaseFigures | undefined },
): string {
  const sqlite = reference?.figures;
  const headers = scenarioHeaders(kind, reference?.label);

  const rows = runs.map(({ scenario, result }) => {
    const row = [
      scenario.label,
      String(result.connections),
      rate(result),
      millis(result.p50Ms),
      millis(result.p99Ms),
      formatNumber(result.non2xx),
      formatNumber(result.errors),
      result.seconds.toFixed(1),
      cpuPerRequest(result, result.cpu.server),
    ];
    if (kind === 'postgres') row.push(cpuPerRequest(result, result.cpu.database));
    row.push(cpuCell(result));
    const reference = find(sqlite, scenario.key, result.connections);
    if (sqlite)
      row.push(reference ? `${(result.perSecond / reference.perSecond).toFixed(2)}×` : '');
    return row;
  });
  const numeric = headers.map((_, index) => index).filter((index) => index > 0);
  return table(
    headers,
    rows,
    new Set(numeric.filter((index) => !headers[index]?.startsWith('CPU'))),
  );
}

function samples(figures: { startupMs: number; startupSamples: number[] } | undefined): string {
  if (!figures) return 'n/a';
  const each = figures.startupSamples.map((ms) => formatNumber(ms)).join(', ');
  return `${formatNumber(figures.startupMs)} (${each})`;
}

function startupTable(figures: MetadataFigures): string {
  const rows = (Object.keys(LABELS) as DatabaseKind[])
    .filter((kind) => figures.scenarios[kind] !== undefined)
    .map((kind) => [
      LABELS[kind],
      samples(figures.scenarios[kind]),
      figures.deep[kind] ? samples(figures.deep[kind]) : 'n/a',
    ]);
  return table(
    [
      'Database',
      'empty database (creates the schema), median ms (each start)',
      `${DEEP_IMAGE_COUNT} images, median ms (each start)`,
    ],
    rows,
    new Set([1, 2]),
  );
}

function deepTable(figures: MetadataFigures): string {
  const rows: string[][] = [];
  for (const kind of Object.keys(figures.deep) as DatabaseKind[]) {
    const runs = figures.deep[kind]?.runs ?? [];
    for (const connections of new Set(runs.map((run) => run.result.connections))) {
      const at = (page: 'first' | 'deep') =>
        runs.find((run) => run.page === page && run.result.connections === connections)?.result;
      const first = at('first');
      const deep = at('deep');
      if (!first || !deep) continue;
      rows.push([
        LABELS[kind],
        String(connections),
        rate(first),
        rate(deep),
        `${(deep.perSecond / first.perSecond).toFixed(2)}×`,
        millis(first.p50Ms),
        millis(deep.p50Ms),
        cpuPerRequest(first, first.cpu.server + (first.cpu.database ?? 0)),
        cpuPerRequest(deep, deep.cpu.server + (deep.cpu.database ?? 0)),
        formatNumber(first.non2xx + deep.non2xx + first.errors + deep.errors),
      ]);
    }
  }
  const headers = ['Database', 'Conc.', 'first req/s', 'deep req/s', 'deep/first'];
  headers.push('first p50 ms', 'deep p50 ms', 'first µs CPU/req', 'deep µs CPU/req');
  headers.push('non-2xx + errors');
  return table(headers, rows, new Set([1, 2, 3, 4, 5, 6, 7, 8, 9]));
}

function shareOf(result: LoadResult, ceiling: LoadResult): string {
  return `${Math.round((result.perSecond / ceiling.perSecond) * 100)}%`;
}

function ceilingSection(ceiling: LoadResult): string {
  return [
    '### Ceiling: a bare Node.js HTTP server',
    'A node:http server that answers every request with a small JSON body, under the same ' +
      `client at concurrency ${ceiling.connections}, one process: no Node service answers ` +
      'more on these cores. The targets were set on a machine where this figure was about ' +
      '24,000 req/s.',
    table(
      ['req/s', 'p50 ms', 'p99 ms', 'non-2xx + errors', 'CPU % server / client / other'],
      [
        [
          rate(ceiling),
          millis(ceiling.p50Ms),
          millis(ceiling.p99Ms),
          formatNumber(ceiling.non2xx + ceiling.errors),
          cpuCell(ceiling),
        ],
      ],
      new Set([0, 1, 2, 3]),
    ),
  ].join('\n\n');
}

function workersSection(
  figures: MetadataFigures,
  workers: { count: number; runs: ScenarioRun[] },
): string {
  const reference = { label: '1 process', figures: figures.scenarios.sqlite };
  return [
    `### SQLite, ${workers.count} API workers`,
    `The same scenarios on a fresh SQLite server started with \`workers: ${workers.count}\` ` +
      '(one API process per core, as upstream Glance runs by default). The CPU column adds ' +
      'up every API process; the load generator shares the same cores.',
    scenarioTable('sqlite', workers.runs, reference),
  ].join('\n\n');
}

/** The SQLite throughput targets, for one process and, when run, for one per core. */
function sqliteTargets(figures: MetadataFigures): TargetCheck[] {
  const { ceiling } = figures;
  const single = sqliteTargetChecks('SQLite', figures.scenarios.sqlite, ceiling);
  if (!figures.workers) return single;
  const label = `SQLite with ${figures.workers.count} workers`;
  return [...single, ...sqliteTargetChecks(label, figures.workers, ceiling)];
}

function sqliteTargetChecks(
  label: string,
  figures: Pick<DatabaseFigures, 'runs'> | undefined,
  ceiling: LoadResult | undefined,
): TargetCheck[] {
  return SQLITE_TARGETS.map(({ key, name, perSecond }) => {
    const target = `${label} ${name}, c=32: ≥ ${formatNumber(perSecond)} req/s, no errors`;
    const result = find(figures, key, TARGET_CONNECTIONS);
    if (!result) return { target, measured: 'not run', met: null };
    const failures = result.non2xx + result.errors;
    return {
      target,
      measured:
        `${rate(result)} req/s, ${failures} non-2xx/errors` +
        (ceiling ? ` (${shareOf(result, ceiling)} of a bare Node server)` : ''),
      met: result.perSecond >= perSecond && failures === 0,
    };
  });
}

function postgresTargets(figures: MetadataFigures): TargetCheck[] {
  const sqlite = figures.scenarios.sqlite;
  return (sqlite?.runs ?? [])
    .filter((run) => run.result.connections === TARGET_CONNECTIONS)
    .map(({ scenario, result: reference }) => {
      const target = `PostgreSQL ${scenario.key}, c=32: at most 2× slower than SQLite`;
      const result = find(figures.scenarios.postgres, scenario.key, TARGET_CONNECTIONS);
      if (!result) return { target, measured: 'not run', met: null };
      const slowdown = reference.perSecond / result.perSecond;
      return {
        target,
        measured: `${rate(result)} vs ${rate(reference)} req/s (${slowdown.toFixed(2)}× slower)`,
        met: slowdown <= POSTGRES_MAX_SLOWDOWN,
      };
    });
}

function deepTargets(figures: MetadataFigures): TargetCheck[] {
  return (Object.keys(figures.deep) as DatabaseKind[]).map((kind) => {
    const runs = figures.deep[kind]?.runs ?? [];
    const ratios = [...new Set(runs.map((run) => run.result.connections))].map((connections) => {
      const at = (page: string) =>
        runs.find((run) => run.page === page && run.result.connections === connections)?.result
          .perSecond ?? 0;
      return { connections, ratio: at('deep') / (at('first') || 1) };
    });
    return {
      target: `${LABELS[kind]} deep page: req/s ≥ ${DEEP_PAGE_TOLERANCE} × first page`,
      measured: ratios.map((r) => `c=${r.connections}: ${r.ratio.toFixed(2)}×`).join(', '),
      met: ratios.length > 0 && ratios.every((r) => r.ratio >= DEEP_PAGE_TOLERANCE),
    };
  });
}

function startupTargets(figures: MetadataFigures): TargetCheck[] {
  return (Object.keys(figures.scenarios) as DatabaseKind[]).map((kind) => {
    const times = [figures.scenarios[kind]?.startupMs, figures.deep[kind]?.startupMs].filter(
      (value): value is number => value !== undefined,
    );
    const slowest = Math.max(...times);
    return {
      target: `${LABELS[kind]} start-up < ${STARTUP_LIMIT_MS} ms (median of ${STARTUP_SAMPLES})`,
      measured:
        `${times.map((time) => `${formatNumber(time)} ms`).join(', ')} ` +
        '(empty database; 100,000 images)',
      met: slowest < STARTUP_LIMIT_MS,
    };
  });
}

const NOTES = [
  `Each database starts empty and is filled with ${formatNumber(IMAGE_COUNT)} images ` +
    '(one in ten has `os_distro=debian` and an extra tag) through `POST /v2/images`. ' +
    'PostgreSQL then gets an ANALYZE, which autovacuum would run by itself within a minute.',
  'Show and patch pick a random image among those; delete removes images made by the ' +
    'create runs, each exactly once, and stops early (column run s) when that pool is used up.',
  'Every scenario gets a 1 s warm-up at concurrency 32 before its measured runs.',
  'req/s counts answers from the first request to the last answer; p50/p99 are taken over ' +
    'every answer. non-2xx and errors (connection errors, timeouts) should both be 0.',
  'CPU is the share of one core used during the run by the server process, by the load ' +
    'generator (this process), for PostgreSQL by all its processes together, and by every ' +
    'other process on the machine ("other": unrelated work competing for the same cores; ' +
    'figures with a large "other" share understate the server). µs CPU/req is the CPU time ' +
    'one request cost the server (and PostgreSQL): 1,000,000 / that figure is what one ' +
    'core could serve with no competition, an upper bound.',
];

function deepNotes(): string {
  return [
    `${formatNumber(DEEP_IMAGE_COUNT)} images (one tag and one property each) are written ` +
      'straight into the tables of a stopped server, which is then started again. The deep ' +
      `page is \`marker=<id of image ${formatNumber(DEEP_POSITION)}>\` in the default order ` +
      '(created_at desc, id desc). Each run lasts half the scenario duration. µs CPU/req ' +
      'counts the server and, for PostgreSQL, the database processes.',
    'PostgreSQL gets an ANALYZE after the load; SQLite gets none, as the server never ' +
      'runs one.',
  ].join(' ');
}

export function metadataReport(figures: MetadataFigures): GroupReport {
  const sections = [NOTES.map((note) => `- ${note}`).join('\n')];
  for (const note of figures.skipped) sections.push(`> ${note}`);
  if (figures.ceiling) sections.push(ceilingSection(figures.ceiling));
  sections.push(
    `### Start-up (spawn to first answer of GET /versions)\n\n${startupTable(figures)}`,
  );
  for (const kind of Object.keys(figures.scenarios) as DatabaseKind[]) {
    const runs = figures.scenarios[kind]?.runs ?? [];
    const reference =
      kind === 'postgres' && figures.scenarios.sqlite
        ? { label: 'SQLite', figures: figures.scenarios.sqlite }
        : undefined;
    sections.push(`### ${LABELS[kind]}\n\n${scenarioTable(kind, runs, reference)}`);
  }
  if (figures.workers) sections.push(workersSection(figures, figures.workers));
  if (Object.keys(figures.deep).length > 0) {
    sections.push(`### Deep page\n\n${deepNotes()}\n\n${deepTable(figures)}`);
  }
  return {
    title: 'Image metadata API',
    sections,
    targets: [
      ...sqliteTargets(figures),
      ...postgresTargets(figures),
      ...deepTargets(figures),
      ...startupTargets(figures),
    ],
  };
}
