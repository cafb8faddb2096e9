// Browser test page: stock mediasoup-client driven directly with protocol v1
// messages (see PROTOCOL.md), no client library in between, so what this page
// proves about the server holds for any v1 client.
//
// URL: v1-direct.html?room=<roomId>. The page joins the room, publishes its
// fake camera and microphone and one data channel, and consumes everything the
// other peers of the room publish. The test reads `window.testState`.

import { Device } from 'mediasoup-client';
import { io } from 'socket.io-client';

const REQUEST_TIMEOUT_MS = 10_000;
const DATA_SEND_INTERVAL_MS = 500;
const KEPT_DATA_MESSAGES = 100;

// mediasoup-client 3.24 no longer has `device.sctpCapabilities`; older 3.x
// versions (the ones the published v1 client was built with) sent this value,
// and the server takes the field's presence as a request for SCTP.
const SCTP_CAPABILITIES = { numStreams: { OS: 1024, MIS: 1024 } };

const roomId = new URLSearchParams(location.search).get('room') ?? 'e2e';

// producerId -> {peerId, kind, consumer, element}; null while being created.
const consumers = new Map();
// dataProducerId -> DataConsumer; null while being created.
const dataConsumers = new Map();
// Producer ids we already asked a consumer for (createConsumer is idempotent on
// the server, but one request per producer keeps the log readable).
const requested = new Set();

let socket;
let device;
let sendTransport;
let recvTransport;

const state = {
  phase: 'starting',
  roomId,
  peerId: null,
  /** Every failure the page saw, as text; the test fails on any. */
  errors: [],
  transports: { send: 'new', recv: 'new' },
  /** Own producers: kind -> producer id. */
  producers: {},
  dataProducer: { id: null, readyState: 'none', sent: 0 },
  /** Peers currently sharing the room, from peerConnection/peerDisconnection. */
  peers: [],
  /** peerId -> {count, first, last}: text messages received on data consumers. */
  dataReceived: {},
  /** The latest received messages, {peerId, text}, oldest first. */
  dataMessages: [],
  /** peerId -> {video?: consumerId, audio?: consumerId, data?: dataConsumerId} */
  remotePeers: {},
  /** Received media per remote peer, from getStats() of our consumers. */
  mediaStats,
};
window.testState = state;

function setPhase(phase) {
  state.phase = phase;
  document.getElementById('phase').textContent = phase;
}

function fail(where, error) {
  const code = error?.code ? ` [${error.code}]` : '';
  const text = `${where}: ${error?.message ?? String(error)}${code}`;
  state.errors.push(text);
  console.error(`v1-direct: ${text}`);
}

window.addEventListener('error', (event) => fail('uncaught', event.error ?? event.message));
window.addEventListener('unhandledrejection', (event) => fail('unhandled rejection', event.reason));

/** One v1 request; resolves with the success ack, rejects on an error ack. */
function request(type, data) {
  return new Promise((resolve, reject) => {
    socket
      .timeout(REQUEST_TIMEOUT_MS)
      .emit('mediasoupSignaling', { type, data }, (timeoutError, ack) => {
        if (timeoutError) {
          reject(new Error(`${type}: no ack within ${REQUEST_TIMEOUT_MS} ms`));
        } else if (ack?.error) {
          const error = new Error(`${type} refused: ${ack.error.message}`);
          error.code = ack.error.code;
          reject(error);
        } else if (ack?.success !== true) {
          reject(new Error(`${type}: ack without success or error: ${JSON.stringify(ack)}`));
        } else {
          resolve(ack);
        }
      });
  });
}

