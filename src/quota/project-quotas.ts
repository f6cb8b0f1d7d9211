/**
 * Project-wide quotas at upstream Glance's check points: Keystone unified limits when
 * `use_keystone_limits` is on, otherwise the legacy `user_storage_quota` (when set). The
 * project checked is the caller's, as upstream does; a caller without a project is not
 * limited. The arithmetic lives in ./limits.ts and ./storage.ts, the usage figures come from
 * the repository.
 *
 * Concurrency. A check that reads usage and then writes in a separate step races: N requests
 * can all see room for one more. So every check that admits a write consuming quota (a new
 * image, an image entering saving/uploading, data committed to an image) runs through the
 * repository's createChecked/saveChecked, which serialise the checked writes of one project
 * with a database lock and apply each one in the same transaction as its check. With unified
 * limits an upload counts as uploading from the moment its image enters saving (or
 * uploading), inside that lock, so racing uploads see each other. And the data of uploads, of
 * PUT /stage and of imports is checked again with its real size inside the lock before it is
 * recorded, so racing transfers can at worst be refused at their end (their data is then
 * deleted), and the project never ends over its quota. The checks made before a transfer,
 * with the declared size, only refuse early what cannot fit.
 */
import type { ImageRecord } from '../domain/image.js';
import type { DataWrite, ImageRepository, UsageCheck } from '../db/repository.js';
import {
  enforceLimits,
  LIMIT_RESOURCES,
  mebibytes,
  resourceUsage,
  type LimitDeltas,
  type LimitResource,
  type LimitSource,
} from './limits.js';
import { checkStorageQuota } from './storage.js';

export interface ProjectQuotaSettings {
  /** user_storage_quota in bytes; 0 means none. Ignored when `limits` is set. */
  readonly storageQuota: number;
  /** Keystone unified limits, or null when they are off. */
  readonly limits: LimitSource | null;
}

export type UsageReport = Partial<Record<LimitResource, { usage: number; limit: number }>>;

export class ProjectQuotas {
  readonly #repo: ImageRepository;
  readonly #storageQuota: number;
  readonly #limits: LimitSource | null;

  constructor(repo: ImageRepository, settings: ProjectQuotaSettings) {
    this.#repo = repo;
    this.#limits = settings.limits;
    this.#storageQuota = settings.limits ? 0 : settings.storageQuota;
  }

  /** Stores a new image, counted against the project's image_count_total. */
  async create(projectId: string | null, image: ImageRecord): Promise<void> {
    const check = await this.#limitCheck(projectId, { image_count_total: 1 });
    if (check === null || projectId === null) return this.#repo.create(image);
    return this.#repo.createChecked(image, projectId, check);
  }

  /**
   * user_storage_quota only, before data is written into the store (upload, import): refuses
   * a size that cannot fit (null: unknown). Returns the most bytes the write may take, or
   * null when there is no such quota.
   */
  async storageRoom(projectId: string | null, size: number | null): Promise<number | null> {
    if (projectId === null || this.#storageQuota === 0) return null;
    const usage = await this.#repo.usage(projectId);
    return checkStorageQuota(this.#storageQuota, usage.storedBytes, size);
  }

  /** Keystone limits only: refuses when usage plus `deltas` is over a limit. */
  async enforceLimits(projectId: string | null, deltas: LimitDeltas): Promise<void> {
    const check = await this.#limitCheck(projectId, deltas);
    if (check === null || projectId === null) return;
    check(await this.#repo.usage(projectId));
  }

  /**
   * Keystone limits only: the checks upstream makes when an import task starts, with the
   * image already importing (so it counts as uploading) and `size` its size so far.
   * glance-direct is about to store what it staged; the other methods stage first, so they
   * are checked on image_stage_total and only then on image_count_uploading, and a refusal
   * names the first of the two that is passed.
   */
  async enforceImportStart(projectId: string | null, method: string, size: number | null) {
    const delta = mebibytes(size);
    if (method === 'glance-direct') {
      return this.enforceLimits(projectId, { image_size_total: delta });
    }
    await this.enforceLimits(projectId, { image_stage_total: delta });
    await this.enforceLimits(projectId, { image_count_uploading: 0 });
  }

  /**
   * Moves an image from queued to saving or uploading, where it counts against
   * image_count_uploading; the count includes the image itself, as upstream checks it just
   * after the change. `write` is recorded with the change.
   */
  async claim(
    projectId: string | null,
    previous: ImageRecord,
    next: ImageRecord,
    write: DataWrite,
  ) {
    const itself = previous.owner === projectId ? 1 : 0;
    const check = await this.#limitCheck(projectId, { image_count_uploading: 0 });
    if (check === null || projectId === null) return this.#repo.save(previous, next, write);
    const counted: UsageCheck = (usage) =>
      check({ ...usage, uploading: usage.uploading + itself });
    return this.#repo.saveChecked(previous, next, projectId, counted, write);
  }

  /** Records data written to a store (`next` holds its real size), if it still fits. */
  async commitStored(projectId: string | null, previous: ImageRecord, next: ImageRecord) {
    const size = next.size ?? 0;
    let check: UsageCheck | null = null;
    if (this.#limits) {
      check = await this.#limitCheck(projectId, { image_size_total: mebibytes(size) });
    } else if (this.#storageQuota > 0) {
      const quota = this.#storageQuota;
      check = (usage) => void checkStorageQuota(quota, usage.storedBytes, size);
    }
    if (check === null || projectId === null) return this.#repo.save(previous, next);
    return this.#repo.saveChecked(previous, next, projectId, check);
  }

  /** Records data written to staging (`next` holds its real size), if it still fits. */
  async commitStaged(projectId: string | null, previous: ImageRecord, next: ImageRecord) {
    const delta = { image_stage_total: mebibytes(next.size) };
    const check = await this.#limitCheck(projectId, delta);
    if (check === null || projectId === null) return this.#repo.save(previous, next);
    return this.#repo.saveChecked(previous, next, projectId, check);
  }

  /** Usage and limit of each resource (GET /v2/info/usage); empty when limits are off. */
  async report(projectId: string | null): Promise<UsageReport> {
    if (!this.#limits || projectId === null) return {};
    const [limits, usage] = await Promise.all([
      this.#limits.limitsFor(projectId),
      this.#repo.usage(projectId),
    ]);
    const current = resourceUsage(usage);
    const report: UsageReport = {};
    for (const resource of LIMIT_RESOURCES) {
      report[resource] = { usage: current[resource], limit: limits[resource] };
    }
    return report;
  }

  /**
   * The limits check for `deltas`, with the limits already fetched so that nothing waits on
   * Keystone while a database lock is held; null when limits are off.
   */
  async #limitCheck(projectId: string | null, deltas: LimitDeltas): Promise<UsageCheck | null> {
    if (!this.#limits || projectId === null) return null;
    const limits = await this.#limits.limitsFor(projectId);
    return (usage) => enforceLimits(projectId, limits, usage, deltas);
  }
}
