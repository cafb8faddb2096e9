// Attacks from the security review (issue 11), each against the real binary
// over loopback, bounded in count and time: oversized frames and connect
// payloads, session takeover through a peer id, connect-and-drop leaks,
// resume with another token, connection floods and slow clients at the HTTP
// door, tokens not valid yet, /metrics behind a bearer token, secrets in
// debug logs, and the amplification of room-wide pushes. Each asserts what
// an operator or a victim would see: a coded refusal, a closed connection,
// counts back to normal, nothing more sent than needed.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import {
  startServer, startSecureServer, connect, connectRefused, mintToken, signJwt, scrapeMetrics, expectError,
  DTLS_PARAMETERS, vp8Parameters, TEST_SECRET,
} from '../signaling/harness.mjs';
import { rssKb } from './lib.mjs';
import { rawSocketIo, rawTcp } from './rawws.mjs';

async function health(url) {
  return (await fetch(`${url}/health`)).json();
}

async function until(check, what, ms = 10_000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await check();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what} (waited ${ms} ms)`);
}

test('a WebSocket message over the socket.io limit closes the connection instead of being parsed', async (t) => {
  const server = await startServer(t);
  const before = rssKb(server.child.pid);
  // A 4 MB event (engine.io used to accept up to 64 MiB over WebSocket,
  // before any authentication, and parse it whole).
  const big = await rawSocketIo(server.url);
  await big.send('40');
  assert.ok(await big.next((m) => m.startsWith('40')), 'connected');
  await big.send(`42["mediasoupSignaling",{"type":"joinRoom","data":{"roomId":"${'x'.repeat(4_000_000)}"}}]`);
  assert.ok(await big.closedWithin(5000), 'the server closed the connection');
  // The same for a CONNECT packet carrying a huge auth payload.
  const connectBomb = await rawSocketIo(server.url);
  await connectBomb.send(`40{"token":"${'y'.repeat(4_000_000)}"}`);
  assert.ok(await connectBomb.closedWithin(5000), 'a huge CONNECT closes the connection');
  const grown = rssKb(server.child.pid) - before;
  assert.ok(grown < 64 * 1024, `VmRSS grew ${grown} kB`);
  await until(async () => (await health(server.url)).peers === 0, 'no peer left behind');
});

test('an auth payload over 4 KiB is refused with payload_too_large before it is parsed', async (t) => {
  const { url } = await startServer(t);
  const error = await connectRefused(url, { auth: { note: 'z'.repeat(5000) } });
  assert.match(error.message, /^payload_too_large: .*4096/);
  const metrics = await scrapeMetrics(url);
  assert.equal(metrics['simplesfu_connections_refused_total{reason="payload_too_large"}'], 1);
  // A normal auth payload still connects.
  await connect(url, t, { auth: { resume: true } });
});

test('a request over limits.max_request_bytes gets payload_too_large without being parsed, and the connection stays', async (t) => {
  const { url } = await startServer(t);
  const peer = await connect(url, t);
  expectError(await peer.request('joinRoom', { roomId: 'r', pad: 'p'.repeat(300_000) }), 'payload_too_large');
  await peer.ok('joinRoom', { roomId: 'r' });
});

test('a peer id is not a session id: posting with it over long-polling is refused and the victim stays', async (t) => {
  const { url } = await startServer(t);
  const victim = await connect(url, t);
  const member = await connect(url, t);
  await victim.ok('joinRoom', { roomId: 'takeover' });
  await member.ok('joinRoom', { roomId: 'takeover' });
  const [seen] = await member.waitForPush('peerConnection', (ids) => ids.includes(victim.id));
  assert.equal(seen, victim.id, "members learn each other's peer ids");
  assert.notEqual(victim.id, victim.socket.id, 'the peer id is not the socket id');
  assert.notEqual(victim.id, victim.socket.io.engine.id, 'nor the engine.io session id');
  // The attack: use the peer id as an engine.io session id over polling.
  const res = await fetch(`${url}/socket.io/?EIO=4&transport=polling&sid=${encodeURIComponent(seen)}`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain;charset=UTF-8' },
    body: '42["mediasoupSignaling",{"type":"leaveRoom","data":{}}]',
  });
  assert.equal(res.status, 400, 'no such session');
  await member.noPush('peerDisconnection', () => true, 300);
  // The victim is still in its room: it can leave it itself.
  await victim.ok('leaveRoom', { roomId: 'takeover' });
});

test('clients that connect and vanish at once leave no peer behind', { timeout: 60_000 }, async (t) => {
  const { url } = await startServer(t);
  const ROUNDS = 600;
  const CONCURRENCY = 12;
  let next = 0;
  let connected = 0;
  const worker = async () => {
    while (next < ROUNDS) {
      next += 1;
      let client;
      try {
        client = await rawSocketIo(url, { timeoutMs: 2000 });
      } catch {
        continue; // refused or slow: not this test's subject
      }
      connected += 1;
      await client.send('40');
      client.socket.resetAndDestroy(); // TCP RST while the server answers CONNECT
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  assert.ok(connected > ROUNDS / 2, `${connected} of ${ROUNDS} rounds reached the server`);
  // Orphans are swept after two checks 5 s apart.
  const left = await until(async () => {
    const h = await health(url);
    return h.peers === 0 ? h : null;
  }, 'every peer of a vanished client is cleaned up', 20_000);
  assert.equal(left.transports, 0);
});

test('a resumed session takes the new join token: another room is refused, fewer rights apply', async (t) => {
  const { url } = await startSecureServer(t);
  const publishA = mintToken({ room: 'room-a', publish: true, subscribe: true });
  let session = null;
  let token = publishA;
  const socket = io(url, {
    transports: ['websocket'], forceNew: true, reconnection: false,
    auth: (cb) => cb({ token, resume: session ? { peerId: session.peerId, token: session.resumeToken } : true }),
  });
  t.after(() => socket.disconnect());
  socket.on('mediasoupSignaling', (m) => {
    if (m.type === 'session') session = m.data;
  });
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const request = (type, data) => socket.timeout(5000).emitWithAck('mediasoupSignaling', { type, data });
  assert.equal((await request('joinRoom', { roomId: 'room-a' })).success, true);
  await until(async () => session, 'a session push');

  // Cut, then come back with a subscribe-only token for room B: refused.
  socket.io.engine.close();
  await new Promise((r) => setTimeout(r, 100));
  token = mintToken({ room: 'room-b', subscribe: true });
  socket.connect();
  const refused = await new Promise((resolve) => {
    socket.once('connect', () => resolve('connected'));
    socket.once('connect_error', (e) => resolve(e.message));
  });
  assert.match(refused, /^forbidden: .*another room/);

  // With a subscribe-only token for room A it resumes, but may no longer publish.
  token = mintToken({ room: 'room-a', subscribe: true });
  socket.connect();
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const send = await request('createWebRtcTransport', { producing: true, consuming: false });
  const ack = send.success ? await request('produce', { transportId: send.id, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'cam' } }) : send;
  expectError(ack, 'forbidden', 'a produce after resuming with a subscribe-only token');
});

test('connections over the per-address limit are closed at once; a freed place serves again', async (t) => {
  const { url } = await startServer(t, { args: ['--max-connections-per-ip', '4'] });
  const sockets = [];
  for (let i = 0; i < 8; i += 1) sockets.push(await rawTcp(url));
  await new Promise((r) => setTimeout(r, 500));
  const closed = sockets.filter((s) => s.closed).length;
  assert.equal(closed, 4, 'the four over the limit were closed, the four within it stay');
  const metrics = await scrapeMetrics(url).catch(() => null);
  assert.equal(metrics, null, 'the limit applies to /metrics too while four idle connections hold it');
  for (const s of sockets) s.socket.destroy();
  await new Promise((r) => setTimeout(r, 200));
  const after = await scrapeMetrics(url);
  assert.equal(after['simplesfu_connections_refused_total{reason="address_full"}'], 5, 'four connections and one scrape were refused');
  await connect(url, t);
});

test('a client that sends headers too slowly, or idles on keep-alive, is disconnected', async (t) => {
  const { url } = await startServer(t, { args: ['--header-read-timeout-ms', '300'] });
  const slow = await rawTcp(url);
  slow.socket.write('GET /health HTTP/1.1\r\nHost: x\r\n'); // never finishes its headers
  assert.ok(await slow.closedWithin(5000), 'closed for slow headers');
  const idle = await rawTcp(url); // says nothing at all
  assert.ok(await idle.closedWithin(5000), 'closed while idle');
  // A normal request is served.
  assert.equal((await fetch(`${url}/health`)).status, 200);
});

test('a join token whose nbf is in the future is refused', async (t) => {
  const { url } = await startSecureServer(t);
  const now = Math.floor(Date.now() / 1000);
  const early = signJwt({ room: 'r', publish: true, exp: now + 7200, nbf: now + 3600 });
  const error = await connectRefused(url, { auth: { token: early } });
  assert.match(error.message, /not valid yet/);
  const ready = signJwt({ room: 'r', publish: true, exp: now + 7200, nbf: now - 10 });
  await connect(url, t, { auth: { token: ready } });
});

test('/metrics can require a bearer token', async (t) => {
  const metricsToken = 'metrics-token-for-tests-0123456789';
  const { url } = await startServer(t, { env: { SIMPLESFU_METRICS_TOKEN: metricsToken } });
  const open = await fetch(`${url}/metrics`);
  assert.equal(open.status, 401);
  assert.match(await open.text(), /Authorization: Bearer/);
  assert.equal((await fetch(`${url}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
  const metrics = await scrapeMetrics(url, { headers: { authorization: `Bearer ${metricsToken}` } });
  assert.equal(typeof metrics.simplesfu_peers, 'number');
  assert.equal((await fetch(`${url}/health`)).status, 200, '/health stays open');
});

