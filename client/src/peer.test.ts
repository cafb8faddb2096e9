import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { TrackEvent } from './api.js';
import { SimpleMediasoupPeer } from './peer.js';
import { PeerClosedError, SignalingError } from './errors.js';
import { FakeSocket, fakeTrack, handlerFactory, until } from './test-support/fake-server.js';
import { usePeers } from './test-support/peers.js';

const harness = usePeers();
const { makePeer } = harness;

async function ready(peer: SimpleMediasoupPeer, room?: string) {
  await until(() => peer.id !== null && (room === undefined || peer.roomId === room), `peer ready in ${room}`);
}

const tracksFrom = (seen: { tracks: TrackEvent[] }, peerId: string) =>
  seen.tracks.filter((t) => t.peerId === peerId).map((t) => t.label).sort();

test('both constructor styles: a socket, or options with roomId (joined with autoConsume: false)', async () => {
  const socket = harness.server.socket();
  const seed = new SimpleMediasoupPeer(Object.assign(socket, {}) as FakeSocket);
  harness.adopt(seed);
  // The seed style cannot pass a handler factory: in Node it fails to detect a browser.
  const errors: Error[] = [];
  seed.on('error', (error) => errors.push(error));
  socket.connect();
  await until(() => errors.length > 0, 'device detection to fail outside a browser');
  assert.match(errors[0]!.message, /not supported|device|handler/i);

  const { peer, socket: optionsSocket } = makePeer({ roomId: 42 });
  await ready(peer, '42');
  assert.equal(peer.id, optionsSocket.id);
  assert.deepEqual(harness.server.requests('joinRoom', peer.id!), [{ roomId: '42', autoConsume: false }]);
  const transports = harness.server.requests('createWebRtcTransport', peer.id!);
  assert.deepEqual(
    transports.map(({ producing, consuming }) => ({ producing, consuming })),
    [
      { producing: true, consuming: false },
      { producing: false, consuming: true },
    ],
  );
});

test('bad arguments throw TypeError; a closed peer throws PeerClosedError', async () => {
  assert.throws(() => new SimpleMediasoupPeer(42 as never), TypeError);
  assert.throws(() => new SimpleMediasoupPeer({ socket: {} as never }), TypeError);
  assert.throws(() => new SimpleMediasoupPeer({ socket: harness.server.socket(), roomId: '' }), TypeError);
  assert.throws(
    () => new SimpleMediasoupPeer({ socket: harness.server.socket(), autoConnect: 'yes' as never }),
    TypeError,
  );
  const { peer } = makePeer();
  assert.throws(() => peer.addTrack({} as never, 'camera'), TypeError);
  assert.throws(() => peer.addTrack(fakeTrack('video'), ''), TypeError);
  assert.throws(() => peer.addTrack(fakeTrack('video'), 'camera', 'yes' as never), TypeError);
  assert.throws(() => peer.addTrack(fakeTrack('video'), 'camera', false, 'ultra' as never), TypeError);
  assert.throws(() => peer.removeTrack(undefined as never), TypeError);
  assert.throws(() => peer.joinRoom({} as never), TypeError);
  assert.throws(() => peer.joinRoom('x'.repeat(129)), TypeError);
  assert.throws(() => peer.connectToPeer(''), TypeError);
  assert.throws(() => peer.pausePeer(7 as never), TypeError);
  assert.throws(() => peer.send(123 as never), TypeError);
  assert.throws(() => peer.on('nope' as never, () => {}), TypeError);
  assert.throws(() => peer.on('track', 'fn' as never), TypeError);

  peer.close();
  assert.equal(peer.closed, true);
  for (const call of [
    () => peer.addTrack(fakeTrack('video'), 'camera'),
    () => peer.removeTrack('camera'),
    () => peer.joinRoom('r'),
    () => peer.leaveRoom(),
    () => peer.connectToPeer('p'),
    () => peer.disconnectFromPeer('p'),
    () => peer.pausePeer('p'),
    () => peer.resumePeer('p'),
    () => peer.send('hi'),
    () => peer.on('track', () => {}),
  ]) {
    assert.throws(call, (error: unknown) => error instanceof PeerClosedError && error.name === 'PeerClosedError');
  }
  peer.close(); // twice is fine
});

