// Checks the npm package as a user installs it: `npm pack` from a tree
// without dist/ (as a clean checkout has it; `prepack` must build it), the
// tarball unpacked into a scratch application's node_modules, then an import
// of it bundled with esbuild and a use of it type-checked with tsc, both
// resolving through the package's `exports`. No network: the package's own
// dependencies (mediasoup-client, socket.io-client) are linked from the
// workspace's node_modules, where `npm ci` put them.

import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import * as esbuild from 'esbuild';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const CLIENT_DIR = here('./');
const manifest = JSON.parse(readFileSync(here('./package.json'), 'utf8'));
const require = createRequire(import.meta.url);

/** A user's code: imports by the package name only. */
const APP_JS = `import { SimpleMediasoupPeer, SignalingError, SIMULCAST } from 'simplesfu-client';
window.check = { SimpleMediasoupPeer, SignalingError, SIMULCAST };
`;
const APP_TS = `import { SimpleMediasoupPeer, type TrackEvent, type SimpleMediasoupPeerOptions } from 'simplesfu-client';

const options: SimpleMediasoupPeerOptions = { roomId: 'lobby' };
const peer = new SimpleMediasoupPeer(options);
peer.on('track', (event: TrackEvent) => {
  const kind: 'audio' | 'video' = event.kind;
  console.log(kind, event.track.id, event.peerId);
});
export async function publish(track: MediaStreamTrack): Promise<void> {
  await peer.addTrack(track, 'camera');
}
// The declarations are real types, not \`any\`: these must be refused.
// @ts-expect-error an unknown event name
peer.on('no-such-event', () => {});
// @ts-expect-error a room id is not an object
new SimpleMediasoupPeer({ roomId: { room: 1 } });
`;

/** Where Node would find `name` from client/ (packages may not export their package.json). */
function installedDependency(name) {
  for (let dir = CLIENT_DIR; ; dir = dirname(dir)) {
    const candidate = join(dir, 'node_modules', name);
    if (existsSync(join(candidate, 'package.json'))) return candidate;
    if (dirname(dir) === dir) throw new Error(`${name} is not installed: run \`npm ci\` first`);
  }
}

function run(command, args, options = {}) {
  return execFileSync(command, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], ...options });
}

const scratch = mkdtempSync(join(tmpdir(), 'simplesfu-client-package-'));
try {
  // A clean checkout has no dist/: the tarball must still carry it.
  rmSync(here('./dist'), { recursive: true, force: true });
  const packed = JSON.parse(run('npm', ['pack', '--json', '--pack-destination', scratch], { cwd: CLIENT_DIR }));
  const files = packed[0].files.map((f) => f.path);
  for (const wanted of [manifest.module, manifest.types, manifest.exports['.'].import, manifest.exports['.'].types, 'bundle/simplesfu-client.js']) {
    const path = wanted.replace(/^\.\//, '');
    assert.ok(files.includes(path), `the tarball lacks ${path} (it has: ${files.join(', ')})`);
  }

  // Install: unpack into node_modules as npm does, link the dependencies.
  const app = join(scratch, 'app');
  const modules = join(app, 'node_modules');
  const installed = join(modules, manifest.name);
  mkdirSync(installed, { recursive: true });
  run('tar', ['-xzf', join(scratch, packed[0].filename), '-C', installed, '--strip-components=1']);
  for (const dependency of Object.keys(manifest.dependencies)) {
    symlinkSync(installedDependency(dependency), join(modules, dependency), 'dir');
  }
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }));
  writeFileSync(join(app, 'main.js'), APP_JS);
  writeFileSync(join(app, 'main.ts'), APP_TS);

  // A bundler user: esbuild resolves the package's `exports` (import).
  const bundled = await esbuild.build({
    entryPoints: [join(app, 'main.js')],
    absWorkingDir: app,
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    logLevel: 'silent',
  });
  const text = bundled.outputFiles[0].text;
  assert.ok(text.includes('called on a closed peer'), 'the bundle holds the library');
  assert.match(text, /Device/, "the bundle holds the library's dependency mediasoup-client");
  assert.ok(!text.includes(CLIENT_DIR), 'resolved from the installed package, not the source tree');

  // A TypeScript user: tsc resolves the package's `exports` (types).
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        module: 'ESNext',
        moduleResolution: 'Bundler',
        lib: ['ES2022', 'DOM', 'DOM.Iterable'],
        strict: true,
        noEmit: true,
        types: [],
      },
      files: ['main.ts'],
    }),
  );
  const tsc = require.resolve('typescript/bin/tsc');
  try {
    run(process.execPath, [tsc, '-p', join(app, 'tsconfig.json')]);
  } catch (error) {
    assert.fail(`tsc refused a use of the installed package:\n${error.stdout ?? error.message}`);
  }
  console.log(`${packed[0].filename}: ${files.length} files; an import bundles with esbuild and type-checks with tsc`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
assert.ok(existsSync(here('./dist/simplesfu-client.mjs')), 'prepack left the build in dist/');
