import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { InvalidInputError } from '../../src/domain/errors.js';
import { buildListLink, parseImageListQuery } from '../../src/domain/list-query.js';
import type {
  ColumnFilter,
  ImageListQuery,
  ListQueryOptions,
  SortDir,
  SortKey,
} from '../../src/domain/list-query.js';

const OPTIONS: ListQueryOptions = {
  limitDefault: 25,
  limitMax: 1000,
  diskFormats: ['raw', 'qcow2'],
  containerFormats: ['bare'],
};

function parse(query: string, options: ListQueryOptions = OPTIONS): ImageListQuery {
  return parseImageListQuery(pairsOf(query), options);
}

/** Splits `a=1&b=2` into pairs without decoding, so tests can write values as they are. */
function pairsOf(query: string): Array<[string, string]> {
  if (query === '') return [];
  return query.split('&').map((part): [string, string] => {
    const equals = part.indexOf('=');
    return equals < 0 ? [part, ''] : [part.slice(0, equals), part.slice(equals + 1)];
  });
}

function rejects(pairs: Array<[string, string]> | string, message?: string | RegExp): void {
  const input = typeof pairs === 'string' ? pairsOf(pairs) : pairs;
  assert.throws(
    () => parseImageListQuery(input, OPTIONS),
    (error: unknown) => {
      assert.ok(error instanceof InvalidInputError, `expected InvalidInputError, got ${error}`);
      if (typeof message === 'string') assert.equal(error.message, message);
      if (message instanceof RegExp) assert.match(error.message, message);
      return true;
    },
  );
}

function sortOf(query: string): string {
  return parse(query)
    .sort.map(({ key, dir }: { key: SortKey; dir: SortDir }) => `${key} ${dir}`)
    .join(', ');
}

function onlyColumn(query: string): ColumnFilter {
  const { columns } = parse(query);
  assert.equal(columns.length, 1);
  return columns[0] as ColumnFilter;
}

function onlyColumnOf(pairs: Array<[string, string]>): ColumnFilter {
  const { columns } = parseImageListQuery(pairs, OPTIONS);
  return columns[0] as ColumnFilter;
}

describe('an empty query', () => {
  it('gives the defaults', () => {
    assert.deepEqual(parse(''), {
      limit: 25,
      marker: null,
      sort: [
        { key: 'created_at', dir: 'desc' },
        { key: 'id', dir: 'desc' },
      ],
      visibility: null,
      memberStatus: 'accepted',
      osHidden: false,
      tags: [],
      sizeMin: null,
      sizeMax: null,
      virtualSizeMin: null,
      virtualSizeMax: null,
      protected: null,
      columns: [],
      properties: [],
    });
  });

  it('clips a default limit above the maximum', () => {
    assert.equal(parse('', { ...OPTIONS, limitDefault: 50, limitMax: 10 }).limit, 10);
  });
});

describe('limit', () => {
  it('is read as an integer', () => {
    assert.equal(parse('limit=7').limit, 7);
  });

  it('allows zero', () => {
    assert.equal(parse('limit=0').limit, 0);
  });

  it('is clipped to the maximum', () => {
    assert.equal(parse('limit=5000').limit, 1000);
    assert.equal(parse('limit=99999999999999999999999').limit, 1000);
  });

  it('accepts what Python int() accepts: spaces, a sign, underscores', () => {
    assert.equal(parse('limit= 12 ').limit, 12);
    assert.equal(parse('limit=+5').limit, 5);
    assert.equal(parse('limit=1_0').limit, 10);
    assert.equal(parse('limit=-0').limit, 0);
  });

  it('is refused when it is not an integer', () => {
    for (const value of ['abc', '', '1.5', '1e3', '0x10', '1__0', '_1']) {
      rejects([['limit', value]], 'limit param must be an integer');
    }
  });

  it('is refused when negative', () => {
    rejects('limit=-1', 'limit param must be positive');
  });

  it('takes the first of repeated values', () => {
    assert.equal(parse('limit=3&limit=9').limit, 3);
  });
});

