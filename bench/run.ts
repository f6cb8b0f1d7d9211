/**
 * `npm run bench`: runs the scenario groups and writes bench/RESULTS.md.
 *
 *   npm run bench -- [--duration 10] [--quick] [--only metadata] [--db sqlite,postgres]
 *
 * --quick runs 2 s per measurement without warm-ups, to check that everything works.
 */
import { writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import Database from 'better-sqlite3';

import { dataGroup } from './data-group.js';
import { keystoneGroup } from './keystone-group.js';
import { machineInfo } from './machine.js';
import { metadataGroup } from './metadata-group.js';
import { storesGroup } from './stores-group.js';
import { postgresDurability, postgresVersion } from './postgres.js';
import {
  renderReport,
  type BenchSettings,
  type DatabaseKind,
  type GroupReport,
  type ScenarioGroup,
} from './report.js';

/** In run order; data-path groups join this list. */
const GROUPS: readonly ScenarioGroup[] = [metadataGroup, dataGroup, storesGroup, keystoneGroup];

const DEFAULT_SECONDS = 10;
const QUICK_SECONDS = 2;
/** Source tree's bench/, from the compiled dist/bench/run.js. */
const RESULTS = fileURLToPath(new URL('../../bench/RESULTS.md', import.meta.url));

interface Cli {
  settings: BenchSettings;
  groups: ScenarioGroup[];
  output: string;
}

function parseCli(args: string[]): Cli {
  const { values } = parseArgs({
    args,
    options: {
      duration: { type: 'string' },
      quick: { type: 'boolean', default: false },
      only: { type: 'string' },
      db: { type: 'string', default: 'sqlite,postgres' },
      output: { type: 'string', default: RESULTS },
    },
  });
  const quick = values.quick ?? false;
  const durationSeconds = Number(values.duration ?? (quick ? QUICK_SECONDS : DEFAULT_SECONDS));
  if (!(durationSeconds > 0)) throw new Error(`--duration must be positive: ${values.duration}`);

  const databases = (values.db ?? '').split(',').filter((name) => name !== '');
  for (const name of databases) {
    if (name !== 'sqlite' && name !== 'postgres') throw new Error(`unknown database ${name}`);
  }
  const only = values.only?.split(',');
  const groups = GROUPS.filter((group) => !only || only.includes(group.name));
  if (groups.length === 0) throw new Error(`no group named ${values.only}`);

  const log = (message: string) => process.stderr.write(`${message}\n`);
  const settings = { durationSeconds, quick, databases: databases as DatabaseKind[], log };
  return { settings, groups, output: values.output ?? RESULTS };
}

function commandLine(args: string[]): string {
  const shown = args.join(' ');
  if (process.env.npm_lifecycle_event === 'bench') {
    return shown === '' ? 'npm run bench' : `npm run bench -- ${shown}`;
  }
  return `node dist/bench/run.js ${shown}`.trim();
}

async function softwareVersions(databases: DatabaseKind[]): Promise<string[]> {
  const lines: string[] = [];
  if (databases.includes('sqlite')) {
    const db = new Database(':memory:');
    const row = db.prepare('SELECT sqlite_version() AS version').get() as { version: string };
    db.close();
    lines.push(
      `SQLite ${row.version} (better-sqlite3), WAL, synchronous=NORMAL: commits do not wait ` +
        'for a disk flush',
    );
  }
  const version = databases.includes('postgres') ? await postgresVersion() : null;
  if (version !== null) {
    lines.push(`PostgreSQL ${version} on the same machine, ${await postgresDurability()}`);
  }
  return lines;
}

function notes(settings: BenchSettings, loadBefore: number[]): string[] {
  const load = (values: number[]) => values.map((value) => value.toFixed(2)).join(', ');
  return [
    `Each measurement runs ${settings.durationSeconds} s, at concurrency 1 and 32 ` +
      '(keep-alive connections, one request in flight on each).',
    'The server is the bundle `npm start` runs ' +
      '(`node --max-semi-space-size=2 dist/glimpse.mjs`), started as a child process with ' +
      '`GLIMPSE_LOG_LEVEL=warn`: at the default `info` every request writes a log line, ' +
      'which would measure logging. No auth headers (noauth mode: the caller is an admin).',
    'The load generator (autocannon) runs in the benchmark process on the same machine, so ' +
      'it takes CPU from the server; the CPU columns show how much.',
    `Load average (1, 5, 15 min) before the run: ${load(loadBefore)} (near 0 on an idle ` +
      `machine); after: ${load(loadavg())} (the run itself adds about 2).`,
  ];
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const { settings, groups, output } = parseCli(args);
  const date = new Date();
  const loadBefore = loadavg();
  const reports: GroupReport[] = [];
  for (const group of groups) reports.push(await group.run(settings));

  const header = {
    command: commandLine(args),
    date,
    machine: machineInfo(),
    software: await softwareVersions(settings.databases),
    notes: notes(settings, loadBefore),
  };
  await writeFile(output, renderReport(header, reports));
  settings.log(`wrote ${output}`);
}

main().catch((error: unknown) => {
  process.stderr.write(`bench: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
