// crates/server/examples/attach.rs, the SFU inside an application: the
// application's own HTTP route and socket.io event work beside the v1
// signaling of the SFU, on the same socket.io connection.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fileURLToPath } from 'node:url';
import { connect, createTransports, startProcess } from './harness.mjs';

const attachBin = fileURLToPath(new URL('../../target/debug/examples/attach', import.meta.url));

test('an application with its own route and event runs the v1 flow beside them', async (t) => {
  const { url } = await startProcess(t, process.env.SIMPLESFU_ATTACH_BIN || attachBin, ['127.0.0.1:0'], {
    ready: /^attach example listening on (http:\/\/\S+)$/m,
  });
  const home = await fetch(`${url}/`);
  assert.equal(home.status, 200);
  assert.equal(await home.text(), 'my app, with an SFU inside', "the application's own route");

  const a = await connect(url, t);
  const b = await connect(url, t);
  for (const peer of [a, b]) {
    await peer.ok('joinRoom', { roomId: 'attached' });
    const caps = await peer.ok('getRouterRtpCapabilities');
    assert.ok(caps.routerRtpCapabilities.codecs.some((c) => c.mimeType === 'video/VP8'), 'the SFU answers');
    const { send, recv } = await createTransports(peer);
    assert.notEqual(send, recv);
  }
  assert.deepEqual(await b.waitForPush('peerConnection', (ids) => ids.includes(a.id)), [a.id]);

  // The application's own event, on the very sockets that signal.
  const heard = new Promise((resolve) => b.socket.once('chat', resolve));
  a.socket.emit('chat', 'hello from a');
  assert.equal(await heard, 'hello from a');
});
