// Session resume, connection state and media recovery against the fake
// server (docs/PROTOCOL.md "Session resume", "ICE restart").
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ConnectionState } from './api.js';
import { SimpleMediasoupPeer } from './peer.js';
import { fakeTrack, handlerFactory, until } from './test-support/fake-server.js';
import { usePeers, type MadePeer } from './test-support/peers.js';

const harness = usePeers();
const { makePeer } = harness;

/** Two peers in `room`; B consumes A's camera. */
async function pair(room: string) {
  const a = makePeer({ roomId: room });
  const b = makePeer({ roomId: room });
  await a.peer.addTrack(fakeTrack('video'), 'camera');
  await until(() => b.seen.tracks.length === 1 && a.peer.roomId === room, "B to get A's camera");
  return { a, b };
}

const count = (type: string, peerId: string) => harness.server.requests(type, peerId).length;

function connected(made: MadePeer) {
  return until(() => made.peer.connectionState === 'connected', 'connectionState connected');
}

test('the first connect announces resume: true (merged with the user auth) and takes the id of the session push', async () => {
  const socket = harness.server.socket();
  socket.auth = { token: 'jwt' };
  const peer = new SimpleMediasoupPeer({ socket, handlerFactory });
  harness.adopt(peer);
  const states: ConnectionState[] = [];
  peer.on('connectionStateChange', ({ state }) => states.push(state));
  assert.equal(peer.connectionState, 'disconnected');
  socket.connect();
  await until(() => peer.connectionState === 'connected', 'connected');
  assert.deepEqual(socket.auths, [{ token: 'jwt', resume: true }]);
  assert.equal(peer.id, socket.peerId);
  assert.deepEqual(states, ['connected']);
});

test('a cut socket resumes: same id, no re-produce, no re-join, missed pushes applied, others see nothing', async () => {
  const { a, b } = await pair('resume');
  const aId = a.peer.id!;
  const produced = count('produce', aId);
  const transports = count('createWebRtcTransport', aId);
  await connected(a);

  a.socket.drop();
  assert.equal(a.peer.connectionState, 'reconnecting');
  assert.equal(a.peer.id, aId, 'the session is kept while away');
  // While A is away, B publishes: A gets it from the replayed pushes.
  await b.peer.addTrack(fakeTrack('audio'), 'mic');
  a.socket.connect();
  await until(() => a.seen.tracks.some((t) => t.label === 'mic'), "A to get B's mic after resuming");
  await connected(a);

  const auth = a.socket.auths.at(-1);
  assert.equal(auth.resume.peerId, aId);
  assert.equal(typeof auth.resume.token, 'string');
  assert.notEqual(a.socket.id, aId, 'a new socket id');
  assert.equal(a.peer.id, aId, 'the peer id of the session, not the socket');
  assert.equal(count('produce', aId), produced, 'no re-produce');
  assert.equal(count('createWebRtcTransport', aId), transports, 'no new transports');
  assert.equal(count('joinRoom', aId), 1, 'no re-join');
  assert.deepEqual(b.seen.left, [], 'B saw nobody leave');
  assert.deepEqual(b.seen.joined, [aId], 'B saw nobody new');
  assert.deepEqual(b.seen.ended, [], "B's consumer stayed");
  assert.deepEqual(a.seen.left, []);
  assert.deepEqual(a.seen.states, ['connected', 'reconnecting', 'connected']);
  assert.deepEqual(a.seen.errors, []);

  // A second cut resumes with the newest token.
  a.socket.drop();
  a.socket.connect();
  await connected(a);
  assert.notEqual(a.socket.auths.at(-1).resume.token, auth.resume.token, 'the latest token');
  assert.equal(a.peer.id, aId);
});

test('what failed during the cut is done again after the resume (a track added while away)', async () => {
  const { a, b } = await pair('redo');
  const aId = a.peer.id!;
  a.socket.drop();
  await a.peer.addTrack(fakeTrack('audio'), 'mic');
  a.socket.connect();
  await until(() => b.seen.tracks.some((t) => t.label === 'mic'), "B to get A's mic");
  assert.equal(a.peer.id, aId);
  assert.equal(count('createWebRtcTransport', aId), 2);
});

test('a refused resume (grace period passed on the server) falls back to a new session', async () => {
  harness.server.resumeGraceMs = 50;
  const { a, b } = await pair('late');
  const oldId = a.peer.id!;
  a.socket.drop();
  await until(() => b.seen.left.includes(oldId), 'B to see A gone after the grace period');
  // The client's own grace timer fires too; force the race the other way: claim a resume.
  a.socket.connect();
  await until(() => a.peer.id !== null && a.peer.id !== oldId && a.peer.roomId === 'late', 'A back as a new peer');
  await until(() => b.seen.tracks.filter((t) => t.label === 'camera').length === 2, "B to get A's camera again");
  assert.equal(count('produce', a.peer.id!), 1, 're-produced');
  assert.equal(count('joinRoom', a.peer.id!), 1, 're-joined');
  assert.ok(a.seen.left.includes(b.peer.id!), 'A saw its old room go');
  await connected(a);
});

