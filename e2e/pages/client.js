// Browser test page for our client library, built from its TypeScript sources
// (so the tests exercise client/src, not a stale bundle). The test drives it
// through `window.t`: start a peer, publish fake media, call any method, and
// read what a user of the library sees: events, remote tracks and their stats.

import { io } from 'socket.io-client';
import { SimpleMediasoupPeer } from '../../client/src/index.ts';

const state = {
  /** Remote tracks by producer id: {peerId, label, kind, broadcast, paused, ended}. */
  tracks: {},
  /** Every event, in order, as [name, summary]. */
  events: [],
  /** Data messages: {from, data}. */
  data: [],
  /** Anything that went wrong: error events, failed calls. */
  errors: [],
};
let peer = null;
const localTracks = {};

// Every RTCPeerConnection the page makes (mediasoup-client makes one per
// transport), so a test can learn the local port its media arrives on.
const connections = [];
const NativePeerConnection = window.RTCPeerConnection;
window.RTCPeerConnection = class extends NativePeerConnection {
  constructor(...args) {
    super(...args);
    connections.push(this);
  }
};

function fail(where, error) {
  const code = error?.code ? ` [${error.code}]` : '';
  state.errors.push(`${where}: ${error?.message ?? error}${code}`);
}

window.addEventListener('error', (event) => fail('uncaught', event.error ?? event.message));
window.addEventListener('unhandledrejection', (event) => fail('unhandled rejection', event.reason));

