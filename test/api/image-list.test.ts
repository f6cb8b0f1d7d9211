import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Kysely, type Updateable } from 'kysely';
import type { LightMyRequestResponse } from 'fastify';

import { openDialect } from '../../src/db/sql/database.js';
import type { ImagesTable, Tables } from '../../src/db/sql/tables.js';
import type { OptionName } from '../../src/config/schema.js';
import { asProject, createImage, json, startTestApp, type TestApp } from '../support/app.js';
import { testDatabases, type TestDatabase } from '../support/databases.js';

type Headers = Record<string, string>;
type Image = Record<string, unknown> & { id: string; name: string | null };

interface ImageList {
  images: Image[];
  first: string;
  next?: string;
  schema: string;
}

const ALICE = asProject('alice');
const BOB = asProject('bob');
const CAROL = asProject('carol');
const DAVE = asProject('dave');
const ADMIN = asProject('admin-project', 'admin');

/** A client-chosen image id; ids sort in the order of `n`. */
const idOf = (n: number) => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** One app on a database of its own, and a second connection to write what the API cannot. */
class Harness {
  constructor(
    readonly t: TestApp,
    readonly db: Kysely<Tables>,
  ) {}

  create(body: Record<string, unknown>, headers: Headers = ALICE): Promise<Image> {
    return createImage<Image>(this.t, body, headers);
  }

  async delete(id: string, headers: Headers = ALICE): Promise<void> {
    const response = await this.t.request({ method: 'DELETE', url: `/v2/images/${id}`, headers });
    assert.equal(response.statusCode, 204, response.body);
  }

  /** GET of a list URL: a query string, or a whole `/v2/images?...` link. */
  get(query: string, headers: Headers = ALICE): Promise<LightMyRequestResponse> {
    const url = query.startsWith('/') ? query : `/v2/images${query === '' ? '' : `?${query}`}`;
    return this.t.request({ method: 'GET', url, headers });
  }

  async list(query: string, headers: Headers = ALICE): Promise<ImageList> {
    const response = await this.get(query, headers);
    assert.equal(response.statusCode, 200, `${query}: ${response.body}`);
    return json<ImageList>(response);
  }

  async setColumns(id: string, values: Updateable<ImagesTable>): Promise<void> {
    const result = await this.db
      .updateTable('images')
      .set(values)
      .where('id', '=', id)
      .executeTakeFirst();
    assert.equal(result.numUpdatedRows, 1n);
  }

  async addMember(imageId: string, member: string, status: string, deleted = 0): Promise<void> {
    const now = new Date().toISOString();
    await this.db
      .insertInto('image_members')
      .values({
        image_id: imageId,
        member,
        status,
        can_share: 0,
        created_at: now,
        updated_at: now,
        deleted,
      })
      .execute();
  }
}

/** Registers hooks that start a fresh app for the enclosing suite; call the result in tests. */
function useHarness(
  database: TestDatabase,
  options: Partial<Record<OptionName, unknown>> = {},
): () => Harness {
  let harness: Harness | undefined;
  before(async () => {
    const t = await startTestApp(database, options);
    const dialect = await openDialect({ url: t.databaseUrl, dataDir: t.dataDir, poolSize: 1 });
    harness = new Harness(t, new Kysely<Tables>({ dialect: dialect.kysely }));
  });
  after(async () => {
    await harness?.db.destroy();
    await harness?.t.close();
  });
  return () => {
    assert.ok(harness, 'the suite has not started');
    return harness;
  };
}

const sorted = (values: Array<string | null>) =>
  values.map((value) => value ?? '(unnamed)').sort();

const namesOf = (list: ImageList) => sorted(list.images.map((image) => image.name));

/** A row of the pagination fixture, with what upstream orders by. */
interface Row {
  id: string;
  name: string | null;
  size: number | null;
  createdAt: string;
  tags: string[];
}

type OrderKey = 'name' | 'size' | 'created_at' | 'id';

/** The order upstream gives, NULL names as '' and NULL sizes as 0; the keys include ties. */
function expectedOrder(rows: Row[], keys: Array<[OrderKey, 'asc' | 'desc']>): string[] {
  const valueOf = (row: Row, key: OrderKey): string | number => {
    if (key === 'name') return row.name ?? '';
    if (key === 'size') return row.size ?? 0;
    return key === 'id' ? row.id : row.createdAt;
  };
  return [...rows]
    .sort((a, b) => {
      for (const [key, dir] of keys) {
        const left = valueOf(a, key);
        const right = valueOf(b, key);
        if (left !== right) return (left < right ? -1 : 1) * (dir === 'asc' ? 1 : -1);
      }
      return 0;
    })
    .map((row) => row.id);
}