test('a track added before the connection is produced once the send transport is connected', async () => {
  const { peer } = makePeer({ roomId: 'r' });
  const added = peer.addTrack(fakeTrack('video'), 'camera', true);
  await added;
  await ready(peer, 'r');
  const types = harness.server.log.filter((r) => r.peerId === peer.id).map((r) => r.type);
  assert.ok(types.indexOf('connectWebRtcTransport') < types.indexOf('produce'), types.join(','));
  const [produce] = harness.server.requests('produce', peer.id!);
  assert.deepEqual(produce.appData, { label: 'camera', broadcast: true });
  assert.equal(produce.kind, 'video');
  assert.deepEqual(
    produce.rtpParameters.encodings.map((e: { maxBitrate: number }) => e.maxBitrate),
    [500_000],
  );
});

test('the published client style addTrack({track, label, customEncodings}) and presets', async () => {
  const { peer } = makePeer();
  await ready(peer);
  await peer.addTrack({ track: fakeTrack('video'), label: 'screen', customEncodings: 'screenShare' });
  await peer.addTrack(fakeTrack('video'), 'simulcast', false, SimpleMediasoupPeer.encodings.simulcast as never);
  const [screen, simulcast] = harness.server.requests('produce', peer.id!);
  assert.equal(screen.appData.label, 'screen');
  assert.equal(screen.rtpParameters.encodings[0].maxFramerate, 15);
  assert.equal(simulcast.rtpParameters.encodings.length, 3);
});

test('adding to a used label switches the track without a new producer; other encodings replace it', async () => {
  const { peer } = makePeer();
  await ready(peer);
  await peer.addTrack(fakeTrack('video'), 'camera');
  await peer.addTrack(fakeTrack('video'), 'camera');
  assert.equal(harness.server.requests('produce', peer.id!).length, 1, 'replaceTrack, no renegotiation');
  assert.equal(harness.server.requests('closeProducer', peer.id!).length, 0);
  await peer.addTrack(fakeTrack('video'), 'camera', false, 'simulcast');
  assert.equal(harness.server.requests('produce', peer.id!).length, 2);
  assert.equal(harness.server.requests('closeProducer', peer.id!).length, 1);
  await peer.removeTrack('camera');
  assert.equal(harness.server.requests('closeProducer', peer.id!).length, 2);
  assert.equal(harness.server.peers.get(peer.id!)!.producers.size, 0);
});

test('auto-connect: peers in one room get each other\'s tracks, events and the seed\'s onTrack', async () => {
  const a = makePeer({ roomId: 'room' });
  const b = makePeer({ roomId: 'room' });
  const legacy: [MediaStreamTrack, string, TrackEvent][] = [];
  a.peer.onTrack = (track, peerId, info) => {
    legacy.push([track, peerId, info]);
  };
  await a.peer.addTrack(fakeTrack('video'), 'camera');
  await a.peer.addTrack(fakeTrack('audio'), 'microphone');
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await ready(a.peer, 'room');
  await ready(b.peer, 'room');
  await until(() => tracksFrom(a.seen, b.peer.id!).length === 1, 'A to get B\'s camera');
  await until(() => tracksFrom(b.seen, a.peer.id!).length === 2, 'B to get A\'s tracks');
  assert.deepEqual(tracksFrom(b.seen, a.peer.id!), ['camera', 'microphone']);
  assert.deepEqual(a.seen.joined, [b.peer.id]);
  assert.deepEqual(b.seen.joined, [a.peer.id]);
  assert.deepEqual(a.peer.peers, [b.peer.id]);
  assert.equal(legacy.length, 1);
  assert.equal(legacy[0]![1], b.peer.id);
  assert.equal(legacy[0]![2].label, 'camera');
  assert.equal(legacy[0]![0], legacy[0]![2].track);
  // Every consumer was resumed on the server once the local one existed.
  const producerId = harness.server.producerOf(b.peer.id!, 'camera')!.id;
  assert.equal(harness.server.consumer(a.peer.id!, producerId)!.paused, false);
  assert.deepEqual(a.seen.errors, []);
});

