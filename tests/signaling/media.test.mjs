// The media requests end to end as a client sees them: transports, produce,
// consume, data channels, closing and disconnect cleanup, and the refusals
// that need real transports and producers. These need the media engine.

import { test } from 'node:test';
import { randomUUID } from 'node:crypto';
import assert from 'node:assert/strict';
import {
  startServer,
  connect,
  assertStillServing,
  DTLS_PARAMETERS,
  SCTP_CAPABILITIES,
  opusParameters,
  vp8Parameters,
  vp8SimulcastParameters,
} from './harness.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Create (and optionally connect) a peer's send and receive transports. */
async function transports(peer, { connectSend = true, connectRecv = false, sctp = true } = {}) {
  const sctpCapabilities = sctp ? SCTP_CAPABILITIES : undefined;
  const send = await peer.ok('createWebRtcTransport', { forceTcp: false, producing: true, consuming: false, sctpCapabilities });
  const recv = await peer.ok('createWebRtcTransport', { forceTcp: false, producing: false, consuming: true, sctpCapabilities });
  if (connectSend) await peer.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });
  if (connectRecv) await peer.ok('connectWebRtcTransport', { transportId: recv.id, dtlsParameters: DTLS_PARAMETERS });
  return { send: send.id, recv: recv.id, sendInfo: send, recvInfo: recv };
}

/** Two peers in one room, both with transports; `a` produces VP8+RTX. */
async function pairWithVideo(t, url, room = 'media') {
  const a = await connect(url, t);
  const b = await connect(url, t);
  const ta = await transports(a);
  const tb = await transports(b);
  await a.ok('joinRoom', { roomId: room });
  await b.ok('joinRoom', { roomId: room });
  const { id: producerId } = await a.ok('produce', {
    transportId: ta.send,
    kind: 'video',
    rtpParameters: vp8Parameters(),
    appData: { label: 'camera', broadcast: false },
  });
  return { a, b, ta, tb, producerId };
}

test('createWebRtcTransport gives ICE, DTLS and SCTP parameters in both directions', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  const port = Number(new URL(url).port);
  for (const direction of [{ producing: true, consuming: false }, { producing: false, consuming: true }]) {
    const ack = await p.ok('createWebRtcTransport', { forceTcp: false, ...direction, sctpCapabilities: SCTP_CAPABILITIES });
    const info = ack.transportInfo;
    assert.match(info.id, UUID);
    assert.equal(typeof info.iceParameters.usernameFragment, 'string');
    assert.equal(typeof info.iceParameters.password, 'string');
    assert.equal(info.iceParameters.iceLite, true);
    assert.ok(info.iceCandidates.length >= 1);
    const candidate = info.iceCandidates[0];
    assert.equal(candidate.address ?? candidate.ip, '127.0.0.1');
    assert.equal(candidate.protocol, 'udp');
    assert.ok(candidate.port > 0 && candidate.port !== port, 'the worker UDP port');
    assert.ok(info.dtlsParameters.fingerprints.some((f) => f.algorithm === 'sha-256' && /^([0-9A-F]{2}:){31}[0-9A-F]{2}$/i.test(f.value)));
    assert.ok(info.sctpParameters, 'SCTP asked for');
    assert.equal(typeof info.sctpParameters.port, 'number');
    // The published client reads the fields at the top level of the ack.
    for (const key of ['id', 'iceParameters', 'iceCandidates', 'dtlsParameters', 'sctpParameters']) {
      assert.deepEqual(ack[key], info[key], key);
    }
  }
});

test('every announced address gets a UDP and a TCP candidate, UDP first; forceTcp gives only the TCP ones', async (t) => {
  const { url } = await startServer(t, { args: ['--announced-ip', '192.0.2.10,2001:db8::10', '--announced-ip', '127.0.0.1'] });
  const p = await connect(url, t);
  const ack = await p.ok('createWebRtcTransport', { producing: true, consuming: false });
  const candidates = ack.transportInfo.iceCandidates;
  assert.deepEqual(
    candidates.map((c) => `${c.protocol} ${c.address}`),
    ['udp 192.0.2.10', 'udp 2001:db8::10', 'udp 127.0.0.1', 'tcp 192.0.2.10', 'tcp 2001:db8::10', 'tcp 127.0.0.1'],
    'by priority: UDP before TCP, loopback last',
  );
  const priorities = candidates.map((c) => c.priority);
  assert.deepEqual(priorities, [...priorities].sort((x, y) => y - x));
  const forced = await p.ok('createWebRtcTransport', { forceTcp: true, producing: false, consuming: true });
  assert.deepEqual(
    forced.transportInfo.iceCandidates.map((c) => `${c.protocol} ${c.tcpType} ${c.address}`),
    ['tcp passive 192.0.2.10', 'tcp passive 2001:db8::10', 'tcp passive 127.0.0.1'],
  );
});

