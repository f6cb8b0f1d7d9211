/**
 * Temporary files of the plugins. They sit beside the staged file so that the final rename is
 * atomic (same directory, same file system), and carry a marker in their name so that what a
 * killed process left behind can be found and removed later.
 */
import { randomBytes } from 'node:crypto';
import { readdir, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

const MARKER = 'plugin-tmp';

/** A fresh name beside `stagedPath`; `purpose` only makes leftovers easier to recognise. */
export function tempPathBeside(stagedPath: string, purpose: string): string {
  const nonce = randomBytes(6).toString('hex');
  return `${stagedPath}.${MARKER}.${purpose}.${nonce}`;
}

/** Removes every plugin temporary file of `stagedPath`; never throws. */
export async function removePluginLeftovers(stagedPath: string): Promise<void> {
  const dir = dirname(stagedPath);
  const prefix = `${basename(stagedPath)}.${MARKER}.`;
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    if (name.startsWith(prefix)) await rm(join(dir, name), { force: true }).catch(() => undefined);
  }
}

/** The size cap, when there is one worth enforcing. */
export function capOf(sizeCap: number): number {
  return Number.isFinite(sizeCap) && sizeCap >= 0 ? sizeCap : Number.MAX_SAFE_INTEGER;
}
