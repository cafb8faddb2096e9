// Session resume (protocol extension, docs/PROTOCOL.md "Session resume"): a
// client that announces `auth: {resume: true}` gets a `session` push; when its
// socket is cut it reconnects with `auth: {resume: {peerId, token}}` and keeps
// its peer: same id, room, transports, producers and consumers, with the
// pushes it missed replayed. The other peers see nothing. After the grace
// period it is gone for everyone; a wrong token is refused before any handler.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startServer, connect, Peer, DTLS_PARAMETERS, vp8Parameters, opusParameters } from './harness.mjs';

/**
 * A client that resumes by itself, as a library would: socket.io's own
 * reconnection, with an auth function that shows the latest session token.
 */
async function resumableClient(url, t, { reconnection = true } = {}) {
  let session = null;
  const socket = io(url, {
    transports: ['websocket'],
    forceNew: true,
    reconnection,
    reconnectionDelay: 50,
    reconnectionDelayMax: 100,
    auth: (cb) => cb(session ? { resume: { peerId: session.peerId, token: session.resumeToken } } : { resume: true }),
  });
  const peer = new Peer(socket);
  socket.on('mediasoupSignaling', (m) => {
    if (m.type === 'session') session = m.data;
  });
  t.after(() => socket.disconnect());
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const first = await peer.waitForPush('session');
  await peer.learnId();
  return { peer, socket, session: () => session, first };
}

/** The socket comes back (socket.io reconnects by itself) and says so. */
function reconnected(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reconnect within 5 s')), 5000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** Connect with this auth payload; resolves with the connect_error message. */
function refusal(url, t, auth) {
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, auth });
  t.after(() => socket.disconnect());
  return new Promise((resolve, reject) => {
    socket.once('connect', () => reject(new Error('connected, expected a refusal')));
    socket.once('connect_error', (err) => resolve(err.message));
  });
}

async function transports(peer) {
  const send = await peer.ok('createWebRtcTransport', { producing: true, consuming: false });
  const recv = await peer.ok('createWebRtcTransport', { producing: false, consuming: true });
  await peer.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });
  return { send: send.id, recv: recv.id };
}

test('a cut socket that reconnects with its token keeps its peer, its producer and gets what it missed', async (t) => {
  const { url } = await startServer(t);
  const { peer: a, socket, session, first } = await resumableClient(url, t);
  assert.equal(first.peerId, a.id, 'the session push and the capabilities ack name the same peer');
  assert.notEqual(first.peerId, socket.id, 'the peer id is never the socket id (a polling credential)');
  assert.match(first.resumeToken, /^[0-9a-f]{64}$/);
  assert.equal(first.resumeGraceMs, 15000);
  const aId = first.peerId;
  const b = await connect(url, t);
  const ta = await transports(a);
  const tb = await transports(b);
  await a.ok('joinRoom', { roomId: 'resume' });
  await b.ok('joinRoom', { roomId: 'resume' });
  const { id: cam } = await a.ok('produce', { transportId: ta.send, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'camera' } });
  await b.waitForPush('createConsumer', (d) => d.producerId === cam);
  b.clearPushes();

  // Cut the socket from the client side, as a network drop would.
  const back = reconnected(socket);
  a.clearPushes();
  socket.io.engine.close();
  // Things happen while a is away: a newcomer joins, b produces audio.
  const c = await connect(url, t);
  await c.ok('joinRoom', { roomId: 'resume' });
  const { id: mic } = await b.ok('produce', { transportId: tb.send, kind: 'audio', rtpParameters: opusParameters(), appData: { label: 'mic' } });
  await back;

  const second = await a.waitForPush('session');
  assert.equal(second.peerId, aId, 'the same peer id');
  assert.notEqual(second.resumeToken, first.resumeToken, 'a new token for the next resume');
  assert.notEqual(socket.id, aId, 'a new socket speaks for the old peer');
  assert.deepEqual(await a.waitForPush('peerConnection'), [c.id], 'the missed peerConnection is replayed');
  const consumer = await a.waitForPush('createConsumer', (d) => d.producerId === mic);
  assert.equal(consumer.peerId, b.id, 'the consumer made while away is replayed');
  const available = await a.waitForPush('availableProducers', (d) => d[aId] && d[b.id] && d[c.id]);
  assert.ok(available[aId].producers[cam], 'its producer is still there');
  const order = a.pushes.map((m) => m.type);
  assert.ok(order.indexOf('session') < order.indexOf('peerConnection'), `session first: ${order}`);

  // Requests on the new socket act for the old peer.
  await a.ok('pauseProducer', { producerId: cam });
  const seen = await b.waitForPush('availableProducers', (d) => d[aId]?.producers[cam]?.paused === true);
  assert.equal(Object.keys(seen).length, 3);
  await a.fails('createWebRtcTransport', { producing: true, consuming: false }, 'transport_already_exists');
  assert.equal(session().peerId, aId);

  // b saw nothing of it: no peer left, none came, its consumer of the camera stays.
  await b.noPush('peerDisconnection');
  await b.noPush('consumerClosed');
  assert.deepEqual(b.received('peerConnection', (ids) => ids.includes(aId) || ids.some((id) => id !== c.id)), []);
  await b.ok('connectWebRtcTransport', { transportId: tb.recv, dtlsParameters: DTLS_PARAMETERS });
  await b.ok('resumeConsumer', { producerId: cam });
});

