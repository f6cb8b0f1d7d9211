/**
 * Access rules for image operations, with upstream Glance's secure-RBAC, project-scoped
 * defaults. The target's project is the image owner; `memberId` is set when the caller's
 * project is a member of the (shared) image.
 */
import type { RequestContext } from './context.js';
import { hasRole } from './context.js';
import { ForbiddenError } from './errors.js';

export interface PolicyTarget {
  readonly owner: string | null;
  readonly visibility?: string;
  readonly memberId?: string | null;
}

type Rule = (context: RequestContext, target: PolicyTarget) => boolean;

const isAdmin: Rule = (context) => hasRole(context, 'admin');

const projectMember: Rule = (context, target) =>
  hasRole(context, 'member') && context.projectId !== null && context.projectId === target.owner;

const projectReader: Rule = (context, target) =>
  hasRole(context, 'reader') && context.projectId !== null && context.projectId === target.owner;

/** The caller's project owns the image, is a member of it, or the image is open to all. */
const canReach: Rule = (context, target) =>
  (context.projectId !== null && context.projectId === target.owner) ||
  (target.memberId !== undefined && target.memberId !== null) ||
  ['public', 'community', 'shared'].includes(target.visibility ?? '');

const anyOf =
  (...rules: Rule[]): Rule =>
  (context, target) =>
    rules.some((rule) => rule(context, target));

const DEFAULT_RULES = {
  add_image: anyOf(isAdmin, projectMember),
  get_images: anyOf(isAdmin, projectReader),
  get_image: anyOf(isAdmin, (c, t) => hasRole(c, 'reader') && canReach(c, t)),
  modify_image: anyOf(isAdmin, projectMember),
  publicize_image: isAdmin,
  communitize_image: anyOf(isAdmin, projectMember),
  delete_image: anyOf(isAdmin, projectMember),
  upload_image: anyOf(isAdmin, projectMember),
  download_image: anyOf(isAdmin, (c, t) => hasRole(c, 'member') && canReach(c, t)),
  deactivate: anyOf(isAdmin, projectMember),
  reactivate: anyOf(isAdmin, projectMember),
} satisfies Record<string, Rule>;

export type PolicyAction = keyof typeof DEFAULT_RULES;

export class Policy {
  allows(action: PolicyAction, context: RequestContext, target: PolicyTarget): boolean {
    return DEFAULT_RULES[action](context, target);
  }

  enforce(action: PolicyAction, context: RequestContext, target: PolicyTarget): void {
    if (!this.allows(action, context, target)) {
      throw new ForbiddenError(`You are not authorized to complete ${action} action.`);
    }
  }
}
