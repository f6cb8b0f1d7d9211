import type { Kysely, Selectable } from 'kysely';

import { ConflictError, NotFoundError } from '../../domain/errors.js';
import type { MemberRecord, MemberRepository, MemberStatus } from '../repository.js';
import type { ImageMembersTable, Tables } from './tables.js';

export class SqlMemberRepository implements MemberRepository {
  readonly #db: Kysely<Tables>;

  constructor(db: Kysely<Tables>) {
    this.#db = db;
  }

  async list(imageId: string): Promise<MemberRecord[]> {
    const rows = await this.#live(imageId).orderBy('created_at').orderBy('member').execute();
    return rows.map(toMember);
  }

  async get(imageId: string, memberId: string): Promise<MemberRecord | null> {
    const row = await this.#live(imageId).where('member', '=', memberId).executeTakeFirst();
    return row ? toMember(row) : null;
  }

  async count(imageId: string): Promise<number> {
    const row = await this.#db
      .selectFrom('image_members')
      .select((eb) => eb.fn.countAll<number>().as('count'))
      .where('image_id', '=', imageId)
      .where('deleted', '=', 0)
      .executeTakeFirstOrThrow();
    return Number(row.count);
  }

  async add(imageId: string, memberId: string): Promise<MemberRecord> {
    const now = new Date().toISOString();
    const fresh = { status: 'pending', created_at: now, updated_at: now, deleted: 0 };

    // A removed membership is revived in place (its row still holds the unique key); a live
    // one makes the conditional update and the insert both fail, which is the conflict.
    const revived = await this.#db
      .updateTable('image_members')
      .set(fresh)
      .where('image_id', '=', imageId)
      .where('member', '=', memberId)
      .where('deleted', '=', 1)
      .executeTakeFirst();
    if (revived.numUpdatedRows === 0n) {
      const inserted = await this.#db
        .insertInto('image_members')
        .values({ image_id: imageId, member: memberId, can_share: 0, ...fresh })
        .onConflict((conflict) => conflict.columns(['image_id', 'member']).doNothing())
        .executeTakeFirst();
      if (inserted.numInsertedOrUpdatedRows === 0n) {
        throw new ConflictError(`Member ${memberId} is duplicated for image ${imageId}`);
      }
    }
    return {
      image_id: imageId,
      member_id: memberId,
      status: 'pending',
      created_at: now,
      updated_at: now,
    };
  }

  async setStatus(imageId: string, memberId: string, status: MemberStatus) {
    await this.#db
      .updateTable('image_members')
      .set({ status, updated_at: new Date().toISOString() })
      .where('image_id', '=', imageId)
      .where('member', '=', memberId)
      .where('deleted', '=', 0)
      .execute();
    const member = await this.get(imageId, memberId);
    if (!member)
      throw new NotFoundError(`${memberId} not found in the member list of the image ${imageId}.`);
    return member;
  }

  async remove(imageId: string, memberId: string): Promise<void> {
    await this.#db
      .updateTable('image_members')
      .set({ deleted: 1, updated_at: new Date().toISOString() })
      .where('image_id', '=', imageId)
      .where('member', '=', memberId)
      .execute();
  }

  #live(imageId: string) {
    return this.#db
      .selectFrom('image_members')
      .selectAll()
      .where('image_id', '=', imageId)
      .where('deleted', '=', 0);
  }
}

function toMember(row: Selectable<ImageMembersTable>): MemberRecord {
  return {
    image_id: row.image_id,
    member_id: row.member,
    status: row.status as MemberStatus,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}
