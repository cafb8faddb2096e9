/**
 * PeerCore: the state every part of a SimpleMediasoupPeer shares, and the
 * services they all use. It owns the socket, the event emitter, the one queue
 * of operations that must not interleave, what the user asked for (it outlives
 * sessions), what the server told us for the current session, and the
 * connection state. The modules beside it (session, transports, resume,
 * publishing, consuming, data, pushes) are functions of a PeerCore; the
 * facade, peer.ts, is the only one that is public.
 */
import type { AdaptiveStream } from './adaptive.js';
import { debug, type types } from 'mediasoup-client';
import { io } from 'socket.io-client';
import type {
  ConnectionState,
  LegacyTrackCallback,
  PreferredLayers,
  SimpleMediasoupPeerEvents,
  SimpleMediasoupPeerOptions,
} from './api.js';
import { TypedEmitter } from './emitter.js';
import type { Encodings } from './encodings.js';
import { SignalingError } from './errors.js';
import { SerialQueue } from './queue.js';
import { request, socketUrl, type Ack, type SignalingSocket } from './signaling.js';
import { isPlainObject } from './validate.js';

export const log = debug('simplesfu-client');

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** How long an ICE restart may take to bring a transport back before it is rebuilt. */
const DEFAULT_ICE_RESTART_TIMEOUT_MS = 5_000;
/** How often a request refused for the request rate is retried, and the first pause (doubled each time). */
const RATE_LIMIT_RETRIES = 5;
const RATE_LIMIT_RETRY_MS = 250;
/** Errors of requests that raced with a producer or peer going away: not failures. */
const GONE_CODES = new Set(['producer_not_found', 'peer_not_found', 'producer_not_in_room', 'not_in_room']);

export type Direction = 'send' | 'recv';

export interface DesiredTrack {
  track: MediaStreamTrack;
  broadcast: boolean;
  encodings: Encodings;
}

export interface ProducerRecord {
  producer: types.Producer;
  /** Producers with other encodings are replaced, not switched. */
  encodingsKey: string;
}

export interface ConsumerRecord {
  consumer: types.Consumer;
  peerId: string;
  label: string;
  broadcast: boolean;
  /** The layers the server last said it forwards (`consumerLayersChanged`); undefined before it said. */
  layers?: { spatialLayer: number | null; temporalLayer: number | null };
}

export interface AvailablePeer {
  producers: Map<string, { label: string; broadcast: boolean; kind: string }>;
  dataProducers: Set<string>;
}

/** Everything that lives as long as one socket connection. */
export interface Session {
  generation: number;
  peerId: string;
  device: types.Device;
  sendTransport: types.Transport;
  recvTransport: types.Transport;
  sendConnected: Promise<void>;
  /** Directions whose transport is being restarted or rebuilt. */
  recovering: Set<Direction>;
  producers: Map<string, ProducerRecord>;
  /** producerId -> consumer. */
  consumers: Map<string, ConsumerRecord>;
  /** producerId -> when we asked; cleared when its consumer is set up. */
  consumerRequests: Map<string, number>;
  /** producerIds whose local consumer is being created. */
  consuming: Set<string>;
  dataProducer: types.DataProducer | null;
  /** dataProducerId -> data consumer. */
  dataConsumers: Map<string, types.DataConsumer>;
  dataConsumerRequests: Map<string, number>;
}

/** What a (re)connecting socket claims in its auth: a session to resume, or `true` (a new session). */
export type ResumeClaim = true | { peerId: string; token: string };

/** Thrown inside a session's task when its socket connection is gone. */
export class StaleSession extends Error {}

export class PeerCore {
  readonly socket: SignalingSocket;
  /** Whether the library opened the socket (and so closes it). */
  readonly ownsSocket: boolean;
  readonly autoConnect: boolean;
  readonly iceServers: RTCIceServer[] | undefined;
  readonly requestTimeoutMs: number;
  readonly handlerFactory: types.HandlerFactory | undefined;
  readonly iceRestartTimeoutMs: number;
  readonly events: TypedEmitter<SimpleMediasoupPeerEvents>;
  readonly queue = new SerialQueue();
  /** The facade's `onTrack`, called after the `track` listeners. */
  readonly legacyOnTrack: () => LegacyTrackCallback | null;

