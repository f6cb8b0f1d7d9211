/**
 * The versions document and upstream's version negotiation, done by rewriting the URL before
 * routing: `/v2.3/images` and `Accept: application/vnd.openstack.images-v2` both reach the
 * `/v2/...` routes, `/versions` gets the document with 200, and anything else gets it with 300.
 */
import type { IncomingMessage } from 'node:http';

/** API versions whose features this server implements, oldest first; the last is CURRENT. */
export const IMPLEMENTED_VERSIONS = [
  '2.0',
  '2.1',
  '2.2',
  '2.3',
  '2.4',
  '2.5',
  '2.6',
  '2.7',
] as const;

const ACCEPTED_PREFIXES = new Set(['v2', ...IMPLEMENTED_VERSIONS.map((v) => `v${v}`)]);
const MEDIA_TYPE_PREFIX = 'application/vnd.openstack.images-';

export const VERSIONS_PATH = '/versions';
export const MULTIPLE_CHOICES_PATH = '/.multiple-choices';
const UNVERSIONED_PATHS = new Set(['/healthcheck']);

export function versionsDocument(baseUrl: string) {
  const links = [{ rel: 'self', href: `${baseUrl}/v2/` }];
  const newestFirst = [...IMPLEMENTED_VERSIONS].reverse();
  return {
    versions: newestFirst.map((version, index) => ({
      id: `v${version}`,
      status: index === 0 ? 'CURRENT' : 'SUPPORTED',
      links,
    })),
  };
}

export function negotiateUrl(request: IncomingMessage): string {
  const url = request.url ?? '/';
  const queryStart = url.indexOf('?');
  const path = queryStart === -1 ? url : url.slice(0, queryStart);
  const query = queryStart === -1 ? '' : url.slice(queryStart);
  const [first = '', ...rest] = path.split('/').slice(1);

  if (first === 'versions') return VERSIONS_PATH;
  if (UNVERSIONED_PATHS.has(path)) return url;

  const accept = request.headers.accept ?? '';
  if (accept.startsWith(MEDIA_TYPE_PREFIX)) {
    const version = accept.slice(MEDIA_TYPE_PREFIX.length).split(/[;,\s]/)[0] ?? '';
    return ACCEPTED_PREFIXES.has(version) ? `/v2${path}${query}` : MULTIPLE_CHOICES_PATH;
  }
  if (ACCEPTED_PREFIXES.has(first)) return `/v2/${rest.join('/')}${query}`;
  return MULTIPLE_CHOICES_PATH;
}