describe('marker', () => {
  it('is passed through as given', () => {
    assert.equal(parse('marker=abc').marker, 'abc');
  });

  it('takes the first of repeated values', () => {
    assert.equal(parse('marker=a&marker=b').marker, 'a');
  });
});

describe('sorting', () => {
  it('defaults to created_at then id, descending', () => {
    assert.equal(sortOf(''), 'created_at desc, id desc');
  });

  it('sorts one key descending and breaks ties descending', () => {
    assert.equal(sortOf('sort_key=name'), 'name desc, created_at desc, id desc');
  });

  it('applies a single sort_dir to every key and to the tie-breakers', () => {
    assert.equal(sortOf('sort_key=name&sort_dir=asc'), 'name asc, created_at asc, id asc');
    assert.equal(
      sortOf('sort_key=name&sort_key=size&sort_dir=asc'),
      'name asc, size asc, created_at asc, id asc',
    );
  });

  it('applies a sort_dir given without sort_key to created_at', () => {
    assert.equal(sortOf('sort_dir=asc'), 'created_at asc, id asc');
  });

  it('pairs several sort_dirs with the keys and breaks ties descending', () => {
    assert.equal(
      sortOf('sort_key=name&sort_key=size&sort_dir=asc&sort_dir=asc'),
      'name asc, size asc, created_at desc, id desc',
    );
  });

  it('refuses a number of sort_dirs that differs from the number of keys', () => {
    rejects(
      'sort_key=name&sort_dir=asc&sort_dir=desc',
      'Number of sort dirs does not match the number of sort keys',
    );
    rejects('sort_dir=asc&sort_dir=desc', /Number of sort dirs/);
  });

  it('reads the sort parameter with a default direction of desc', () => {
    assert.equal(sortOf('sort=name'), 'name desc, created_at desc, id desc');
    assert.equal(
      sortOf('sort=name:asc,status'),
      'name asc, status desc, created_at desc, id desc',
    );
  });

  it('uses the only direction of a one-key sort parameter for the tie-breakers', () => {
    assert.equal(sortOf('sort=name:asc'), 'name asc, created_at asc, id asc');
  });

  it('strips spaces around sort keys and directions', () => {
    assert.equal(
      sortOf('sort= name : asc , size '),
      'name asc, size desc, created_at desc, id desc',
    );
    assert.equal(sortOf('sort_key= name &sort_dir= asc '), 'name asc, created_at asc, id asc');
  });

  it('does not append keys that are already there', () => {
    assert.equal(sortOf('sort_key=created_at&sort_dir=asc'), 'created_at asc, id asc');
    assert.equal(sortOf('sort_key=id'), 'id desc, created_at desc');
    assert.equal(sortOf('sort=id:asc,created_at:asc'), 'id asc, created_at asc');
    assert.equal(sortOf('sort=created_at:asc,name:asc'), 'created_at asc, name asc, id desc');
  });

  it('refuses an unknown sort key with the list of valid ones', () => {
    rejects(
      'sort_key=owner',
      'Invalid sort key: owner. It must be one of the following: name, status, ' +
        'container_format, disk_format, size, id, created_at, updated_at.',
    );
    rejects('sort=bogus:asc', /^Invalid sort key: bogus\./);
    rejects('sort=', /^Invalid sort key: \./);
    rejects('sort=name,', /^Invalid sort key: \./);
  });

  it('refuses an unknown sort direction', () => {
    rejects('sort_key=name&sort_dir=up', 'Invalid sort direction: up');
    rejects('sort=name:up', 'Invalid sort direction: up');
    rejects('sort=name:asc:desc', 'Invalid sort direction: asc:desc');
    rejects([['sort', 'name: ,size']], 'Invalid sort direction: ');
    assert.equal(sortOf('sort=name: '), 'name desc, created_at desc, id desc');
  });

  it('refuses mixing the sort parameter with sort_key or sort_dir', () => {
    rejects('sort=name&sort_key=size', 'Old and new sorting syntax cannot be combined');
    rejects('sort=name&sort_dir=asc', 'Old and new sorting syntax cannot be combined');
  });
});

