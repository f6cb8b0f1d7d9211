/** The metadata scenario group: each database in turn, scenarios then the deep page. */
import { availableParallelism } from 'node:os';

import { bareNodeCeiling } from './bare-node.js';
import { emptyStartups, LABELS, median, STARTUP_SAMPLES, withServer } from './backend.js';
import { benchDeepPage } from './deep-page.js';
import { benchScenarios } from './metadata.js';
import { CEILING_CONNECTIONS, metadataReport, type MetadataFigures } from './metadata-report.js';
import { postgresVersion } from './postgres.js';
import type { BenchSettings, DatabaseKind, ScenarioGroup } from './report.js';

async function benchDatabase(
  kind: DatabaseKind,
  settings: BenchSettings,
  figures: MetadataFigures,
): Promise<void> {
  settings.log(`${LABELS[kind]}: scenarios`);
  const startups = await emptyStartups(kind, STARTUP_SAMPLES - 1);
  figures.scenarios[kind] = await withServer(kind, async (backend, server) => {
    startups.push(server.startupMs);
    settings.log(`  started in ${startups.map((ms) => ms.toFixed(0)).join(', ')} ms`);
    const runs = await benchScenarios(backend, server, settings);
    return { startupMs: median(startups), startupSamples: startups, runs };
  });
  settings.log(`${LABELS[kind]}: deep page`);
  figures.deep[kind] = await benchDeepPage(kind, settings);
}

/** The same scenarios on SQLite served by one API process per core (the `workers` option). */
async function benchWorkers(settings: BenchSettings, figures: MetadataFigures): Promise<void> {
  const workers = availableParallelism();
  settings.log(`SQLite, ${workers} API workers: scenarios`);
  const runs = await withServer(
    'sqlite',
    (backend, server) => benchScenarios(backend, server, settings),
    workers,
  );
  figures.workers = { count: workers, runs };
}

export const metadataGroup: ScenarioGroup = {
  name: 'metadata',
  async run(settings) {
    const figures: MetadataFigures = { scenarios: {}, deep: {}, skipped: [] };
    settings.log('Ceiling: a bare Node.js HTTP server');
    figures.ceiling = await bareNodeCeiling(CEILING_CONNECTIONS, settings.durationSeconds);
    settings.log(`  ${Math.round(figures.ceiling.perSecond)} req/s`);
    for (const kind of settings.databases) {
      if (kind === 'postgres' && (await postgresVersion()) === null) {
        figures.skipped.push('PostgreSQL was not reachable on 127.0.0.1:5432; it was skipped.');
        continue;
      }
      await benchDatabase(kind, settings, figures);
    }
    if (settings.databases.includes('sqlite') && availableParallelism() > 1) {
      await benchWorkers(settings, figures);
    }
    return metadataReport(figures);
  },
};