window.t = {
  /**
   * Creates the peer: `options` are SimpleMediasoupPeer's (roomId,
   * autoConnect, ...). With `seedStyle: true`, the seed's way instead: our
   * own socket, `new SimpleMediasoupPeer(socket)`, `joinRoom`, and the
   * `onTrack` callback counted in `legacyTracks`.
   */
  start({ seedStyle = false, ...options } = {}) {
    if (seedStyle) {
      peer = new SimpleMediasoupPeer(io());
      state.legacyTracks = 0;
      peer.onTrack = (track, peerId, info) => {
        if (track === info.track && peerId === info.peerId) state.legacyTracks += 1;
      };
      if (options.roomId !== undefined) peer.joinRoom(options.roomId).catch((error) => fail('joinRoom', error));
    } else {
      peer = new SimpleMediasoupPeer(options);
    }
    window.peer = peer;
    // Every request the library sends, by type (to check what a resume or an ICE restart did).
    state.requests = [];
    const emit = peer.socket.emit.bind(peer.socket);
    peer.socket.emit = (event, message, ...rest) => {
      if (event === 'mediasoupSignaling') state.requests.push(message?.type);
      return emit(event, message, ...rest);
    };
    peer.on('track', ({ track, peerId, label, kind, broadcast, producerId, paused }) => {
      state.tracks[producerId] = { peerId, label, kind, broadcast, paused, ended: false };
      state.events.push(['track', `${peerId}/${label}`]);
      const element = document.createElement(kind);
      element.autoplay = true;
      element.muted = true;
      element.srcObject = new MediaStream([track]);
      element.dataset.producerId = producerId;
      document.getElementById('remote').append(element);
    });
    peer.on('trackEnded', ({ peerId, label, producerId }) => {
      if (state.tracks[producerId]) state.tracks[producerId].ended = true;
      state.events.push(['trackEnded', `${peerId}/${label}`]);
      document.querySelector(`[data-producer-id="${producerId}"]`)?.remove();
    });
    peer.on('peerConnection', ({ peerId }) => state.events.push(['peerConnection', peerId]));
    peer.on('peerDisconnection', ({ peerId }) => state.events.push(['peerDisconnection', peerId]));
    peer.on('data', ({ from, data }) => state.data.push({ from, data: String(data) }));
    peer.on('error', (error) => fail('error event', error));
    peer.on('connectionStateChange', ({ state: value }) => state.events.push(['connectionStateChange', value]));
    peer.on('serverShutdown', ({ message }) => state.events.push(['serverShutdown', message]));
    peer.on('activeSpeaker', ({ peerId }) => state.events.push(['activeSpeaker', peerId]));
    peer.on('layersChanged', ({ peerId, label, spatialLayer, temporalLayer }) =>
      state.events.push(['layersChanged', `${peerId}/${label} S${spatialLayer}T${temporalLayer}`]),
    );
  },

  /** Sends `text` to the room's peers over our data producer. */
  async send(text) {
    await peer.send(text);
  },

  /** Cuts the socket as a network drop would (socket.io reconnects by itself). */
  cutSocket() {
    peer.socket.io.engine.close();
  },

  /** Publishes a fresh fake camera and/or microphone track under `labels`. */
  async publish({ camera, microphone, broadcast = false, encodings, rawAudio = false, video = true } = {}) {
    // rawAudio: no echo cancellation, noise suppression or gain control, so
    // a test signal reaches the others (and their level meters) as it is.
    const audio = !!microphone && (rawAudio ? { echoCancellation: false, noiseSuppression: false, autoGainControl: false } : true);
    const stream = await navigator.mediaDevices.getUserMedia({ video: !!camera && video, audio });
    for (const track of stream.getTracks()) {
      const label = track.kind === 'video' ? camera : microphone;
      await peer.addTrack(track, label, broadcast, encodings);
      // Replaced under the same label: from now on only the new track can
      // be what the others receive.
      localTracks[label]?.stop();
      localTracks[label] = track;
    }
  },

  /** Mutes (sends silence) or unmutes the local track published as `label`. */
  setTrackEnabled(label, enabled) {
    localTracks[label].enabled = enabled;
  },

  /** Calls `peer[method](...args)`; returns an error text instead of throwing. */
  async call(method, ...args) {
    try {
      await peer[method](...args);
      return null;
    } catch (error) {
      return `${error.name}: ${error.message}`;
    }
  },

  state() {
    document.getElementById('peer').textContent = peer?.id ?? '';
    document.getElementById('room').textContent = peer?.roomId ?? '';
    return {
      id: peer?.id ?? null,
      roomId: peer?.roomId ?? null,
      peers: peer?.peers ?? [],
      connectionState: peer?.connectionState ?? null,
      ...state,
    };
  },

  /**
   * The local UDP ports of the page's receiving connections (those with a
   * recvonly transceiver): one list per connection, every local candidate's
   * port (the server may send on any path the browser's checks opened, not
   * only the pair the browser selected). What a test shapes to constrain
   * this page's downlink.
   */
  async receivePorts() {
    const lists = [];
    for (const pc of connections) {
      if (pc.connectionState === 'closed') continue;
      if (!pc.getTransceivers().some((t) => t.direction === 'recvonly')) continue;
      const ports = new Set();
      for (const stats of (await pc.getStats()).values()) {
        if (stats.type === 'local-candidate' && stats.protocol === 'udp' && stats.port) ports.add(stats.port);
      }
      lists.push([...ports]);
    }
    return lists;
  },

  /**
   * Which encodings of each video sender are on (simulcast layers, lowest
   * first), and the bytes each has sent: [{active: [...], bytesSent: [...]}].
   */
  async videoSenders() {
    const senders = [];
    for (const pc of connections) {
      if (pc.connectionState === 'closed') continue;
      for (const sender of pc.getSenders().filter((s) => s.track?.kind === 'video')) {
        const encodings = sender.getParameters().encodings ?? [];
        const bytes = {};
        for (const stats of (await sender.getStats()).values()) {
          if (stats.type === 'outbound-rtp') bytes[stats.rid ?? ''] = stats.bytesSent;
        }
        senders.push({ active: encodings.map((e) => e.active !== false), bytesSent: encodings.map((e) => bytes[e.rid ?? ''] ?? 0) });
      }
    }
    return senders;
  },

  /**
   * adaptiveStream: sizes the element showing remote track `producerId`
   * (CSS pixels; `null` hides it with display: none) and has the peer watch
   * it (`observeVideoElement`, once).
   */
  showRemote(producerId, size) {
    const element = document.querySelector(`video[data-producer-id="${producerId}"]`);
    if (!element) throw new Error(`no element shows ${producerId}`);
    if (!element.dataset.observed) {
      const { peerId, label } = state.tracks[producerId];
      peer.observeVideoElement(element, peerId, label);
      element.dataset.observed = 'yes';
    }
    if (size === null) {
      element.style.display = 'none';
    } else {
      element.style.display = '';
      element.style.width = `${size.width}px`;
      element.style.height = `${size.height}px`;
    }
  },

  /** Remote track stats by producer id. */
  async stats() {
    const byProducer = {};
    for (const stats of (await peer?.getRemoteTrackStats()) ?? []) byProducer[stats.producerId] = stats;
    return byProducer;
  },
};
