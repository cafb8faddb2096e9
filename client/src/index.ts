/**
 * simplesfu-client: `SimpleMediasoupPeer`, the browser side of simplesfu.
 *
 *     const peer = new SimpleMediasoupPeer({ roomId: 'lobby' });
 *     peer.on('track', ({ track, peerId, label }) => { ... });
 *     await peer.addTrack(cameraTrack, 'camera');
 */
export {
  SimpleMediasoupPeer,
  type SimpleMediasoupPeerOptions,
  type SimpleMediasoupPeerEvents,
  type TrackEvent,
  type TrackEndedEvent,
  type RemoteTrackStats,
  type PeerEvent,
  type DataEvent,
  type DataMessage,
  type RoomId,
  type MediaKind,
  type LegacyTrackCallback,
  type ConnectionState,
  type ConnectionStateEvent,
  type ServerShutdownEvent,
} from './peer.js';
export { SignalingError, PeerClosedError } from './errors.js';
export { ENCODINGS, SIMULCAST, SCREEN_SHARE, type Encodings, type EncodingsPreset } from './encodings.js';
export type { SignalingSocket } from './signaling.js';
export type { Listener } from './emitter.js';
