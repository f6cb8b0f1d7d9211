import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { ConfigError, loadConfig } from '../../src/config/load.js';
import { OPTIONS } from '../../src/config/schema.js';

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

  it('documents every option in the README', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    for (const name of Object.keys(OPTIONS)) {
      assert.ok(readme.includes(`\`${name}\``), `README does not document ${name}`);
    }
  });
});
