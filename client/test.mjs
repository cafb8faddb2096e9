// Runs the client's unit tests (src/**/*.test.ts) with node's test runner:
// esbuild compiles each test file with what it imports into a temporary
// directory (TypeScript needs no other step), then `node --test` runs them.
// Arguments are passed on to `node --test` (e.g. --test-name-pattern=pause).

import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const srcDir = fileURLToPath(new URL('./src/', import.meta.url));
const entryPoints = readdirSync(srcDir, { recursive: true })
  .filter((name) => String(name).endsWith('.test.ts'))
  .map((name) => join(srcDir, String(name)));
const outdir = mkdtempSync(join(tmpdir(), 'simplesfu-client-tests-'));
let status = 1;
try {
  await esbuild.build({
    entryPoints,
    outdir,
    outbase: srcDir,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    outExtension: { '.js': '.cjs' },
    sourcemap: 'inline',
    logLevel: 'warning',
  });
  const files = entryPoints.map((path) => join(outdir, path.slice(srcDir.length).replace(/\.ts$/, '.cjs')));
  const result = spawnSync(process.execPath, ['--enable-source-maps', '--test', ...process.argv.slice(2), ...files], {
    stdio: 'inherit',
  });
  status = result.status ?? 1;
} finally {
  rmSync(outdir, { recursive: true, force: true });
}
process.exit(status);
