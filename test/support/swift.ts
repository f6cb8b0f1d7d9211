/**
 * The OpenStack Swift the store suites run against: the one scripts/swift.sh starts, whose
 * proxy on 127.0.0.1:8080 serves the native API (tempauth, account AUTH_test) and the S3 API.
 *
 * Under CI (CI=true) an unreachable Swift fails the run instead of skipping.
 */
import { explain } from './errors.js';

/** Swift's version 1 auth URL (tempauth). */
export const SWIFT_AUTH_URL = (
  process.env.GLIMPSE_TEST_SWIFT_AUTH_URL ?? 'http://127.0.0.1:8080/auth/v1.0'
).replace(/\/+$/, '');

/** The tempauth user, an .admin of account AUTH_test, and its key. */
export const SWIFT_USER = 'test:tester';
export const SWIFT_KEY = 'testing';

/** The same proxy's S3 API (path-style bucket addressing only) and credentials. */
export const SWIFT_S3_ENDPOINT = new URL(SWIFT_AUTH_URL).origin;
export const SWIFT_S3_ACCESS_KEY = SWIFT_USER;
export const SWIFT_S3_SECRET_KEY = SWIFT_KEY;
export const SWIFT_S3_REGION = 'us-east-1';

export interface SwiftAvailability {
  /** Why the Swift suites cannot run here, or null when they can. */
  readonly skip: string | null;
}

export interface SwiftLogin {
  readonly token: string;
  /** The account URL, e.g. http://127.0.0.1:8080/v1/AUTH_test. */
  readonly storageUrl: string;
}

const PROBE_TIMEOUT_MS = 5_000;
const isCi = process.env.CI === 'true';

let probe: Promise<SwiftAvailability> | undefined;

/**
 * Whether Swift answers and hands out a token for the test user. Prints the reason for
 * skipping once; under CI a problem throws instead.
 */
export function swiftAvailability(): Promise<SwiftAvailability> {
  probe ??= findProblem().then((problem) => {
    if (problem && isCi) throw new Error(`${problem}; CI requires Swift`);
    if (problem) process.stdout.write(`# skipping Swift suites: ${problem}\n`);
    return { skip: problem };
  });
  return probe;
}

async function findProblem(): Promise<string | null> {
  try {
    await swiftLogin();
    return null;
  } catch (error) {
    return (
      `Swift at ${SWIFT_AUTH_URL} does not hand out tokens (${explain(error)}); ` +
      'start it with scripts/swift.sh start'
    );
  }
}

/** Logs the test user in with tempauth. */
export async function swiftLogin(): Promise<SwiftLogin> {
  const response = await fetch(SWIFT_AUTH_URL, {
    headers: { 'x-auth-user': SWIFT_USER, 'x-auth-key': SWIFT_KEY },
    signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
  });
  await response.arrayBuffer();
  const token = response.headers.get('x-auth-token');
  const storageUrl = response.headers.get('x-storage-url');
  if (response.status !== 200 || !token || !storageUrl) {
    throw new Error(`answered ${response.status} without a token and storage URL`);
  }
  return { token, storageUrl: storageUrl.replace(/\/+$/, '') };
}

/** Names in a container starting with `prefix` (none when the container is missing). */
export async function swiftObjectNames(
  container: string,
  prefix = '',
  login: SwiftLogin | null = null,
): Promise<string[]> {
  const { token, storageUrl } = login ?? (await swiftLogin());
  const query = new URLSearchParams({ format: 'json', prefix });
  const response = await fetch(`${storageUrl}/${encodeURIComponent(container)}?${query}`, {
    headers: { 'x-auth-token': token },
    signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
  });
  if (response.status === 404) return [];
  if (response.status !== 200) throw new Error(`listing ${container}: ${response.status}`);
  const entries = (await response.json()) as Array<{ name: string }>;
  return entries.map((entry) => entry.name);
}

/**
 * Deletes the containers and everything in them; missing ones are skipped. `login` is the
 * account's, when it is not the tempauth test account.
 */
export async function removeContainers(
  containers: readonly string[],
  login: SwiftLogin | null = null,
): Promise<void> {
  const account = login ?? (await swiftLogin());
  const { token, storageUrl } = account;
  const send = async (method: string, path: string) => {
    const response = await fetch(`${storageUrl}${path}`, {
      method,
      headers: { 'x-auth-token': token },
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    await response.arrayBuffer();
  };
  for (const container of containers) {
    const base = `/${encodeURIComponent(container)}`;
    for (let names = await swiftObjectNames(container, '', account); names.length > 0;) {
      for (const name of names) {
        await send('DELETE', `${base}/${name.split('/').map(encodeURIComponent).join('/')}`);
      }
      names = await swiftObjectNames(container, '', account);
    }
    await send('DELETE', base);
  }
}
