// Builds simplesfu-client:
//   dist/simplesfu-client.mjs   ES module (mediasoup-client, socket.io-client as imports)
//   dist/types/                 type declarations (tsc --emitDeclarationOnly)
//   bundle/simplesfu-client.js  script-tag bundle (IIFE, minified, everything
//                               inside) defining the global SimpleMediasoupPeer;
//                               committed, because the server binary embeds it
//                               and serves it at /simplesfu-client.js.
// `node build.mjs --check` rebuilds the bundle in memory and fails unless it
// is byte for byte the committed one, so the committed file never goes stale.
// `node build.mjs --bundle-only` writes just the script-tag bundle.

import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
export const BUNDLE_PATH = here('./bundle/simplesfu-client.js');

/** The script-tag bundle's options; the bundle must only depend on these and the sources. */
export const bundleOptions = {
  entryPoints: [here('./src/global.ts')],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2022',
  minify: true,
  legalComments: 'none',
  charset: 'utf8',
  logLevel: 'warning',
};

export async function buildBundleText() {
  const result = await esbuild.build({ ...bundleOptions, write: false, outfile: BUNDLE_PATH });
  return result.outputFiles[0].text;
}

async function buildModule() {
  await esbuild.build({
    entryPoints: [here('./src/index.ts')],
    outfile: here('./dist/simplesfu-client.mjs'),
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    packages: 'external',
    sourcemap: true,
    logLevel: 'warning',
  });
}

function buildTypes() {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', here('./tsconfig.json')], { stdio: 'inherit' });
}

async function main() {
  const args = new Set(process.argv.slice(2));
  const bundle = await buildBundleText();
  if (args.has('--check')) {
    let committed = '';
    try {
      committed = readFileSync(BUNDLE_PATH, 'utf8');
    } catch {
      // reported below
    }
    if (committed !== bundle) {
      console.error(
        `client/bundle/simplesfu-client.js is stale: rebuilding it from client/src gives a different file\n` +
          `(${committed.length} committed vs ${bundle.length} rebuilt characters). ` +
          'Run `npm run build:client` and commit the result.',
      );
      process.exit(1);
    }
    console.log(`client/bundle/simplesfu-client.js is up to date (${bundle.length} bytes)`);
    return;
  }
  mkdirSync(here('./bundle'), { recursive: true });
  writeFileSync(BUNDLE_PATH, bundle);
  if (args.has('--bundle-only')) return;
  await buildModule();
  buildTypes();
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await main();
}