test('autoConnect: false: only connectToPeer\'ed peers arrive, broadcasts arrive anyway', async () => {
  const viewer = makePeer({ roomId: 'room', autoConnect: false });
  const chosen = makePeer({ roomId: 'room' });
  const other = makePeer({ roomId: 'room' });
  const stage = makePeer({ roomId: 'room' });
  for (const { peer } of [chosen, other, stage]) await ready(peer, 'room');
  await ready(viewer.peer, 'room');
  await chosen.peer.addTrack(fakeTrack('video'), 'camera');
  await other.peer.addTrack(fakeTrack('video'), 'camera');
  await stage.peer.addTrack(fakeTrack('video'), 'stage', true);
  await viewer.peer.connectToPeer(chosen.peer.id!);
  await until(() => tracksFrom(viewer.seen, chosen.peer.id!).length === 1, 'the chosen peer\'s camera');
  await until(() => tracksFrom(viewer.seen, stage.peer.id!).length === 1, 'the broadcast');
  // Give availableProducers a few more rounds.
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.deepEqual(tracksFrom(viewer.seen, other.peer.id!), []);
  const asked = harness.server.requests('createConsumer', viewer.peer.id!);
  assert.equal(asked.some((d) => d.producingPeerId === other.peer.id), false);
  assert.equal(viewer.seen.tracks.find((t) => t.peerId === stage.peer.id)!.broadcast, true);
  // Everyone is still announced.
  assert.deepEqual(viewer.seen.joined.sort(), [chosen.peer.id, other.peer.id, stage.peer.id].sort());
});

test('disconnectFromPeer closes the consumers here and on the server, and auto-connect does not undo it', async () => {
  const a = makePeer({ roomId: 'room' });
  const b = makePeer({ roomId: 'room' });
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await b.peer.addTrack(fakeTrack('audio'), 'microphone', true);
  await until(() => tracksFrom(a.seen, b.peer.id!).length === 2, 'A to get B\'s tracks');
  await a.peer.disconnectFromPeer(b.peer.id!);
  assert.deepEqual(a.seen.ended.map((e) => e.label).sort(), ['camera', 'microphone']);
  assert.equal(harness.server.peers.get(a.peer.id!)!.consumers.size, 0, 'no consumer left on the server');
  // B publishes again and the room is re-announced: still nothing for A.
  await b.peer.addTrack(fakeTrack('video'), 'screen');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(a.seen.tracks.length, 2);
  assert.equal(harness.server.peers.get(a.peer.id!)!.consumers.size, 0, 'a broadcast pushed later was closed too');
  // Until we connect again.
  await a.peer.connectToPeer(b.peer.id!);
  await until(() => a.seen.tracks.length === 5, 'B\'s three tracks again');
});

test('pausePeer pauses its consumers and keeps them paused across a re-added track; resumePeer resumes', async () => {
  const a = makePeer({ roomId: 'room' });
  const b = makePeer({ roomId: 'room' });
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await until(() => a.seen.tracks.length === 1, 'A to get B\'s camera');
  const bId = b.peer.id!;
  await a.peer.pausePeer(bId);
  const first = harness.server.producerOf(bId, 'camera')!.id;
  assert.equal(harness.server.consumer(a.peer.id!, first)!.paused, true);
  assert.equal(a.seen.tracks[0]!.track.enabled, false, 'the local track is paused too');

  await b.peer.removeTrack('camera');
  await until(() => a.seen.ended.length === 1, 'the remote end event');
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await until(() => a.seen.tracks.length === 2, 'the re-added camera');
  const second = harness.server.producerOf(bId, 'camera')!.id;
  assert.equal(a.seen.tracks[1]!.paused, true);
  assert.equal(harness.server.consumer(a.peer.id!, second)!.paused, true, 'still paused on the server');

  await a.peer.resumePeer(bId);
  assert.equal(harness.server.consumer(a.peer.id!, second)!.paused, false);
  assert.equal(a.seen.tracks[1]!.track.enabled, true);
});

test('leaving: the others get peerDisconnection and trackEnded; a room switch moves us', async () => {
  const a = makePeer({ roomId: 'one' });
  const b = makePeer({ roomId: 'one' });
  const c = makePeer({ roomId: 'two' });
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await until(() => a.seen.tracks.length === 1, 'A to get B\'s camera');
  await ready(c.peer, 'two');
  await b.peer.joinRoom('two');
  assert.equal(b.peer.roomId, 'two');
  await until(() => a.seen.left.includes(b.peer.id!), 'A to see B leave');
  assert.equal(a.seen.ended.length, 1);
  assert.deepEqual(a.peer.peers, []);
  assert.deepEqual(harness.server.requests('leaveRoom', b.peer.id!), [{ roomId: 'one' }]);
  await until(() => c.seen.tracks.length === 1, 'C to get B\'s camera in room two');
  assert.ok(b.seen.left.includes(a.peer.id!));
  await b.peer.leaveRoom();
  assert.equal(b.peer.roomId, null);
  await until(() => c.seen.left.includes(b.peer.id!), 'C to see B leave');
});