async function createTransport(direction) {
  const { transportInfo } = await request('createWebRtcTransport', {
    forceTcp: false,
    producing: direction === 'send',
    consuming: direction === 'recv',
    sctpCapabilities: device.sctpCapabilities ?? SCTP_CAPABILITIES,
  });
  const transport =
    direction === 'send'
      ? device.createSendTransport(transportInfo)
      : device.createRecvTransport(transportInfo);

  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters }).then(
      () => callback(),
      errback,
    );
  });
  transport.on('connectionstatechange', (connectionState) => {
    state.transports[direction] = connectionState;
    if (connectionState === 'failed') {
      fail(`${direction} transport`, new Error('connection failed (ICE or DTLS)'));
    }
  });
  if (direction === 'send') {
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      request('produce', { transportId: transport.id, kind, rtpParameters, appData }).then(
        ({ id }) => callback({ id }),
        errback,
      );
    });
    transport.on('producedata', ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
      request('produceData', {
        transportId: transport.id,
        sctpStreamParameters,
        label,
        protocol,
        appData,
      }).then(({ id }) => callback({ id }), errback);
    });
  }
  return transport;
}

function onPush(message) {
  const { type, data } = message ?? {};
  switch (type) {
    case 'availableProducers':
      requestConsumers(data);
      break;
    case 'createConsumer':
      consume(data).catch((error) => fail(`consume ${data?.producerId}`, error));
      break;
    case 'createDataConsumer':
      consumeData(data).catch((error) => fail(`consumeData ${data?.dataProducerId}`, error));
      break;
    case 'peerConnection':
      state.peers = [...new Set([...state.peers, ...(data ?? [])])];
      break;
    case 'peerDisconnection':
      state.peers = state.peers.filter((id) => !(data ?? []).includes(id));
      break;
    default:
      // consumerClosed, dataConsumerClosed and extensions: nothing to do here.
      break;
  }
}

function requestConsumers(available) {
  if (!recvTransport) return; // a later resend will do
  for (const [peerId, offer] of Object.entries(available ?? {})) {
    if (peerId === state.peerId) continue;
    for (const producerId of Object.keys(offer?.producers ?? {})) {
      ask('createConsumer', peerId, producerId);
    }
    for (const dataProducerId of Object.keys(offer?.dataProducers ?? {})) {
      ask('createDataConsumer', peerId, dataProducerId);
    }
  }
}

function ask(type, producingPeerId, producerId) {
  if (requested.has(producerId)) return;
  requested.add(producerId);
  request(type, { producingPeerId, producerId }).catch((error) => {
    requested.delete(producerId); // the next availableProducers retries
    fail(`${type} ${producerId}`, error);
  });
}

async function consume({ peerId, producerId, id, kind, rtpParameters, appData }) {
  if (consumers.has(producerId)) return; // the same consumer pushed again
  consumers.set(producerId, null);
  const consumer = await recvTransport.consume({
    id,
    producerId,
    kind,
    rtpParameters,
    appData: { ...appData, peerId },
  });
  const element = document.createElement(kind === 'video' ? 'video' : 'audio');
  element.autoplay = true;
  element.muted = true; // autoplay without a user gesture
  element.playsInline = true;
  element.dataset.peerId = peerId;
  element.dataset.producerId = producerId;
  element.srcObject = new MediaStream([consumer.track]);
  document.getElementById('remote').append(element);
  consumers.set(producerId, { peerId, kind, consumer, element });
  (state.remotePeers[peerId] ??= {})[kind] = consumer.id;

  // Consumers are created paused; resume once ours exists.
  await request('resumeConsumer', { producerId });
}

async function consumeData({ peerId, dataProducerId, id, sctpStreamParameters, label, protocol, appData }) {
  if (dataConsumers.has(dataProducerId)) return;
  dataConsumers.set(dataProducerId, null);
  const dataConsumer = await recvTransport.consumeData({
    id,
    dataProducerId,
    sctpStreamParameters,
    label,
    protocol,
    appData: { ...appData, peerId },
  });
  dataConsumers.set(dataProducerId, dataConsumer);
  (state.remotePeers[peerId] ??= {}).data = dataConsumer.id;
  dataConsumer.on('message', (message) => {
    const text =
      typeof message === 'string' ? message : `[${message.byteLength ?? message.size} binary bytes]`;
    const received = (state.dataReceived[peerId] ??= { count: 0, first: text, last: text });
    received.count += 1;
    received.last = text;
    state.dataMessages.push({ peerId, text });
    if (state.dataMessages.length > KEPT_DATA_MESSAGES) state.dataMessages.shift();
  });
}

