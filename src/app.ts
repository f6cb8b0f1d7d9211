/**
 * Composition root: the only module that picks concrete implementations (database dialect,
 * authenticator) and wires them into the services and the HTTP server.
 */
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

import { NoAuthAuthenticator } from './auth/noauth.js';
import type { Config } from './config/schema.js';
import { Policy } from './domain/policy.js';
import { openRepositories } from './db/sql/database.js';
import { buildHttpServer } from './http/server.js';
import { ImageService } from './services/images.js';

export interface Application {
  readonly http: FastifyInstance;
  close(): Promise<void>;
}

export async function buildApplication(config: Config, logger: Logger): Promise<Application> {
  const repositories = openRepositories({
    url: config.database_url,
    dataDir: config.data_dir,
    poolSize: config.database_pool_size,
  });
  await repositories.migrate();

  const images = new ImageService(repositories.images, new Policy(), {
    imagePropertyQuota: config.image_property_quota,
    imageTagQuota: config.image_tag_quota,
  });
  const authenticator = new NoAuthAuthenticator();
  const http = await buildHttpServer({ config, logger, authenticator, images });

  return {
    http,
    async close() {
      await http.close();
      await repositories.close();
    },
  };
}
