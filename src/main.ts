/** Starts the API server: load config, build the application, listen, stop cleanly. */
import { buildApplication } from './app.js';
import { ConfigError, loadConfig } from './config/load.js';
import { createLogger } from './logger.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`glimpse: configuration error: ${error.message}\n`);
    process.exit(2);
  }

  const logger = createLogger(config.log_level);
  const app = await buildApplication(config, logger);
  if (config.auth_strategy === 'noauth') {
    logger.warn(
      'auth_strategy is noauth: identity headers are trusted and callers without them are ' +
        'admins. Use it only for development, never on a network others can reach.',
    );
  } else {
    logger.info({ keystone: config.keystone_auth_url }, 'auth_strategy is keystone');
  }

  const shutdown = (signal: string) => {
    logger.info({ signal }, 'shutting down');
    app.close().then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', shutdown);
  process.once('SIGTERM', shutdown);

  await app.http.listen({ host: config.host, port: config.port });
}

main().catch((error: unknown) => {
  process.stderr.write(`glimpse: failed to start: ${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
