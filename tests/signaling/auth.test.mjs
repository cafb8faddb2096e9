// Access control as a client sees it: with a token secret configured, a
// connection needs a join token in its socket.io auth payload, is refused
// with a clear connect_error otherwise, and may only do what its token
// says (its room; publish, subscribe, data).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  startServer,
  startSecureServer,
  connect,
  connectRefused,
  mintToken,
  signJwt,
  scrapeMetrics,
  createTransports,
  expectError,
  vp8Parameters,
  opusParameters,
  TEST_SECRET,
} from './harness.mjs';

const SCTP_STREAM = { streamId: 0, ordered: true };

test('without a valid token the connection is refused before any handler runs', async (t) => {
  const { url } = await startSecureServer(t);

  const missing = await connectRefused(url);
  assert.match(missing.message, /authentication required/);
  assert.match(missing.message, /auth: \{token\}/, 'the message says how to pass a token');

  const forged = await connectRefused(url, { auth: { token: mintToken({ room: 'A', publish: true, secret: 'x'.repeat(40) }) } });
  assert.match(forged.message, /signature does not match/);

  const expired = signJwt({ room: 'A', publish: true, exp: Math.floor(Date.now() / 1000) - 3600 });
  assert.match((await connectRefused(url, { auth: { token: expired } })).message, /expired/);

  const garbage = await connectRefused(url, { auth: { token: 'not-a-jwt' } });
  assert.match(garbage.message, /invalid join token/);

  const noRoom = signJwt({ publish: true, exp: Math.floor(Date.now() / 1000) + 60 });
  assert.match((await connectRefused(url, { auth: { token: noRoom } })).message, /room/);

  const metrics = await scrapeMetrics(url);
  assert.equal(metrics['simplesfu_peers'], 0, 'no refused connection became a peer');
  assert.equal(metrics['simplesfu_connections_refused_total{reason="missing"}'], 1);
  assert.equal(metrics['simplesfu_connections_refused_total{reason="bad_signature"}'], 1);
  assert.equal(metrics['simplesfu_connections_refused_total{reason="expired"}'], 1);

  // A valid token connects and is served.
  const ok = await connect(url, t, { auth: { token: mintToken({ room: 'A', subscribe: true }) } });
  await ok.ok('joinRoom', { roomId: 'A' });
});

test('a token for room A cannot join or consume room B', async (t) => {
  const { url } = await startSecureServer(t);
  const inB = await connect(url, t, { auth: { token: mintToken({ room: 'B', publish: true, subscribe: true }) } });
  const tB = await createTransports(inB);
  await inB.ok('joinRoom', { roomId: 'B' });
  const { id: producerId } = await inB.ok('produce', {
    transportId: tB.send,
    kind: 'video',
    rtpParameters: vp8Parameters(),
    appData: { label: 'camera', broadcast: true },
  });

  const inA = await connect(url, t, { auth: { token: mintToken({ room: 'A', publish: true, subscribe: true }) } });
  await createTransports(inA);
  const refused = await inA.fails('joinRoom', { roomId: 'B' }, 'forbidden');
  assert.match(refused.message, /for room `A`, not `B`/);
  assert.deepEqual(inB.received('peerConnection'), [], 'room B never heard of the refused peer');

  await inA.ok('joinRoom', { roomId: 'A' });
  await inA.fails('createConsumer', { producingPeerId: inB.id, producerId }, 'producer_not_in_room');
  await inA.noPush('createConsumer');
  // Numbers are room ids too: 7 is "7", not A.
  await inA.fails('joinRoom', { roomId: 7 }, 'forbidden');
});

test('a subscribe-only token cannot produce but can consume', async (t) => {
  const { url } = await startSecureServer(t);
  const viewer = await connect(url, t, { auth: { token: mintToken({ room: 'show', subscribe: true }) } });
  const tv = await createTransports(viewer, { connectRecv: true });
  await viewer.ok('joinRoom', { roomId: 'show' });
  const error = await viewer.fails(
    'produce',
    { transportId: tv.send, kind: 'audio', rtpParameters: opusParameters(), appData: { label: 'mic' } },
    'forbidden',
  );
  assert.match(error.message, /does not allow you to produce/);
  await viewer.fails('produceData', { transportId: tv.send, sctpStreamParameters: SCTP_STREAM, label: 'chat' }, 'forbidden');

  const presenter = await connect(url, t, { auth: { token: mintToken({ room: 'show', publish: true }) } });
  const tp = await createTransports(presenter);
  await presenter.ok('joinRoom', { roomId: 'show' });
  const { id: producerId } = await presenter.ok('produce', {
    transportId: tp.send,
    kind: 'audio',
    rtpParameters: opusParameters(),
    appData: { label: 'mic' },
  });
  // The viewer gets the presenter's audio; the publish-only presenter gets nothing back.
  const consumer = await viewer.waitForPush('createConsumer', (c) => c.producerId === producerId);
  assert.equal(consumer.kind, 'audio');
  await presenter.fails('createConsumer', { producingPeerId: viewer.id, producerId }, 'forbidden');

  const metrics = await scrapeMetrics(url);
  assert.equal(metrics['simplesfu_request_errors_total{code="forbidden"}'], 3);
  assert.equal(metrics['simplesfu_producers'], 1);
});

test('the data right covers data channels only', async (t) => {
  const { url } = await startSecureServer(t);
  const chat = await connect(url, t, { auth: { token: mintToken({ room: 'c', data: true }) } });
  const tc = await createTransports(chat);
  await chat.ok('joinRoom', { roomId: 'c' });
  const { id } = await chat.ok('produceData', { transportId: tc.send, sctpStreamParameters: SCTP_STREAM, label: 'chat' });
  assert.ok(id);
  await chat.fails('produce', { transportId: tc.send, kind: 'video', rtpParameters: vp8Parameters(), appData: {} }, 'forbidden');
});

test('tokens are off by default: no auth payload needed', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  await p.ok('joinRoom', { roomId: 'anything' });
});

test('a token secret can come from the configuration file', async (t) => {
  const { mkdtempSync, writeFileSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const dir = mkdtempSync(path.join(tmpdir(), 'simplesfu-conf-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'simplesfu.toml');
  writeFileSync(file, `[auth]\nsecret = "${TEST_SECRET}"\n`);
  const { url } = await startServer(t, { args: ['--config', file] });
  assert.match((await connectRefused(url)).message, /authentication required/);
  const p = await connect(url, t, { auth: { token: mintToken({ room: 'f', subscribe: true }) } });
  expectError(await p.request('joinRoom', { roomId: 'g' }), 'forbidden');
});