test('forceTcp on a server without ICE over TCP is refused with a reason', async (t) => {
  const { url } = await startServer(t, { args: ['--ice-tcp', 'false'] });
  const p = await connect(url, t);
  const error = await p.fails('createWebRtcTransport', { forceTcp: true, producing: true, consuming: false }, 'invalid_request');
  assert.match(error.message, /forceTcp/);
  await p.ok('createWebRtcTransport', { forceTcp: false, producing: true, consuming: false });
});

test('every transport gets sctpParameters (mediasoup-client 3.24 sends no sctpCapabilities)', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  const ack = await p.ok('createWebRtcTransport', { producing: true, consuming: false });
  assert.equal(typeof ack.transportInfo.sctpParameters?.port, 'number');
});

test('the server creates consumers between a joiner and its room unless autoConsume is false', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const c = await connect(url, t);
  const ta = await transports(a);
  const tb = await transports(b);
  await transports(c);
  // a produces before joining (the published client does).
  const { id: cam } = await a.ok('produce', { transportId: ta.send, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'camera' } });
  await a.ok('joinRoom', { roomId: 'auto' });
  await b.ok('joinRoom', { roomId: 'auto' });
  const toB = await b.waitForPush('createConsumer', (d) => d.producerId === cam);
  assert.equal(toB.peerId, a.id);
  // b produces after joining: a gets it without asking.
  const { id: mic } = await b.ok('produce', { transportId: tb.send, kind: 'audio', rtpParameters: opusParameters(), appData: { label: 'mic' } });
  const toA = await a.waitForPush('createConsumer', (d) => d.producerId === mic);
  assert.equal(toA.kind, 'audio');
  // c opts out: nothing arrives unless asked.
  await c.ok('joinRoom', { roomId: 'auto', autoConsume: false });
  await c.noPush('createConsumer');
  await c.ok('createConsumer', { producingPeerId: a.id, producerId: cam });
  await c.waitForPush('createConsumer', (d) => d.producerId === cam);
});

test('transports: one per direction, private, connected once', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const ta = await transports(a, { connectSend: false });
  await a.fails('createWebRtcTransport', { producing: true, consuming: false }, 'transport_already_exists');
  await a.fails('createWebRtcTransport', { producing: false, consuming: true }, 'transport_already_exists');
  await b.fails('connectWebRtcTransport', { transportId: ta.send, dtlsParameters: DTLS_PARAMETERS }, 'transport_not_found');
  await b.fails('produce', { transportId: ta.send, kind: 'audio', rtpParameters: opusParameters() }, 'transport_not_found');
  await a.fails('produce', { transportId: ta.send, kind: 'audio', rtpParameters: opusParameters() }, 'transport_not_connected');
  await a.ok('connectWebRtcTransport', { transportId: ta.send, dtlsParameters: DTLS_PARAMETERS });
  await a.fails('connectWebRtcTransport', { transportId: ta.send, dtlsParameters: DTLS_PARAMETERS }, 'transport_already_connected');
  await a.ok('connectWebRtcTransport', { transportId: ta.recv, dtlsParameters: DTLS_PARAMETERS });
  await a.fails('produce', { transportId: ta.recv, kind: 'audio', rtpParameters: opusParameters() }, 'wrong_transport_direction');
  await assertStillServing(url, t);
});

test('produce opus, VP8 with RTX and 3-layer simulcast VP8; the room sees them', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const ta = await transports(a);
  await a.ok('joinRoom', { roomId: 'p' });
  await b.ok('joinRoom', { roomId: 'p' });
  const audio = await a.ok('produce', { transportId: ta.send, kind: 'audio', rtpParameters: opusParameters(), appData: { label: 'microphone' } });
  const video = await a.ok('produce', { transportId: ta.send, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'camera', broadcast: false } });
  const sim = await a.ok('produce', { transportId: ta.send, kind: 'video', rtpParameters: vp8SimulcastParameters(), appData: { label: 'screen' } });
  for (const ack of [audio, video, sim]) assert.match(ack.id, UUID);
  assert.equal(new Set([audio.id, video.id, sim.id]).size, 3);

  const all = await b.waitForPush('availableProducers', (d) => Object.keys(d[a.id]?.producers ?? {}).length === 3);
  assert.deepEqual(all[a.id].producers[audio.id], { label: 'microphone', broadcast: false, peerId: a.id, kind: 'audio', paused: false });
  assert.deepEqual(all[a.id].producers[video.id], { label: 'camera', broadcast: false, peerId: a.id, kind: 'video', paused: false });
  assert.equal(all[a.id].producers[sim.id].label, 'screen');
  assert.deepEqual(all[b.id], { producers: {}, dataProducers: {} });
  await a.waitForPush('availableProducers', (d) => Object.keys(d[a.id]?.producers ?? {}).length === 3);
});

