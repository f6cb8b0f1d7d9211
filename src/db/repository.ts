/**
 * The metadata repository contract. Services depend on these interfaces only; the SQL
 * implementation behind them serves SQLite and PostgreSQL.
 */
import type { ImageRecord, ImageStatus } from '../domain/image.js';
import type { ImageListQuery } from '../domain/list-query.js';
import type { TaskRecord, TaskStatus, TaskType } from '../domain/task.js';

/** Whose view of the image table a list call sees. */
export interface ListScope {
  readonly isAdmin: boolean;
  readonly projectId: string | null;
}

/**
 * What one project's images consume, measured as upstream Glance measures it for quotas. Only
 * images owned by the project and not killed, deleted or pending_delete count.
 */
export interface ProjectUsage {
  /** Bytes in the stores: size times the number of live locations, over images with data. */
  readonly storedBytes: number;
  /** Bytes in staging: sizes of images uploading or importing, or being copied to a store. */
  readonly stagedBytes: number;
  /** Images. */
  readonly images: number;
  /** Images saving, uploading or importing, or being copied to a store. */
  readonly uploading: number;
}

/** A quota check: throws (QuotaExceededError) to refuse the write it guards. */
export type UsageCheck = (usage: ProjectUsage) => void;

/** What a page's marker check needs of the marker image. */
export type MarkerFacts = Pick<ImageRecord, 'id' | 'owner' | 'visibility'>;

export interface ListedPage {
  readonly images: ImageRecord[];
  /**
   * The marker image, read by the page's own statement so that a page after a marker costs
   * one round trip. Null without a marker, and when the page is empty: the statement then
   * cannot tell a missing marker from the end of the list.
   */
  readonly marker: MarkerFacts | null;
}

export interface ImageRepository {
  /** Stores a new image. Throws ConflictError when the id was ever used, deleted or not. */
  create(image: ImageRecord): Promise<void>;

  /** The image unless it does not exist or was deleted. */
  get(id: string): Promise<ImageRecord | null>;

  /**
   * The image's own columns only: tags, properties and locations come back empty. Enough to
   * place a list marker and check who may see it, at a fraction of get()'s cost.
   */
  getColumns(id: string): Promise<ImageRecord | null>;

  /**
   * One page of images in the scope, after the image `markerId` (whose existence and
   * visibility the caller checks with `marker` of the result). Listed images carry locations
   * only when asked (most views do not show them).
   */
  list(
    query: ImageListQuery,
    scope: ListScope,
    markerId: string | null,
    options?: { readonly withLocations?: boolean },
  ): Promise<ListedPage>;

  /**
   * Writes the differences between `previous` (as read) and `next`. When the status changes,
   * the write only happens if the stored status is still `previous.status`; returns false when
   * that condition failed or the image is gone, so racing state changes have one winner.
   * `write`, the data write the change starts, is recorded with it, atomically: a crash can
   * not leave an image `saving` that no write record lets WriteRecovery find.
   */
  save(previous: ImageRecord, next: ImageRecord, write?: DataWrite): Promise<boolean>;

  /** Marks the image deleted (its id stays taken) and drops its tags and properties. */
  delete(id: string, status: Extract<ImageStatus, 'deleted' | 'pending_delete'>): Promise<void>;

  /**
   * Sets a property only if the image does not have it yet (an atomic lock); returns whether
   * this call set it.
   */
  setPropertyIfAbsent(imageId: string, name: string, value: string): Promise<boolean>;

  /** Removes a property if it still holds `value` (releasing a lock this caller holds). */
  removePropertyIfEquals(imageId: string, name: string, value: string): Promise<void>;

  /** Whether `projectId` has a membership row for the image, in any member status. */
  isMember(imageId: string, projectId: string): Promise<boolean>;

  /** The usage of the images `projectId` owns. */
  usage(projectId: string): Promise<ProjectUsage>;

  /**
   * `create`, after `check` accepted the project's usage. The check and the write happen
   * under a per-project lock, so that checked writes of one project run one at a time, each
   * seeing the usage the previous ones left.
   */
  createChecked(image: ImageRecord, projectId: string, check: UsageCheck): Promise<void>;

  /** `save`, after `check` accepted the project's usage, under the same lock. */
  saveChecked(
    previous: ImageRecord,
    next: ImageRecord,
    projectId: string,
    check: UsageCheck,
    write?: DataWrite,
  ): Promise<boolean>;
}

