/**
 * Bundles the compiled server (dist/src/main.js) and its pure-JavaScript dependencies into
 * one file, dist/glimpse.mjs, which `npm start` runs.
 *
 * Why: Node loads an ES module graph file by file, and Fastify, Kysely and Ajv are hundreds of
 * files; loading them took about 550 ms of a 700 ms start. One bundled file starts in about
 * 350 ms, and a restart or a new process behind a load balancer serves that much sooner.
 *
 * Left out of the bundle, and loaded from node_modules as before:
 * - better-sqlite3, a native addon, and pg-native, pg's optional one;
 * - undici, yaml and the AWS SDK, which the server loads only when the configuration needs
 *   them, so that a start without Keystone, a policy file or S3 does not pay for them.
 * pg is bundled: the server imports it dynamically, which the bundle keeps (it is evaluated
 * only when PostgreSQL is configured), and a PostgreSQL start saves loading its files.
 */
import { build } from 'esbuild';

const EXTERNAL = ['better-sqlite3', 'pg-native', 'undici', 'yaml', '@aws-sdk/*'];

await build({
  entryPoints: ['dist/src/main.js'],
  outfile: 'dist/glimpse.mjs',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  external: EXTERNAL,
  sourcemap: true,
  // Bundled CommonJS dependencies call require(); an ES module has none of its own.
  banner: {
    js:
      "import { createRequire as glimpseRequire } from 'node:module';\n" +
      'const require = glimpseRequire(import.meta.url);',
  },
  logLevel: 'warning',
});
