/**
 * SQLite rows are read as arrays and made into objects by a function compiled from the
 * statement's column names; these tests pin what that function must preserve.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import Database from 'better-sqlite3';

import { rowBuilder } from '../../src/db/sql/dialects/sqlite.js';

describe('SQLite row objects', () => {
  it('keeps the column order and values, including NULLs and blobs', () => {
    const database = new Database(':memory:');
    const statement = database.prepare(`select 1 as "a", null as "b", 'x' as "c", x'00ff' as "d"`);
    statement.raw(true);
    const build = rowBuilder(statement.columns().map((column) => column.name));

    const row = build(statement.get() as unknown[]);

    assert.deepEqual(Object.keys(row), ['a', 'b', 'c', 'd']);
    assert.deepEqual(row, { a: 1, b: null, c: 'x', d: Buffer.from([0, 255]) });
  });

  it('takes any column name literally, quotes and line breaks included', () => {
    const names = ['it"s', "it's", 'back\\slash', 'line\nbreak', '\u2028', '${x}', 'constructor'];
    const row = rowBuilder(names)(names.map((_, index) => index));

    assert.deepEqual(Object.keys(row), names);
    assert.deepEqual(Object.values(row), [0, 1, 2, 3, 4, 5, 6]);
  });

  it('keeps the last value of a repeated name, as better-sqlite3 does', () => {
    assert.deepEqual(rowBuilder(['id', 'id'])([1, 2]), { id: 2 });
  });

  it('makes __proto__ an ordinary property, not the prototype', () => {
    const row = rowBuilder(['__proto__', 'id'])([{ polluted: true }, 7]);

    assert.equal(Object.getPrototypeOf(row), Object.prototype);
    assert.deepEqual(Object.getOwnPropertyDescriptor(row, '__proto__')?.value, { polluted: true });
    assert.equal((row as { polluted?: boolean }).polluted, undefined);
  });
});