  // What the user asked for; survives reconnects.
  readonly tracks = new Map<string, DesiredTrack>();
  desiredRoom: string | null = null;
  /** Someone listens to `audioLevels`: ask the server for them in every session. */
  wantsAudioLevels = false;
  readonly connectTo = new Set<string>();
  readonly disconnectedFrom = new Set<string>();
  readonly pausedPeers = new Set<string>();
  /** `peerId label` -> the layers asked for with setPreferredLayers; applied to every new consumer. */
  readonly preferredLayers = new Map<string, PreferredLayers>();
  /** The `adaptiveStream` option's watcher of video elements; null when off. */
  adaptive: AdaptiveStream | null = null;

  // What the server told us, for the current session.
  session: Session | null = null;
  generation = 0;
  currentRoom: string | null = null;
  readonly peers = new Set<string>();
  available = new Map<string, AvailablePeer>();
  closed = false;

  // Session resume (docs/PROTOCOL.md "Session resume").
  /** Whether we set the socket's auth, so a reconnect can ask to resume. */
  readonly canResume: boolean;
  /** The latest `session` push. */
  resume: { peerId: string; token: string; graceMs: number } | null = null;
  /** The peer id our last connection attempt asked to resume, if any. */
  resumeAttempt: string | null = null;
  disconnectedAt = 0;
  graceTimer: ReturnType<typeof setTimeout> | null = null;
  /** The server said it is stopping (`serverShutdown`): the next
   * connection is a new session, once the server is back. */
  restartExpected = false;
  everConnected = false;
  connectionState: ConnectionState = 'disconnected';

  /**
   * Takes the user's socket or opens one; either way its auth announces
   * `resume: claim()` on every connection (merged with the user's auth).
   */
  constructor(
    options: SimpleMediasoupPeerOptions,
    claim: (core: PeerCore) => ResumeClaim,
    legacyOnTrack: () => LegacyTrackCallback | null,
  ) {
    this.autoConnect = options.autoConnect ?? true;
    this.iceServers = options.iceServers;
    this.requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.handlerFactory = options.handlerFactory;
    this.iceRestartTimeoutMs = options.iceRestartTimeoutMs ?? DEFAULT_ICE_RESTART_TIMEOUT_MS;
    this.legacyOnTrack = legacyOnTrack;
    this.events = new TypedEmitter((event, error) => {
      console.error(`SimpleMediasoupPeer: a "${String(event)}" listener threw`, error);
    });
    const auth = (userAuth: unknown) => withResume(userAuth, () => claim(this));
    if (options.socket) {
      this.socket = options.socket;
      this.ownsSocket = false;
      // A socket.io socket: its reconnects may resume (its first connect
      // may already have happened without announcing it).
      if ('io' in this.socket || 'auth' in this.socket) {
        const holder = this.socket as { auth?: unknown };
        holder.auth = auth(holder.auth);
        this.canResume = true;
      } else {
        this.canResume = false;
      }
    } else {
      const url = socketUrl(options, globalThis.location);
      const socketOptions = { path: '/socket.io/', ...options.socketClientOptions };
      socketOptions.auth = auth(socketOptions.auth) as never;
      this.canResume = true;
      this.socket = (url === undefined ? io(socketOptions) : io(url, socketOptions)) as unknown as SignalingSocket;
      this.ownsSocket = true;
    }
  }

