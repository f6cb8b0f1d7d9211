/**
 * Image members: the projects a `shared` image is offered to, and whether they accepted it.
 * Upstream's quirks are kept: the owner adds and removes members but cannot set their status;
 * a member sees and changes only its own row; every lookup failure of one member is a 404.
 */
import type { RequestContext } from '../domain/context.js';
import {
  ForbiddenError,
  InvalidInputError,
  NotFoundError,
  QuotaExceededError,
} from '../domain/errors.js';
import type { ImageRecord } from '../domain/image.js';
import type { PolicyTarget } from '../domain/policy.js';
import type { MemberRecord, MemberRepository, MemberStatus } from '../db/repository.js';
import type { FoundImage, ImageAccess } from './image-access.js';

const STATUSES: readonly MemberStatus[] = ['pending', 'accepted', 'rejected'];

export class MemberService {
  readonly #access: ImageAccess;
  readonly #members: MemberRepository;
  /** Negative means unlimited, as in upstream. */
  readonly #quota: number;

  constructor(access: ImageAccess, members: MemberRepository, quota: number) {
    this.#access = access;
    this.#members = members;
    this.#quota = quota;
  }

  async add(context: RequestContext, imageId: string, memberId: string): Promise<MemberRecord> {
    const refused = `Not allowed to create members for image ${imageId}.`;
    const { target } = await this.#sharedImage(context, imageId, refused);
    this.#enforce('add_member', context, target, refused);

    const count = await this.#members.count(imageId);
    if (this.#quota >= 0 && count + 1 > this.#quota) {
      throw new QuotaExceededError(
        `Image member limit exceeded for image ${imageId}: attempted ${count + 1}, ` +
          `maximum ${this.#quota}`,
      );
    }
    return this.#members.add(imageId, memberId);
  }

  async list(context: RequestContext, imageId: string): Promise<MemberRecord[]> {
    const refused = `Not allowed to list members for image ${imageId}`;
    const { image, target } = await this.#sharedImage(
      context,
      imageId,
      `${refused}: Only shared images have members.`,
    );
    this.#enforce('get_members', context, target, `${refused}.`);

    const members = await this.#members.list(imageId);
    return members.filter((member) => this.#mayView(context, image, member.member_id));
  }

  async show(context: RequestContext, imageId: string, memberId: string): Promise<MemberRecord> {
    const found = await this.#access.find(context, imageId, `Image ${imageId} not found.`);
    if (found.image.visibility !== 'shared') throw memberNotFound(imageId, memberId);
    return this.#lookup(context, found, memberId);
  }

  async setStatus(
    context: RequestContext,
    imageId: string,
    memberId: string,
    status: unknown,
  ): Promise<MemberRecord> {
    const refused = `Not allowed to update members for image ${imageId}.`;
    const found = await this.#sharedImage(context, imageId, refused);
    await this.#lookup(context, found, memberId);
    this.#enforce('modify_member', context, found.target, refused);

    // As upstream, the value is checked only once the caller is known to be allowed.
    if (!STATUSES.includes(status as MemberStatus)) {
      throw new InvalidInputError(
        `Incorrect request: Invalid status: ${String(status)} for status`,
      );
    }
    return this.#members.setStatus(imageId, memberId, status as MemberStatus);
  }

  async remove(context: RequestContext, imageId: string, memberId: string): Promise<void> {
    const refused = `Not allowed to delete members for image ${imageId}.`;
    const found = await this.#sharedImage(context, imageId, refused);
    await this.#lookup(context, found, memberId);
    this.#enforce('delete_member', context, found.target, refused);
    await this.#members.remove(imageId, memberId);
  }

  async #sharedImage(context: RequestContext, imageId: string, refused: string) {
    const notFound = `Image ${imageId} not found.`;
    const found = await this.#access.findVisible(context, imageId, notFound);
    if (found.image.visibility !== 'shared') throw new ForbiddenError(refused);
    return found;
  }

  /** One membership as the caller may see it; anything else is "not found". */
  async #lookup(context: RequestContext, found: FoundImage, memberId: string) {
    if (!this.#access.policy.allows('get_member', context, found.target)) {
      throw memberNotFound(found.image.id, memberId);
    }
    const member = this.#mayView(context, found.image, memberId)
      ? await this.#members.get(found.image.id, memberId)
      : null;
    if (!member) throw memberNotFound(found.image.id, memberId);
    return member;
  }

  /** The owner (and admins) see every member; a member only itself. */
  #mayView(context: RequestContext, image: ImageRecord, memberId: string): boolean {
    if (context.isAdmin || image.owner === context.projectId) return true;
    return memberId === context.projectId;
  }

  #enforce(
    action: 'add_member' | 'get_members' | 'modify_member' | 'delete_member',
    context: RequestContext,
    target: PolicyTarget,
    message: string,
  ): void {
    if (!this.#access.policy.allows(action, context, target)) throw new ForbiddenError(message);
  }
}

function memberNotFound(imageId: string, memberId: string): NotFoundError {
  return new NotFoundError(`${memberId} not found in the member list of the image ${imageId}.`);
}
