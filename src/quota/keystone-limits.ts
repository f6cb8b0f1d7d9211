/**
 * Limits from Keystone's unified limits API, read as oslo.limit reads them for upstream
 * Glance: the limits belong to the image service (its Keystone id is configured, or found as
 * the one service of type `image`); a project's own limit wins over the registered default,
 * and a resource with neither has the limit 0, which refuses everything.
 *
 * Answers are kept for a short while (`keystone_limits_cache_seconds`), so a limit changed in
 * Keystone takes effect within that time, and Keystone is not asked on every request.
 */
import type { KeystoneClient } from '../auth/keystone-client.js';
import { UnavailableError } from '../domain/errors.js';
import { LIMIT_RESOURCES, type LimitResource, type Limits, type LimitSource } from './limits.js';

export interface KeystoneLimitSettings {
  /** Keystone's id of the image service; empty: the one service of type `image`. */
  readonly serviceId: string;
  /** Region the limits are registered for; empty: limits registered without a region. */
  readonly regionId: string;
  readonly cacheSeconds: number;
}

interface LimitEntry {
  resource_name?: string;
  region_id?: string | null;
  project_id?: string | null;
  default_limit?: number;
  resource_limit?: number;
}

type PartialLimits = Partial<Record<LimitResource, number>>;

/** Projects whose limits are remembered at once; the oldest entry makes room. */
const CACHE_SIZE = 10_000;
const REGISTERED = '';

export class KeystoneLimitSource implements LimitSource {
  readonly #client: KeystoneClient;
  readonly #settings: KeystoneLimitSettings;
  readonly #cache = new Map<string, { limits: Promise<PartialLimits>; until: number }>();
  #serviceId: Promise<string> | null = null;

  constructor(client: KeystoneClient, settings: KeystoneLimitSettings) {
    this.#client = client;
    this.#settings = settings;
  }

  async limitsFor(projectId: string): Promise<Limits> {
    const [registered, own] = await Promise.all([
      this.#cached(REGISTERED, () => this.#read('registered_limits', 'default_limit')),
      this.#cached(projectId, () => this.#read('limits', 'resource_limit', projectId)),
    ]);
    const limits = {} as Record<LimitResource, number>;
    for (const resource of LIMIT_RESOURCES) {
      limits[resource] = own[resource] ?? registered[resource] ?? 0;
    }
    return limits;
  }

  /** Concurrent requests for the same limits share one call to Keystone. */
  #cached(key: string, load: () => Promise<PartialLimits>): Promise<PartialLimits> {
    const entry = this.#cache.get(key);
    if (entry && entry.until > Date.now()) return entry.limits;

    const limits = load();
    this.#cache.delete(key);
    if (this.#cache.size >= CACHE_SIZE) {
      const oldest = this.#cache.keys().next().value;
      if (oldest !== undefined) this.#cache.delete(oldest);
    }
    const until = Date.now() + this.#settings.cacheSeconds * 1000;
    this.#cache.set(key, { limits, until });
    // A failed read is not remembered: the next request asks Keystone again.
    limits.catch(() => {
      if (this.#cache.get(key)?.limits === limits) this.#cache.delete(key);
    });
    return limits;
  }

  /** Registered limits (no project) or one project's limits, by resource. */
  async #read(
    collection: 'registered_limits' | 'limits',
    field: 'default_limit' | 'resource_limit',
    projectId?: string,
  ): Promise<PartialLimits> {
    const query = new URLSearchParams({ service_id: await this.#imageServiceId() });
    if (this.#settings.regionId) query.set('region_id', this.#settings.regionId);
    if (projectId !== undefined) query.set('project_id', projectId);

    const body = await this.#get(`/${collection}?${query}`);
    const entries = (body as Record<string, unknown>)[collection];
    const limits: PartialLimits = {};
    for (const entry of Array.isArray(entries) ? (entries as LimitEntry[]) : []) {
      const resource = entry.resource_name as LimitResource;
      const value = entry[field];
      if (!LIMIT_RESOURCES.includes(resource) || typeof value !== 'number') continue;
      if ((entry.region_id ?? '') !== this.#settings.regionId) continue;
      if (projectId !== undefined && entry.project_id !== projectId) continue;
      limits[resource] ??= value;
    }
    return limits;
  }

  #imageServiceId(): Promise<string> {
    if (this.#settings.serviceId) return Promise.resolve(this.#settings.serviceId);
    // Looked up once; a failed lookup is tried again by the next request.
    this.#serviceId ??= this.#findImageService().catch((error: unknown) => {
      this.#serviceId = null;
      throw error;
    });
    return this.#serviceId;
  }

  async #findImageService(): Promise<string> {
    const body = (await this.#get('/services?type=image')) as {
      services?: Array<{ id?: string; enabled?: boolean }>;
    };
    const services = (body.services ?? []).filter((service) => service.enabled !== false);
    const id = services[0]?.id;
    if (services.length !== 1 || !id) {
      throw new UnavailableError(
        `Keystone lists ${services.length} services of type image; set ` +
          'keystone_limits_service_id to the one whose limits apply.',
      );
    }
    return id;
  }

  async #get(path: string): Promise<unknown> {
    const response = await this.#client.get(path);
    if (response.status !== 200) {
      throw new UnavailableError(
        `Keystone answered ${response.status} when asked for GET /v3${path.split('?')[0]}.`,
      );
    }
    return response.json();
  }
}
