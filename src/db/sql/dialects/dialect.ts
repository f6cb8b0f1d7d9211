import type { Dialect, Expression, RawBuilder } from 'kysely';

export type DialectName = 'sqlite' | 'postgres';

/** A configured database engine: the Kysely dialect plus what differs between engines. */
export interface DatabaseDialect {
  readonly name: DialectName;
  readonly kysely: Dialect;
  /** Whether a driver error means a primary-key or unique constraint was violated. */
  isUniqueViolation(error: unknown): boolean;
  /**
   * Turns a subquery into a JSON array column, so that an image and its tags, properties
   * and locations come back in one query (one round trip on PostgreSQL).
   */
  jsonArrayFrom<O>(subquery: Expression<O>): RawBuilder<O[]>;
  /** Releases engine resources not owned by Kysely (none for most engines). */
  close?(): Promise<void>;
}