  /**
   * One request. Refused for the connection's request rate (`limit_reached`,
   * e.g. while joining a big room), it is retried a few times with growing
   * pauses rather than given up: one refused resume must not leave a track
   * black.
   */
  async request(type: string, data?: unknown): Promise<Ack> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await request(this.socket, type, data, this.requestTimeoutMs);
      } catch (error) {
        const rateLimited =
          error instanceof SignalingError && error.code === 'limit_reached' && /request rate/.test(error.message);
        if (!rateLimited || attempt >= RATE_LIMIT_RETRIES || this.closed) throw error;
        const pauseMs = RATE_LIMIT_RETRY_MS * 2 ** attempt;
        log('%s refused for the request rate; retrying in %d ms', type, pauseMs);
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    }
  }

  /** A failure nobody awaits: to `error` listeners, else to the console. */
  reportError(operation: string, error: unknown): void {
    if (error instanceof StaleSession || this.closed) return;
    if (error instanceof SignalingError && error.code === 'disconnected' && this.session !== null) {
      // The socket is away but the session is kept: redone once it resumes.
      log('%s: %s (will retry after resume)', operation, error.message);
      return;
    }
    const reported = error instanceof Error ? error : new Error(String(error));
    log('%s failed: %o', operation, reported);
    if (this.events.emit('error', reported) === 0) {
      console.error(`SimpleMediasoupPeer: ${operation} failed:`, reported);
    }
  }

  /**
   * Queue `action` on the current session, if the socket is connected and
   * `stillWanted()` holds when its turn comes. While the socket is away the
   * resume (or the new session) carries out what is wanted instead.
   */
  whenConnected(action: (session: Session) => Promise<unknown>, stillWanted: () => boolean = () => true): Promise<void> {
    return this.queue.push(async () => {
      const session = this.session;
      if (session && this.socket.connected && stillWanted()) await action(session);
    });
  }

  /** Whether we consume `peerId`'s producer (broadcast or not). */
  wants(peerId: string, broadcast: boolean): boolean {
    if (this.disconnectedFrom.has(peerId)) return false;
    return broadcast || this.autoConnect || this.connectTo.has(peerId);
  }

  /** Throws StaleSession unless `session` is still the current one. */
  checkCurrent(session: Session): void {
    if (this.session !== session || this.closed) throw new StaleSession('the connection was reset');
  }

  /** The transport of `direction`: a rebuild replaces it. */
  transport(session: Session, direction: Direction): types.Transport {
    return direction === 'send' ? session.sendTransport : session.recvTransport;
  }

  /** Emits `connectionStateChange` if the state changed (or is `forced`). */
  updateConnectionState(forced?: ConnectionState): void {
    const state = forced ?? this.#computeConnectionState();
    if (state === 'connected') this.everConnected = true;
    const previous = this.connectionState;
    if (state === previous) return;
    this.connectionState = state;
    log('connection state %s -> %s', previous, state);
    this.events.emit('connectionStateChange', { state, previous });
  }

  #computeConnectionState(): ConnectionState {
    if (this.closed) return 'disconnected';
    if (this.restartExpected) return 'reconnecting';
    if (!this.socket.connected) {
      const active = (this.socket as { active?: unknown }).active;
      if (active === false || !this.everConnected) return 'disconnected';
      return 'reconnecting';
    }
    const session = this.session;
    if (!session) return this.everConnected ? 'reconnecting' : 'disconnected';
    const broken = (t: types.Transport) => t.connectionState === 'disconnected' || t.connectionState === 'failed';
    if (session.recovering.size > 0 || broken(session.sendTransport) || broken(session.recvTransport)) {
      return 'reconnecting';
    }
    return 'connected';
  }
}

/** Whether a request failed only because what it was about went away meanwhile. */
export function isGone(error: unknown): boolean {
  return error instanceof SignalingError && GONE_CODES.has(error.code);
}

/** The socket's auth: the user's (object or function) plus `resume`. */
function withResume(userAuth: unknown, claim: () => ResumeClaim): (cb: (data: object) => void) => void {
  return (cb) => {
    const send = (user: unknown) => cb({ ...(isPlainObject(user) ? user : {}), resume: claim() });
    if (typeof userAuth === 'function') (userAuth as (cb: (data: unknown) => void) => void)(send);
    else send(userAuth);
  };
}
