import type { RequestContext } from './context.js';
import type { ImageRecord } from './image.js';

/**
 * Whether the caller may know the image exists. Shared images are visible to members in any
 * membership status (pending, accepted or rejected): acceptance only affects default lists.
 */
export function isImageVisible(
  context: RequestContext,
  image: Pick<ImageRecord, 'owner' | 'visibility'>,
  isMember: boolean,
): boolean {
  if (context.isAdmin || image.owner === null) return true;
  if (image.visibility === 'public' || image.visibility === 'community') return true;
  if (context.projectId !== null && image.owner === context.projectId) return true;
  return image.visibility === 'shared' && isMember;
}