/** Sends a text message as soon as the channel opens and every 500 ms after,
 * so that a consumer created later still receives one. */
function keepSending(dataProducer) {
  const track = (readyState) => {
    state.dataProducer.readyState = readyState;
  };
  const sendOne = () => {
    track(dataProducer.readyState);
    if (dataProducer.closed || dataProducer.readyState !== 'open') return;
    state.dataProducer.sent += 1;
    dataProducer.send(`hello from ${state.peerId} #${state.dataProducer.sent}`);
  };
  dataProducer.on('open', sendOne);
  dataProducer.on('close', () => track('closed'));
  dataProducer.on('error', (error) => fail('data producer', error));
  sendOne();
  setInterval(sendOne, DATA_SEND_INTERVAL_MS);
}

async function inboundRtp(consumer) {
  const report = await consumer.getStats();
  for (const stats of report.values()) {
    if (stats.type === 'inbound-rtp') return stats;
  }
  return undefined;
}

async function mediaStats() {
  const byPeer = {};
  for (const record of consumers.values()) {
    if (!record || record.consumer.closed) continue;
    const peer = (byPeer[record.peerId] ??= {});
    const inbound = await inboundRtp(record.consumer);
    if (record.kind === 'video') {
      peer.video = {
        packetsReceived: inbound?.packetsReceived ?? 0,
        framesDecoded: inbound?.framesDecoded ?? 0,
        frameWidth: inbound?.frameWidth ?? 0,
        frameHeight: inbound?.frameHeight ?? 0,
        videoWidth: record.element.videoWidth,
        videoHeight: record.element.videoHeight,
      };
    } else {
      peer.audio = {
        packetsReceived: inbound?.packetsReceived ?? 0,
        bytesReceived: inbound?.bytesReceived ?? 0,
      };
    }
  }
  return byPeer;
}

function connectSocket() {
  socket = io(); // the page's origin, path /socket.io/
  socket.on('mediasoupSignaling', onPush);
  socket.on('disconnect', (reason) => {
    if (reason !== 'io client disconnect') fail('socket', new Error(`disconnected: ${reason}`));
  });
  return new Promise((resolve) => {
    socket.once('connect', resolve);
    socket.on('connect_error', (error) => fail('socket connect', error));
  });
}

async function main() {
  document.getElementById('room').textContent = roomId;
  setPhase('connecting');
  await connectSocket();

  setPhase('loading-device');
  // The server names our peer id in this ack (it is never the socket id).
  const { routerRtpCapabilities, peerId } = await request('getRouterRtpCapabilities');
  state.peerId = peerId;
  document.getElementById('peer').textContent = peerId;
  device = await Device.factory();
  await device.load({ routerRtpCapabilities });

  // The published v1 client creates its transports before joining.
  setPhase('creating-transports');
  sendTransport = await createTransport('send');
  recvTransport = await createTransport('recv');

  setPhase('joining');
  await request('joinRoom', { roomId });

  setPhase('producing');
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  for (const track of stream.getTracks()) {
    const producer = await sendTransport.produce({
      track,
      appData: { label: track.kind, broadcast: false },
    });
    state.producers[track.kind] = producer.id;
  }
  const dataProducer = await sendTransport.produceData({
    label: 'chat',
    protocol: 'text',
    appData: { label: 'chat' },
  });
  state.dataProducer.id = dataProducer.id;
  keepSending(dataProducer);

  setPhase('running');
}

main().catch((error) => {
  fail(state.phase, error);
  setPhase('failed');
});
