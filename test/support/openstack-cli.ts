/**
 * Runs the `openstack` command of python3-openstackclient against a Glimpse process logged in
 * through the real Keystone.
 *
 * The catalog's image endpoint is not the test server's, and openstackclient has no
 * --os-image-url option; what it honours is `image_endpoint_override` in a clouds.yaml,
 * selected with OS_CLIENT_CONFIG_FILE and OS_CLOUD, while the credentials still come from the
 * OS_* variables.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { passwordLoginEnv } from './keystone.js';

export const OPENSTACK_MISSING =
  'the openstack command is not installed (Debian package python3-openstackclient)';

/** Why a suite that runs openstack is skipped: it is missing, outside CI (which needs it). */
export function openstackSkipReason(openstackPath: string | null): string | false {
  return openstackPath === null && process.env.CI !== 'true' ? OPENSTACK_MISSING : false;
}

/** A new temporary directory with a clouds.yaml whose cloud sends image calls to serverUrl. */
export async function cloudsDir(serverUrl: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'glimpse-openstack-'));
  const clouds = `clouds:\n  glimpse:\n    image_endpoint_override: ${serverUrl}\n`;
  await writeFile(join(dir, 'clouds.yaml'), clouds);
  return dir;
}

/** The environment of openstack as user of project, on the cloud of cloudsDir dir. */
export function openstackEnv(dir: string, user: string, project: string): NodeJS.ProcessEnv {
  return {
    ...passwordLoginEnv(user, project),
    OS_CLIENT_CONFIG_FILE: join(dir, 'clouds.yaml'),
    OS_CLOUD: 'glimpse',
    OS_IMAGE_API_VERSION: '2',
  };
}
