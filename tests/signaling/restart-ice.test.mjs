// restartIce (protocol extension): new ICE parameters for one's own
// transport, as mediasoup-client's transport.restartIce() wants them. That
// media flows again afterwards is tested in the engine
// (crates/engine/tests/ice_restart.rs) and in the browser tests.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, DTLS_PARAMETERS } from './harness.mjs';

test('restartIce gives new ICE parameters for one\'s own transport only', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const send = await a.ok('createWebRtcTransport', { producing: true, consuming: false });
  await a.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });

  const first = await a.ok('restartIce', { transportId: send.id });
  const { usernameFragment, password, iceLite } = first.iceParameters;
  assert.equal(iceLite, true);
  assert.notEqual(usernameFragment, send.iceParameters.usernameFragment, 'a new ufrag');
  assert.notEqual(password, send.iceParameters.password, 'a new password');
  const second = await a.ok('restartIce', { transportId: send.id });
  assert.notEqual(second.iceParameters.usernameFragment, usernameFragment, 'each restart gives new parameters');

  await b.fails('restartIce', { transportId: send.id }, 'transport_not_found');
  await a.fails('restartIce', { transportId: '00000000-0000-4000-8000-000000000000' }, 'transport_not_found');
  await a.fails('restartIce', {}, 'invalid_request');
});
