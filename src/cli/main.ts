#!/usr/bin/env node
/**
 * Operator commands. `glimpse serve` starts the API (as `npm start` does), `glimpse db migrate`
 * applies schema migrations without starting it, `glimpse config` lists every option.
 */
import { ConfigError, loadConfig } from '../config/load.js';
import { migrateDatabase } from '../db/sql/database.js';
import { OPTIONS } from '../config/schema.js';
import { STORE_SETTINGS } from '../stores/driver-options.js';

const USAGE = `usage: glimpse <command>
  serve          start the API server
  db migrate     apply pending database migrations and exit
  config         list every option with its default and environment variable, and the
                 settings each type of store takes in store_options`;

async function migrateCommand(): Promise<void> {
  const config = loadConfig();
  await migrateDatabase({ url: config.database_url, dataDir: config.data_dir });
  process.stdout.write('database is up to date\n');
}

function configCommand(): void {
  for (const [name, spec] of Object.entries(OPTIONS)) {
    const variable = `GLIMPSE_${name.toUpperCase()}`;
    const fallback = Array.isArray(spec.default)
      ? spec.default.join(',')
      : typeof spec.default === 'object'
        ? JSON.stringify(spec.default)
        : String(spec.default);
    process.stdout.write(
      `${name} (${variable}) = ${JSON.stringify(fallback)}\n  ${spec.description}\n`,
    );
  }
  for (const [type, settings] of Object.entries(STORE_SETTINGS)) {
    process.stdout.write(`\nstore_options.<id> of a ${type} store:\n`);
    for (const [name, spec] of Object.entries(settings)) {
      const fallback = spec.required ? '(required)' : JSON.stringify(spec.default);
      process.stdout.write(`${name} = ${fallback}\n  ${spec.description}\n`);
    }
  }
}

async function run(args: string[]): Promise<void> {
  const command = args.join(' ');
  if (command === 'serve') {
    await import('../main.js');
  } else if (command === 'db migrate') {
    await migrateCommand();
  } else if (command === 'config') {
    configCommand();
  } else {
    process.stderr.write(`${USAGE}\n`);
    process.exitCode = 2;
  }
}

run(process.argv.slice(2)).catch((error: unknown) => {
  const prefix = error instanceof ConfigError ? 'configuration error: ' : '';
  process.stderr.write(`glimpse: ${prefix}${(error as Error).message}\n`);
  process.exitCode = 1;
});
