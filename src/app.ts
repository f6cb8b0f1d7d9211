/**
 * Composition root: the only module that picks concrete implementations (database dialect,
 * stores, authenticator) and wires them into the services and the HTTP server.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import type { Logger } from 'pino';

import type { Authenticator } from './auth/authenticator.js';
import { KeystoneAuthenticator } from './auth/keystone.js';
import { KeystoneClient, type KeystoneClientSettings } from './auth/keystone-client.js';
import { NoAuthAuthenticator } from './auth/noauth.js';
import { ConfigError } from './config/load.js';
import type { Config } from './config/schema.js';
import {
  PropertyProtectionError,
  PropertyProtections,
  type PolicyRuleCheck,
  type RuleFormat,
} from './domain/property-protections.js';
import { PropertyGuard } from './services/property-guard.js';
import { loadPolicy, PolicyFileError, type Policy } from './domain/policy.js';
import { PolicyRuleError } from './domain/policy/rules.js';
import type { ImageRepository } from './db/repository.js';
import { openRepositories } from './db/sql/database.js';
import { buildHttpServer } from './http/server.js';
import { closeHashPool } from './pipeline/hashing.js';
import { ImageAccess } from './services/image-access.js';
import { ImageDataService } from './services/image-data.js';
import { ImageService } from './services/images.js';
import { MemberService } from './services/members.js';
import { ImportFlow } from './import/flow.js';
import { createPlugins, type PluginSettings } from './import/plugins/index.js';
import { TaskRunner } from './import/runner.js';
import { validateImportUri } from './import/uri-filter.js';
import { openWebSource, type WebSourceOptions } from './import/web-source.js';
import { RemoteGlance } from './import/remote-glance.js';
import { KeystoneLimitSource } from './quota/keystone-limits.js';
import { ProjectQuotas } from './quota/project-quotas.js';
import { parseStorageQuota } from './quota/storage.js';
import { ImportLock } from './services/import-lock.js';
import { ImportService } from './services/imports.js';
import { LocationService } from './services/locations.js';
import { StoreService } from './services/stores.js';
import { TaskService } from './services/tasks.js';
import { StoreCleanup } from './services/store-cleanup.js';
import { WriteRecovery } from './services/write-recovery.js';
import { buildStores } from './stores/build.js';
import { LocationImportFlow } from './import/location-flow.js';
import { LegacyImportFlow } from './import/legacy-flow.js';
import type { FileStore } from './stores/file/file-store.js';
import { viewsNeedLocations } from './http/image-view.js';

export interface Application {
  readonly http: FastifyInstance;
  /** Identity of this process among those sharing the database. */
  readonly workerId: string;
  close(): Promise<void>;
}

function buildAuthenticator(config: Config): Authenticator {
  if (config.auth_strategy === 'noauth') return new NoAuthAuthenticator();
  return new KeystoneAuthenticator({
    ...keystoneService(config),
    cacheSeconds: config.token_cache_seconds,
    cacheSize: config.token_cache_size,
  });
}

/** The service's own Keystone credentials, shared by token validation and limit reading. */
function keystoneService(config: Config): KeystoneClientSettings {
  return {
    authUrl: config.keystone_auth_url,
    username: config.keystone_username,
    password: config.keystone_password,
    projectName: config.keystone_project_name,
    userDomainName: config.keystone_user_domain_name,
    projectDomainName: config.keystone_project_domain_name,
    timeoutSeconds: config.keystone_timeout_seconds,
  };
}

/** Keystone unified limits replace user_storage_quota when they are on. */
function buildProjectQuotas(config: Config, images: ImageRepository): ProjectQuotas {
  const storageQuota = parseStorageQuota(config.user_storage_quota) ?? 0;
  if (!config.use_keystone_limits)
    return new ProjectQuotas(images, { storageQuota, limits: null });

  const client = new KeystoneClient({
    ...keystoneService(config),
    // Keystone shows a project-scoped token only its own project's limits.
    scope: 'system',
  });
  const limits = new KeystoneLimitSource(client, {
    serviceId: config.keystone_limits_service_id,
    regionId: config.keystone_limits_region_id,
    cacheSeconds: config.keystone_limits_cache_seconds,
  });
  return new ProjectQuotas(images, { storageQuota, limits });
}

