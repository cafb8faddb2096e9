// The HTTP side: /health, static files, CORS for pages served elsewhere, and
// the stdout line that tools read.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { io } from 'socket.io-client';
import { startServer, connect } from './harness.mjs';

test('prints the real bound address and serves /health with counts', async (t) => {
  const { url } = await startServer(t);
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.notEqual(new URL(url).port, '0');
  const a = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'h' });
  const res = await fetch(`${url}/health`);
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.status, 'ok');
  assert.equal(body.peers, 1);
  assert.equal(body.rooms, 1);
  assert.equal(body.workers, 2, 'the harness starts two workers');
  for (const key of ['transports', 'producers', 'consumers', 'dataProducers', 'dataConsumers']) {
    assert.equal(body[key], 0, key);
  }
});

test('serves the static directory with its index page', async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), 'simplesfu-static-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(path.join(dir, 'index.html'), '<h1>hello simplesfu</h1>');
  writeFileSync(path.join(dir, 'app.js'), 'console.log(1)');
  const { url } = await startServer(t, { args: ['--static-dir', dir] });
  const index = await fetch(`${url}/`);
  assert.equal(index.status, 200);
  assert.match(await index.text(), /hello simplesfu/);
  const js = await fetch(`${url}/app.js`);
  assert.equal(js.status, 200);
  const missing = await fetch(`${url}/nope.html`);
  assert.equal(missing.status, 404);
});

test('without --static-dir the examples built into the binary are served, whatever the working directory', async (t) => {
  const elsewhere = mkdtempSync(path.join(tmpdir(), 'simplesfu-cwd-'));
  t.after(() => rmSync(elsewhere, { recursive: true, force: true }));
  const { url } = await startServer(t, { cwd: elsewhere });
  const examples = fileURLToPath(new URL('../../examples/', import.meta.url));
  const index = await fetch(`${url}/`);
  assert.equal(index.status, 200);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  assert.equal(await index.text(), readFileSync(path.join(examples, 'index.html'), 'utf8'));
  const page = await fetch(`${url}/video-chat/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>simplesfu: video chat<\/title>/);
  const script = await fetch(`${url}/video-chat/app.js`);
  assert.match(script.headers.get('content-type'), /javascript/);
  assert.equal(await script.text(), readFileSync(path.join(examples, 'video-chat/app.js'), 'utf8'));
  const bare = await fetch(`${url}/broadcast`, { redirect: 'manual' });
  assert.ok([301, 308].includes(bare.status), `a directory without its slash redirects (${bare.status})`);
  assert.equal(bare.headers.get('location'), '/broadcast/');
  assert.equal((await fetch(`${url}/nope.html`)).status, 404);
  assert.equal((await fetch(`${url}/simplesfu-client.js`)).status, 200, 'the client bundle beside them');
});

test('CORS allows any origin, for HTTP and socket.io polling', async (t) => {
  const { url } = await startServer(t);
  const res = await fetch(`${url}/health`, { headers: { Origin: 'http://elsewhere.example' } });
  assert.equal(res.headers.get('access-control-allow-origin'), '*');
  const preflight = await fetch(`${url}/socket.io/?EIO=4&transport=polling`, {
    method: 'OPTIONS',
    headers: {
      Origin: 'http://elsewhere.example',
      'Access-Control-Request-Method': 'POST',
      'Access-Control-Request-Headers': 'content-type',
    },
  });
  assert.ok(preflight.status < 300, `preflight status ${preflight.status}`);
  assert.equal(preflight.headers.get('access-control-allow-origin'), '*');
  const handshake = await fetch(`${url}/socket.io/?EIO=4&transport=polling`, {
    headers: { Origin: 'http://elsewhere.example' },
  });
  assert.equal(handshake.status, 200);
  assert.equal(handshake.headers.get('access-control-allow-origin'), '*');
  assert.match(await handshake.text(), /"sid"/);
});

test('socket.io works over long polling too', async (t) => {
  const { url } = await startServer(t);
  const socket = io(url, { transports: ['polling'], forceNew: true, reconnection: false });
  t.after(() => socket.disconnect());
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const ack = await socket.timeout(5000).emitWithAck('mediasoupSignaling', { type: 'joinRoom', data: { roomId: 'p' } });
  assert.deepEqual(ack, { success: true });
});