test("a refused request rejects with the server's code; background failures reach 'error'", async () => {
  const a = makePeer();
  await ready(a.peer);
  harness.server.failNext.set('joinRoom', { code: 'limit_reached', message: 'room is full' });
  await assert.rejects(a.peer.joinRoom('full'), (error: unknown) => {
    assert.ok(error instanceof SignalingError);
    assert.equal(error.code, 'limit_reached');
    return true;
  });
  const b = makePeer({ roomId: 'room' });
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  harness.server.failNext.set('createConsumer', { code: 'internal_error', message: 'boom' });
  await a.peer.joinRoom('room');
  await until(() => a.seen.errors.length > 0, 'the error event');
  assert.equal((a.seen.errors[0] as SignalingError).code, 'internal_error');
  // The next announcement (the real server repeats them every second) retries.
  await b.peer.addTrack(fakeTrack('audio'), 'microphone');
  await until(() => a.seen.tracks.length === 2, 'the retried consumer and the new one');
});

test('a request refused for the request rate is retried, not given up: the track is resumed', async () => {
  const a = makePeer({ roomId: 'busy' });
  const b = makePeer({ roomId: 'busy' });
  await ready(a.peer, 'busy');
  await ready(b.peer, 'busy');
  const rate = 'request rate limit reached: at most 50 requests per second per connection, bursts of 200 (limits.requests_per_second, limits.request_burst)';
  harness.server.failNext.set('resumeConsumer', { code: 'limit_reached', message: rate });
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await until(() => tracksFrom(a.seen, b.peer.id!).length === 1, "A to get B's camera");
  const producerId = harness.server.producerOf(b.peer.id!, 'camera')!.id;
  await until(
    () => harness.server.consumer(a.peer.id!, producerId)?.paused === false,
    'the consumer resumed after a retry',
    3_000,
  );
  assert.ok(harness.server.requests('resumeConsumer', a.peer.id!).length >= 2, 'asked again after the refusal');
  assert.deepEqual(a.seen.errors, [], 'nothing to report: it worked');
  // A limit that a retry cannot lift (a full room) is not retried.
  harness.server.failNext.set('joinRoom', { code: 'limit_reached', message: 'the room is full: it has 500 peers' });
  await assert.rejects(a.peer.joinRoom('full'), (error: unknown) => error instanceof SignalingError && error.code === 'limit_reached');
});

test('a throwing listener is logged and does not stop the others or the library', async (t) => {
  const logged: unknown[][] = [];
  t.mock.method(console, 'error', (...args: unknown[]) => logged.push(args));
  const a = makePeer({ roomId: 'room' });
  a.peer.on('track', () => {
    throw new Error('user bug');
  });
  a.peer.onTrack = () => {
    throw new Error('legacy user bug');
  };
  const b = makePeer({ roomId: 'room' });
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await b.peer.addTrack(fakeTrack('audio'), 'microphone');
  await until(() => a.seen.tracks.length === 2, 'both tracks despite the throwing listener');
  assert.equal(logged.length, 4);
  assert.ok(logged.every((args) => /listener threw|onTrack threw/.test(String(args[0]))));
  assert.deepEqual(a.seen.errors, []);
});

test('a reconnect republishes the tracks and rejoins the room', async () => {
  const a = makePeer({ roomId: 'room' });
  const b = makePeer({ roomId: 'room' });
  await a.peer.addTrack(fakeTrack('video'), 'camera');
  await until(() => b.seen.tracks.length === 1, 'B to get A\'s camera');
  const firstId = a.peer.id!;
  a.socket.disconnect();
  assert.equal(a.peer.id, null);
  assert.equal(a.peer.roomId, null);
  await until(() => b.seen.ended.length === 1 && b.seen.left.includes(firstId), 'B to see A go');
  a.socket.connect();
  await ready(a.peer, 'room');
  assert.notEqual(a.peer.id, firstId);
  await until(() => b.seen.tracks.length === 2, 'B to get A\'s camera again');
  assert.equal(b.seen.tracks[1]!.peerId, a.peer.id);
});

