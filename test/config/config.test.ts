import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { ConfigError, loadConfig } from '../../src/config/load.js';
import { OPTIONS } from '../../src/config/schema.js';
import { STORE_SETTINGS } from '../../src/stores/driver-options.js';

describe('configuration', () => {
  it('starts from the documented defaults', () => {
    const config = loadConfig({});
    assert.equal(config.host, '127.0.0.1');
    assert.equal(config.port, 9292);
    assert.equal(config.data_dir, './data');
    assert.equal(config.database_url, '');
    assert.ok(Object.isFrozen(config));
  });

  it('reads GLIMPSE_* variables by option type', () => {
    const config = loadConfig({
      GLIMPSE_PORT: '8080',
      GLIMPSE_FILESYSTEM_STORE_FSYNC: 'false',
      GLIMPSE_DISK_FORMATS: 'raw, qcow2',
    });
    assert.equal(config.port, 8080);
    assert.equal(config.filesystem_store_fsync, false);
    assert.deepEqual(config.disk_formats, ['raw', 'qcow2']);
  });

  it('reads a JSON file, which the environment overrides', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glimpse-config-'));
    const path = join(dir, 'glimpse.json');
    writeFileSync(path, JSON.stringify({ port: 1234, log_level: 'debug' }));
    const config = loadConfig({ GLIMPSE_CONFIG: path, GLIMPSE_LOG_LEVEL: 'warn' });
    assert.equal(config.port, 1234);
    assert.equal(config.log_level, 'warn');
  });

  it('names the offending option in every error', () => {
    const cases: Array<[NodeJS.ProcessEnv, RegExp]> = [
      [{ GLIMPSE_PORT: 'eighty' }, /GLIMPSE_PORT must be an integer/],
      [{ GLIMPSE_PORT: '70000' }, /'port' must be <= 65535/],
      [{ GLIMPSE_NOPE: '1' }, /unknown option GLIMPSE_NOPE/],
      [{ GLIMPSE_LOG_LEVEL: 'loud' }, /'log_level'/],
      [{ GLIMPSE_FILESYSTEM_STORE_FSYNC: 'maybe' }, /GLIMPSE_FILESYSTEM_STORE_FSYNC/],
      [{ GLIMPSE_HASHING_ALGORITHM: 'sha9' }, /'hashing_algorithm'/],
      [{ GLIMPSE_DATABASE_URL: 'mysql://db' }, /'database_url'/],
      [{ GLIMPSE_CONFIG: '/nonexistent/glimpse.json' }, /cannot read config file/],
    ];
    for (const [env, message] of cases) {
      assert.throws(
        () => loadConfig(env),
        (error: unknown) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, message);
          return true;
        },
      );
    }
  });

  it('refuses unknown keys in the config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glimpse-config-'));
    const path = join(dir, 'glimpse.json');
    writeFileSync(path, JSON.stringify({ prot: 1 }));
    assert.throws(() => loadConfig({ GLIMPSE_CONFIG: path }), /unknown option 'prot'/);
  });

  it('documents every option and every store setting in the README', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    const settings = Object.values(STORE_SETTINGS).flatMap((specs) => Object.keys(specs));
    for (const name of [...Object.keys(OPTIONS), ...settings]) {
      assert.ok(readme.includes(`| \`${name}\` |`), `README does not document ${name}`);
    }
  });

  it('checks the store layout and every store setting at start, naming the fault', () => {
    const swift = {
      swift_store_auth_address: 'http://127.0.0.1:8080/auth/v1.0',
      swift_store_auth_version: '1',
      swift_store_user: 'test:tester',
      swift_store_key: 'testing',
    };
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ enabled_backends: ['a:tape'], default_backend: 'a' }, /'enabled_backends'.*'a:tape'/],
      [{ enabled_backends: ['a:file'], default_backend: 'b' }, /'default_backend'/],
      [{ enabled_backends: ['a:file', 'w:http'], default_backend: 'w' }, /read-only/],
      [{ enabled_backends: ['a:file', 'a:file'], default_backend: 'a' }, /repeats 'a'/],
      [{ enabled_backends: ['os_glance_x:file'], default_backend: 'os_glance_x' }, /reserved/],
      [{ default_backend: 'a' }, /needs enabled_backends/],
      [{ enabled_import_methods: ['glance-download'] }, /glance-download needs auth_strategy/],
      [
        { enabled_backends: ['a:file'], default_backend: 'a', store_options: { b: {} } },
        /'store_options' names 'b'/,
      ],
      [
        { enabled_backends: ['s:swift'], default_backend: 's', store_options: { s: {} } },
        /store s: setting 'swift_store_auth_address' is required/,
      ],
      [
        {
          enabled_backends: ['s:swift'],
          default_backend: 's',
          store_options: { s: { ...swift, swift_store_large_object_size: 0 } },
        },
        /store s: setting 'swift_store_large_object_size' must be >= 1/,
      ],
      [
        {
          enabled_backends: ['b:s3'],
          default_backend: 'b',
          store_options: {
            b: { s3_store_host: 'x', s3_store_access_key: 'k', s3_store_secret_key: 's' },
          },
        },
        /store b: setting 's3_store_bucket' is required/,
      ],
      [
        { enabled_backends: ['f:file'], default_backend: 'f', store_options: { f: { dir: 1 } } },
        /store f: unknown setting 'dir'/,
      ],
      [
        {
          enabled_backends: ['f:file', 'w:http'],
          default_backend: 'f',
          store_options: { w: { url: 'http://x' } },
        },
        /store w: unknown setting 'url'/,
      ],
    ];
    for (const [overrides, message] of cases) {
      assert.throws(
        () => loadConfig({}, overrides),
        (error: unknown) => error instanceof ConfigError && message.test(error.message),
        message.source,
      );
    }
  });

  it('reads store_options from the environment as JSON', () => {
    const config = loadConfig({
      GLIMPSE_ENABLED_BACKENDS: 'a:file,b:file',
      GLIMPSE_DEFAULT_BACKEND: 'b',
      GLIMPSE_STORE_OPTIONS: '{"a": {"weight": 5}}',
    });
    assert.deepEqual(config.store_options, { a: { weight: 5 } });
    assert.throws(
      () => loadConfig({ GLIMPSE_STORE_OPTIONS: '{not json' }),
      /GLIMPSE_STORE_OPTIONS must be a JSON object/,
    );
  });
});