test('debug logs never hold join or resume tokens', async (t) => {
  const server = await startSecureServer(t, { args: ['--log-level', 'debug'] });
  const token = mintToken({ room: 'logs', publish: true, subscribe: true });
  const peer = await connect(server.url, t, { auth: { token, resume: true } });
  const session = await peer.waitForPush('session');
  await peer.ok('joinRoom', { roomId: 'logs' });
  peer.close();
  await server.stop();
  const log = server.output();
  assert.ok(log.length > 0, 'debug logging wrote something');
  assert.ok(!log.includes(token), 'the join token is not in the log');
  assert.ok(!log.includes(token.split('.')[2]), 'nor its signature');
  assert.ok(!log.includes(session.resumeToken), 'the resume token is not in the log');
  assert.ok(!log.includes(TEST_SECRET), 'the secret is not in the log');
});

test('room-wide pushes are not amplified: small labels, no resend for no-ops, churn paced', async (t) => {
  const { url } = await startServer(t, { args: ['--available-producers-interval-ms', '0'] });
  const churner = await connect(url, t);
  const member = await connect(url, t);
  await churner.ok('joinRoom', { roomId: 'amp' });
  await member.ok('joinRoom', { roomId: 'amp' });
  const send = await churner.ok('createWebRtcTransport', { producing: true, consuming: false });
  await churner.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });

  // Labels every member receives are small.
  expectError(
    await churner.request('produce', { transportId: send.id, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'L'.repeat(60_000) } }),
    'payload_too_large',
  );
  const { id } = await churner.ok('produce', { transportId: send.id, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'cam' } });
  await member.waitForPush('availableProducers', (d) => d[churner.id]?.producers[id]);
  await new Promise((r) => setTimeout(r, 300));

  // Re-joining the same room and resuming a running producer change nothing for the others.
  member.clearPushes();
  for (let i = 0; i < 50; i += 1) {
    await churner.ok('joinRoom', { roomId: 'amp' });
    await churner.ok('resumeProducer', { producerId: id });
  }
  await member.noPush('availableProducers', () => true, 400);

  // Real changes, fast: the member hears the end state, in few pushes.
  const started = Date.now();
  for (let i = 0; i < 40; i += 1) await churner.ok(i % 2 ? 'resumeProducer' : 'pauseProducer', { producerId: id });
  await churner.ok('pauseProducer', { producerId: id });
  await member.waitForPush('availableProducers', (d) => d[churner.id]?.producers[id]?.paused === true);
  await new Promise((r) => setTimeout(r, 400));
  const elapsed = Date.now() - started;
  const lists = member.received('availableProducers').length;
  assert.ok(lists <= Math.ceil(elapsed / 200) + 2, `${lists} room lists in ${elapsed} ms for 41 changes`);
  assert.equal(member.received('availableProducers').at(-1)[churner.id].producers[id].paused, true, 'the last list is the end state');
});

