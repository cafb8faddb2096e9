// Graceful shutdown: on SIGTERM the server tells every client (a
// `serverShutdown` push, then a server disconnect that socket.io-client does
// not retry), closes its transports and exits, within a few seconds.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, DTLS_PARAMETERS, vp8Parameters } from './harness.mjs';

test('SIGTERM: clients hear serverShutdown and a server disconnect, and the process exits within 5 s', async (t) => {
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
  assert.deepEqual(await reasons, ['io server disconnect', 'io server disconnect'], 'a server disconnect: no reconnect loop');
  const { code, signal } = await exited;
  const took = Date.now() - sentAt;
  assert.equal(signal, null, 'it exited by itself, not killed');
  assert.equal(code, 0);
  assert.ok(took < 5000, `exited within 5 s, took ${took} ms`);
});