test('send: one data producer, created on the first send; data consumers for connected peers', async () => {
  const a = makePeer({ roomId: 'room', requestTimeoutMs: 100 });
  const b = makePeer({ roomId: 'room' });
  await ready(a.peer, 'room');
  await ready(b.peer, 'room');
  assert.equal(harness.server.requests('produceData').length, 0, 'nothing before the first send');
  // The fake handler's data channels never open: both sends time out.
  const sends = [a.peer.send('one'), a.peer.send(new Uint8Array([1, 2]))];
  for (const sent of sends) await assert.rejects(sent, { code: 'timeout' });
  assert.equal(harness.server.requests('produceData', a.peer.id!).length, 1);
  await until(
    () => harness.server.requests('createDataConsumer', b.peer.id!).some((d) => d.producingPeerId === a.peer.id),
    'B to consume A\'s data',
  );
});

test('send while not connected rejects with code disconnected', async () => {
  const socket = harness.server.socket();
  const peer = new SimpleMediasoupPeer({ socket, handlerFactory });
  harness.adopt(peer);
  await assert.rejects(peer.send('hi'), { name: 'SignalingError', code: 'disconnected' });
});

test('close() stops listening to the socket it was given and tells the server', async () => {
  const a = makePeer({ roomId: 'room' });
  await a.peer.addTrack(fakeTrack('video'), 'camera');
  await ready(a.peer, 'room');
  const id = a.peer.id!;
  a.peer.close();
  assert.equal(a.socket.listenerCount('mediasoupSignaling'), 0);
  assert.equal(a.socket.connected, true, 'a socket we did not open stays open');
  await until(() => harness.server.requests('leaveRoom', id).length === 1, 'leaveRoom');
  assert.equal(harness.server.requests('closeProducer', id).length, 1);
});

test('activeSpeaker and audioLevels reach listeners; levels are asked for only once someone listens, and again after a reconnect', async () => {
  const a = makePeer({ roomId: 'talk' });
  const b = makePeer({ roomId: 'talk' });
  await ready(a.peer, 'talk');
  await ready(b.peer, 'talk');
  const aId = a.peer.id!;
  const speakers: string[] = [];
  a.peer.on('activeSpeaker', ({ peerId }) => speakers.push(peerId));
  harness.server.pushTo(aId, 'activeSpeaker', { peerId: b.peer.id });
  await until(() => speakers.length === 1, 'the activeSpeaker event');
  assert.deepEqual(speakers, [b.peer.id]);
  assert.equal(harness.server.requests('subscribeAudioLevels', aId).length, 0, 'no levels asked for without a listener');

  const seen: { peerId: string; level: number }[][] = [];
  a.peer.on('audioLevels', ({ levels }) => seen.push(levels));
  await until(() => harness.server.requests('subscribeAudioLevels', aId).length === 1, 'subscribeAudioLevels');
  assert.deepEqual(harness.server.requests('subscribeAudioLevels', aId), [{ enabled: true }]);
  harness.server.pushTo(aId, 'audioLevels', [{ peerId: b.peer.id, level: 0.8 }, { peerId: 'x', level: 'loud' }, null]);
  await until(() => seen.length === 1, 'the audioLevels event');
  assert.deepEqual(seen[0], [{ peerId: b.peer.id, level: 0.8 }], 'malformed entries are left out');

  // A new session (a reconnect) asks again.
  a.socket.disconnect();
  a.socket.connect();
  await until(() => a.peer.id !== null && a.peer.id !== aId, 'a new session');
  await until(() => harness.server.requests('subscribeAudioLevels', a.peer.id!).length === 1, 'subscribed again');
});

