/**
 * The public types of SimpleMediasoupPeer: its options, its events and their
 * payloads (re-exported by index.ts), and the list of event names `on` accepts.
 */
import type { types } from 'mediasoup-client';
import type { ManagerOptions, SocketOptions } from 'socket.io-client';
import type { SignalingSocket } from './signaling.js';

export type RoomId = string | number;
export type DataMessage = string | ArrayBuffer | ArrayBufferView | Blob;

export interface SimpleMediasoupPeerOptions {
  /** A socket.io client socket to signal over; by default the library opens one. */
  socket?: SignalingSocket;
  /** Server host or URL (default: the page's origin). */
  url?: string;
  /** Server port (default: the page's). */
  port?: number | string;
  /** Room to join as soon as the connection is set up. */
  roomId?: RoomId;
  /** Consume every peer of the room unless `disconnectFromPeer`ed (default true). */
  autoConnect?: boolean;
  /** Passed to socket.io-client's `io()`. */
  socketClientOptions?: Partial<ManagerOptions & SocketOptions>;
  /** STUN/TURN servers for both transports. */
  iceServers?: RTCIceServer[];
  /** How long a request waits for the server's answer (default 10 s). */
  requestTimeoutMs?: number;
  /** mediasoup-client handler factory, for environments it does not detect (and tests). */
  handlerFactory?: types.HandlerFactory;
  /** How long an ICE restart may take before the transport is rebuilt (default 5 s). */
  iceRestartTimeoutMs?: number;
  /**
   * Let the elements that show a remote video track choose its layers
   * (default false): register them with `observeVideoElement`; a small
   * element gets a low simulcast layer, a large one the top, and a track no
   * element shows (off screen, hidden, the page in the background) is paused
   * until one does. Needs ResizeObserver and IntersectionObserver (browsers).
   */
  adaptiveStream?: boolean;
}

/**
 * `connected`: signaling and media are up. `reconnecting`: the socket or a
 * transport dropped and the library is bringing it back (session resume, ICE
 * restart, rebuild). `disconnected`: not connected and not trying (before the
 * first connection, after `close()`, a server shutdown or a refused connection).
 */
export type ConnectionState = 'connected' | 'reconnecting' | 'disconnected';

export interface ConnectionStateEvent {
  state: ConnectionState;
  previous: ConnectionState;
}

export interface ServerShutdownEvent {
  message: string;
}

export type MediaKind = 'audio' | 'video';

/** A remote track that went away (producer closed, peer left or disconnected). */
export interface TrackEndedEvent {
  track: MediaStreamTrack;
  peerId: string;
  label: string;
  broadcast: boolean;
  kind: MediaKind;
  producerId: string;
}

/** A remote track: `track` is ready to put in a MediaStream. */
export interface TrackEvent extends TrackEndedEvent {
  /** True when the peer is paused (`pausePeer`): no media flows until `resumePeer`. */
  paused: boolean;
}

export interface PeerEvent {
  peerId: string;
}

export interface DataEvent {
  from: string;
  data: string | ArrayBuffer | Blob;
}

/** What arrives of one remote track, from the browser's inbound-rtp statistics. */
export interface RemoteTrackStats {
  peerId: string;
  label: string;
  kind: MediaKind;
  producerId: string;
  broadcast: boolean;
  paused: boolean;
  packetsReceived: number;
  bytesReceived: number;
  /** Packets the browser counts as lost (never arrived, nor repaired by a retransmission). */
  packetsLost: number;
  /** Video only (0 for audio). */
  framesDecoded: number;
  /** Video only: decoded frames per second, as the browser measures it (0 when unknown). */
  framesPerSecond: number;
  /** Video only: times the video froze (Chromium's `freezeCount`; 0 where the browser does not count). */
  freezeCount: number;
  frameWidth: number;
  frameHeight: number;
  /**
   * Video only: the simulcast (spatial) and temporal layer the server forwards
   * to this viewer after bandwidth allocation, as it last reported them
   * (`layersChanged`); null before any report, or while the server has paused
   * the video because not even the lowest layer fits the viewer's link.
   */
  spatialLayer: number | null;
  temporalLayer: number | null;
}

/** The room's dominant speaker changed (a server extension). */
export interface ActiveSpeakerEvent {
  peerId: string;
}

/** The room's speakers, loudest first: `level` is speech activity from 0 (silent) to 1, smoothed over about 0.5 s. */
export interface AudioLevelsEvent {
  levels: { peerId: string; level: number }[];
}

/** The highest layers wanted of a remote video track (`setPreferredLayers`). */
export interface PreferredLayers {
  /** Simulcast layer, 0 (lowest resolution) up. */
  spatial: number;
  /** Temporal layer (frame rate), 0 (a quarter) to 2 (full); all when left out. */
  temporal?: number;
}

/**
 * The server moved a remote video track to other layers to fit our link
 * (a server extension); both `null` while its video is paused for bandwidth.
 */
export interface LayersChangedEvent {
  peerId: string;
  label: string;
  producerId: string;
  spatialLayer: number | null;
  temporalLayer: number | null;
}

export interface SimpleMediasoupPeerEvents {
  track: TrackEvent;
  trackEnded: TrackEndedEvent;
  /** The published client's name for `trackEnded`; fired alongside it. */
  trackRemoved: TrackEndedEvent;
  /** A peer is now in the room with us. */
  peerConnection: PeerEvent;
  /** A peer is no longer in the room with us. */
  peerDisconnection: PeerEvent;
  data: DataEvent;
  /** A failure outside any call that could reject with it. */
  error: Error;
  /** Signaling or media went down or came back (see ConnectionState). */
  connectionStateChange: ConnectionStateEvent;
  /** The server is stopping (a restart); the library comes back as a new session. */
  serverShutdown: ServerShutdownEvent;
  /** Who is talking in the room now (the server decides, from the audio levels senders report). */
  activeSpeaker: ActiveSpeakerEvent;
  /** Every speaker's level, at most every 250 ms; the server sends them only while someone listens to this event. */
  audioLevels: AudioLevelsEvent;
  /** A remote video track now comes in other layers (or is paused for bandwidth). */
  layersChanged: LayersChangedEvent;
}

export const EVENT_NAMES: ReadonlySet<string> = new Set<keyof SimpleMediasoupPeerEvents>([
  'track',
  'trackEnded',
  'trackRemoved',
  'peerConnection',
  'peerDisconnection',
  'data',
  'error',
  'connectionStateChange',
  'serverShutdown',
  'activeSpeaker',
  'audioLevels',
  'layersChanged',
]);

/** The seed's callback: `peer.onTrack = (track, peerId, info) => {}`. */
export type LegacyTrackCallback = (track: MediaStreamTrack, peerId: string, info: TrackEvent) => unknown;