describe('visibility and member_status', () => {
  it('accepts every visibility and all', () => {
    for (const value of ['public', 'private', 'shared', 'community', 'all']) {
      assert.equal(parse(`visibility=${value}`).visibility, value);
    }
  });

  it('refuses an unknown or empty visibility', () => {
    rejects('visibility=everyone', 'Invalid visibility value: everyone');
    rejects('visibility=', 'Invalid visibility value: ');
  });

  it('checks and uses the last visibility given', () => {
    assert.equal(parse('visibility=bogus&visibility=public').visibility, 'public');
    rejects('visibility=public&visibility=bogus', 'Invalid visibility value: bogus');
  });

  it('accepts every member status', () => {
    for (const value of ['accepted', 'pending', 'rejected', 'all']) {
      assert.equal(parse(`member_status=${value}`).memberStatus, value);
    }
  });

  it('refuses an unknown member status', () => {
    rejects('member_status=maybe', 'Invalid status: maybe');
    rejects('member_status=', 'Invalid status: ');
  });
});

describe('os_hidden and protected', () => {
  it('reads os_hidden in any letter case', () => {
    assert.equal(parse('os_hidden=true').osHidden, true);
    assert.equal(parse('os_hidden=TRUE').osHidden, true);
    assert.equal(parse('os_hidden=False').osHidden, false);
  });

  it('refuses other os_hidden values, quoting them in lower case', () => {
    rejects(
      'os_hidden=Yes',
      "Invalid value 'yes' for 'os_hidden' filter. Valid values are 'true' or 'false'.",
    );
  });

  it('reads protected in lower case only', () => {
    assert.equal(parse('protected=true').protected, true);
    assert.equal(parse('protected=false').protected, false);
    rejects(
      'protected=True',
      "Invalid value 'True' for 'protected' filter. Valid values are 'true' or 'false'.",
    );
    rejects('protected=', /for 'protected' filter/);
  });

  it('does not pass either as a column or property filter', () => {
    const query = parse('os_hidden=true&protected=true');
    assert.deepEqual(query.columns, []);
    assert.deepEqual(query.properties, []);
  });
});

describe('removed and ignored parameters', () => {
  it('refuses changes-since', () => {
    rejects(
      'changes-since=2020-01-01T00:00:00Z',
      'The "changes-since" filter is no longer available on v2.',
    );
    rejects('changes-since=', /changes-since/);
  });

  it('ignores deleted, since only live images are listed', () => {
    const query = parse('deleted=true');
    assert.deepEqual(query.columns, []);
    assert.deepEqual(query.properties, []);
  });
});

describe('tags', () => {
  it('collects every tag, stripped of surrounding spaces', () => {
    assert.deepEqual(parse('tag=x86&tag= 64bit &tag=x86').tags, ['x86', '64bit', 'x86']);
  });

  it('keeps an empty tag, which matches nothing', () => {
    assert.deepEqual(parse('tag=').tags, ['']);
  });
});

describe('size ranges', () => {
  it('reads the four bounds as integers', () => {
    const query = parse('size_min=1&size_max=2&virtual_size_min=3&virtual_size_max=4');
    assert.deepEqual(
      [query.sizeMin, query.sizeMax, query.virtualSizeMin, query.virtualSizeMax],
      [1, 2, 3, 4],
    );
    assert.deepEqual(query.columns, []);
  });

  it('accepts negative and zero bounds', () => {
    assert.equal(parse('size_min=-5').sizeMin, -5);
    assert.equal(parse('size_max=0').sizeMax, 0);
  });

  it('refuses a non-integer bound', () => {
    for (const value of ['abc', '', '1.5', '10GB']) {
      rejects([['size_min', value]], 'Unable to filter on a range with a non-numeric value.');
    }
  });

  it('refuses a bound outside 64 bits and clamps one beyond 2^53', () => {
    rejects('size_max=9223372036854775808', /range/);
    rejects('size_min=-9223372036854775809', /range/);
    assert.equal(parse('size_max=9223372036854775807').sizeMax, Number.MAX_SAFE_INTEGER);
    assert.equal(parse('size_min=-9223372036854775808').sizeMin, -Number.MAX_SAFE_INTEGER);
  });

  it('refuses a range on another column', () => {
    rejects('min_ram_min=512', /^Unable to filter on a range of 'min_ram'\./);
    rejects('created_at_max=1', /^Unable to filter on a range of 'created_at'\./);
  });

  it('reads a _min key that names no column as a property', () => {
    assert.deepEqual(parse('hw_cpu_max=4').properties, [{ name: 'hw_cpu_max', value: '4' }]);
  });
});