test('invalid RTP parameters are refused by the engine with invalid_rtp_parameters', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const ta = await transports(a);
  const noEncodings = { ...vp8Parameters(), encodings: [] };
  await a.fails('produce', { transportId: ta.send, kind: 'video', rtpParameters: noEncodings }, 'invalid_rtp_parameters');
  const wrongKind = opusParameters();
  await a.fails('produce', { transportId: ta.send, kind: 'video', rtpParameters: wrongKind }, 'invalid_rtp_parameters');
  await assertStillServing(url, t);
});

test('createConsumer pushes a paused consumer with router payload types; asking twice gives the same one', async (t) => {
  const { url } = await startServer(t);
  const { a, b, ta, producerId } = await pairWithVideo(t, url);
  const { id: audioId } = await a.ok('produce', { transportId: ta.send, kind: 'audio', rtpParameters: opusParameters(), appData: { label: 'mic' } });

  assert.deepEqual(await b.ok('createConsumer', { producingPeerId: a.id, producerId }), { success: true });
  const consumer = await b.waitForPush('createConsumer', (d) => d.producerId === producerId);
  assert.equal(consumer.peerId, a.id);
  assert.match(consumer.id, UUID);
  assert.equal(consumer.kind, 'video');
  assert.equal(consumer.type, 'simple');
  assert.equal(consumer.producerPaused, false);
  assert.equal(consumer.appData.label, 'camera');
  assert.equal(consumer.appData.peerId, a.id);
  const codecs = consumer.rtpParameters.codecs;
  assert.equal(codecs[0].mimeType, 'video/VP8');
  assert.equal(codecs[0].payloadType, 101);
  assert.ok(codecs.some((c) => c.mimeType === 'video/rtx' && c.payloadType === 102 && c.parameters.apt === 101));
  assert.ok(consumer.rtpParameters.encodings[0].ssrc > 0);
  assert.ok(consumer.rtpParameters.encodings[0].rtx?.ssrc > 0);

  await b.ok('createConsumer', { producingPeerId: a.id, producerId: audioId });
  const audio = await b.waitForPush('createConsumer', (d) => d.producerId === audioId);
  assert.equal(audio.kind, 'audio');
  assert.equal(audio.rtpParameters.codecs[0].mimeType, 'audio/opus');
  assert.equal(audio.rtpParameters.codecs[0].payloadType, 100);

  b.clearPushes();
  await b.ok('createConsumer', { producingPeerId: a.id, producerId });
  const again = await b.waitForPush('createConsumer', (d) => d.producerId === producerId);
  assert.equal(again.id, consumer.id, 'same consumer, not a duplicate');
  const health = await (await fetch(`${url}/health`)).json();
  assert.equal(health.consumers, 2);
});

test('pause, resume and close a consumer', async (t) => {
  const { url } = await startServer(t);
  const { a, b, tb, producerId } = await pairWithVideo(t, url);
  await b.ok('createConsumer', { producingPeerId: a.id, producerId });
  await b.waitForPush('createConsumer');
  // Resuming before the receive transport is connected would ask for a key
  // frame the client cannot receive yet: refused with a clear error.
  const early = await b.fails('resumeConsumer', { producerId }, 'transport_not_connected');
  assert.match(early.message, /connectWebRtcTransport/);
  await b.ok('connectWebRtcTransport', { transportId: tb.recv, dtlsParameters: DTLS_PARAMETERS });
  assert.equal((await b.ok('resumeConsumer', { producerId })).paused, false);
  assert.equal((await b.ok('pauseConsumer', { producerId })).paused, true);
  await b.ok('resumeConsumer', { producerId });
  await b.ok('closeConsumer', { producerId });
  assert.deepEqual(await b.waitForPush('consumerClosed'), { producingPeerId: a.id, producerId });
  await b.fails('resumeConsumer', { producerId }, 'consumer_not_found');
  // It can be consumed again afterwards, as a new consumer.
  b.clearPushes();
  await b.ok('createConsumer', { producingPeerId: a.id, producerId });
  await b.waitForPush('createConsumer');
});

