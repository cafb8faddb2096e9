// Bundles each browser test page (e2e/pages/*.js) with its npm dependencies
// into e2e/pages/dist/, where the pages' HTML loads it from.
// Used by the test harness and by `npm run build:e2e`.

import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';

export const PAGES_DIR = fileURLToPath(new URL('./pages/', import.meta.url));

export async function buildPages() {
  const entryPoints = readdirSync(PAGES_DIR)
    .filter((name) => name.endsWith('.js'))
    .map((name) => join(PAGES_DIR, name));
  await esbuild.build({
    entryPoints,
    outdir: join(PAGES_DIR, 'dist'),
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: 'chrome111',
    sourcemap: true,
    logLevel: 'warning',
  });
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await buildPages();
}
