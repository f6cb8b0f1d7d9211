/**
 * Applies property protections to images: hides properties the caller may not read, and
 * refuses creating, changing or removing properties the caller may not touch. Without a
 * protections file every property is open to everyone who may change the image.
 */
import type { RequestContext } from '../domain/context.js';
import { ForbiddenError } from '../domain/errors.js';
import type { ImageRecord } from '../domain/image.js';
import type { PropertyOperation, PropertyProtections } from '../domain/property-protections.js';

export class PropertyGuard {
  constructor(private readonly protections: PropertyProtections | null) {}

  /** The image as the caller may see it. */
  readable(context: RequestContext, image: ImageRecord): ImageRecord {
    if (!this.protections) return image;
    const properties = Object.fromEntries(
      Object.entries(image.properties).filter(([key]) => this.#allows(key, 'read', context)),
    );
    return { ...image, properties };
  }

  checkCreate(context: RequestContext, properties: Record<string, string>): void {
    for (const key of Object.keys(properties)) this.#require(key, 'create', context);
  }

  /**
   * Checks what a patch of the readable view did to each property, and returns the image to
   * store: the patched readable properties plus the unreadable ones, untouched.
   */
  mergePatch(
    context: RequestContext,
    stored: ImageRecord,
    seen: ImageRecord,
    patched: ImageRecord,
  ): ImageRecord {
    if (!this.protections) return patched;

    for (const [key, value] of Object.entries(patched.properties)) {
      if (!(key in seen.properties)) this.#require(key, 'create', context);
      else if (seen.properties[key] !== value) this.#require(key, 'update', context);
    }
    for (const key of Object.keys(seen.properties)) {
      if (!(key in patched.properties)) this.#require(key, 'delete', context);
    }

    const hidden = Object.entries(stored.properties).filter(([key]) => !(key in seen.properties));
    return { ...patched, properties: { ...Object.fromEntries(hidden), ...patched.properties } };
  }

  #allows(key: string, operation: PropertyOperation, context: RequestContext): boolean {
    return this.protections?.allows(key, operation, context) ?? true;
  }

  #require(key: string, operation: PropertyOperation, context: RequestContext): void {
    if (!this.#allows(key, operation, context)) {
      throw new ForbiddenError(`Attribute '${key}' is reserved.`);
    }
  }
}