test('dynacast: the publisher of simulcast is told the highest layer its consumers want', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const c = await connect(url, t);
  const ta = await transports(a);
  const tb = await transports(b);
  const tc = await transports(c);
  for (const p of [a, b, c]) await p.ok('joinRoom', { roomId: 'dynacast' });
  const { id: producerId } = await a.ok('produce', {
    transportId: ta.send,
    kind: 'video',
    rtpParameters: vp8SimulcastParameters(),
    appData: { label: 'camera' },
  });
  const wanted = (layer) => (d) => d.producerId === producerId && d.maxSpatialLayer === layer;
  // Nobody consumes it: after the hold, only the lowest of its three layers is wanted.
  assert.deepEqual(await a.waitForPush('producerLayersWanted', wanted(0), 6000), { producerId, maxSpatialLayer: 0 });
  // A viewer that wants the best: the top layer, at the next check.
  await b.ok('createConsumer', { producingPeerId: a.id, producerId });
  await b.waitForPush('createConsumer');
  await b.ok('connectWebRtcTransport', { transportId: tb.recv, dtlsParameters: DTLS_PARAMETERS });
  a.clearPushes();
  await b.ok('resumeConsumer', { producerId });
  await a.waitForPush('producerLayersWanted', wanted(2), 2500);
  // It prefers the middle layer, and a second viewer the lowest: the middle after the hold.
  await c.ok('createConsumer', { producingPeerId: a.id, producerId });
  await c.waitForPush('createConsumer');
  await c.ok('connectWebRtcTransport', { transportId: tc.recv, dtlsParameters: DTLS_PARAMETERS });
  await c.ok('resumeConsumer', { producerId });
  await c.ok('setConsumerPreferredLayers', { producerId, spatialLayer: 0 });
  await b.ok('setConsumerPreferredLayers', { producerId, spatialLayer: 1 });
  await a.waitForPush('producerLayersWanted', wanted(1), 6000);
  // The one that wanted the middle layer pauses: the lowest, after the hold.
  a.clearPushes();
  await b.ok('pauseConsumer', { producerId });
  await a.waitForPush('producerLayersWanted', wanted(0), 6000);
  // And nothing more while nothing changes.
  a.clearPushes();
  await a.noPush('producerLayersWanted', () => true, 2500);
});

test('preferred layers and priority of a consumer, and their coded errors', async (t) => {
  const { url } = await startServer(t);
  const { a, b, producerId } = await pairWithVideo(t, url);
  await b.ok('createConsumer', { producingPeerId: a.id, producerId });
  await b.waitForPush('createConsumer');
  // Only a producer the peer consumes.
  await b.fails('setConsumerPreferredLayers', { producerId: randomUUID(), spatialLayer: 0 }, 'consumer_not_found');
  await b.fails('setConsumerPriority', { producerId: randomUUID(), priority: 2 }, 'consumer_not_found');
  await b.ok('setConsumerPreferredLayers', { producerId, spatialLayer: 0, temporalLayer: 1 });
  await b.ok('setConsumerPreferredLayers', { producerId, spatialLayer: 0 });
  // The producer has one encoding (S0) with temporal layers T0..T2.
  const wide = await b.fails('setConsumerPreferredLayers', { producerId, spatialLayer: 1 }, 'layers_out_of_range');
  assert.match(wide.message, /1 spatial and 3 temporal layers/);
  await b.fails('setConsumerPreferredLayers', { producerId, spatialLayer: 0, temporalLayer: 3 }, 'layers_out_of_range');
  for (const spatialLayer of [-1, 256, 'low', null]) {
    await b.fails('setConsumerPreferredLayers', { producerId, spatialLayer }, 'invalid_request');
  }
  await b.ok('setConsumerPriority', { producerId, priority: 1 });
  await b.ok('setConsumerPriority', { producerId, priority: 255 });
  for (const priority of [0, 256, -1, 1.5, '2', null]) {
    const bad = await b.fails('setConsumerPriority', { producerId, priority }, 'invalid_request');
    assert.match(bad.message, /priority/);
  }
});

test('closeProducer closes its consumers and tells the consuming peer', async (t) => {
  const { url } = await startServer(t);
  const { a, b, producerId } = await pairWithVideo(t, url);
  await b.ok('createConsumer', { producingPeerId: a.id, producerId });
  await b.waitForPush('createConsumer');
  await b.fails('closeProducer', { producerId }, 'producer_not_found');
  await a.ok('closeProducer', { producerId });
  assert.deepEqual(await b.waitForPush('consumerClosed'), { producingPeerId: a.id, producerId });
  await b.waitForPush('availableProducers', (d) => d[a.id] && !d[a.id].producers[producerId]);
  await b.fails('pauseConsumer', { producerId }, 'consumer_not_found');
  await b.fails('createConsumer', { producingPeerId: a.id, producerId }, 'producer_not_found');
});