test('a resume refused by the server (unknown token) is followed by a new session', async () => {
  const { a, b } = await pair('refused');
  const oldId = a.peer.id!;
  a.socket.drop();
  // The server lost the session (e.g. restarted): the resume attempt is refused.
  harness.server.peers.get(oldId)!.token = 'forgotten';
  a.socket.connect();
  await until(() => a.peer.id !== null && a.peer.id !== oldId && a.peer.roomId === 'refused', 'A back as a new peer');
  assert.equal(a.socket.auths.length, 3, 'first connect, refused resume, new session');
  assert.equal(a.socket.auths[1].resume.peerId, oldId);
  assert.equal(a.socket.auths[2].resume, true);
  await until(() => b.seen.tracks.some((t) => t.peerId === a.peer.id), "B to get the new A's camera");
  assert.deepEqual(a.seen.errors, []);
});

test('after the grace period the client starts a new session without trying to resume', async () => {
  harness.server.resumeGraceMs = 30;
  const { a } = await pair('expired');
  const oldId = a.peer.id!;
  a.socket.drop();
  await until(() => a.peer.id === null, 'the local session to end after the grace period');
  assert.equal(a.peer.connectionState, 'reconnecting');
  a.socket.connect();
  await until(() => a.peer.id !== null && a.peer.roomId === 'expired', 'A back');
  assert.notEqual(a.peer.id, oldId);
  assert.equal(a.socket.auths.at(-1).resume, true);
});

test('serverShutdown: the app is told, and the peer comes back by itself as a new session in its room', async () => {
  const { a } = await pair('shutdown');
  await connected(a);
  const oldId = a.peer.id;
  harness.server.shutdown('bye');
  assert.deepEqual(a.seen.shutdown, ['bye']);
  assert.equal(a.peer.connectionState, 'reconnecting', 'not given up: the server restarts');
  assert.equal(a.peer.id, null, 'the session is gone');
  // The server disconnected the socket (socket.io does not retry that): the
  // library reconnects by itself, after a random delay of 1 to 3 s.
  await until(() => a.peer.id !== null && a.peer.roomId === 'shutdown', 'A back in its room', 5_000);
  assert.notEqual(a.peer.id, oldId, 'a new session');
  assert.equal(a.socket.auths.at(-1).resume, true, 'not a resume');
  await connected(a);
});

test('a transport that goes disconnected is restarted (restartIce) and comes back without re-producing', async () => {
  const { a } = await pair('ice');
  const aId = a.peer.id!;
  a.handler('send').setConnectionState('connected');
  await connected(a);
  a.handler('send').setConnectionState('disconnected');
  assert.equal(a.peer.connectionState, 'reconnecting');
  await until(() => count('restartIce', aId) === 1, 'restartIce');
  const [{ transportId }] = harness.server.requests('restartIce', aId);
  assert.equal(harness.server.transportsOf(aId)!.get(transportId)!.producing, true, 'the send transport');
  await new Promise((resolve) => setTimeout(resolve, 20));
  a.handler('send').setConnectionState('connected');
  await connected(a);
  assert.equal(count('produce', aId), 1, 'no re-produce');
  assert.equal(count('createWebRtcTransport', aId), 2);
  assert.deepEqual(a.seen.states, ['connected', 'reconnecting', 'connected']);
});

test('an ICE restart that does not bring the transport back rebuilds it (the server closed it) and re-produces', async () => {
  const { a, b } = await pair('rebuild');
  const aId = a.peer.id!;
  a.peer.close();
  const c = makePeer({ roomId: 'rebuild', iceRestartTimeoutMs: 50 });
  await c.peer.addTrack(fakeTrack('video'), 'camera');
  await until(() => b.seen.tracks.some((t) => t.peerId === c.peer.id), "B to get C's camera");
  const cId = c.peer.id!;
  // Restart: no `connected` within the bound. Then the server closes the transport.
  c.handler('send').setConnectionState('failed');
  await until(() => count('restartIce', cId) === 1, 'the first restart');
  harness.server.closeTransport(cId, true);
  await until(() => count('createWebRtcTransport', cId) === 3, 'a new send transport', 3000);
  await until(() => count('produce', cId) === 2, 're-produced on it');
  await until(() => b.seen.tracks.filter((t) => t.peerId === cId).length === 2, "B to get C's new camera");
  c.handler('send').setConnectionState('connected');
  await connected(c);
  assert.equal(c.peer.id, cId, 'the same peer');
  assert.ok(aId);
});

test('a rebuilt receive transport consumes again', async () => {
  const { a, b } = await pair('recv');
  const bId = b.peer.id!;
  b.handler('recv').setConnectionState('failed');
  harness.server.closeTransport(bId, false);
  await until(() => count('createWebRtcTransport', bId) === 3, 'a new receive transport', 3000);
  await until(() => b.seen.tracks.length === 2, "B to consume A's camera again");
  assert.equal(b.seen.ended.length, 1, 'the old track ended');
  assert.equal(b.peer.id, bId);
  assert.ok(a.peer.id);
});

test('peer.restartIce() restarts both transports', async () => {
  const { a } = await pair('manual');
  const aId = a.peer.id!;
  a.handler('send').setConnectionState('connected');
  a.handler('recv').setConnectionState('connected');
  const done = a.peer.restartIce();
  await until(() => count('restartIce', aId) === 2, 'two restarts');
  a.handler('send').setConnectionState('connected');
  a.handler('recv').setConnectionState('connected');
  await done;
  assert.equal(a.peer.connectionState, 'connected');
});