for (const database of await testDatabases()) {
  describe(`image list API on ${database.name}`, { skip: database.skip ?? false }, () => {
    describe('visibility', () => {
      const harness = useHarness(database);
      const ids = new Map<string, string>();

      before(async () => {
        const h = harness();
        const make = async (name: string, body: Record<string, unknown>, headers: Headers) => {
          const image = await h.create({ name, ...body }, headers);
          ids.set(name, image.id);
          return image.id;
        };

        await make('a-public', { owner: 'alice', visibility: 'public' }, ADMIN);
        await make('a-private', { visibility: 'private' }, ALICE);
        await make('a-shared', { visibility: 'shared' }, ALICE);
        await make('a-community', { visibility: 'community' }, ALICE);
        await make('a-hidden', { visibility: 'private', os_hidden: true }, ALICE);
        const killed = await make('a-killed', { visibility: 'private' }, ALICE);
        await h.setColumns(killed, { status: 'killed' });
        await h.delete(await make('a-deleted', { visibility: 'private' }, ALICE));

        await make('b-public', { owner: 'bob', visibility: 'public' }, ADMIN);
        await make('b-private', { visibility: 'private' }, BOB);
        await make('b-community', { visibility: 'community' }, BOB);
        await make('b-shared-unshared', { visibility: 'shared' }, BOB);
        for (const status of ['accepted', 'pending', 'rejected']) {
          await h.addMember(await make(`b-shared-${status}`, {}, BOB), 'alice', status);
        }
        await h.addMember(await make('b-shared-carol', {}, BOB), 'carol', 'accepted');
        await h.addMember(await make('b-shared-revoked', {}, BOB), 'alice', 'accepted', 1);
        const privateMember = await make('b-private-member', { visibility: 'private' }, BOB);
        await h.addMember(privateMember, 'alice', 'accepted');
        const hiddenPublic = { owner: 'bob', visibility: 'public', os_hidden: true };
        await make('b-hidden-public', hiddenPublic, ADMIN);
        await h.addMember(
          await make('b-hidden-shared', { os_hidden: true }, BOB),
          'alice',
          'accepted',
        );

        const deletedPublic = await make(
          'b-deleted-public',
          { owner: 'bob', visibility: 'public' },
          ADMIN,
        );
        await h.delete(deletedPublic, ADMIN);
        const deletedShared = await make('b-deleted-shared', {}, BOB);
        await h.addMember(deletedShared, 'alice', 'accepted');
        await h.delete(deletedShared, BOB);

        await make('admin-community', { visibility: 'community' }, ADMIN);
      });

      const expectNames = async (query: string, headers: Headers, expected: string[]) => {
        const list = await harness().list(query, headers);
        assert.deepEqual(
          namesOf(list),
          sorted(expected),
          `${query} as ${headers['x-project-id']}`,
        );
      };

      const ALICE_OWN = ['a-public', 'a-private', 'a-shared', 'a-community'];
      const ALICE_DEFAULT = [...ALICE_OWN, 'b-public', 'b-shared-accepted'];
      const B_SHARED = ['accepted', 'pending', 'rejected', 'unshared', 'carol', 'revoked'].map(
        (suffix) => `b-shared-${suffix}`,
      );
      const ADMIN_DEFAULT = [
        'a-public',
        'a-private',
        'a-shared',
        'b-public',
        'b-private',
        'b-private-member',
        ...B_SHARED,
        'admin-community',
      ];
      const COMMUNITY = ['a-community', 'b-community', 'admin-community'];

      it('lists own images of every visibility, public ones and accepted shares', async () => {
        await expectNames('', ALICE, ALICE_DEFAULT);
      });

      it('lists other projects\u2019 community images only when asked for', async () => {
        await expectNames('visibility=community', ALICE, COMMUNITY);
        await expectNames('visibility=all', ALICE, [
          ...ALICE_DEFAULT,
          'b-community',
          'admin-community',
        ]);
      });

      it('narrows to one visibility within what the caller may see', async () => {
        await expectNames('visibility=public', ALICE, ['a-public', 'b-public']);
        await expectNames('visibility=private', ALICE, ['a-private']);
        await expectNames('visibility=shared', ALICE, ['a-shared', 'b-shared-accepted']);
        await expectNames('visibility=private', DAVE, []);
        await expectNames('visibility=shared', DAVE, []);
      });

      it('lists shared images through memberships whose status matches member_status', async () => {
        const others = ['b-public'];
        await expectNames('member_status=accepted', ALICE, ALICE_DEFAULT);
        await expectNames('member_status=pending', ALICE, [
          ...ALICE_OWN,
          ...others,
          'b-shared-pending',
        ]);
        await expectNames('member_status=rejected', ALICE, [
          ...ALICE_OWN,
          ...others,
          'b-shared-rejected',
        ]);
        await expectNames('member_status=all', ALICE, [
          ...ALICE_OWN,
          ...others,
          'b-shared-accepted',
          'b-shared-pending',
          'b-shared-rejected',
        ]);
        await expectNames('visibility=shared&member_status=all', ALICE, [
          'a-shared',
          'b-shared-accepted',
          'b-shared-pending',
          'b-shared-rejected',
        ]);
        await expectNames('visibility=all&member_status=pending', ALICE, [
          ...ALICE_OWN,
          ...others,
          'b-shared-pending',
          'b-community',
          'admin-community',
        ]);
      });

      it('never lists other projects\u2019 private images, membership or not', async () => {
        for (const query of ['', 'visibility=all', 'visibility=private', 'member_status=all']) {
          const names = namesOf(await harness().list(query, ALICE));
          assert.ok(!names.includes('b-private'), query);
          assert.ok(!names.includes('b-private-member'), query);
          assert.ok(!names.includes('b-shared-unshared'), query);
          assert.ok(!names.includes('b-shared-carol'), query);
          assert.ok(!names.includes('b-shared-revoked'), query);
        }
      });

      it('shows owners all their images and members only their shares', async () => {
        await expectNames('', BOB, [
          'a-public',
          'b-public',
          'b-private',
          'b-private-member',
          'b-community',
          ...B_SHARED,
        ]);
        await expectNames('', CAROL, ['a-public', 'b-public', 'b-shared-carol']);
        await expectNames('', DAVE, ['a-public', 'b-public']);
      });

      it('shows admins everything but other projects\u2019 community images by default', async () => {
        await expectNames('', ADMIN, ADMIN_DEFAULT);
        await expectNames('member_status=rejected', ADMIN, ADMIN_DEFAULT);
        await expectNames('visibility=community', ADMIN, COMMUNITY);
        await expectNames('visibility=all', ADMIN, [
          ...ADMIN_DEFAULT,
          'a-community',
          'b-community',
        ]);
        await expectNames('visibility=private', ADMIN, [
          'a-private',
          'b-private',
          'b-private-member',
        ]);
        await expectNames('visibility=shared', ADMIN, ['a-shared', ...B_SHARED]);
      });

      it('treats a request without identity headers as an admin of no project', async () => {
        await expectNames(
          '',
          {},
          ADMIN_DEFAULT.filter((name) => name !== 'admin-community'),
        );
      });

      it('excludes hidden images by default and lists only them with os_hidden=true', async () => {
        await expectNames('os_hidden=false', ALICE, ALICE_DEFAULT);
        await expectNames('os_hidden=true', ALICE, [
          'a-hidden',
          'b-hidden-public',
          'b-hidden-shared',
        ]);
        await expectNames('os_hidden=TRUE&visibility=public', ALICE, ['b-hidden-public']);
        await expectNames('os_hidden=true', CAROL, ['b-hidden-public']);
        await expectNames('os_hidden=true', ADMIN, [
          'a-hidden',
          'b-hidden-public',
          'b-hidden-shared',
        ]);
      });

      it('lists for project readers and refuses projects without a reader role', async () => {
        await expectNames('', asProject('alice', 'reader'), ALICE_DEFAULT);
        const response = await harness().get('', asProject('alice', 'observer'));
        assert.equal(response.statusCode, 403, response.body);
      });

      it('accepts as marker any image the caller may see, listed or not', async () => {
        // In both directions: the marker is checked whether or not any image follows it.
        const markerStatus = async (name: string, headers: Headers) => {
          const id = ids.get(name) ?? assert.fail(`no image named ${name}`);
          const [down, up] = await Promise.all(
            ['desc', 'asc'].map((dir) => harness().get(`marker=${id}&sort_dir=${dir}`, headers)),
          );
          assert.equal(down?.statusCode, up?.statusCode, `${name} in both directions`);
          return down?.statusCode;
        };
        for (const name of ['a-private', 'a-hidden', 'b-public', 'b-community']) {
          assert.equal(await markerStatus(name, ALICE), 200, name);
        }
        // A membership in any status makes a shared image visible, unless it was removed.
        for (const name of ['b-shared-accepted', 'b-shared-pending', 'b-shared-rejected']) {
          assert.equal(await markerStatus(name, ALICE), 200, name);
        }
        for (const name of [
          'b-private',
          'b-shared-unshared',
          'b-shared-carol',
          'b-shared-revoked',
        ]) {
          assert.equal(await markerStatus(name, ALICE), 403, name);
        }
        assert.equal(await markerStatus('b-private', ADMIN), 200);
        assert.equal(await markerStatus('a-deleted', ALICE), 400);
      });

      it('never lists deleted or killed images', async () => {
        const everything = [
          '',
          'visibility=all',
          'visibility=all&member_status=all',
          'status=killed',
          'deleted=true',
          'os_hidden=true',
        ];
        for (const headers of [ALICE, BOB, ADMIN]) {
          for (const query of everything) {
            const names = namesOf(await harness().list(`${query}&visibility=all`, headers));
            for (const name of ['a-killed', 'a-deleted', 'b-deleted-public', 'b-deleted-shared']) {
              assert.ok(!names.includes(name), `${name} in ${query}`);
            }
          }
        }
        await expectNames('status=killed&visibility=all', ADMIN, []);
        await expectNames('deleted=true&visibility=all', ADMIN, [
          ...ADMIN_DEFAULT,
          'a-community',
          'b-community',
        ]);
      });
    });

    describe('filters', () => {
      const harness = useHarness(database);
      const ids = new Map<string, string>();
      let unnamed = '';
      let mid = '';
      const id = (name: string) => ids.get(name) ?? assert.fail(`no image named ${name}`);

      before(async () => {
        const h = harness();
        const make = async (body: Record<string, unknown>, headers: Headers = ALICE) => {
          const image = await h.create(body, headers);
          if (image.name !== null) ids.set(image.name, image.id);
          return image.id;
        };

        await make({
          name: 'alpha',
          container_format: 'bare',
          disk_format: 'qcow2',
          tags: ['x', 'y'],
          os_distro: 'ubuntu',
          min_ram: 512,
          protected: true,
        });
        const beta = await make({
          name: 'beta',
          container_format: 'bare',
          disk_format: 'raw',
          tags: ['x'],
          os_distro: 'fedora',
        });
        await h.setColumns(beta, { status: 'active', size: 100 });
        const glass = await make({
          name: 'glass, darkly',
          container_format: 'ovf',
          disk_format: 'vmdk',
          tags: ['y'],
          min_ram: 512,
        });
        await h.setColumns(glass, { status: 'active', size: 2000 });
        await make({ name: 'foo:bar' });
        unnamed = await make({ tags: ['unnamed'] });
        await make(
          { name: 'bobs', owner: 'bob', visibility: 'public', os_distro: 'ubuntu' },
          ADMIN,
        );

        await sleep(15);
        mid = new Date().toISOString();
        await sleep(15);
        await make({ name: 'late' });
        await sleep(5);
        const patched = await h.t.request({
          method: 'PATCH',
          url: `/v2/images/${beta}`,
          headers: { ...ALICE, 'content-type': 'application/openstack-images-v2.1-json-patch' },
          payload: JSON.stringify([{ op: 'add', path: '/patched', value: 'yes' }]),
        });
        assert.equal(patched.statusCode, 200, patched.body);
      });

      const ALL = ['alpha', 'beta', 'glass, darkly', 'foo:bar', '(unnamed)', 'bobs', 'late'];
      const expectNames = async (query: string, expected: string[]) => {
        const list = await harness().list(query);
        assert.deepEqual(namesOf(list), [...expected].sort(), query);
      };
      const but = (...names: string[]) => ALL.filter((name) => !names.includes(name));
      const enc = encodeURIComponent;

      it('lists entries as GET shows them, with the list links and schema', async () => {
        const list = await harness().list('name=alpha');
        const shown = await harness().t.request({
          method: 'GET',
          url: `/v2/images/${id('alpha')}`,
          headers: ALICE,
        });
        assert.deepEqual(list.images, [json<Image>(shown)]);
        assert.equal(list.first, '/v2/images?name=alpha');
        assert.equal(list.schema, '/v2/schemas/images');
        assert.equal(list.next, undefined);
        await expectNames('', ALL);
      });

      it('matches name exactly, with eq: and with in: lists', async () => {
        await expectNames('name=alpha', ['alpha']);
        await expectNames('name=Alpha', []);
        await expectNames('name=alph', []);
        await expectNames('name=eq:alpha', ['alpha']);
        await expectNames('name=eq:foo:bar', ['foo:bar']);
        await expectNames('name=in:alpha,beta,nope', ['alpha', 'beta']);
        await expectNames(`name=${enc('in:"glass, darkly",beta')}`, ['beta', 'glass, darkly']);
        await expectNames(`name=${enc('in:glass, darkly')}`, []);
        await expectNames(`name=${enc('glass, darkly')}`, ['glass, darkly']);
      });

      it('matches nothing with an empty in: list', async () => {
        await expectNames('name=in:', []);
        await expectNames('id=in:', []);
        await expectNames('status=in:', []);
      });

      it('matches id, status and the formats', async () => {
        await expectNames(`id=${id('beta')}`, ['beta']);
        await expectNames(`id=in:${id('alpha')},${id('late')},${idOf(1)}`, ['alpha', 'late']);
        await expectNames(`id=${unnamed}`, ['(unnamed)']);
        await expectNames('status=active', ['beta', 'glass, darkly']);
        await expectNames('status=queued', but('beta', 'glass, darkly'));
        await expectNames('status=in:active,queued', ALL);
        await expectNames('container_format=ovf', ['glass, darkly']);
        await expectNames('container_format=bare', ['alpha', 'beta']);
        await expectNames('disk_format=in:raw,vmdk', ['beta', 'glass, darkly']);
        await expectNames('disk_format=floppy', []);
      });

      it('matches owner within the visible images', async () => {
        await expectNames('owner=bob', ['bobs']);
        await expectNames('owner=alice', but('bobs'));
        await expectNames('owner=nobody', []);
      });

      it('requires every tag given', async () => {
        await expectNames('tag=x', ['alpha', 'beta']);
        await expectNames('tag=y', ['alpha', 'glass, darkly']);
        await expectNames('tag=x&tag=y', ['alpha']);
        await expectNames('tag=x&tag=unnamed', []);
        await expectNames('tag=z', []);
      });

      it('filters on protected', async () => {
        await expectNames('protected=true', ['alpha']);
        await expectNames('protected=false', but('alpha'));
      });

      it('excludes images without a size from size ranges', async () => {
        await expectNames('size_min=0', ['beta', 'glass, darkly']);
        await expectNames('size_max=1000', ['beta']);
        await expectNames('size_min=101', ['glass, darkly']);
        await expectNames('size_min=100&size_max=100', ['beta']);
        await expectNames('size_max=-1', []);
        await expectNames('size=100', ['beta']);
        await expectNames('virtual_size_min=0', []);
        await expectNames('size_min=99999999999999999', []);
      });

      it('compares created_at and updated_at with the time operators', async () => {
        const early = but('late');
        await expectNames(`created_at=gt:${mid}`, ['late']);
        await expectNames(`created_at=gte:${mid}`, ['late']);
        await expectNames(`created_at=lt:${mid}`, early);
        await expectNames(`created_at=neq:${mid}`, ALL);
        await expectNames(`created_at=eq:${mid}`, []);
        await expectNames(`updated_at=gt:${mid}`, ['beta', 'late']);
        await expectNames(`updated_at=lte:${mid}`, but('beta', 'late'));
        await expectNames(`created_at=lt:${mid}&updated_at=gt:${mid}`, ['beta']);

        // The same instant written with another offset.
        const shifted = new Date(Date.parse(mid) + 3_600_000).toISOString().replace('Z', '+01:00');
        await expectNames(`created_at=lt:${enc(shifted)}`, early);
        await expectNames('created_at=gt:2000-01-01T00:00:00Z', ALL);
        await expectNames('created_at=lt:2000-01-01', []);
      });

      it('matches additional properties and integer columns exactly', async () => {
        await expectNames('os_distro=ubuntu', ['alpha', 'bobs']);
        await expectNames('os_distro=fedora', ['beta']);
        await expectNames('os_distro=Ubuntu', []);
        await expectNames('patched=yes', ['beta']);
        await expectNames('no_such_property=x', []);
        await expectNames('min_ram=512', ['alpha', 'glass, darkly']);
        await expectNames(`min_ram=${enc(' +0512')}`, ['alpha', 'glass, darkly']);
        await expectNames('min_ram=0', but('alpha', 'glass, darkly'));
        await expectNames('min_disk=1', []);
      });

      it('sorts by updated_at and by the formats, a missing format first', async () => {
        const page = await harness().list('sort_key=updated_at&limit=2');
        assert.deepEqual(
          page.images.map((image) => image.name),
          ['beta', 'late'],
        );
        const four = `name=${enc('in:alpha,beta,"glass, darkly",late')}`;
        const byDisk = await harness().list(`${four}&sort_key=disk_format&sort_dir=asc`);
        assert.deepEqual(
          byDisk.images.map((image) => image.name),
          ['late', 'alpha', 'beta', 'glass, darkly'],
        );
        const byContainer = await harness().list(`${four}&sort=container_format:desc,name:asc`);
        assert.deepEqual(
          byContainer.images.map((image) => image.name),
          ['glass, darkly', 'alpha', 'beta', 'late'],
        );
      });

      it('combines filters with AND', async () => {
        const names = enc('in:alpha,beta,"glass, darkly"');
        await expectNames(`name=${names}&tag=y&min_ram=512`, ['alpha', 'glass, darkly']);
        await expectNames(`name=${names}&status=active&os_distro=fedora`, ['beta']);
        await expectNames('owner=bob&os_distro=ubuntu&protected=true', []);
      });

      it('treats SQL in values as plain text', async () => {
        const hostile = ["' or '1'='1", "alpha' --", 'alpha"; drop table images; --'];
        for (const value of hostile) {
          await expectNames(`name=${enc(value)}`, []);
          await expectNames(`${enc(value)}=${enc(value)}`, []);
          await expectNames(`owner=${enc(value)}`, []);
        }
        await expectNames('', ALL);
      });
    });

    describe('sorting', () => {
      const harness = useHarness(database);

      // Created in order of their ids, so created_at then id ties follow the numbers too.
      const FIXTURE: Array<{ n: number; name: string | null; size: number | null }> = [
        { n: 1, name: 'b', size: 30 },
        { n: 2, name: 'a', size: null },
        { n: 3, name: null, size: 10 },
        { n: 4, name: 'b', size: 30 },
        { n: 5, name: 'a', size: 10 },
        { n: 6, name: 'c', size: 0 },
      ];

      before(async () => {
        const h = harness();
        for (const { n, name, size } of FIXTURE) {
          await h.create({ id: idOf(n), name });
          await h.setColumns(idOf(n), { size });
        }
      });

      const expectOrder = async (query: string, expected: number[]) => {
        const list = await harness().list(query);
        assert.deepEqual(
          list.images.map((image) => image.id),
          expected.map(idOf),
          query,
        );
      };

      it('sorts by created_at then id, newest first, by default', async () => {
        await expectOrder('', [6, 5, 4, 3, 2, 1]);
        await expectOrder('sort_key=created_at', [6, 5, 4, 3, 2, 1]);
        await expectOrder('sort_key=created_at&sort_dir=asc', [1, 2, 3, 4, 5, 6]);
        await expectOrder('sort_dir=asc', [1, 2, 3, 4, 5, 6]);
        await expectOrder('sort=id:asc', [1, 2, 3, 4, 5, 6]);
        await expectOrder('sort_key=status', [6, 5, 4, 3, 2, 1]);
      });

      it('sorts by name with nulls first, ties in the direction given', async () => {
        await expectOrder('sort_key=name&sort_dir=asc', [3, 2, 5, 1, 4, 6]);
        await expectOrder('sort=name:asc', [3, 2, 5, 1, 4, 6]);
        await expectOrder('sort_key=name', [6, 4, 1, 5, 2, 3]);
        await expectOrder('sort=name', [6, 4, 1, 5, 2, 3]);
      });

      it('sorts by size with a missing size counted as 0', async () => {
        await expectOrder('sort_key=size&sort_dir=asc', [2, 6, 3, 5, 1, 4]);
        await expectOrder('sort_key=size', [4, 1, 5, 3, 6, 2]);
      });

      it('sorts by several keys and breaks remaining ties descending', async () => {
        await expectOrder('sort=name:asc,size:desc', [3, 5, 2, 4, 1, 6]);
        await expectOrder('sort=name,size:asc', [6, 4, 1, 2, 5, 3]);
        await expectOrder(
          'sort_key=size&sort_key=name&sort_dir=desc&sort_dir=asc',
          [4, 1, 3, 5, 2, 6],
        );
        await expectOrder('sort_key=name&sort_key=size&sort_dir=asc', [3, 2, 5, 1, 4, 6]);
      });

      it('refuses sort keys outside the allowed list', async () => {
        for (const query of ['sort=name:asc,min_ram:desc', 'sort_key=min_ram', 'sort_key=owner']) {
          const response = await harness().get(query);
          assert.equal(response.statusCode, 400, query);
          assert.match(response.body, /Invalid sort key/);
        }
      });
    });

    describe('pagination', () => {
      const harness = useHarness(database);
      const rows: Row[] = [];
      const bobRows: Row[] = [];
      const NAMES = [null, 'echo', 'alpha', 'delta', 'alpha', 'bravo', 'charlie'];
      const SIZES = [null, 0, 512, 1024, 512];
      let deletedId = '';

      before(async () => {
        const h = harness();
        for (let n = 1; n <= 33; n++) {
          const isBob = n % 10 === 5;
          const tags = isBob ? [] : ['page', ...(n % 2 === 0 ? ['even'] : [])];
          const name = NAMES[(n * 3) % NAMES.length] ?? null;
          const body = { id: idOf(n), name, tags, ...(isBob ? { visibility: 'private' } : {}) };
          await h.create(body, isBob ? BOB : ALICE);

          // Creation times out of id order, many of them equal, so that ties need the id.
          const createdAt = `2024-01-01T00:00:0${(n * 7) % 9}.000Z`;
          const size = SIZES[n % SIZES.length] ?? null;
          await h.setColumns(idOf(n), { created_at: createdAt, size });
          (isBob ? bobRows : rows).push({ id: idOf(n), name, size, createdAt, tags });
        }
        deletedId = (await h.create({ name: 'gone' })).id;
        await h.delete(deletedId);
      });

      /** Follows `next` from the first page; returns the ids in order and the page sizes. */
      const walk = async (query: string, headers: Headers = ALICE) => {
        const h = harness();
        const expectedFirst =
          query === '' ? '/v2/images' : `/v2/images?${new URLSearchParams(query).toString()}`;
        const seen: string[] = [];
        const pages: number[] = [];
        let url: string | undefined = query;
        while (url !== undefined) {
          assert.ok(pages.length < 20, 'too many pages');
          const list: ImageList = await h.list(url, headers);
          const ids = list.images.map((image) => image.id);
          assert.equal(list.first, expectedFirst);
          if (list.next !== undefined) {
            assert.equal(
              list.next,
              `${expectedFirst}${query === '' ? '?' : '&'}marker=${ids.at(-1)}`,
            );
          }
          seen.push(...ids);
          pages.push(ids.length);
          url = list.next;
        }
        return { seen, pages };
      };

      const VARIANTS: Array<[string, Array<[OrderKey, 'asc' | 'desc']>]> = [
        [
          '',
          [
            ['created_at', 'desc'],
            ['id', 'desc'],
          ],
        ],
        [
          'sort_key=name&sort_dir=asc',
          [
            ['name', 'asc'],
            ['created_at', 'asc'],
            ['id', 'asc'],
          ],
        ],
        [
          'sort=name:desc,size:asc',
          [
            ['name', 'desc'],
            ['size', 'asc'],
            ['created_at', 'desc'],
            ['id', 'desc'],
          ],
        ],
        [
          'sort_key=size',
          [
            ['size', 'desc'],
            ['created_at', 'desc'],
            ['id', 'desc'],
          ],
        ],
        [
          'sort=size:asc',
          [
            ['size', 'asc'],
            ['created_at', 'asc'],
            ['id', 'asc'],
          ],
        ],
        [
          'sort_key=id&sort_dir=asc',
          [
            ['id', 'asc'],
            ['created_at', 'asc'],
          ],
        ],
      ];

      it('returns every image exactly once, in order, when following next links', async () => {
        for (const [sort, keys] of VARIANTS) {
          const query = ['limit=7', sort].filter(Boolean).join('&');
          const { seen, pages } = await walk(query);
          assert.deepEqual(seen, expectedOrder(rows, keys), query);
          assert.deepEqual(pages, [7, 7, 7, 7, 2], query);

          const asAdmin = await walk(query, ADMIN);
          assert.deepEqual(asAdmin.seen, expectedOrder([...rows, ...bobRows], keys), query);
        }
      });

      it('keeps filters, repeated parameters included, in the links it follows', async () => {
        const query =
          'limit=4&tag=page&tag=even&sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc';
        const keys: Array<[OrderKey, 'asc' | 'desc']> = [
          ['name', 'asc'],
          ['size', 'desc'],
          ['created_at', 'desc'],
          ['id', 'desc'],
        ];
        const even = rows.filter((row) => row.tags.includes('even'));
        const { seen, pages } = await walk(query);
        assert.deepEqual(seen, expectedOrder(even, keys));
        assert.deepEqual(pages, [4, 4, 4, 4, 0]);
      });

      it('gives next only when the page is full, even if nothing follows', async () => {
        const full = await harness().list('limit=30');
        assert.equal(full.images.length, 30);
        assert.equal(full.next, `/v2/images?limit=30&marker=${full.images.at(-1)?.id}`);
        const empty = await harness().list(full.next ?? assert.fail('no next'));
        assert.deepEqual(empty.images, []);
        assert.equal(empty.next, undefined);

        const all = await harness().list('limit=31');
        assert.equal(all.images.length, 30);
        assert.equal(all.next, undefined);

        const { pages } = await walk('limit=15');
        assert.deepEqual(pages, [15, 15, 0]);
      });

      it('starts after the marker, whether or not the marker matches the filters', async () => {
        const order = expectedOrder(rows, [
          ['created_at', 'desc'],
          ['id', 'desc'],
        ]);
        const marker = order[4] ?? assert.fail('short fixture');
        const page = await harness().list(`limit=3&marker=${marker}`);
        assert.deepEqual(
          page.images.map((image) => image.id),
          order.slice(5, 8),
        );
        assert.equal(page.first, '/v2/images?limit=3');
        assert.equal(page.next, `/v2/images?limit=3&marker=${order[7]}`);

        const odd = order.find((id) => !rows.find((row) => row.id === id)?.tags.includes('even'));
        assert.ok(odd);
        const evenAfter = order
          .slice(order.indexOf(odd) + 1)
          .filter((id) => rows.find((row) => row.id === id)?.tags.includes('even'));
        const filtered = await harness().list(`tag=even&marker=${odd}`);
        assert.deepEqual(
          filtered.images.map((image) => image.id),
          evenAfter,
        );
      });

      it('lets the marker be an image listed only to admins', async () => {
        const bobImage = bobRows[0]?.id ?? assert.fail('no bob image');
        const order = expectedOrder(
          [...rows, ...bobRows],
          [
            ['created_at', 'desc'],
            ['id', 'desc'],
          ],
        );
        const page = await harness().list(`marker=${bobImage}`, ADMIN);
        assert.deepEqual(
          page.images.map((image) => image.id),
          order.slice(order.indexOf(bobImage) + 1).slice(0, 25),
        );
      });

      it('refuses a marker that does not exist with 400', async () => {
        for (const marker of [idOf(999), 'not-an-id', deletedId, '']) {
          const response = await harness().get(`marker=${marker}`);
          assert.equal(response.statusCode, 400, `${marker}: ${response.body}`);
          assert.match(response.body, /Invalid marker/);
        }
      });

      it('refuses a marker the caller cannot see with 403', async () => {
        const bobImage = bobRows[0]?.id ?? assert.fail('no bob image');
        for (const query of ['', '&sort_dir=asc', '&sort=name:asc,size:desc']) {
          const response = await harness().get(`marker=${bobImage}${query}`);
          assert.equal(response.statusCode, 403, response.body);
          assert.match(response.body, new RegExp(`Forbidden to access image ${bobImage}`));
        }
      });

      it('answers a marker with no image after it with an empty page', async () => {
        const order = expectedOrder(rows, [
          ['created_at', 'desc'],
          ['id', 'desc'],
        ]);
        const last = order.at(-1) ?? assert.fail('short fixture');
        const page = await harness().list(`marker=${last}`);
        assert.deepEqual(page.images, []);
        assert.equal(page.next, undefined);
      });

      it('answers limit=0 with an empty page without next', async () => {
        const list = await harness().list('limit=0');
        assert.deepEqual(list.images, []);
        assert.equal(list.next, undefined);
        assert.equal(list.first, '/v2/images?limit=0');
      });

      it('uses limit_param_default when no limit is given', async () => {
        const list = await harness().list('');
        assert.equal(list.images.length, 25);
        assert.equal(list.first, '/v2/images');
        assert.equal(list.next, `/v2/images?marker=${list.images.at(-1)?.id}`);
        assert.equal((await harness().list('/v2/images?')).first, '/v2/images');
      });

      it('encodes link parameters as upstream does', async () => {
        const list = await harness().list(`name=${encodeURIComponent('a b/c~*')}&limit=1`);
        assert.deepEqual(list.images, []);
        assert.equal(list.first, '/v2/images?name=a+b%2Fc~%2A&limit=1');
      });
    });

    describe('limit above api_limit_max', () => {
      const harness = useHarness(database, { api_limit_max: 5 });

      before(async () => {
        for (let n = 1; n <= 7; n++) await harness().create({ id: idOf(n) });
      });

      const idsOf = (list: ImageList) => list.images.map((image) => image.id);

      it('clips the limit to api_limit_max and pages through the rest', async () => {
        for (const query of ['', 'limit=100', 'limit=5', `limit=${'9'.repeat(40)}`]) {
          const list = await harness().list(query);
          assert.deepEqual(idsOf(list), [7, 6, 5, 4, 3].map(idOf), query);
          assert.ok(list.next !== undefined, query);
          const rest = await harness().list(list.next);
          assert.deepEqual(idsOf(rest), [2, 1].map(idOf));
          assert.equal(rest.next, undefined);
        }
        assert.deepEqual(idsOf(await harness().list('limit=2')), [7, 6].map(idOf));
      });
    });

    describe('query validation', () => {
      const harness = useHarness(database);
      let imageId = '';

      before(async () => {
        imageId = (await harness().create({ name: 'only' })).id;
      });

      it('refuses bad sorting, visibility, operators and values with 400', async () => {
        const cases: Array<[string, RegExp]> = [
          ['sort_key=bogus', /Invalid sort key: bogus/],
          ['sort_dir=sideways', /Invalid sort direction: sideways/],
          ['sort=name:up', /Invalid sort direction: up/],
          ['sort=name:asc&sort_key=size', /Old and new sorting syntax cannot be combined/],
          ['sort=name:asc&sort_dir=asc', /Old and new sorting syntax cannot be combined/],
          [
            'sort_key=name&sort_key=size&sort_dir=asc&sort_dir=desc&sort_dir=asc',
            /Number of sort dirs does not match/,
          ],
          ['visibility=everyone', /visibility/i],
          ['visibility=', /visibility/i],
          ['member_status=maybe', /Invalid status: maybe/],
          ['os_hidden=yes', /os_hidden/],
          ['protected=True', /protected/],
          ['name=foo:bar', /unknown operator 'foo'/],
          ['status=gt:active', /unknown operator 'gt'/],
          ['name=in:%22a%22b', /no comma after closing quotation mark/],
          ['created_at=gt:not-a-date', /ISO 8601/],
          ['created_at=between:2020-01-01T00:00:00Z', /unknown operator/],
          ['changes-since=2020-01-01', /changes-since/],
          ['size_min=abc', /non-numeric/],
          ['min_ram=1.5', /min_ram/],
          ['min_ram_max=5', /range/],
          ['limit=-1', /limit/],
          ['limit=abc', /limit/],
        ];
        for (const [query, message] of cases) {
          const response = await harness().get(query);
          assert.equal(response.statusCode, 400, `${query}: ${response.body}`);
          assert.match(response.body, message, query);
        }
      });

      it('answers odd bytes and oversized queries without a 500', async () => {
        const many = Array.from({ length: 500 }, (_, i) => `p${i}=v`).join('&');
        const tags = Array.from({ length: 33 }, (_, i) => `tag=t${i}`).join('&');
        const inList = `name=in:${Array.from({ length: 101 }, (_, i) => `n${i}`).join(',')}`;
        const cases: Array<[string, number]> = [
          ['name=%FF', 200],
          ['%FF=x', 200],
          ['name=%E2%82', 200],
          ['name=%ED%A0%80', 200],
          ['name=%', 200],
          ['name=%zz', 200],
          ['os_distro=%F0%9F%98%80', 200],
          ['name=%00', 400],
          ['name=a%00b', 400],
          ['%00=x', 400],
          [`name=${'x'.repeat(10_000)}`, 400],
          [`os_distro=${'x'.repeat(10_000)}`, 400],
          [`${'k'.repeat(10_000)}=v`, 400],
          [many, 400],
          [tags, 400],
          [inList, 400],
          [`size_min=${'9'.repeat(40)}`, 400],
          [`min_ram=${'9'.repeat(40)}`, 400],
          ['created_at=gt:not-a-date', 400],
          ['created_at=99999-01-01', 400],
          ['sort_key=name;drop table images', 400],
          ['marker=%FF', 400],
        ];
        for (const [query, status] of cases) {
          const response = await harness().get(query);
          assert.equal(response.statusCode, status, `${query.slice(0, 60)}: ${response.body}`);
          if (status === 200) assert.deepEqual(json<ImageList>(response).images, [], query);
        }

        const still = await harness().list('');
        assert.deepEqual(
          still.images.map((image) => image.id),
          [imageId],
        );
      });
    });
  });
}