test('a client away longer than the grace period is gone for everyone', async (t) => {
  const { url } = await startServer(t, { args: ['--resume-grace-ms', '400'] });
  const { peer: a, socket, first } = await resumableClient(url, t, { reconnection: false });
  const b = await connect(url, t);
  const ta = await transports(a);
  await transports(b);
  await a.ok('joinRoom', { roomId: 'grace' });
  await b.ok('joinRoom', { roomId: 'grace' });
  const { id: cam } = await a.ok('produce', { transportId: ta.send, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'camera' } });
  await b.waitForPush('createConsumer', (d) => d.producerId === cam);

  const cutAt = Date.now();
  socket.io.engine.close();
  await b.noPush('peerDisconnection', () => true, 200);
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [first.peerId]);
  const waited = Date.now() - cutAt;
  assert.ok(waited >= 350 && waited < 2500, `gone after the grace period, took ${waited} ms`);
  assert.deepEqual(await b.waitForPush('consumerClosed'), { producingPeerId: first.peerId, producerId: cam });
  await b.waitForPush('availableProducers', (d) => !d[first.peerId] && d[b.id]);

  const message = await refusal(url, t, { resume: { peerId: first.peerId, token: first.resumeToken } });
  assert.match(message, /^resume_failed: /, 'too late to resume');
});

test('a wrong token or a malformed resume is refused with a clear connect_error', async (t) => {
  const { url } = await startServer(t);
  const { first } = await resumableClient(url, t);
  const b = await connect(url, t);
  const wrong = await refusal(url, t, { resume: { peerId: first.peerId, token: '0'.repeat(64) } });
  assert.match(wrong, /^resume_failed: .*new session/);
  assert.match(await refusal(url, t, { resume: { peerId: b.id, token: first.resumeToken } }), /^resume_failed: /, "another peer's id");
  assert.match(await refusal(url, t, { resume: { peerId: 'nobody', token: 'x' } }), /^resume_failed: /);
  assert.match(await refusal(url, t, { resume: 'please' }), /^invalid_auth: /);
  assert.match(await refusal(url, t, { resume: { peerId: first.peerId } }), /^invalid_auth: /);
  // A v1 peer (no resume announced) cannot be taken over either.
  await b.ok('joinRoom', { roomId: 'x' });
});

test('a new socket with the token takes over while the old one still looks alive', async (t) => {
  const { url } = await startServer(t);
  const { peer: a, socket: old, first } = await resumableClient(url, t, { reconnection: false });
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'takeover' });
  await b.ok('joinRoom', { roomId: 'takeover' });
  const oldClosed = new Promise((resolve) => old.once('disconnect', resolve));
  const fresh = await connect(url, t, { auth: { resume: { peerId: first.peerId, token: first.resumeToken } } });
  assert.equal((await fresh.waitForPush('session')).peerId, first.peerId);
  await oldClosed;
  await fresh.ok('leaveRoom', { roomId: 'takeover' });
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [first.peerId], 'the taken-over peer left');
});

test('a v1 client is cleaned up as soon as its socket goes, whatever the grace period', async (t) => {
  const { url } = await startServer(t, { args: ['--resume-grace-ms', '60000'] });
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'v1' });
  await b.ok('joinRoom', { roomId: 'v1' });
  const aId = a.id;
  const cutAt = Date.now();
  a.socket.io.engine.close();
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [aId]);
  assert.ok(Date.now() - cutAt < 2000, 'at once, not after the grace period');
  assert.deepEqual(a.received('session'), [], 'no session push without resume support');
});

test('a resumable client that says goodbye (socket.disconnect) leaves at once', async (t) => {
  const { url } = await startServer(t, { args: ['--resume-grace-ms', '60000'] });
  const { peer: a, first } = await resumableClient(url, t, { reconnection: false });
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'bye' });
  await b.ok('joinRoom', { roomId: 'bye' });
  a.close();
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [first.peerId]);
});
