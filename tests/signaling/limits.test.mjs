// Limits as a client sees them: each one answers with a `limit_reached` (or
// `payload_too_large`) error ack whose message names the setting, and the
// connection stays usable.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect, createTransports, opusParameters, vp8Parameters, scrapeMetrics, DTLS_PARAMETERS } from './harness.mjs';

test('a full room refuses one more peer with limit_reached', async (t) => {
  const { url } = await startServer(t, { args: ['--max-peers-per-room', '2'] });
  const [a, b, c] = await Promise.all([connect(url, t), connect(url, t), connect(url, t)]);
  await a.ok('joinRoom', { roomId: 'small' });
  await b.ok('joinRoom', { roomId: 'small' });
  const error = await c.fails('joinRoom', { roomId: 'small' }, 'limit_reached');
  assert.match(error.message, /room is full/);
  assert.match(error.message, /limits\.peers_per_room/);
  // Rejoining one's own room is not one more peer; another room is fine.
  await a.ok('joinRoom', { roomId: 'small' });
  await c.ok('joinRoom', { roomId: 'other' });
  b.close();
  await a.waitForPush('peerDisconnection');
  await c.ok('joinRoom', { roomId: 'small' });
});

test('a peer with the most producers cannot produce one more', async (t) => {
  const { url } = await startServer(t, { args: ['--max-producers-per-peer', '1'] });
  const p = await connect(url, t);
  const { send } = await createTransports(p);
  await p.ok('produce', { transportId: send, kind: 'audio', rtpParameters: opusParameters(), appData: { label: 'mic' } });
  const error = await p.fails(
    'produce',
    { transportId: send, kind: 'audio', rtpParameters: opusParameters({ ssrc: 4444, mid: '1' }), appData: { label: 'mic2' } },
    'limit_reached',
  );
  assert.match(error.message, /limits\.producers_per_peer/);
  const dataError = await p.fails(
    'produceData',
    { transportId: send, sctpStreamParameters: { streamId: 1, ordered: true }, label: 'chat' },
    'limit_reached',
  );
  assert.match(dataError.message, /producers/, 'data producers count too');
});

test('a connection over its request rate gets limit_reached, then is served again', async (t) => {
  const { url } = await startServer(t, { args: ['--requests-per-second', '5', '--request-burst', '5'] });
  const p = await connect(url, t);
  // connect() asked once for the peer id: let that token come back (one per 200 ms).
  await new Promise((r) => setTimeout(r, 300));
  const acks = await Promise.all(Array.from({ length: 8 }, () => p.request('getRouterRtpCapabilities')));
  const served = acks.filter((a) => a.success === true).length;
  const limited = acks.filter((a) => a.error?.code === 'limit_reached');
  assert.ok(served >= 5 && served <= 6, `the burst of 5 is served (got ${served})`);
  assert.ok(limited.length >= 2, 'the rest are refused');
  assert.match(limited[0].error.message, /request rate limit reached/);
  assert.match(limited[0].error.message, /limits\.requests_per_second/);
  // Another connection has its own bucket.
  const other = await connect(url, t);
  await other.ok('getRouterRtpCapabilities');
  // At 5 per second one token is back after 200 ms.
  await new Promise((r) => setTimeout(r, 300));
  await p.ok('getRouterRtpCapabilities');
  const metrics = await scrapeMetrics(url);
  assert.equal(metrics['simplesfu_request_errors_total{code="limit_reached"}'], limited.length);
});

test('the request size limit is configurable', async (t) => {
  const { url } = await startServer(t, { args: ['--max-request-bytes', '200'] });
  const p = await connect(url, t);
  const error = await p.fails('joinRoom', { roomId: 'x'.repeat(100), pad: 'y'.repeat(200) }, 'payload_too_large');
  assert.match(error.message, /the limit is 200/);
  await p.ok('joinRoom', { roomId: 'short' });
});

test('a limit of 0 is refused at start with the setting named', async (t) => {
  await assert.rejects(startServer(t, { args: ['--max-peers-per-room', '0'] }), /limits\.peers_per_room is 0/);
});

test('a joiner that answers every pushed consumer at once, as the published client does, is never refused for rate', { timeout: 120_000 }, async (t) => {
  const { url } = await startServer(t);
  const PEERS = 120;
  const room = 'big-room';
  // 120 members with a microphone and a camera each, not consuming each other.
  const members = [];
  for (let i = 0; i < PEERS; i += 1) {
    const m = await connect(url, t);
    const send = await m.ok('createWebRtcTransport', { producing: true, consuming: false });
    await m.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });
    await m.ok('joinRoom', { roomId: room, autoConsume: false });
    await m.ok('produce', { transportId: send.id, kind: 'audio', rtpParameters: opusParameters({ ssrc: 10_000 + i }), appData: { label: 'mic' } });
    await m.ok('produce', { transportId: send.id, kind: 'video', rtpParameters: vp8Parameters({ ssrc: 20_000 + i, rtxSsrc: 30_000 + i }), appData: { label: 'cam' } });
    members.push(m);
  }
  // The joiner (v1 style: the server makes its consumers) resumes each one the moment it arrives.
  const joiner = await connect(url, t);
  const recv = await joiner.ok('createWebRtcTransport', { producing: false, consuming: true });
  await joiner.ok('connectWebRtcTransport', { transportId: recv.id, dtlsParameters: DTLS_PARAMETERS });
  const answers = [];
  joiner.socket.on('mediasoupSignaling', (m) => {
    if (m.type === 'createConsumer') answers.push(joiner.request('resumeConsumer', { producerId: m.data.producerId }));
  });
  await joiner.ok('joinRoom', { roomId: room });
  const deadline = Date.now() + 60_000;
  while (answers.length < PEERS * 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  assert.equal(answers.length, PEERS * 2, 'a consumer for every producer of the room');
  const acks = await Promise.all(answers);
  const refused = acks.filter((a) => a.success !== true);
  assert.deepEqual(refused.slice(0, 3), [], `${refused.length} of ${acks.length} resumes refused`);
  // Requests the joiner chooses itself are still limited.
  const flood = await Promise.all(Array.from({ length: 260 }, () => joiner.request('getRouterRtpCapabilities')));
  assert.ok(flood.some((a) => a.error?.code === 'limit_reached'), 'its own burst still meets the limit');
});