test('a client that stops reading is disconnected and cleaned up, and the room goes on', { timeout: 60_000 }, async (t) => {
  const { url } = await startServer(t, { args: ['--available-producers-interval-ms', '0'] });
  const busy = await connect(url, t);
  await busy.ok('joinRoom', { roomId: 'slow' });
  const reader = await rawSocketIo(url);
  await reader.send('40');
  assert.ok(await reader.next((m) => m.startsWith('40')), 'connected');
  await reader.send('42["mediasoupSignaling",{"type":"joinRoom","data":{"roomId":"slow"}}]');
  await busy.waitForPush('peerConnection');
  // Stop reading: the kernel buffers fill, then the server's queue.
  reader.socket.pause();
  const send = await busy.ok('createWebRtcTransport', { producing: true, consuming: false });
  await busy.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });
  const { id } = await busy.ok('produce', { transportId: send.id, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'x'.repeat(200) } });
  // Keep the room busy (each change sends the room list to every member) until the silent reader is gone.
  const stopAt = Date.now() + 40_000;
  let gone = false;
  for (let i = 0; !gone && Date.now() < stopAt; i += 1) {
    await busy.ok(i % 2 ? 'resumeProducer' : 'pauseProducer', { producerId: id });
    await new Promise((r) => setTimeout(r, 50));
    gone = (await health(url)).peers === 1;
  }
  assert.ok(gone, 'the peer that stopped reading was cleaned up');
  reader.destroy();
  await busy.ok('getRouterRtpCapabilities');
});
