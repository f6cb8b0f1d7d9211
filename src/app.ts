/**
 * Composition root: the only module that picks concrete implementations (database dialect,
 * stores, authenticator) and wires them into the services and the HTTP server.
 */
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

import type { Authenticator } from './auth/authenticator.js';
import { KeystoneAuthenticator } from './auth/keystone.js';
import { NoAuthAuthenticator } from './auth/noauth.js';
import type { Config } from './config/schema.js';
import { Policy } from './domain/policy.js';
import { openRepositories } from './db/sql/database.js';
import { buildHttpServer } from './http/server.js';
import { closeHashPool } from './pipeline/hashing.js';
import { ImageAccess } from './services/image-access.js';
import { ImageDataService } from './services/image-data.js';
import { ImageService } from './services/images.js';
import { MemberService } from './services/members.js';
import { WriteRecovery } from './services/write-recovery.js';
import { FileStore } from './stores/file/file-store.js';
import { StoreRegistry } from './stores/registry.js';

export interface Application {
  readonly http: FastifyInstance;
  /** Identity of this process among those sharing the database. */
  readonly workerId: string;
  close(): Promise<void>;
}

async function buildStores(config: Config): Promise<StoreRegistry> {
  const file = new FileStore({
    id: 'file',
    root: config.filesystem_store_datadir || join(config.data_dir, 'images'),
    fsync: config.filesystem_store_fsync,
  });
  const staging = new FileStore({
    id: 'os_glance_staging_store',
    root: join(config.data_dir, 'staging'),
    fsync: config.filesystem_store_fsync,
  });
  await Promise.all([file.init(), staging.init()]);
  return new StoreRegistry(file, staging);
}

function buildAuthenticator(config: Config): Authenticator {
  if (config.auth_strategy === 'noauth') return new NoAuthAuthenticator();
  return new KeystoneAuthenticator({
    authUrl: config.keystone_auth_url,
    username: config.keystone_username,
    password: config.keystone_password,
    projectName: config.keystone_project_name,
    userDomainName: config.keystone_user_domain_name,
    projectDomainName: config.keystone_project_domain_name,
    cacheSeconds: config.token_cache_seconds,
    cacheSize: config.token_cache_size,
    timeoutSeconds: config.keystone_timeout_seconds,
  });
}

export async function buildApplication(config: Config, logger: Logger): Promise<Application> {
  const workerId = randomUUID();
  const repositories = openRepositories({
    url: config.database_url,
    dataDir: config.data_dir,
    poolSize: config.database_pool_size,
  });
  await repositories.migrate();
  const stores = await buildStores(config);

  const access = new ImageAccess(repositories.images, new Policy());
  const data = new ImageDataService(access, stores, repositories.writes, {
    sizeCap: config.image_size_cap,
    hashingAlgorithm: config.hashing_algorithm,
    workerId,
  });
  const images = new ImageService(
    access,
    { imagePropertyQuota: config.image_property_quota, imageTagQuota: config.image_tag_quota },
    data,
  );
  const recovery = new WriteRecovery(
    repositories.writes,
    repositories.images,
    stores,
    { workerId, intervalMs: config.worker_heartbeat_seconds * 1000 },
    logger,
  );
  await recovery.start();

  const authenticator = buildAuthenticator(config);
  const members = new MemberService(access, repositories.members, config.image_member_quota);
  const http = await buildHttpServer({ config, logger, authenticator, images, data, members });

  return {
    http,
    workerId,
    async close() {
      await http.close();
      await recovery.stop();
      await repositories.close();
      await closeHashPool();
    },
  };
}