test('setPreferredLayers asks for the layers now and for every later consumer of the track; layersChanged names the track', async () => {
  const a = makePeer({ roomId: 'layers' });
  const b = makePeer({ roomId: 'layers' });
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  await b.peer.addTrack(fakeTrack('audio'), 'microphone');
  await until(() => a.seen.tracks.length === 2, "A to get B's tracks");
  const [aId, bId] = [a.peer.id!, b.peer.id!];
  const camera = harness.server.producerOf(bId, 'camera')!.id;
  await a.peer.setPreferredLayers(bId, 'camera', { spatial: 0, temporal: 1 });
  await a.peer.setPreferredLayers(bId, 'microphone', { spatial: 0 });
  assert.deepEqual(harness.server.requests('setConsumerPreferredLayers', aId), [
    { producerId: camera, spatialLayer: 0, temporalLayer: 1 },
  ], 'for the video track only');
  for (const bad of [{ spatial: -1 }, { spatial: 1.5 }, { spatial: 0, temporal: 'all' }, null]) {
    assert.throws(() => a.peer.setPreferredLayers(bId, 'camera', bad as never), TypeError);
  }
  // A layer the producer does not send: the server's code.
  await assert.rejects(a.peer.setPreferredLayers(bId, 'camera', { spatial: 3 }), { code: 'layers_out_of_range' });

  const changes: unknown[] = [];
  a.peer.on('layersChanged', (event) => changes.push(event));
  harness.server.pushTo(aId, 'consumerLayersChanged', { producerId: camera, spatialLayer: 1, temporalLayer: 2 });
  harness.server.pushTo(aId, 'consumerLayersChanged', { producerId: camera, spatialLayer: null, temporalLayer: null });
  harness.server.pushTo(aId, 'consumerLayersChanged', { producerId: 'unknown', spatialLayer: 0, temporalLayer: 0 });
  await until(() => changes.length === 2, 'the layersChanged events');
  assert.deepEqual(changes, [
    { peerId: bId, label: 'camera', producerId: camera, spatialLayer: 1, temporalLayer: 2 },
    { peerId: bId, label: 'camera', producerId: camera, spatialLayer: null, temporalLayer: null },
  ]);

  // The track republished: its new consumer gets the last preference.
  await a.peer.setPreferredLayers(bId, 'camera', { spatial: 1 });
  await b.peer.removeTrack('camera');
  await b.peer.addTrack(fakeTrack('video'), 'camera');
  const second = () => harness.server.producerOf(bId, 'camera')?.id;
  await until(
    () => harness.server.requests('setConsumerPreferredLayers', aId).some((r) => (r as { producerId: string }).producerId === second()),
    'the preference for the new consumer',
  );
  assert.deepEqual(harness.server.requests('setConsumerPreferredLayers', aId).at(-1), { producerId: second(), spatialLayer: 1 });
});

test('producerLayersWanted (dynacast) turns the simulcast layers above it off and back on; other producers are left alone', async () => {
  const a = makePeer({ roomId: 'dynacast' });
  const simulcast = [{ maxBitrate: 150_000 }, { maxBitrate: 500_000 }, { maxBitrate: 1_500_000 }];
  await a.peer.addTrack(fakeTrack('video'), 'camera', false, simulcast);
  await a.peer.addTrack(fakeTrack('video'), 'screen');
  await until(() => harness.server.producerOf(a.peer.id!, 'screen') !== undefined, 'both producers');
  const calls: number[] = [];
  const send = a.handler('send') as unknown as { setMaxSpatialLayer: (id: string, layer: number) => Promise<void> };
  const original = send.setMaxSpatialLayer.bind(send);
  send.setMaxSpatialLayer = async (id, layer) => {
    calls.push(layer);
    return original(id, layer);
  };
  const aId = a.peer.id!;
  const camera = harness.server.producerOf(aId, 'camera')!.id;
  const screen = harness.server.producerOf(aId, 'screen')!.id;
  harness.server.pushTo(aId, 'producerLayersWanted', { producerId: camera, maxSpatialLayer: 0 });
  await until(() => calls.length === 1, 'the layers above S0 turned off');
  // Not simulcast, unknown, malformed, or already so: nothing happens.
  harness.server.pushTo(aId, 'producerLayersWanted', { producerId: screen, maxSpatialLayer: 0 });
  harness.server.pushTo(aId, 'producerLayersWanted', { producerId: 'unknown', maxSpatialLayer: 0 });
  harness.server.pushTo(aId, 'producerLayersWanted', { producerId: camera, maxSpatialLayer: -1 });
  harness.server.pushTo(aId, 'producerLayersWanted', { producerId: camera, maxSpatialLayer: 0 });
  // Wanted again (beyond its top: its top).
  harness.server.pushTo(aId, 'producerLayersWanted', { producerId: camera, maxSpatialLayer: 9 });
  await until(() => calls.length === 2, 'the layers back on');
  assert.deepEqual(calls, [0, 2]);
  assert.deepEqual(a.seen.errors, []);
});
