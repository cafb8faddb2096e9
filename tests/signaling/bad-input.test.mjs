// Every malformed or disallowed request gets exactly one error ack with a
// stable code, and the server keeps serving well-behaved peers afterwards.
// These cases are refused before the media engine is involved.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { startServer, connect, expectError, assertStillServing, opusParameters, DTLS_PARAMETERS } from './harness.mjs';

test('requests that are not {type, data} objects', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  expectError(await p.raw('hello'), 'invalid_request');
  expectError(await p.raw(42), 'invalid_request');
  expectError(await p.raw(null), 'invalid_request');
  expectError(await p.raw([1, 2, 3]), 'invalid_request');
  expectError(await p.raw(), 'invalid_request');
  expectError(await p.raw({ data: { roomId: 'x' } }), 'invalid_request');
  expectError(await p.raw({ type: 12 }), 'invalid_request');
  expectError(await p.raw({ type: 'fly', data: {} }), 'unknown_request');
  expectError(await p.raw({ type: 'joinroom', data: { roomId: 'x' } }), 'unknown_request');
  expectError(await p.raw({ type: 'x'.repeat(10000) }), 'unknown_request');
  await assertStillServing(url, t);
});

test('missing and wrongly typed fields', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  await p.fails('joinRoom', undefined, 'invalid_request');
  await p.fails('joinRoom', {}, 'invalid_request');
  await p.fails('joinRoom', { roomId: {} }, 'invalid_request');
  await p.fails('joinRoom', { roomId: '' }, 'invalid_request');
  await p.fails('joinRoom', { roomId: 'a\nb' }, 'invalid_request');
  // leaveRoom ignores what it names (the published client nests it), so only the state matters.
  await p.fails('leaveRoom', { roomId: true }, 'not_in_room');
  await p.fails('connectWebRtcTransport', { transportId: 'nope', dtlsParameters: {} }, 'invalid_request');
  await p.fails('connectWebRtcTransport', { transportId: randomUUID() }, 'invalid_request');
  await p.fails('createWebRtcTransport', { producing: 'yes' }, 'invalid_request');
  await p.fails('createWebRtcTransport', {}, 'invalid_request');
  await p.fails('createWebRtcTransport', { producing: true, consuming: true }, 'invalid_request');
  await p.fails('produce', { transportId: randomUUID(), kind: 'video' }, 'invalid_request');
  await p.fails('produce', { transportId: randomUUID(), kind: 'smell', rtpParameters: opusParameters() }, 'invalid_request');
  await p.fails('produceData', { transportId: randomUUID() }, 'invalid_request');
  await p.fails('createConsumer', { producerId: randomUUID() }, 'invalid_request');
  await p.fails('createConsumer', { producingPeerId: 'x', producerId: 'not-a-uuid' }, 'invalid_request');
  await p.fails('createDataConsumer', {}, 'invalid_request');
  for (const type of ['pauseConsumer', 'resumeConsumer', 'closeConsumer', 'closeProducer', 'pauseProducer', 'resumeProducer']) {
    await p.fails(type, {}, 'invalid_request');
    await p.fails(type, { producerId: 12 }, 'invalid_request');
  }
  await assertStillServing(url, t);
});

test('huge payloads are refused with payload_too_large', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  await p.fails('joinRoom', { roomId: 'x'.repeat(200_000) }, 'payload_too_large');
  await p.fails('produce', { junk: 'y'.repeat(500_000) }, 'payload_too_large');
  // The same socket keeps working.
  await p.ok('joinRoom', { roomId: 'after-huge' });
  await assertStillServing(url, t);
});

