/**
 * undici, loaded on first use. It takes about a quarter of a second to load, and only
 * keystone mode and web-download imports need it, so a plain start does not pay for it.
 */
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const load = createRequire(import.meta.url);
let module: typeof Undici | null = null;

export function undici(): typeof Undici {
  module ??= load('undici') as typeof Undici;
  return module;
}