test('pauseProducer and resumeProducer show in availableProducers', async (t) => {
  const { url } = await startServer(t);
  const { a, b, producerId } = await pairWithVideo(t, url);
  await a.ok('pauseProducer', { producerId });
  await b.waitForPush('availableProducers', (d) => d[a.id]?.producers[producerId]?.paused === true);
  await b.fails('pauseProducer', { producerId }, 'producer_not_found');
  await a.ok('resumeProducer', { producerId });
  b.clearPushes();
  await b.waitForPush('availableProducers', (d) => d[a.id]?.producers[producerId]?.paused === false);
});

test('consuming needs one\'s own receive transport and the same room', async (t) => {
  const { url } = await startServer(t);
  const { a, producerId } = await pairWithVideo(t, url, 'here');
  const noRecv = await connect(url, t);
  await noRecv.ok('joinRoom', { roomId: 'here' });
  await noRecv.fails('createConsumer', { producingPeerId: a.id, producerId }, 'no_receive_transport');
  const elsewhere = await connect(url, t);
  await transports(elsewhere);
  await elsewhere.ok('joinRoom', { roomId: 'there' });
  await elsewhere.fails('createConsumer', { producingPeerId: a.id, producerId }, 'producer_not_in_room');
  await assertStillServing(url, t);
});

test('broadcast producers are consumed by the room without asking', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const ta = await transports(a);
  await transports(b);
  await a.ok('joinRoom', { roomId: 'stage' });
  await b.ok('joinRoom', { roomId: 'stage' });
  const { id } = await a.ok('produce', { transportId: ta.send, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'stage', broadcast: true } });
  const listed = await b.waitForPush('availableProducers', (d) => d[a.id]?.producers[id]);
  assert.equal(listed[a.id].producers[id].broadcast, true);
  const pushed = await b.waitForPush('createConsumer', (d) => d.producerId === id);
  assert.equal(pushed.appData.broadcast, true);
  // Asking anyway gives the same consumer.
  b.clearPushes();
  await b.ok('createConsumer', { producingPeerId: a.id, producerId: id });
  assert.equal((await b.waitForPush('createConsumer')).id, pushed.id);
});

test('produceData and createDataConsumer', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const ta = await transports(a);
  await transports(b);
  await a.ok('joinRoom', { roomId: 'data' });
  await b.ok('joinRoom', { roomId: 'data' });
  const { id } = await a.ok('produceData', {
    transportId: ta.send,
    sctpStreamParameters: { streamId: 0, ordered: false, maxRetransmits: 1 },
    label: 'data',
    protocol: '',
    appData: { type: 'data' },
  });
  assert.match(id, UUID);
  const listed = await b.waitForPush('availableProducers', (d) => d[a.id]?.dataProducers[id]);
  assert.deepEqual(listed[a.id].dataProducers[id], { type: 'data' });

  await b.ok('createDataConsumer', { producingPeerId: a.id, producerId: id });
  const dc = await b.waitForPush('createDataConsumer');
  assert.equal(dc.peerId, a.id);
  assert.equal(dc.dataProducerId, id);
  assert.match(dc.id, UUID);
  assert.equal(dc.label, 'data');
  assert.equal(typeof dc.sctpStreamParameters.streamId, 'number');
  b.clearPushes();
  await b.ok('createDataConsumer', { producingPeerId: a.id, producerId: id });
  assert.equal((await b.waitForPush('createDataConsumer')).id, dc.id);

  const aId = a.id;
  a.close();
  assert.deepEqual(await b.waitForPush('dataConsumerClosed'), { producingPeerId: aId, producerId: id });
});

test('a disconnecting producer: the consumer hears peerDisconnection and consumerClosed; nothing leaks', async (t) => {
  const { url } = await startServer(t);
  const { a, b, producerId } = await pairWithVideo(t, url);
  await b.ok('createConsumer', { producingPeerId: a.id, producerId });
  await b.waitForPush('createConsumer');
  const aId = a.id;
  a.close();
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [aId]);
  assert.deepEqual(await b.waitForPush('consumerClosed'), { producingPeerId: aId, producerId });
  b.close();
  // Cleanup runs after the disconnect; poll /health until it is done.
  let health;
  for (let i = 0; i < 50; i++) {
    health = await (await fetch(`${url}/health`)).json();
    if (health.peers === 0) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(
    { peers: health.peers, rooms: health.rooms, transports: health.transports, producers: health.producers, consumers: health.consumers },
    { peers: 0, rooms: 0, transports: 0, producers: 0, consumers: 0 },
  );
});