test('unusable rtpParameters are invalid_rtp_parameters', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  const bad = opusParameters();
  bad.codecs[0].mimeType = 'audio/NOPE';
  await p.fails('produce', { transportId: randomUUID(), kind: 'audio', rtpParameters: bad }, 'invalid_rtp_parameters');
  await p.fails('produce', { transportId: randomUUID(), kind: 'audio', rtpParameters: { codecs: 'opus' } }, 'invalid_rtp_parameters');
  await p.fails('produce', { transportId: randomUUID(), kind: 'audio', rtpParameters: 7 }, 'invalid_rtp_parameters');
  await assertStillServing(url, t);
});

test('unknown ids are refused with their codes', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  await p.fails('connectWebRtcTransport', { transportId: randomUUID(), dtlsParameters: DTLS_PARAMETERS }, 'transport_not_found');
  // A fingerprint of the wrong length is refused while parsing.
  const shortFingerprint = { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AA:BB' }] };
  await p.fails('connectWebRtcTransport', { transportId: randomUUID(), dtlsParameters: shortFingerprint }, 'invalid_request');
  await p.fails('produce', { transportId: randomUUID(), kind: 'audio', rtpParameters: opusParameters() }, 'transport_not_found');
  await p.fails(
    'produceData',
    { transportId: randomUUID(), sctpStreamParameters: { streamId: 1, ordered: true }, label: 'chat', protocol: '' },
    'transport_not_found',
  );
  for (const type of ['pauseConsumer', 'resumeConsumer', 'closeConsumer']) {
    await p.fails(type, { producerId: randomUUID() }, 'consumer_not_found');
  }
  for (const type of ['closeProducer', 'pauseProducer', 'resumeProducer']) {
    await p.fails(type, { producerId: randomUUID() }, 'producer_not_found');
  }
  await assertStillServing(url, t);
});

test('consuming outside one\'s room is refused', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const c = await connect(url, t);
  // Not in any room yet.
  await b.fails('createConsumer', { producingPeerId: a.id, producerId: randomUUID() }, 'not_in_room');
  await a.ok('joinRoom', { roomId: 'one' });
  await b.ok('joinRoom', { roomId: 'one' });
  await c.ok('joinRoom', { roomId: 'two' });
  await c.fails('createConsumer', { producingPeerId: a.id, producerId: randomUUID() }, 'producer_not_in_room');
  await c.fails('createDataConsumer', { producingPeerId: a.id, producerId: randomUUID() }, 'producer_not_in_room');
  await b.fails('createConsumer', { producingPeerId: a.id, producerId: randomUUID() }, 'producer_not_found');
  await b.fails('createDataConsumer', { producingPeerId: a.id, producerId: randomUUID() }, 'producer_not_found');
  await b.fails('createConsumer', { producingPeerId: 'nobody', producerId: randomUUID() }, 'peer_not_found');
  await assertStillServing(url, t);
});

test('many bad requests at once are each acked exactly once', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  const acks = await Promise.all(
    Array.from({ length: 50 }, (_, i) => (i % 2 ? p.raw({ type: 'nope' }) : p.request('joinRoom', { roomId: `r${i % 5}` }))),
  );
  assert.equal(acks.length, 50);
  acks.forEach((ack, i) => {
    if (i % 2) expectError(ack, 'unknown_request');
    else assert.deepEqual(ack, { success: true });
  });
  await assertStillServing(url, t);
});

test('a message without an ack callback does not break the socket', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  p.socket.emit('mediasoupSignaling', { type: 'nope' });
  p.socket.emit('mediasoupSignaling', 'garbage');
  p.socket.emit('someOtherEvent', { type: 'joinRoom' });
  await p.ok('joinRoom', { roomId: 'fine' });
});

test('subscribeAudioLevels takes a boolean: anything else is invalid_request', async (t) => {
  const { url } = await startServer(t);
  const peer = await connect(url, t);
  for (const data of [{ enabled: 'yes' }, { enabled: 1 }, {}, undefined]) {
    await peer.fails('subscribeAudioLevels', data, 'invalid_request');
  }
  await peer.ok('subscribeAudioLevels', { enabled: true });
  await peer.ok('subscribeAudioLevels', { enabled: false });
});
