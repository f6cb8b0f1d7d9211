/**
 * Starts the API server: load config, build the application, listen, stop cleanly. With
 * `workers` > 1 this process becomes the primary of that many API processes (see cluster.ts).
 */
import type { Logger } from 'pino';

import { buildApplication } from './app.js';
import { isClusterWorker, onPrimaryGone, runPrimary } from './cluster.js';
import type { Config } from './config/schema.js';
import { ConfigError, loadConfig } from './config/load.js';
import { migrateDatabase } from './db/sql/database.js';
import { createLogger } from './logger.js';

async function main(): Promise<void> {
  const config = loadConfigOrExit();
  const logger = createLogger(config.log_level);
  if (!isClusterWorker) announceAuth(config, logger);

  if (config.workers > 1 && !isClusterWorker) {
    const database = { url: config.database_url, dataDir: config.data_dir };
    logger.info({ workers: config.workers }, 'starting API workers');
    await runPrimary({
      workers: config.workers,
      prepare: () => migrateDatabase(database),
      logger,
    });
    return;
  }
  await serve(config, logger);
}

function loadConfigOrExit(): Config {
  try {
    return loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`glimpse: configuration error: ${error.message}\n`);
    process.exit(2);
  }
}

function announceAuth(config: Config, logger: Logger): void {
  if (config.auth_strategy === 'noauth') {
    logger.warn(
      'auth_strategy is noauth: identity headers are trusted and callers without them are ' +
        'admins. Use it only for development, never on a network others can reach.',
    );
  } else {
    logger.info({ keystone: config.keystone_auth_url }, 'auth_strategy is keystone');
  }
}

async function serve(config: Config, logger: Logger): Promise<void> {
  // A worker's primary has migrated the database already.
  const app = await buildApplication(config, logger, { migrate: !isClusterWorker });

  let stopping = false;
  const shutdown = (reason: string) => {
    // A terminal's Ctrl-C reaches a worker twice: directly and relayed by its primary.
    if (stopping) return;
    stopping = true;
    logger.info({ reason }, 'shutting down');
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  onPrimaryGone(() => shutdown('the primary process is gone'));

  await app.http.listen({ host: config.host, port: config.port });
}

main().catch((error: unknown) => {
  process.stderr.write(`glimpse: failed to start: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