function pluginSettings(config: Config): PluginSettings {
  const inject = config.inject_metadata_properties.map((entry) => {
    const at = entry.indexOf(':');
    return [entry.slice(0, at).trim(), entry.slice(at + 1).trim()];
  });
  return {
    conversionOutputFormat: config.image_conversion_output_format as 'raw' | 'qcow2' | 'vmdk',
    vmdkAllowedTypes: [...config.vmdk_allowed_types],
    injectProperties: Object.fromEntries(inject),
    injectIgnoreUserRoles: [...config.inject_ignore_user_roles],
    qemuImgPath: 'qemu-img',
  };
}

/** copy-image copies between stores: with a single store there is nowhere to copy to. */
function offeredImportMethods(methods: readonly string[], multiStore: boolean): string[] {
  return methods.filter((method) => multiStore || method !== 'copy-image');
}

function webSourceOptions(config: Config): WebSourceOptions {
  const timeout = config.web_download_timeout_seconds * 1000;
  return {
    allowedSchemes: [...config.allowed_schemes],
    disallowedSchemes: [...config.disallowed_schemes],
    allowedHosts: [...config.allowed_hosts],
    disallowedHosts: [...config.disallowed_hosts],
    allowedPorts: config.allowed_ports.map(Number),
    disallowedPorts: config.disallowed_ports.map(Number),
    refusePrivateAddresses: config.web_download_refuse_private_addresses,
    connectTimeoutMs: timeout,
    readTimeoutMs: timeout,
    maxRedirects: 5,
  };
}

/**
 * Reads the policy and property protection files once at start; a broken file stops the
 * start with a message naming it. In the `policies` format the protections add rules to the
 * policy and then consult it, hence the late binding of `policy`.
 */
function loadAccessRules(config: Config): {
  policy: Policy;
  protections: PropertyProtections | null;
} {
  let policy: Policy | null = null;
  const protections = loadPropertyProtections(config, (rule, context) =>
    policy === null ? false : policy.allowsRule(rule, context),
  );
  try {
    policy = loadPolicy(config.policy_file || null, protections?.policyRules() ?? {});
  } catch (error) {
    if (error instanceof PolicyFileError || error instanceof PolicyRuleError) {
      throw new ConfigError(error.message);
    }
    throw error;
  }
  return { policy, protections };
}

