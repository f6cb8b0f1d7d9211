/**
 * Keystone unified limits as upstream Glance applies them: four per-project resources, each
 * with a limit (the project's own, else the registered default, else 0) and a usage measured
 * from the image table. Sizes count in whole MiB, rounded down, on both sides of the check.
 */
import { QuotaExceededError } from '../domain/errors.js';
import type { ProjectUsage } from '../db/repository.js';

export const LIMIT_RESOURCES = [
  'image_size_total',
  'image_stage_total',
  'image_count_total',
  'image_count_uploading',
] as const;
export type LimitResource = (typeof LIMIT_RESOURCES)[number];

export type Limits = Readonly<Record<LimitResource, number>>;
export type LimitDeltas = Partial<Record<LimitResource, number>>;

/** Where limits come from: Keystone, or a fixed table in tests. */
export interface LimitSource {
  /** The limit of every resource for the project; a resource without any limit has 0. */
  limitsFor(projectId: string): Promise<Limits>;
}

const MIB = 1024 * 1024;

/** Resources over their limit are reported in name order, whatever order they were asked in. */
const CHECK_ORDER = [...LIMIT_RESOURCES].sort();

/** Bytes as limits count them: whole MiB, rounded down (unknown counts as 0). */
export function mebibytes(bytes: number | null): number {
  return bytes === null ? 0 : Math.floor(bytes / MIB);
}

/** The project's usage of each resource, in the units of its limit. */
export function resourceUsage(usage: ProjectUsage): Record<LimitResource, number> {
  return {
    image_size_total: mebibytes(usage.storedBytes),
    image_stage_total: mebibytes(usage.stagedBytes),
    image_count_total: usage.images,
    image_count_uploading: usage.uploading,
  };
}

/**
 * Refuses the request when, for any resource in `deltas`, the current usage plus the delta
 * is over the limit. Every resource over its limit is named.
 */
export function enforceLimits(
  projectId: string,
  limits: Limits,
  usage: ProjectUsage,
  deltas: LimitDeltas,
): void {
  const current = resourceUsage(usage);
  const over: string[] = [];
  for (const resource of CHECK_ORDER) {
    const delta = deltas[resource];
    if (delta === undefined || current[resource] + delta <= limits[resource]) continue;
    over.push(
      `Resource ${resource} is over limit of ${limits[resource]} due to current usage ` +
        `${current[resource]} and delta ${delta}`,
    );
  }
  if (over.length > 0) {
    throw new QuotaExceededError(`Project ${projectId} is over a limit for [${over.join(', ')}]`);
  }
}
