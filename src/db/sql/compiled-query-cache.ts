import type { CompiledQuery } from 'kysely';

/** Shapes longer than this (long filter lists) are compiled each time rather than kept. */
const MAX_SHAPE_LENGTH = 4096;

/**
 * Compiled queries kept by a key that determines their SQL and parameters, the least recently
 * used dropped first once `capacity` are held.
 */
export class CompiledQueryCache<R> {
  readonly #capacity: number;
  readonly #queries = new Map<string, CompiledQuery<R>>();

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  get(shape: string, compile: () => CompiledQuery<R>): CompiledQuery<R> {
    const cached = this.#queries.get(shape);
    if (cached !== undefined) {
      // Map keeps insertion order: re-inserting marks it as the most recently used.
      this.#queries.delete(shape);
      this.#queries.set(shape, cached);
      return cached;
    }

    const compiled = compile();
    if (shape.length > MAX_SHAPE_LENGTH) return compiled;
    if (this.#queries.size >= this.#capacity) {
      const oldest = this.#queries.keys().next();
      if (!oldest.done) this.#queries.delete(oldest.value);
    }
    this.#queries.set(shape, compiled);
    return compiled;
  }
}
