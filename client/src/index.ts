/**
 * simplesfu-client: `SimpleMediasoupPeer`, the browser side of simplesfu.
 *
 *     const peer = new SimpleMediasoupPeer({ roomId: 'lobby' });
 *     peer.on('track', ({ track, peerId, label }) => { ... });
 *     await peer.addTrack(cameraTrack, 'camera');
 */
export { SimpleMediasoupPeer } from './peer.js';
export type {
  SimpleMediasoupPeerOptions,
  SimpleMediasoupPeerEvents,
  TrackEvent,
  TrackEndedEvent,
  RemoteTrackStats,
  PeerEvent,
  DataEvent,
  DataMessage,
  RoomId,
  MediaKind,
  LegacyTrackCallback,
  ConnectionState,
  ConnectionStateEvent,
  ServerShutdownEvent,
  ActiveSpeakerEvent,
  AudioLevelsEvent,
  LayersChangedEvent,
  PreferredLayers,
} from './api.js';
export { SignalingError, PeerClosedError } from './errors.js';
export { ENCODINGS, SIMULCAST, SCREEN_SHARE, type Encodings, type EncodingsPreset } from './encodings.js';
export type { SignalingSocket } from './signaling.js';
export type { Listener } from './emitter.js';
