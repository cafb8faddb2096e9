// Browser test page: the published simple-mediasoup-peer-client 0.0.20 from
// npm, unmodified (its index.js bundled as is), for the wire compatibility
// test. URL: published-client.html?room=<roomId>. It exposes the same
// `window.t.state()` / `window.t.stats()` shapes as client.js, read from the
// published client's own fields (it has no API for them).

import { SimpleMediasoupPeer } from 'simple-mediasoup-peer-client';

const roomId = new URLSearchParams(location.search).get('room');
const errors = [];
window.addEventListener('error', (event) => errors.push(`uncaught: ${event.error?.message ?? event.message}`));
window.addEventListener('unhandledrejection', (event) => errors.push(`unhandled rejection: ${event.reason?.message ?? event.reason}`));

// Its default server is `${location.hostname}:3000`; ours is the page's origin.
const peer = new SimpleMediasoupPeer({
  url: `${location.protocol}//${location.hostname}`,
  port: location.port,
  roomId,
});
window.peer = peer;

// The published client never learns its peer id (it is not the socket id);
// the test asks the server for it on the client's own socket.
let peerId = null;
peer.socket.on('connect', async () => {
  peerId = null;
  const caps = await peer.socket.request('mediasoupSignaling', { type: 'getRouterRtpCapabilities' });
  peerId = caps.peerId ?? null;
});

peer.on('track', ({ track, peerId }) => {
  const element = document.createElement(track.kind);
  element.autoplay = true;
  element.muted = true;
  element.srcObject = new MediaStream([track]);
  element.dataset.peerId = peerId;
  document.getElementById('remote').append(element);
});

function consumers() {
  return Object.entries(peer.consumers).flatMap(([peerId, byProducer]) =>
    Object.entries(byProducer).map(([producerId, consumer]) => ({ peerId, producerId, consumer })),
  );
}

window.t = {
  /** Publishes the fake camera and microphone, once the client has its transports. */
  async publish() {
    while (!peer.mediasoupConnectionInitialized) await new Promise((resolve) => setTimeout(resolve, 50));
    const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
    for (const track of stream.getTracks()) {
      await peer.addTrack({ track, label: track.kind === 'video' ? 'camera' : 'microphone' });
    }
  },
  state() {
    const tracks = {};
    for (const { peerId, producerId, consumer } of consumers()) {
      tracks[producerId] = { peerId, label: consumer.appData.label, kind: consumer.kind, ended: consumer.closed };
    }
    return {
      id: peer.socket.connected ? peerId : null,
      roomId: peer.currentRoomId,
      producers: Object.keys(peer.producers),
      tracks,
      errors,
    };
  },
  async stats() {
    const byProducer = {};
    for (const { producerId, consumer } of consumers()) {
      let inbound = {};
      for (const report of (await consumer.getStats()).values()) {
        if (report.type === 'inbound-rtp') inbound = report;
      }
      byProducer[producerId] = {
        kind: consumer.kind,
        packetsReceived: inbound.packetsReceived ?? 0,
        framesDecoded: inbound.framesDecoded ?? 0,
        frameWidth: inbound.frameWidth ?? 0,
        frameHeight: inbound.frameHeight ?? 0,
      };
    }
    return byProducer;
  },
};
