/**
 * Finding an image on behalf of a caller: the visibility test, the membership lookup and the
 * policy target, shared by every image-scoped use case.
 */
import type { RequestContext } from '../domain/context.js';
import { NotFoundError } from '../domain/errors.js';
import type { ImageRecord } from '../domain/image.js';
import type { Policy, PolicyAction, PolicyTarget } from '../domain/policy.js';
import { isImageVisible } from '../domain/visibility.js';
import type { ImageRepository, MarkerFacts } from '../db/repository.js';

/**
 * Stored ids are always UUIDs, so any other path id cannot exist and is not looked up (which
 * also keeps NUL bytes and oversized strings away from the database).
 */
const ID_SHAPE = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;

export interface FoundImage {
  readonly image: ImageRecord;
  readonly target: PolicyTarget;
}

export class ImageAccess {
  constructor(
    readonly repo: ImageRepository,
    readonly policy: Policy,
  ) {}

  /** Whether an image could have this id (only such ids are passed to the database). */
  mayExist(id: string): boolean {
    return ID_SHAPE.test(id);
  }

  /** The image if it exists, whether or not the caller may see it. */
  async load(id: string): Promise<ImageRecord | null> {
    return this.mayExist(id) ? this.repo.get(id) : null;
  }

  /** The image's own columns, without tags, properties and locations (see getColumns). */
  async loadColumns(id: string): Promise<ImageRecord | null> {
    return this.mayExist(id) ? this.repo.getColumns(id) : null;
  }

  /**
   * Loads an image for an image-scoped call: missing, invisible, or failing the read policy
   * all give NotFoundError with `notFoundMessage`, so callers cannot probe for images.
   */
  async find(
    context: RequestContext,
    id: string,
    notFoundMessage = `No image found with ID ${id}`,
  ): Promise<FoundImage> {
    const image = await this.load(id);
    const member = image ? await this.isMember(context, image) : false;
    if (!image || !isImageVisible(context, image, member)) {
      throw new NotFoundError(notFoundMessage);
    }
    const target = this.target(context, image, member);
    if (!this.policy.allows('get_image', context, target))
      throw new NotFoundError(notFoundMessage);
    return { image, target };
  }

  /**
   * Loads an image the caller can see, without the read policy: upstream's member calls
   * look images up this way and then refuse non-shared images before any policy check.
   */
  async findVisible(context: RequestContext, id: string, notFoundMessage: string) {
    const image = await this.load(id);
    const member = image ? await this.isMember(context, image) : false;
    if (!image || !isImageVisible(context, image, member)) {
      throw new NotFoundError(notFoundMessage);
    }
    return { image, target: this.target(context, image, member) };
  }

  enforce(action: PolicyAction, context: RequestContext, target: PolicyTarget): void {
    this.policy.enforce(action, context, target);
  }

  async isMember(context: RequestContext, image: MarkerFacts): Promise<boolean> {
    if (context.projectId === null || image.visibility !== 'shared') return false;
    if (image.owner === context.projectId) return false;
    return this.repo.isMember(image.id, context.projectId);
  }

  target(context: RequestContext, image: ImageRecord, member: boolean): PolicyTarget {
    return {
      owner: image.owner,
      visibility: image.visibility,
      memberId: member ? context.projectId : null,
    };
  }
}