function loadPropertyProtections(
  config: Config,
  checkPolicy: PolicyRuleCheck,
): PropertyProtections | null {
  const path = config.property_protection_file;
  if (!path) return null;

  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read property_protection_file ${path}: ${String(error)}`);
  }
  try {
    const format = config.property_protection_rule_format as RuleFormat;
    return PropertyProtections.parse(text, path, format, checkPolicy);
  } catch (error) {
    if (error instanceof PropertyProtectionError) throw new ConfigError(error.message);
    throw error;
  }
}

/** What the task handlers are built from. */
interface TaskHandlerDeps {
  readonly images: ImageRepository;
  readonly data: ImageDataService;
  readonly quotas: ProjectQuotas;
  readonly locations: LocationService;
  readonly staging: FileStore;
  readonly webSource: WebSourceOptions;
  readonly remoteGlance: RemoteGlance | null;
  readonly workerId: string;
  readonly logger: Logger;
}

/** The handler of each task type: imports, location imports and legacy import tasks. */
function taskHandlers(config: Config, deps: TaskHandlerDeps) {
  const { images, data, logger } = deps;
  const importFlow = new ImportFlow(
    images,
    data,
    deps.quotas,
    (uri) => openWebSource(uri, deps.webSource),
    {
      plugins: createPlugins(config.image_import_plugins, pluginSettings(config)),
      stagingPath: (id) => deps.staging.filePath(id),
      sizeCap: config.image_size_cap,
    },
    logger,
    deps.remoteGlance,
    config.glance_download_extra_properties,
  );
  return {
    api_image_import: importFlow,
    import: new LegacyImportFlow(importFlow, images, data, logger),
    location_import: new LocationImportFlow(
      images,
      deps.locations,
      data,
      { hashingAlgorithm: config.hashing_algorithm, workerId: deps.workerId },
      logger,
    ),
  };
}

/** How long shutdown waits for handlers whose clients hung up before closing the database. */
const HANDLER_GRACE_MS = 10_000;

export interface BuildOptions {
  /** False in a worker of several: its primary migrated before starting it. */
  readonly migrate?: boolean;
}

export async function buildApplication(
  config: Config,
  logger: Logger,
  options: BuildOptions = {},
): Promise<Application> {
  const workerId = randomUUID();
  const repositories = await openRepositories({
    url: config.database_url,
    dataDir: config.data_dir,
    poolSize: config.database_pool_size,
    onConnectionError: (error) =>
      logger.warn({ err: error }, 'lost a PostgreSQL connection; the pool opens a new one'),
  });
  if (options.migrate ?? true) await repositories.migrate();
  const { stores, staging } = await buildStores(config);

  const { policy, protections } = loadAccessRules(config);
  const access = new ImageAccess(repositories.images, policy);
  const quotas = buildProjectQuotas(config, repositories.images);
  const cleanup = new StoreCleanup(stores, repositories.images, repositories.writes, logger);
  const data = new ImageDataService(
    access,
    stores,
    repositories.writes,
    { sizeCap: config.image_size_cap, hashingAlgorithm: config.hashing_algorithm, workerId },
    quotas,
    cleanup,
  );
  // The runner is built further down, before the HTTP server: no task is queued earlier.
  const importLock = new ImportLock(repositories.images, repositories.tasks, () =>
    runner.notify(),
  );
  const locations = new LocationService(access, stores, importLock, {
    showLocations: config.show_multiple_locations,
    locationQuota: config.image_location_quota,
    hashingAlgorithm: config.hashing_algorithm,
  });
  const images = new ImageService(
    access,
    {
      imagePropertyQuota: config.image_property_quota,
      imageTagQuota: config.image_tag_quota,
      listWithLocations: viewsNeedLocations({
        showLocations: config.show_multiple_locations,
        showDirectUrl: config.show_image_direct_url,
        stores,
      }),
    },
    data,
    new PropertyGuard(protections),
    quotas,
    locations,
  );
  const recovery = new WriteRecovery(
    repositories.writes,
    repositories.images,
    cleanup,
    { workerId, intervalMs: config.worker_heartbeat_seconds * 1000 },
    logger,
  );
  await recovery.start();

  const authenticator = buildAuthenticator(config);
  const members = new MemberService(access, repositories.members, config.image_member_quota);
  const webSource = webSourceOptions(config);
  const remoteGlance = config.enabled_import_methods.includes('glance-download')
    ? new RemoteGlance(new KeystoneClient(keystoneService(config)), webSource)
    : null;
  const tasks = new TaskService(access, repositories.tasks, {
    createImage: (context, request) => images.create(context, request),
    lock: importLock,
    validateUri: (uri) => validateImportUri(uri, webSource),
  });
  const runner = new TaskRunner(
    repositories.tasks,
    taskHandlers(config, {
      images: repositories.images,
      data,
      quotas,
      locations,
      staging,
      webSource,
      remoteGlance,
      workerId,
      logger,
    }),
    {
      workerId,
      concurrency: config.task_workers,
      pollMs: 2000,
      timeToLiveHours: config.task_time_to_live,
      maxAttempts: 3,
    },
    (id) => recovery.isWorkerAlive(id),
    logger,
  );
  const imports = new ImportService(
    access,
    importLock,
    {
      enabledMethods: offeredImportMethods(config.enabled_import_methods, stores.multiStore),
      validateUri: (uri) => validateImportUri(uri, webSource),
      remoteRefusal: remoteGlance ? (ref, token) => remoteGlance.refusal(ref, token) : undefined,
    },
    quotas,
    stores,
  );
  const http = await buildHttpServer({
    config,
    logger,
    authenticator,
    policy,
    images,
    data,
    members,
    imports,
    tasks,
    quotas,
    stores,
    storeInfo: new StoreService(access, stores, data),
    locations,
  });
  runner.start();

  return {
    http,
    workerId,
    async close() {
      await http.close();
      const running = http.handlersInFlight.running;
      if (!(await http.handlersInFlight.settled(HANDLER_GRACE_MS))) {
        logger.warn(
          { running },
          `requests still running ${HANDLER_GRACE_MS} ms after the server closed; closing ` +
            'the database under them. If this repeats, look for a handler that hangs.',
        );
      }
      await runner.stop();
      await recovery.stop();
      await repositories.close();
      await stores.close();
      await closeHashPool();
    },
  };
}
