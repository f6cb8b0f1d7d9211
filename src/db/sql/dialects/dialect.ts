import type { Dialect } from 'kysely';

export type DialectName = 'sqlite' | 'postgres';

/** A configured database engine: the Kysely dialect plus what differs between engines. */
export interface DatabaseDialect {
  readonly name: DialectName;
  readonly kysely: Dialect;
  /** Whether a driver error means a primary-key or unique constraint was violated. */
  isUniqueViolation(error: unknown): boolean;
  /** Releases engine resources not owned by Kysely (none for most engines). */
  close?(): Promise<void>;
}
