// Graceful shutdown: on SIGTERM the server tells every client (a
// `serverShutdown` push), closes its transports and exits within a few
// seconds. The connections drop as in a crash, not with a server disconnect
// (which socket.io-client never retries), so clients reconnect by themselves
// to the server that replaces it.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, DTLS_PARAMETERS, vp8Parameters } from './harness.mjs';

test('SIGTERM: clients hear serverShutdown, their connection drops (no server disconnect), and the process exits within 5 s', async (t) => {
  const { url, child } = await startServer(t);
  const a = await connect(url, t, { auth: { resume: true } });
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'bye' });
  await b.ok('joinRoom', { roomId: 'bye' });
  const send = await a.ok('createWebRtcTransport', { producing: true, consuming: false });
  await a.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });
  await a.ok('produce', { transportId: send.id, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'cam' } });

  const disconnected = (peer) => new Promise((resolve) => peer.socket.once('disconnect', resolve));
  const reasons = Promise.all([disconnected(a), disconnected(b)]);
  const exited = new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  const sentAt = Date.now();
  child.kill('SIGTERM');

  for (const peer of [a, b]) {
    const goodbye = await peer.waitForPush('serverShutdown', () => true, 5000);
    assert.equal(typeof goodbye.message, 'string');
  }
  assert.deepEqual(await reasons, ['transport close', 'transport close'], 'a dropped connection, which socket.io-client retries');
  const { code, signal } = await exited;
  const took = Date.now() - sentAt;
  assert.equal(signal, null, 'it exited by itself, not killed');
  assert.equal(code, 0);
  assert.ok(took < 5000, `exited within 5 s, took ${took} ms`);
});

test('after a restart on the same port, a socket.io client reconnects by itself and is served as a new peer', async (t) => {
  const first = await startServer(t);
  const port = new URL(first.url).port;
  const a = await connect(first.url, t, { reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 500 });
  const oldId = a.id;
  await a.ok('joinRoom', { roomId: 'restart' });
  const reconnected = new Promise((resolve) => a.socket.io.once('reconnect', resolve));
  await first.stop();
  const second = await startServer(t, { args: ['--http-listen', `127.0.0.1:${port}`] });
  await reconnected;
  const id = await a.learnId();
  assert.notEqual(id, oldId, 'a new peer on the new server');
  await a.ok('joinRoom', { roomId: 'restart' });
  assert.equal((await (await fetch(`${second.url}/health`)).json()).peers, 1);
});