export type MemberStatus = 'pending' | 'accepted' | 'rejected';

export interface MemberRecord {
  readonly image_id: string;
  readonly member_id: string;
  readonly status: MemberStatus;
  readonly created_at: string;
  readonly updated_at: string;
}

/** Projects an image is shared with. Removed memberships are kept and revived on re-add. */
export interface MemberRepository {
  list(imageId: string): Promise<MemberRecord[]>;
  get(imageId: string, memberId: string): Promise<MemberRecord | null>;
  count(imageId: string): Promise<number>;
  /** Adds a pending membership. Throws ConflictError when the project already is a member. */
  add(imageId: string, memberId: string): Promise<MemberRecord>;
  setStatus(imageId: string, memberId: string, status: MemberStatus): Promise<MemberRecord>;
  remove(imageId: string, memberId: string): Promise<void>;
}

export interface TaskListQuery {
  readonly limit: number;
  readonly marker: string | null;
  readonly sortKey: 'created_at' | 'updated_at' | 'id' | 'type' | 'status';
  readonly sortDir: 'asc' | 'desc';
  readonly status: TaskStatus | null;
  readonly type: TaskType | null;
}

export interface TaskChanges {
  readonly status?: TaskStatus;
  readonly result?: Record<string, unknown> | null;
  readonly message?: string;
  readonly expires_at?: string | null;
  /** When the change happened, if expires_at is counted from it; now when absent. */
  readonly updated_at?: string;
}

/** Tasks in the database: the shared queue every process takes work from. */
export interface TaskRepository {
  create(task: TaskRecord): Promise<void>;
  get(id: string): Promise<TaskRecord | null>;
  /** Tasks of an image, newest first; `owner` null means every owner. */
  listForImage(imageId: string, owner: string | null): Promise<TaskRecord[]>;
  list(query: TaskListQuery): Promise<TaskRecord[]>;
  /** Atomically moves the oldest pending task to processing for this worker. */
  claimNext(workerId: string): Promise<TaskRecord | null>;
  /** Applies changes if the task is still in `expected` status; false otherwise. */
  update(id: string, expected: TaskStatus, changes: TaskChanges): Promise<boolean>;
  /** Tasks being processed, with the worker running each and how often it was tried. */
  processing(): Promise<Array<{ id: string; workerId: string | null; attempts: number }>>;
  /** Puts a processing task back in the queue (its worker died). */
  release(id: string): Promise<void>;
  /** Soft-deletes finished tasks whose expiry passed; returns how many. */
  purgeExpired(now: string): Promise<number>;
}

/** A server process, as recorded for recovering the work it leaves behind if it dies. */
export interface WorkerRecord {
  readonly id: string;
  readonly hostname: string;
  readonly pid: number;
  /** ISO time of the last sign of life. */
  readonly heartbeatAt: string;
}

/**
 * upload and stage: a write in progress. cleanup: a write that ended, but whose leftovers a
 * store could not remove yet (it was down); they are removed once it answers.
 */
export type DataWriteKind = 'upload' | 'stage' | 'cleanup';

export interface DataWrite {
  readonly imageId: string;
  readonly kind: DataWriteKind;
  readonly workerId: string;
}

/**
 * Which process is writing which image's data. A write whose process died is undone by
 * another process (or the same one restarted), so no image stays in `saving` forever.
 */
export interface DataWriteRegistry {
  heartbeat(worker: Omit<WorkerRecord, 'heartbeatAt'>): Promise<void>;
  removeWorker(workerId: string): Promise<void>;
  workers(): Promise<WorkerRecord[]>;
  /** Records that this worker now writes the image (replacing a stale record). */
  begin(write: DataWrite): Promise<void>;
  end(imageId: string): Promise<void>;
  /** The image's record as a cleanup that belongs to no worker (any process may do it). */
  leaveForCleanup(imageId: string): Promise<void>;
  get(imageId: string): Promise<DataWrite | null>;
  list(): Promise<DataWrite[]>;
}

export interface MetadataRepositories {
  readonly images: ImageRepository;
  readonly members: MemberRepository;
  readonly tasks: TaskRepository;
  readonly writes: DataWriteRegistry;
  /** Applies pending schema migrations; safe to run from several processes at once. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}