describe('filters on name, id, status and the formats', () => {
  it('matches a plain value exactly', () => {
    assert.deepEqual(onlyColumn('name=cirros'), { column: 'name', op: 'eq', values: ['cirros'] });
  });

  it('strips the eq operator and keeps later colons', () => {
    assert.deepEqual(onlyColumn('name=eq:foo:bar'), {
      column: 'name',
      op: 'eq',
      values: ['foo:bar'],
    });
  });

  it('refuses any other operator, including the text before a colon', () => {
    rejects('name=foo:bar', "Unable to filter by unknown operator 'foo'.");
    rejects('status=neq:active', "Unable to filter by unknown operator 'neq'.");
    rejects('id=gt:1', "Unable to filter by unknown operator 'gt'.");
  });

  it('treats a value that is an ISO time as a whole as an equality', () => {
    assert.deepEqual(onlyColumn('name=2020-01-01T10:00:00'), {
      column: 'name',
      op: 'eq',
      values: ['2020-01-01T10:00:00'],
    });
  });

  it('splits an in: list on commas', () => {
    assert.deepEqual(onlyColumn('disk_format=in:raw,qcow2'), {
      column: 'disk_format',
      op: 'in',
      values: ['raw', 'qcow2'],
    });
  });

  it('keeps commas inside quoted values', () => {
    const filter = onlyColumn('name=in:"glass, darkly",share me');
    assert.deepEqual(filter.values, ['glass, darkly', 'share me']);
  });

  it('keeps an escaped quote, backslash included, as upstream does', () => {
    const filter = onlyColumn(String.raw`name=in:"say \"hi\"",x`);
    assert.deepEqual(filter.values, [String.raw`say \"hi\"`, 'x']);
  });

  it('reads empty items between commas as empty values', () => {
    assert.deepEqual(onlyColumn('name=in:,a,,').values, ['', 'a', '']);
    assert.deepEqual(onlyColumn('name=in:').values, []);
  });

  it('refuses misplaced quotes', () => {
    rejects(
      'name=in:a"b",c',
      'Invalid filter value a"b",c. There is no comma before opening quotation mark.',
    );
    rejects(
      'name=in:"a"b,c',
      'Invalid filter value "a"b,c. There is no comma after closing quotation mark.',
    );
    rejects('name=in:"a,b', 'Invalid filter value "a,b. The quote is not closed.');
    rejects(String.raw`name=in:"a\"`, /The quote is not closed\./);
  });

  it('refuses an in: list with more than 100 values', () => {
    const values = Array.from({ length: 101 }, (_, i) => `v${i}`).join(',');
    rejects([['id', `in:${values}`]], /at most 100 are allowed/);
    assert.equal(
      onlyColumn(`id=in:${values.split(',').slice(0, 100).join(',')}`).values.length,
      100,
    );
  });

  it('uses the last of repeated values', () => {
    assert.deepEqual(onlyColumn('name=foo:bar&name=b').values, ['b']);
  });
});

