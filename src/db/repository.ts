/**
 * The metadata repository contract. Services depend on these interfaces only; the SQL
 * implementation behind them serves SQLite and PostgreSQL.
 */
import type { ImageRecord, ImageStatus } from '../domain/image.js';
import type { ImageListQuery } from '../domain/list-query.js';

/** Whose view of the image table a list call sees. */
export interface ListScope {
  readonly isAdmin: boolean;
  readonly projectId: string | null;
}

export interface ImageRepository {
  /** Stores a new image. Throws ConflictError when the id was ever used, deleted or not. */
  create(image: ImageRecord): Promise<void>;

  /** The image unless it does not exist or was deleted. */
  get(id: string): Promise<ImageRecord | null>;

  /** One page of images in the scope, after `marker` (already checked to be visible). */
  list(
    query: ImageListQuery,
    scope: ListScope,
    marker: ImageRecord | null,
  ): Promise<ImageRecord[]>;

  /**
   * Writes the differences between `previous` (as read) and `next`. When the status changes,
   * the write only happens if the stored status is still `previous.status`; returns false when
   * that condition failed or the image is gone, so racing state changes have one winner.
   */
  save(previous: ImageRecord, next: ImageRecord): Promise<boolean>;

  /** Marks the image deleted (its id stays taken) and drops its tags and properties. */
  delete(id: string, status: Extract<ImageStatus, 'deleted' | 'pending_delete'>): Promise<void>;

  /** Whether `projectId` has a membership row for the image, in any member status. */
  isMember(imageId: string, projectId: string): Promise<boolean>;
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

/** A server process, as recorded for recovering the work it leaves behind if it dies. */
export interface WorkerRecord {
  readonly id: string;
  readonly hostname: string;
  readonly pid: number;
  /** ISO time of the last sign of life. */
  readonly heartbeatAt: string;
}

export type DataWriteKind = 'upload' | 'stage';

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
  list(): Promise<DataWrite[]>;
}

export interface MetadataRepositories {
  readonly images: ImageRepository;
  readonly members: MemberRepository;
  readonly writes: DataWriteRegistry;
  /** Applies pending schema migrations; safe to run from several processes at once. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}
