import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { CompiledQuery } from 'kysely';

import { CompiledQueryCache } from '../../src/db/sql/compiled-query-cache.js';

describe('compiled query cache', () => {
  const compiling = (text: string) => {
    let calls = 0;
    const compile = () => {
      calls++;
      return CompiledQuery.raw(text);
    };
    return { compile, calls: () => calls };
  };

  it('compiles a shape once and returns the same query after', () => {
    const cache = new CompiledQueryCache<unknown>(2);
    const a = compiling('select 1');

    const first = cache.get('a', a.compile);
    const second = cache.get('a', a.compile);

    assert.equal(a.calls(), 1);
    assert.equal(first, second);
  });

  it('drops the least recently used shape when full', () => {
    const cache = new CompiledQueryCache<unknown>(2);
    const [a, b, c] = ['a', 'b', 'c'].map((text) => compiling(text));
    if (!a || !b || !c) throw new Error('fixture');

    cache.get('a', a.compile);
    cache.get('b', b.compile);
    cache.get('a', a.compile);
    cache.get('c', c.compile);
    cache.get('a', a.compile);
    cache.get('b', b.compile);

    assert.equal(a.calls(), 1, 'a was used last before c came, so it stayed');
    assert.equal(b.calls(), 2, 'b was the least recently used, so c replaced it');
  });

  it('does not keep very long shapes', () => {
    const cache = new CompiledQueryCache<unknown>(2);
    const long = compiling('select 2');
    const shape = 'x'.repeat(10_000);

    cache.get(shape, long.compile);
    cache.get(shape, long.compile);

    assert.equal(long.calls(), 2);
  });
});