describe('filters on created_at and updated_at', () => {
  it('normalises the time to UTC with milliseconds', () => {
    assert.deepEqual(onlyColumn('created_at=gt:2020-01-02T03:04:05+02:00'), {
      column: 'created_at',
      op: 'gt',
      values: ['2020-01-02T01:04:05.000Z'],
    });
  });

  it('accepts every comparison operator', () => {
    for (const op of ['gt', 'gte', 'lt', 'lte', 'eq', 'neq']) {
      assert.equal(onlyColumn(`updated_at=${op}:2020-01-01T00:00:00Z`).op, op);
    }
  });

  it('compares for equality without an operator, colons in the time included', () => {
    assert.deepEqual(onlyColumn('created_at=2020-01-01T10:00:00.123456Z').values, [
      '2020-01-01T10:00:00.123Z',
    ]);
    assert.equal(onlyColumn('created_at=2020-06-15').op, 'eq');
  });

  it('accepts the short forms the iso8601 parser accepts', () => {
    const cases: Array<[string, string]> = [
      ['2020', '2020-01-01T00:00:00.000Z'],
      ['2020-03', '2020-03-01T00:00:00.000Z'],
      ['2020-1-5', '2020-01-05T00:00:00.000Z'],
      ['20200105T1230', '2020-01-05T12:30:00.000Z'],
      ['2020-01-05 12:30:00,5', '2020-01-05T12:30:00.500Z'],
      ['2020-01-05T12:30-0130', '2020-01-05T14:00:00.000Z'],
      ['2020-01-05T12:30:00+05', '2020-01-05T07:30:00.000Z'],
    ];
    for (const [input, expected] of cases) {
      assert.deepEqual(onlyColumn(`created_at=gte:${input}`).values, [expected], input);
    }
  });

  it('refuses a time that is not ISO 8601', () => {
    const bad = [
      'yesterday',
      '',
      '202001',
      '2020-13-01',
      '2021-02-29',
      '2020-01-01T24:00',
      '2020-01-01T10:00:60',
      '2020-01-01t10:00',
      '2020-01-01T10:00z',
      '0000-01-01',
      '2020-01-01T10:00+24:00',
    ];
    for (const value of bad) {
      rejects(
        [['created_at', `lt:${value}`]],
        'Bad "created_at" query filter format. Use ISO 8601 DateTime notation.',
      );
    }
  });

  it('refuses a time that leaves years 1 to 9999 once moved to UTC', () => {
    rejects('created_at=lt:0001-01-01T00:30+01:00', /Bad "created_at"/);
    rejects('updated_at=gt:9999-12-31T23:30-01:00', /Bad "updated_at"/);
  });

  it('refuses a fraction that rounds up to a whole second, as Python Decimal does', () => {
    rejects([['created_at', `gt:2020-01-01T00:00:00.${'9'.repeat(29)}`]], /Bad "created_at"/);
    assert.deepEqual(onlyColumn(`created_at=gt:2020-01-01T00:00:00.${'9'.repeat(28)}`).values, [
      '2020-01-01T00:00:00.999Z',
    ]);
  });

  it('refuses an unknown operator once the time is valid', () => {
    rejects('created_at=in:2020-01-01', 'Unable to filter on a unknown operator.');
    rejects('created_at=foo:2020-01-01', 'Unable to filter on a unknown operator.');
    rejects('created_at=foo:bar', /^Bad "created_at" query filter format/);
  });
});

describe('filters on the other image columns', () => {
  it('matches owner, checksum and the hash fields exactly, colons included', () => {
    const query = parse('owner=p1&checksum=eq:abc&os_hash_algo=sha512&os_hash_value=ff');
    assert.deepEqual(query.columns, [
      { column: 'owner', op: 'eq', values: ['p1'] },
      { column: 'checksum', op: 'eq', values: ['eq:abc'] },
      { column: 'os_hash_algo', op: 'eq', values: ['sha512'] },
      { column: 'os_hash_value', op: 'eq', values: ['ff'] },
    ]);
  });

  it('canonicalises integer column values', () => {
    const query = parse('min_ram=+0512&min_disk=0&size=1_024&virtual_size= 7 ');
    assert.deepEqual(
      query.columns.map((filter) => [filter.column, filter.values[0]]),
      [
        ['min_ram', '512'],
        ['min_disk', '0'],
        ['size', '1024'],
        ['virtual_size', '7'],
      ],
    );
  });

  it('refuses integer column values that are not 64-bit integers', () => {
    rejects('min_ram=lots', /^Invalid value 'lots' for parameter 'min_ram': must be an integer/);
    rejects('size=1.5', /parameter 'size'/);
    rejects('min_disk=9223372036854775808', /parameter 'min_disk'/);
    assert.deepEqual(onlyColumn('size=-9223372036854775808').values, ['-9223372036854775808']);
  });
});

