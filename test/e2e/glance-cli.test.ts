/**
 * Drives a real Glimpse process with the `glance` command of python-glanceclient, the client
 * operators actually use, and checks what it prints at each step of an image's life.
 *
 * Needs the Debian package python3-glanceclient (scripts/install-test-peers.sh installs it).
 * Without it the suite is skipped, except under CI (CI=true), where it fails.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { glanceSuite, pickShown, showTable, tableRows } from '../support/server-process.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Fields image-create sets or defaults, as glance prints them. */
const AS_CREATED: Readonly<Record<string, string>> = {
  name: 'cli-cirros',
  disk_format: 'qcow2',
  container_format: 'bare',
  os_distro: 'cirros',
  visibility: 'public',
  status: 'queued',
  protected: 'False',
  size: 'None',
  checksum: 'None',
};

const suite = await glanceSuite();
const { glance, glanceOk } = suite;

describe('the glance CLI against a running Glimpse', { skip: suite.skip }, () => {
  let imageId = '';
  let otherId = '';

  before(() => suite.startServer());
  after(() => suite.stopServer());

  it('image-create prints a queued image with the given fields', async () => {
    const shown = showTable(
      await glanceOk(
        'image-create',
        ...['--name', 'cli-cirros', '--disk-format', 'qcow2', '--container-format', 'bare'],
        ...['--property', 'os_distro=cirros', '--visibility', 'public'],
      ),
    );
    assert.match(shown.id ?? '', UUID);
    imageId = shown.id ?? '';
    assert.deepEqual(pickShown(shown, Object.keys(AS_CREATED)), AS_CREATED);
    assert.deepEqual(tagsOf(shown), []);

    // A second, private image that every filter below must leave out.
    const other = showTable(
      await glanceOk(
        'image-create',
        ...['--name', 'cli-other', '--disk-format', 'raw', '--container-format', 'bare'],
        ...['--property', 'os_distro=debian', '--visibility', 'private'],
      ),
    );
    otherId = other.id ?? '';
    assert.match(otherId, UUID);
    assert.notEqual(otherId, imageId);
  });

  it('image-list filters by property, visibility and tag', async () => {
    assert.deepEqual(await listIds(), [imageId, otherId].sort());
    assert.deepEqual(await listIds('--property-filter', 'os_distro=cirros'), [imageId]);
    assert.deepEqual(await listIds('--visibility', 'public'), [imageId]);
    assert.deepEqual(await listIds('--visibility', 'private'), [otherId]);
    assert.deepEqual(await listIds('--tag', 't1'), []);
  });

  it('image-show prints the stored image', async () => {
    const shown = showTable(await glanceOk('image-show', imageId));
    assert.equal(shown.id, imageId);
    assert.deepEqual(pickShown(shown, Object.keys(AS_CREATED)), AS_CREATED);
  });

  it('image-update renames, adds a property and removes another', async () => {
    const printed = showTable(
      await glanceOk(
        'image-update',
        ...['--name', 'cli-renamed', '--property', 'k=v', '--remove-property', 'os_distro'],
        imageId,
      ),
    );
    const shown = showTable(await glanceOk('image-show', imageId));
    for (const image of [printed, shown]) {
      assert.equal(image.name, 'cli-renamed');
      assert.equal(image.k, 'v');
      assert.equal(image.os_distro, undefined, 'os_distro should be gone');
      assert.equal(image.status, 'queued');
    }
    assert.deepEqual(await listIds('--property-filter', 'os_distro=cirros'), []);
    assert.deepEqual(await listIds('--property-filter', 'k=v'), [imageId]);
  });

  it('image-tag-update adds a tag that image-show and image-list see', async () => {
    const rows = tableRows(await glanceOk('image-tag-update', imageId, 't1'));
    assert.deepEqual(rows, [
      ['ID', 'Tags'],
      [imageId, "['t1']"],
    ]);
    assert.deepEqual(tagsOf(showTable(await glanceOk('image-show', imageId))), ['t1']);
    assert.deepEqual(await listIds('--tag', 't1'), [imageId]);
  });

  it('image-tag-delete removes the tag', async () => {
    const result = await glanceOk('image-tag-delete', imageId, 't1');
    assert.equal(result.trim(), '');
    assert.deepEqual(tagsOf(showTable(await glanceOk('image-show', imageId))), []);
    assert.deepEqual(await listIds('--tag', 't1'), []);
  });

  it('image-delete removes the image, after which image-show fails', async () => {
    await glanceOk('image-delete', imageId);

    const result = await glance('image-show', imageId);
    assert.notEqual(result.code, 0, `image-show of a deleted image succeeded:\n${result.stdout}`);
    assert.match(result.stderr, /404 Not Found/);
    assert.deepEqual(await listIds(), [otherId]);
  });
});

// ---------------------------------------------------------------------------------------------
// Reading glance's tables

/** glance prints tags as JSON (`["t1"]`) in property tables. */
function tagsOf(shown: Record<string, string>): string[] {
  return JSON.parse(shown.tags ?? 'null') as string[];
}

async function listIds(...filters: string[]): Promise<string[]> {
  const [header, ...rows] = tableRows(await glanceOk('image-list', ...filters));
  assert.deepEqual(header, ['ID', 'Name']);
  return rows.map(([id = '']) => id).sort();
}