describe('property filters', () => {
  it('matches any other key against an additional property', () => {
    assert.deepEqual(parse('os_distro=ubuntu&hw_disk_bus=in:a,b').properties, [
      { name: 'os_distro', value: 'ubuntu' },
      { name: 'hw_disk_bus', value: 'in:a,b' },
    ]);
  });

  it('uses the last of repeated values', () => {
    assert.deepEqual(parse('os_distro=a&os_distro=b').properties, [
      { name: 'os_distro', value: 'b' },
    ]);
  });

  it('does not take the list parameters as properties', () => {
    const query = parse('limit=1&limit=2&sort=name&sort=size&member_status=all&tag=a');
    assert.deepEqual(query.properties, []);
    assert.equal(sortOf('sort=name&sort=size'), 'name desc, created_at desc, id desc');
  });
});

describe('bounds on the work', () => {
  it('refuses more than 100 parameters', () => {
    const pairs = Array.from({ length: 101 }, (): [string, string] => ['tag', 'a']);
    rejects(pairs, 'Too many query parameters; at most 100 are allowed.');
  });

  it('refuses more than 32 tag and property filters together', () => {
    const pairs = Array.from({ length: 33 }, (_, i): [string, string] =>
      i % 2 === 0 ? ['tag', `t${i}`] : [`p${i}`, 'v'],
    );
    rejects(pairs, 'Too many tag and property filters; at most 32 are allowed.');
    assert.equal(parseImageListQuery(pairs.slice(0, 32), OPTIONS).tags.length, 16);
  });

  it('refuses a key longer than 255 characters', () => {
    rejects([['k'.repeat(256), 'v']], /name is too long; at most 255 characters/);
    assert.equal(parseImageListQuery([['k'.repeat(255), 'v']], OPTIONS).properties.length, 1);
  });

  it('refuses a value longer than 4096 characters, counting code points', () => {
    rejects([['name', 'n'.repeat(4097)]], /'name' is too long; at most 4096 characters/);
    assert.equal(onlyColumnOf([['name', '😀'.repeat(4096)]]).values[0]?.length, 8192);
  });

  it('refuses NUL characters and unpaired surrogates in keys and values', () => {
    const message = 'Query parameters can not contain NUL characters or unpaired surrogates.';
    rejects([['name', 'a\0b']], message);
    rejects([['a\0', 'b']], message);
    rejects([['name', 'a\uD800']], message);
    rejects([['name', '\uDC00a']], message);
    rejects([['\uDFFF', 'x']], message);
  });
});

describe('buildListLink', () => {
  it('gives the bare path when there are no parameters', () => {
    assert.equal(buildListLink('/v2/images', [], null), '/v2/images');
  });

  it('builds the first link without the marker', () => {
    assert.equal(
      buildListLink(
        '/v2/images',
        [
          ['marker', 'abc'],
          ['limit', '2'],
        ],
        null,
      ),
      '/v2/images?limit=2',
    );
    assert.equal(buildListLink('/v2/images', [['marker', 'abc']], null), '/v2/images');
  });

  it('builds the next link with the new marker at the end', () => {
    assert.equal(
      buildListLink(
        '/v2/images',
        [
          ['marker', 'old'],
          ['limit', '2'],
          ['marker', 'x'],
        ],
        'new',
      ),
      '/v2/images?limit=2&marker=new',
    );
    assert.equal(buildListLink('/v2/images', [], 'm1'), '/v2/images?marker=m1');
  });

  it('keeps repeated parameters in order', () => {
    assert.equal(
      buildListLink(
        '/v2/images',
        [
          ['tag', 'a'],
          ['sort_key', 'name'],
          ['tag', 'b'],
        ],
        null,
      ),
      '/v2/images?tag=a&sort_key=name&tag=b',
    );
  });

  it('form-encodes like Python urlencode, with + for spaces', () => {
    const pairs: Array<[string, string]> = [
      ['name', 'in:"a, b",c~*é'],
      ['x y', '+&=/?'],
    ];
    assert.equal(
      buildListLink('/v2/images', pairs, null),
      '/v2/images?name=in%3A%22a%2C+b%22%2Cc~%2A%C3%A9&x+y=%2B%26%3D%2F%3F',
    );
  });
});
