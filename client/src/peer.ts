/**
 * SimpleMediasoupPeer: one browser peer of a simplesfu room. It owns the
 * mediasoup-client Device, one send and one receive transport per socket
 * connection (a "session"), the producers of the tracks the user added, and
 * the consumers of the other peers it is connected to. What the user asked
 * for (tracks, room, connected/paused peers) outlives a session, so a
 * reconnecting socket gets it all back. A socket that comes back within the
 * server's grace period resumes the session instead (docs/PROTOCOL.md
 * "Session resume"): same peer id, transports, producers and consumers.
 */
import { Device, debug, type types } from 'mediasoup-client';
import { io } from 'socket.io-client';
import {
  EVENT_NAMES,
  type ConnectionState,
  type SimpleMediasoupPeerOptions,
  type DataMessage,
  type LegacyTrackCallback,
  type MediaKind,
  type RemoteTrackStats,
  type RoomId,
  type SimpleMediasoupPeerEvents,
  type TrackEndedEvent,
  type TrackEvent,
} from './api.js';
import { TypedEmitter, type Listener } from './emitter.js';
import { ENCODINGS, resolveEncodings, type Encodings, type EncodingsPreset } from './encodings.js';
import { PeerClosedError, SignalingError } from './errors.js';
import { SerialQueue } from './queue.js';
import { request, socketUrl, SIGNALING_EVENT, type Ack, type SignalingSocket } from './signaling.js';
import {
  asIdList,
  assertLabel,
  assertPeerId,
  isDataMessage,
  isMediaStreamTrack,
  isPlainObject,
  normalizeRoomId,
  parseOptions,
} from './validate.js';

const log = debug('simplesfu-client');

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** A createConsumer request whose consumer never arrived is asked again after this. */
const CONSUMER_REQUEST_RETRY_MS = 5_000;
/** The data producer's label; one per peer. */
const DATA_LABEL = 'simplesfu-data';
/** Sent when creating transports; the server sizes SCTP from it. */
const SCTP_CAPABILITIES = { numStreams: { OS: 1024, MIS: 1024 } };
/** How long an ICE restart may take to bring a transport back before it is rebuilt. */
const DEFAULT_ICE_RESTART_TIMEOUT_MS = 5_000;
/** ICE restarts tried before rebuilding the transport. */
const ICE_RESTART_ATTEMPTS = 2;
/** Errors of requests that raced with a producer or peer going away: not failures. */
const GONE_CODES = new Set(['producer_not_found', 'peer_not_found', 'producer_not_in_room', 'not_in_room']);

interface DesiredTrack {
  track: MediaStreamTrack;
  broadcast: boolean;
  encodings: Encodings;
}

interface ProducerRecord {
  producer: types.Producer;
  /** Producers with other encodings are replaced, not switched. */
  encodingsKey: string;
}

interface ConsumerRecord {
  consumer: types.Consumer;
  peerId: string;
  label: string;
  broadcast: boolean;
}

interface AvailablePeer {
  producers: Map<string, { label: string; broadcast: boolean; kind: string }>;
  dataProducers: Set<string>;
}

/** Everything that lives as long as one socket connection. */
interface Session {
  generation: number;
  peerId: string;
  device: types.Device;
  sendTransport: types.Transport;
  recvTransport: types.Transport;
  sendConnected: Promise<void>;
  /** Directions whose transport is being restarted or rebuilt. */
  recovering: Set<'send' | 'recv'>;
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

/** How often a request refused for the request rate is retried, and the first pause (doubled each time). */
const RATE_LIMIT_RETRIES = 5;
const RATE_LIMIT_RETRY_MS = 250;

/** Thrown inside a session's task when its socket connection is gone. */
class StaleSession extends Error {}

export class SimpleMediasoupPeer {
  /** Encodings presets for `addTrack`: `simulcast`, `screenShare`. */
  static readonly encodings = ENCODINGS;

  /** The seed's callback, called for every new remote track after the `track` listeners. */
  onTrack: LegacyTrackCallback | null = null;

  readonly #socket: SignalingSocket;
  readonly #ownsSocket: boolean;
  readonly #autoConnect: boolean;
  readonly #iceServers: RTCIceServer[] | undefined;
  readonly #requestTimeoutMs: number;
  readonly #handlerFactory: types.HandlerFactory | undefined;
  readonly #events: TypedEmitter<SimpleMediasoupPeerEvents>;
  readonly #queue = new SerialQueue();

  // What the user asked for; survives reconnects.
  readonly #tracks = new Map<string, DesiredTrack>();
  #desiredRoom: string | null = null;
  readonly #connectTo = new Set<string>();
  readonly #disconnectedFrom = new Set<string>();
  readonly #pausedPeers = new Set<string>();

  // What the server told us, for the current session.
  #session: Session | null = null;
  #generation = 0;
  #currentRoom: string | null = null;
  readonly #peers = new Set<string>();
  #available = new Map<string, AvailablePeer>();
  #closed = false;

  // Session resume (docs/PROTOCOL.md "Session resume").
  readonly #iceRestartTimeoutMs: number;
  /** Whether we set the socket's auth, so a reconnect can ask to resume. */
  #canResume = false;
  /** The latest `session` push. */
  #resume: { peerId: string; token: string; graceMs: number } | null = null;
  /** The peer id our last connection attempt asked to resume, if any. */
  #resumeAttempt: string | null = null;
  #disconnectedAt = 0;
  #graceTimer: ReturnType<typeof setTimeout> | null = null;
  /** The server said it is stopping (`serverShutdown`): the next
   * connection is a new session, once the server is back. */
  #restartExpected = false;
  #everConnected = false;
  #connectionState: ConnectionState = 'disconnected';

  readonly #onSocketConnect = () => this.#onConnect();
  readonly #onSocketDisconnect = (reason?: unknown) => this.#onDisconnect(String(reason ?? ''));
  readonly #onSocketConnectError = (error: unknown) => this.#onConnectError(error);
  readonly #onSignaling = (message: unknown) => this.#handlePush(message);

  /**
   * `new SimpleMediasoupPeer(socket)` (the seed) or
   * `new SimpleMediasoupPeer({socket?, url?, port?, roomId?, autoConnect?, ...})`.
   */
  constructor(socketOrOptions?: SignalingSocket | SimpleMediasoupPeerOptions) {
    const options = parseOptions(socketOrOptions);
    this.#autoConnect = options.autoConnect ?? true;
    this.#iceServers = options.iceServers;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    this.#handlerFactory = options.handlerFactory;
    this.#iceRestartTimeoutMs = options.iceRestartTimeoutMs ?? DEFAULT_ICE_RESTART_TIMEOUT_MS;
    this.#events = new TypedEmitter((event, error) => {
      console.error(`SimpleMediasoupPeer: a "${String(event)}" listener threw`, error);
    });
    if (options.roomId !== undefined) this.#desiredRoom = normalizeRoomId(options.roomId);

    if (options.socket) {
      this.#socket = options.socket;
      this.#ownsSocket = false;
      // A socket.io socket: its reconnects may resume (its first connect
      // may already have happened without announcing it).
      if ('io' in this.#socket || 'auth' in this.#socket) {
        const holder = this.#socket as { auth?: unknown };
        holder.auth = this.#authFunction(holder.auth);
        this.#canResume = true;
      }
    } else {
      const url = socketUrl(options, globalThis.location);
      const socketOptions = { path: '/socket.io/', ...options.socketClientOptions };
      socketOptions.auth = this.#authFunction(socketOptions.auth) as never;
      this.#canResume = true;
      this.#socket = (url === undefined ? io(socketOptions) : io(url, socketOptions)) as unknown as SignalingSocket;
      this.#ownsSocket = true;
    }
    this.#socket.on(SIGNALING_EVENT, this.#onSignaling);
    this.#socket.on('connect', this.#onSocketConnect);
    this.#socket.on('disconnect', this.#onSocketDisconnect);
    this.#socket.on('connect_error', this.#onSocketConnectError);
    if (this.#socket.connected) this.#startSession();
  }

  // ---------------------------------------------------------------- state

  /** The socket.io socket the peer signals over. */
  get socket(): SignalingSocket {
    return this.#socket;
  }

  /** See ConnectionState. */
  get connectionState(): ConnectionState {
    return this.#connectionState;
  }

  /** Our peer id (from the server's `session` push: it outlives socket reconnects), once set up; else null. */
  get id(): string | null {
    return this.#session?.peerId ?? null;
  }

  /** The room we are in, or null. */
  get roomId(): string | null {
    return this.#currentRoom;
  }

  /** Ids of the other peers in our room. */
  get peers(): string[] {
    return [...this.#peers];
  }

  get closed(): boolean {
    return this.#closed;
  }

  // --------------------------------------------------------------- events

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof SimpleMediasoupPeerEvents>(event: K, listener: Listener<SimpleMediasoupPeerEvents[K]>): () => void {
    this.#assertOpen('on');
    if (typeof event !== 'string' || !EVENT_NAMES.has(event)) {
      throw new TypeError(`unknown event "${String(event)}" (one of: ${[...EVENT_NAMES].join(', ')})`);
    }
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    return this.#events.on(event, listener);
  }

  off<K extends keyof SimpleMediasoupPeerEvents>(event: K, listener: Listener<SimpleMediasoupPeerEvents[K]>): void {
    this.#events.off(event, listener);
  }

  // ---------------------------------------------------------------- media

  /**
   * Publishes `track` under `label`. Adding to a label that is already
   * published switches the track without renegotiation (same kind, broadcast
   * and encodings) or replaces the producer. `encodings`: an array of
   * RTCRtpEncodingParameters or a preset name (`"simulcast"`, `"screenShare"`).
   * The published client's `addTrack({track, label, broadcast, customEncodings})`
   * works too. Resolves once published, or at once while not connected
   * (the track is published when the connection is set up).
   */
  addTrack(
    trackOrOptions:
      | MediaStreamTrack
      | { track: MediaStreamTrack; label: string; broadcast?: boolean; customEncodings?: Encodings | EncodingsPreset | false },
    label?: string,
    broadcast = false,
    encodings?: Encodings | EncodingsPreset,
  ): Promise<void> {
    this.#assertOpen('addTrack');
    let track: unknown = trackOrOptions;
    if (isPlainObject(trackOrOptions) && 'track' in trackOrOptions) {
      ({ track, label } = trackOrOptions);
      broadcast = trackOrOptions.broadcast ?? false;
      encodings = trackOrOptions.customEncodings || undefined;
    }
    if (!isMediaStreamTrack(track)) throw new TypeError('track must be a MediaStreamTrack');
    assertLabel(label);
    if (typeof broadcast !== 'boolean') throw new TypeError('broadcast must be a boolean');
    if (track.readyState === 'ended') throw new TypeError('track has ended');
    const desired: DesiredTrack = {
      track,
      broadcast,
      encodings: resolveEncodings(track.kind as MediaKind, encodings),
    };
    this.#tracks.set(label, desired);
    return this.#whenConnected((session) => this.#publish(session, label), () => this.#tracks.get(label) === desired);
  }

  /**
   * Queue `action` on the current session, if the socket is connected and
   * `stillWanted()` holds when its turn comes. While the socket is away the
   * resume (or the new session) carries out what is wanted instead.
   */
  #whenConnected(action: (session: Session) => Promise<unknown>, stillWanted: () => boolean = () => true): Promise<void> {
    return this.#queue.push(async () => {
      const session = this.#session;
      if (session && this.#socket.connected && stillWanted()) await action(session);
    });
  }

  /** Stops publishing `label`; every consumer of it, everywhere, is closed. */
  removeTrack(label: string): Promise<void> {
    this.#assertOpen('removeTrack');
    assertLabel(label);
    this.#tracks.delete(label);
    return this.#whenConnected((session) => this.#unpublish(session, label));
  }

  // ---------------------------------------------------------------- rooms

  /** Joins room `roomId` (leaving the current one); rejoined after reconnects. */
  joinRoom(roomId: RoomId): Promise<void> {
    this.#assertOpen('joinRoom');
    const room = normalizeRoomId(roomId);
    this.#desiredRoom = room;
    return this.#whenConnected((session) => this.#join(session, room), () => this.#desiredRoom === room);
  }

  /** Leaves the current room (`roomId`, if given, must be it). */
  leaveRoom(roomId?: RoomId): Promise<void> {
    this.#assertOpen('leaveRoom');
    if (roomId !== undefined) {
      const room = normalizeRoomId(roomId);
      if (room !== this.#desiredRoom && room !== this.#currentRoom) return Promise.resolve();
    }
    this.#desiredRoom = null;
    return this.#whenConnected((session) => this.#leave(session), () => this.#desiredRoom === null);
  }

  // ---------------------------------------------------------------- peers

  /** Consumes `peerId`'s tracks and data (also before it arrives). */
  connectToPeer(peerId: string): Promise<void> {
    this.#assertOpen('connectToPeer');
    assertPeerId(peerId);
    this.#disconnectedFrom.delete(peerId);
    this.#connectTo.add(peerId);
    return this.#whenConnected((session) => this.#requestConsumers(session, peerId));
  }

  /**
   * Stops consuming `peerId` (its broadcast tracks too): closes our consumers
   * here and on the server, ignores its data, and auto-connect stays off for
   * it until `connectToPeer`.
   */
  disconnectFromPeer(peerId: string): Promise<void> {
    this.#assertOpen('disconnectFromPeer');
    assertPeerId(peerId);
    this.#connectTo.delete(peerId);
    this.#disconnectedFrom.add(peerId);
    return this.#queue.push(async () => {
      const session = this.#session;
      if (!session) return;
      const closing = [...session.consumers].filter(([, record]) => record.peerId === peerId);
      for (const [producerId, record] of closing) {
        this.#dropConsumer(session, producerId, record);
      }
      await Promise.all(
        closing.map(([producerId]) =>
          this.#request('closeConsumer', { producerId }).catch((error) => {
            if (!isGone(error)) throw error;
          }),
        ),
      );
    });
  }

  /** Stops the media of `peerId` (it stays paused across its track changes) until `resumePeer`. */
  pausePeer(peerId: string): Promise<void> {
    this.#assertOpen('pausePeer');
    assertPeerId(peerId);
    this.#pausedPeers.add(peerId);
    return this.#queue.push(() => this.#setPeerPaused(peerId, true));
  }

  resumePeer(peerId: string): Promise<void> {
    this.#assertOpen('resumePeer');
    assertPeerId(peerId);
    this.#pausedPeers.delete(peerId);
    return this.#queue.push(() => this.#setPeerPaused(peerId, false));
  }

  // ----------------------------------------------------------------- data

  /**
   * Sends `data` to every peer we are connected to, over our one data
   * producer (created on the first send). Rejects when not connected.
   */
  send(data: DataMessage): Promise<void> {
    this.#assertOpen('send');
    if (!isDataMessage(data)) throw new TypeError('data must be a string, ArrayBuffer, typed array or Blob');
    return this.#queue.push(async () => {
      const session = this.#session;
      if (!session) throw new SignalingError('send', 'disconnected', 'not connected to the server');
      const dataProducer = session.dataProducer ?? (await this.#createDataProducer(session));
      if (dataProducer.readyState !== 'open') await waitOpen(dataProducer, this.#requestTimeoutMs);
      dataProducer.send(data as string);
    });
  }

  // ---------------------------------------------------------------- stats

  /** Receive statistics of every remote track we consume. */
  async getRemoteTrackStats(): Promise<RemoteTrackStats[]> {
    this.#assertOpen('getRemoteTrackStats');
    const session = this.#session;
    if (!session) return [];
    return Promise.all(
      [...session.consumers].map(async ([producerId, { consumer, peerId, label, broadcast }]) => {
        let inbound: Record<string, unknown> = {};
        if (!consumer.closed) {
          for (const report of (await consumer.getStats()).values()) {
            if (report.type === 'inbound-rtp') inbound = report;
          }
        }
        const count = (key: string) => (typeof inbound[key] === 'number' ? (inbound[key] as number) : 0);
        return {
          peerId,
          label,
          kind: consumer.kind as MediaKind,
          producerId,
          broadcast,
          paused: consumer.paused,
          packetsReceived: count('packetsReceived'),
          bytesReceived: count('bytesReceived'),
          framesDecoded: count('framesDecoded'),
          frameWidth: count('frameWidth'),
          frameHeight: count('frameHeight'),
        };
      }),
    );
  }

  // -------------------------------------------------------------- closing

  /** Closes everything; the socket too when the library opened it. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const session = this.#session;
    if (session && !this.#ownsSocket && this.#socket.connected) {
      // The socket stays up: tell the server, best effort.
      for (const { producer } of session.producers.values()) {
        this.#request('closeProducer', { producerId: producer.id }).catch((error) => log('closeProducer on close: %o', error));
      }
      if (this.#currentRoom !== null) {
        this.#request('leaveRoom', { roomId: this.#currentRoom }).catch((error) => log('leaveRoom on close: %o', error));
      }
    }
    this.#endSession(false);
    this.#clearGraceTimer();
    this.#updateConnectionState();
    this.#socket.off(SIGNALING_EVENT, this.#onSignaling);
    this.#socket.off('connect_error', this.#onSocketConnectError);
    this.#socket.off('connect', this.#onSocketConnect);
    this.#socket.off('disconnect', this.#onSocketDisconnect);
    if (this.#ownsSocket) this.#socket.disconnect?.();
    this.#events.removeAll();
    this.onTrack = null;
  }

  // ============================================================ internals

  #assertOpen(method: string): void {
    if (this.#closed) throw new PeerClosedError(method);
  }

  /**
   * One request. Refused for the connection's request rate (`limit_reached`,
   * e.g. while joining a big room), it is retried a few times with growing
   * pauses rather than given up: one refused resume must not leave a track
   * black.
   */
  async #request(type: string, data?: unknown): Promise<Ack> {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await request(this.#socket, type, data, this.#requestTimeoutMs);
      } catch (error) {
        const rateLimited =
          error instanceof SignalingError && error.code === 'limit_reached' && /request rate/.test(error.message);
        if (!rateLimited || attempt >= RATE_LIMIT_RETRIES || this.#closed) throw error;
        const pauseMs = RATE_LIMIT_RETRY_MS * 2 ** attempt;
        log('%s refused for the request rate; retrying in %d ms', type, pauseMs);
        await new Promise((resolve) => setTimeout(resolve, pauseMs));
      }
    }
  }

  /** A failure nobody awaits: to `error` listeners, else to the console. */
  #reportError(operation: string, error: unknown): void {
    if (error instanceof StaleSession || this.#closed) return;
    if (error instanceof SignalingError && error.code === 'disconnected' && this.#session !== null) {
      // The socket is away but the session is kept: redone once it resumes.
      log('%s: %s (will retry after resume)', operation, error.message);
      return;
    }
    const reported = error instanceof Error ? error : new Error(String(error));
    log('%s failed: %o', operation, reported);
    if (this.#events.emit('error', reported) === 0) {
      console.error(`SimpleMediasoupPeer: ${operation} failed:`, reported);
    }
  }

  /** Whether we consume `peerId`'s producer (broadcast or not). */
  #wants(peerId: string, broadcast: boolean): boolean {
    if (this.#disconnectedFrom.has(peerId)) return false;
    return broadcast || this.#autoConnect || this.#connectTo.has(peerId);
  }

  #checkCurrent(session: Session): void {
    if (this.#session !== session || this.#closed) throw new StaleSession('the connection was reset');
  }

  // ------------------------------------------------- connection and resume

  /** The socket's auth: the user's (object or function) plus `resume`. */
  #authFunction(userAuth: unknown): (cb: (data: object) => void) => void {
    return (cb) => {
      const send = (user: unknown) => cb({ ...(isPlainObject(user) ? user : {}), resume: this.#resumeClaim() });
      if (typeof userAuth === 'function') (userAuth as (cb: (data: unknown) => void) => void)(send);
      else send(userAuth);
    };
  }

  /** `{peerId, token}` while our session can still be resumed, else `true` (a new session). */
  #resumeClaim(): true | { peerId: string; token: string } {
    const session = this.#session;
    const resume = this.#resume;
    if (
      !this.#closed &&
      !this.#restartExpected &&
      session &&
      resume &&
      resume.peerId === session.peerId &&
      Date.now() - this.#disconnectedAt < resume.graceMs
    ) {
      this.#resumeAttempt = resume.peerId;
      return { peerId: resume.peerId, token: resume.token };
    }
    this.#resumeAttempt = null;
    return true;
  }

  #onConnect(): void {
    if (this.#closed) return;
    this.#restartExpected = false;
    this.#clearGraceTimer();
    const session = this.#session;
    if (session && this.#resumeAttempt !== null && this.#resumeAttempt === session.peerId) {
      // Resumed: same peer, transports, producers and consumers; the pushes
      // we missed follow. Redo what failed while we were away.
      this.#resumeAttempt = null;
      log('resumed session as peer %s', session.peerId);
      this.#updateConnectionState();
      this.#queue.push(() => this.#reconcile(session)).catch((error) => this.#reportError('resuming', error));
      return;
    }
    this.#resumeAttempt = null;
    this.#startSession();
  }

  #onDisconnect(reason: string): void {
    if (this.#closed) return;
    if (this.#restartExpected) {
      // The server is restarting: socket.io reconnects by itself after a
      // dropped connection; a server that disconnected us on its way down
      // would not be retried, so come back ourselves, a little later and
      // at a random moment, so that a server's clients do not all return
      // at once. The next connection is a new session.
      this.#endSession(true);
      if (reason === 'io server disconnect') {
        const delayMs = 1000 + Math.random() * 2000;
        log('the server stopped; reconnecting in %d ms', Math.round(delayMs));
        setTimeout(() => {
          if (!this.#closed && !this.#socket.connected) this.#socket.connect?.();
        }, delayMs);
      }
      this.#updateConnectionState();
      return;
    }
    // Our own socket.disconnect() or the server's: socket.io does not come
    // back by itself, and the server has dropped the peer.
    const final = reason === 'io client disconnect' || reason === 'io server disconnect';
    const session = this.#session;
    const resume = this.#resume;
    if (!final && this.#canResume && session && resume && resume.peerId === session.peerId) {
      log('socket lost (%s); resumable for %d ms', reason, resume.graceMs);
      this.#disconnectedAt = Date.now();
      this.#clearGraceTimer();
      this.#graceTimer = setTimeout(() => {
        this.#graceTimer = null;
        if (this.#closed || this.#socket.connected) return;
        log('the grace period passed: the next connection is a new session');
        this.#resume = null;
        this.#endSession(true);
        this.#updateConnectionState();
      }, resume.graceMs);
    } else {
      if (final) this.#resume = null;
      this.#endSession(true);
    }
    this.#updateConnectionState();
  }

  #onConnectError(error: unknown): void {
    if (this.#closed) return;
    const message = String((error as { message?: unknown } | null)?.message ?? error);
    if (/^(resume_failed|invalid_auth)\b/.test(message) && this.#resumeAttempt !== null) {
      // Too late, or the server forgot us: start a new session. socket.io
      // does not retry a refused connection by itself.
      log('resume refused (%s): new session', message);
      this.#resume = null;
      this.#resumeAttempt = null;
      this.#clearGraceTimer();
      this.#endSession(true);
      setTimeout(() => {
        if (!this.#closed && !this.#socket.connected) this.#socket.connect?.();
      }, 0);
      this.#updateConnectionState('reconnecting');
      return;
    }
    this.#updateConnectionState();
  }

  #clearGraceTimer(): void {
    if (this.#graceTimer !== null) clearTimeout(this.#graceTimer);
    this.#graceTimer = null;
  }

  #computeConnectionState(): ConnectionState {
    if (this.#closed) return 'disconnected';
    if (this.#restartExpected) return 'reconnecting';
    if (!this.#socket.connected) {
      const active = (this.#socket as { active?: unknown }).active;
      if (active === false || !this.#everConnected) return 'disconnected';
      return 'reconnecting';
    }
    const session = this.#session;
    if (!session) return this.#everConnected ? 'reconnecting' : 'disconnected';
    const broken = (t: types.Transport) => t.connectionState === 'disconnected' || t.connectionState === 'failed';
    if (session.recovering.size > 0 || broken(session.sendTransport) || broken(session.recvTransport)) {
      return 'reconnecting';
    }
    return 'connected';
  }

  #updateConnectionState(forced?: ConnectionState): void {
    const state = forced ?? this.#computeConnectionState();
    if (state === 'connected') this.#everConnected = true;
    const previous = this.#connectionState;
    if (state === previous) return;
    this.#connectionState = state;
    log('connection state %s -> %s', previous, state);
    this.#events.emit('connectionStateChange', { state, previous });
  }

  /** After a resume: what failed while the socket was away is done again. */
  async #reconcile(session: Session): Promise<void> {
    this.#checkCurrent(session);
    for (const [label, record] of [...session.producers]) {
      if (!this.#tracks.has(label) || record.producer.closed) await this.#unpublish(session, label);
    }
    for (const label of [...this.#tracks.keys()]) {
      try {
        await this.#publish(session, label);
      } catch (error) {
        this.#checkCurrent(session);
        this.#reportError(`publishing "${label}"`, error);
      }
    }
    if (this.#desiredRoom !== null) await this.#join(session, this.#desiredRoom);
    else await this.#leave(session);
    // Consumers whose resumeConsumer was lost in the cut; a fresh key frame for the others.
    await Promise.all(
      [...session.consumers].map(async ([producerId, record]) => {
        if (this.#pausedPeers.has(record.peerId) || record.consumer.closed) return;
        await this.#request('resumeConsumer', { producerId }).catch((error) => {
          if (!isGone(error) && (error as SignalingError).code !== 'consumer_not_found') throw error;
        });
      }),
    );
    for (const peerId of this.#available.keys()) await this.#requestConsumers(session, peerId);
    for (const direction of ['send', 'recv'] as const) {
      const transport = direction === 'send' ? session.sendTransport : session.recvTransport;
      if (transport.connectionState === 'disconnected' || transport.connectionState === 'failed') {
        this.#recoverTransport(session, direction);
      }
    }
  }

  // ------------------------------------------------------- media recovery

  /**
   * Restarts ICE on both transports (e.g. after a network change the
   * browser did not notice); rebuilds a transport that does not come back.
   */
  restartIce(): Promise<void> {
    this.#assertOpen('restartIce');
    const session = this.#session;
    if (!session) return Promise.reject(new SignalingError('restartIce', 'disconnected', 'not connected to the server'));
    return Promise.all([this.#recoverTransport(session, 'send', true), this.#recoverTransport(session, 'recv', true)]).then(
      () => undefined,
    );
  }

  /** Starts (once per direction) bringing a transport back; resolves when done. */
  #recoverTransport(session: Session, direction: 'send' | 'recv', force = false): Promise<void> {
    if (session.recovering.has(direction)) return Promise.resolve();
    session.recovering.add(direction);
    this.#updateConnectionState();
    const done = this.#recover(session, direction, force)
      .catch((error) => this.#reportError(`recovering the ${direction} transport`, error))
      .finally(() => {
        session.recovering.delete(direction);
        if (this.#session === session) this.#updateConnectionState();
      });
    return done;
  }

  async #recover(session: Session, direction: 'send' | 'recv', force: boolean): Promise<void> {
    const current = () => (direction === 'send' ? session.sendTransport : session.recvTransport);
    for (let attempt = 0; attempt < ICE_RESTART_ATTEMPTS; attempt++) {
      await this.#waitForSocket(session);
      const transport = current();
      if (!force && transport.connectionState === 'connected') return;
      force = false;
      let ack: Ack;
      try {
        ack = await this.#request('restartIce', { transportId: transport.id });
      } catch (error) {
        this.#checkCurrent(session);
        const code = (error as SignalingError).code;
        if (code === 'transport_not_found') break; // the server closed it: rebuild
        if (code === 'disconnected' || code === 'timeout') continue;
        throw error;
      }
      this.#checkCurrent(session);
      if (transport.closed || transport !== current()) return;
      log('restarting ICE of the %s transport', direction);
      await transport.restartIce({ iceParameters: ack.iceParameters as types.IceParameters });
      if (await waitConnected(transport, this.#iceRestartTimeoutMs)) {
        log('the %s transport is back', direction);
        return;
      }
      this.#checkCurrent(session);
    }
    await this.#waitForSocket(session);
    await this.#queue.push(() => this.#rebuildTransport(session, direction));
  }

  /** Resolves once the socket is connected for this session; throws StaleSession if it is gone. */
  async #waitForSocket(session: Session): Promise<void> {
    while (!this.#socket.connected || this.#resumeAttempt !== null) {
      this.#checkCurrent(session);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    this.#checkCurrent(session);
  }

  /**
   * A new transport for `direction`, then produces or consumes on it again.
   * The protocol allows one transport per direction: when the server still
   * has the old one, the only way is a new session.
   */
  async #rebuildTransport(session: Session, direction: 'send' | 'recv'): Promise<void> {
    this.#checkCurrent(session);
    let info: types.TransportOptions;
    try {
      info = await this.#createTransportInfo(direction);
    } catch (error) {
      this.#checkCurrent(session);
      if ((error as SignalingError).code !== 'transport_already_exists') throw error;
      log('the server keeps the old %s transport: starting a new session', direction);
      this.#resume = null;
      this.#socket.disconnect?.();
      this.#socket.connect?.();
      return;
    }
    this.#checkCurrent(session);
    log('rebuilding the %s transport', direction);
    if (direction === 'send') {
      session.sendTransport.close();
      const connected = deferred();
      session.sendConnected = connected.promise;
      session.producers.clear();
      session.dataProducer = null;
      session.sendTransport = session.device.createSendTransport({ ...info, iceServers: this.#iceServers });
      this.#wireTransport(session, session.sendTransport, 'send', connected.resolve);
      for (const label of [...this.#tracks.keys()]) {
        try {
          await this.#publish(session, label);
        } catch (error) {
          this.#checkCurrent(session);
          this.#reportError(`publishing "${label}"`, error);
        }
      }
    } else {
      for (const [producerId, record] of [...session.consumers]) this.#dropConsumer(session, producerId, record);
      for (const dataConsumer of session.dataConsumers.values()) dataConsumer.close();
      session.dataConsumers.clear();
      session.consumerRequests.clear();
      session.dataConsumerRequests.clear();
      session.recvTransport.close();
      session.recvTransport = session.device.createRecvTransport({ ...info, iceServers: this.#iceServers });
      this.#wireTransport(session, session.recvTransport, 'recv', () => undefined);
      for (const peerId of this.#available.keys()) {
        this.#requestConsumers(session, peerId).catch((error) => this.#reportError(`consuming peer ${peerId}`, error));
      }
    }
  }

  // --------------------------------------------------------- the session

  #startSession(): void {
    if (this.#closed) return;
    this.#endSession(true);
    const generation = ++this.#generation;
    this.#queue
      .push(() => this.#setUpSession(generation))
      .catch((error) => this.#reportError('connecting to the server', error));
  }

  async #setUpSession(generation: number): Promise<void> {
    const current = () => {
      if (generation !== this.#generation || this.#closed) throw new StaleSession('the connection was reset');
    };
    current();
    const caps = await this.#request('getRouterRtpCapabilities');
    current();
    if (!isPlainObject(caps.routerRtpCapabilities)) {
      throw new SignalingError('getRouterRtpCapabilities', 'invalid_response', 'no routerRtpCapabilities');
    }
    // The server names our peer id (it is not the socket id, which is a
    // connection credential); the latest `session` push names it too.
    const peerId = typeof caps.peerId === 'string' ? caps.peerId : this.#resume?.peerId;
    if (!peerId) throw new SignalingError('getRouterRtpCapabilities', 'invalid_response', 'no peerId');
    const device = this.#handlerFactory
      ? new Device({ handlerFactory: this.#handlerFactory })
      : await Device.factory();
    await device.load({ routerRtpCapabilities: caps.routerRtpCapabilities as types.RtpCapabilities });
    current();

    let resolveSendConnected!: () => void;
    const sendConnected = new Promise<void>((resolve) => {
      resolveSendConnected = resolve;
    });
    const sendInfo = await this.#createTransportInfo('send');
    current();
    const recvInfo = await this.#createTransportInfo('recv');
    current();
    const session: Session = {
      generation,
      peerId,
      device,
      sendTransport: device.createSendTransport({ ...sendInfo, iceServers: this.#iceServers }),
      recvTransport: device.createRecvTransport({ ...recvInfo, iceServers: this.#iceServers }),
      sendConnected,
      recovering: new Set(),
      producers: new Map(),
      consumers: new Map(),
      consumerRequests: new Map(),
      consuming: new Set(),
      dataProducer: null,
      dataConsumers: new Map(),
      dataConsumerRequests: new Map(),
    };
    this.#wireTransport(session, session.sendTransport, 'send', resolveSendConnected);
    this.#wireTransport(session, session.recvTransport, 'recv', () => undefined);
    this.#session = session;
    log('session %d set up as peer %s', generation, peerId);
    this.#updateConnectionState();

    for (const label of [...this.#tracks.keys()]) {
      try {
        await this.#publish(session, label);
      } catch (error) {
        this.#checkCurrent(session);
        this.#reportError(`publishing "${label}"`, error);
      }
    }
    if (this.#desiredRoom !== null) await this.#join(session, this.#desiredRoom);
  }

  async #createTransportInfo(direction: 'send' | 'recv'): Promise<types.TransportOptions> {
    const ack = await this.#request('createWebRtcTransport', {
      forceTcp: false,
      producing: direction === 'send',
      consuming: direction === 'recv',
      sctpCapabilities: SCTP_CAPABILITIES,
    });
    const info = ack.transportInfo as types.TransportOptions | undefined;
    if (!isPlainObject(info) || typeof info.id !== 'string') {
      throw new SignalingError('createWebRtcTransport', 'invalid_response', 'no transportInfo');
    }
    return info;
  }

  #wireTransport(
    session: Session,
    transport: types.Transport,
    direction: 'send' | 'recv',
    onConnected: () => void,
  ): void {
    transport.on('connect', ({ dtlsParameters }, callback, errback) => {
      this.#request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters }).then(
        () => {
          onConnected();
          callback();
        },
        errback,
      );
    });
    transport.on('connectionstatechange', (state) => {
      log('%s transport %s', direction, state);
      const current = direction === 'send' ? session.sendTransport : session.recvTransport;
      if (this.#session !== session || current !== transport) return;
      if (state === 'disconnected' || state === 'failed') this.#recoverTransport(session, direction);
      this.#updateConnectionState();
    });
    if (direction === 'recv') return;
    transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
      // Never produce on a transport the server does not see as connected.
      session.sendConnected
        .then(() => this.#request('produce', { transportId: transport.id, kind, rtpParameters, appData }))
        .then((ack) => {
          if (typeof ack.id !== 'string') throw new SignalingError('produce', 'invalid_response', 'no producer id');
          callback({ id: ack.id });
        })
        .catch(errback);
    });
    transport.on('producedata', ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
      session.sendConnected
        .then(() =>
          this.#request('produceData', { transportId: transport.id, sctpStreamParameters, label, protocol, appData }),
        )
        .then((ack) => {
          if (typeof ack.id !== 'string') throw new SignalingError('produceData', 'invalid_response', 'no id');
          callback({ id: ack.id });
        })
        .catch(errback);
    });
  }

  /** Tears the session down locally; `notify` fires trackEnded/peerDisconnection. */
  #endSession(notify: boolean): void {
    this.#generation += 1;
    const session = this.#session;
    this.#session = null;
    this.#currentRoom = null;
    this.#available = new Map();
    if (session) {
      for (const [producerId, record] of [...session.consumers]) {
        if (notify) this.#dropConsumer(session, producerId, record);
        else record.consumer.close();
      }
      session.sendTransport.close();
      session.recvTransport.close();
    }
    for (const peerId of [...this.#peers]) this.#forgetPeer(peerId, notify);
  }

  // ------------------------------------------------------------ producing

  async #publish(session: Session, label: string): Promise<void> {
    this.#checkCurrent(session);
    const desired = this.#tracks.get(label);
    if (!desired) return;
    const encodingsKey = JSON.stringify(desired.encodings);
    const existing = session.producers.get(label);
    if (existing && !existing.producer.closed) {
      const producer = existing.producer;
      if (
        producer.kind === desired.track.kind &&
        producer.appData.broadcast === desired.broadcast &&
        existing.encodingsKey === encodingsKey
      ) {
        if (producer.track !== desired.track) await producer.replaceTrack({ track: desired.track });
        return;
      }
      await this.#unpublish(session, label);
    }
    const video = desired.track.kind === 'video';
    const producer = await session.sendTransport.produce({
      track: desired.track,
      encodings: desired.encodings.map((encoding) => ({ ...encoding })),
      codecOptions: video ? { videoGoogleStartBitrate: 1000 } : undefined,
      stopTracks: false,
      appData: { label, broadcast: desired.broadcast },
    });
    if (this.#session !== session) {
      producer.close();
      throw new StaleSession('the connection was reset');
    }
    session.producers.set(label, { producer, encodingsKey });
    producer.on('trackended', () => {
      // The user's track ended (camera unplugged, screen share stopped).
      if (this.#tracks.get(label)?.track !== producer.track || this.#closed) return;
      this.removeTrack(label).catch((error) => this.#reportError(`removing ended track "${label}"`, error));
    });
    log('producing %s as %s', label, producer.id);
  }

  async #unpublish(session: Session, label: string): Promise<void> {
    const record = session.producers.get(label);
    if (!record) return;
    session.producers.delete(label);
    record.producer.close();
    try {
      await this.#request('closeProducer', { producerId: record.producer.id });
    } catch (error) {
      if (!isGone(error)) throw error;
    }
  }

  async #createDataProducer(session: Session): Promise<types.DataProducer> {
    const dataProducer = await session.sendTransport.produceData({
      ordered: true,
      label: DATA_LABEL,
      appData: { label: DATA_LABEL },
    });
    this.#checkCurrent(session);
    session.dataProducer = dataProducer;
    return dataProducer;
  }

  // ------------------------------------------------------------- rooms

  async #join(session: Session, room: string): Promise<void> {
    this.#checkCurrent(session);
    if (this.#currentRoom === room) return;
    if (this.#currentRoom !== null) await this.#leave(session);
    await this.#request('joinRoom', { roomId: room, autoConsume: false });
    this.#checkCurrent(session);
    this.#currentRoom = room;
    log('joined room %s', room);
  }

  async #leave(session: Session): Promise<void> {
    this.#checkCurrent(session);
    if (this.#currentRoom === null) return;
    const room = this.#currentRoom;
    await this.#request('leaveRoom', { roomId: room });
    this.#checkCurrent(session);
    this.#currentRoom = null;
    this.#available = new Map();
    for (const [producerId, record] of [...session.consumers]) this.#dropConsumer(session, producerId, record);
    for (const [id, dataConsumer] of [...session.dataConsumers]) {
      dataConsumer.close();
      session.dataConsumers.delete(id);
    }
    session.consumerRequests.clear();
    session.dataConsumerRequests.clear();
    for (const peerId of [...this.#peers]) this.#forgetPeer(peerId, true);
    log('left room %s', room);
  }

  // ------------------------------------------------------------- pushes

  #handlePush(message: unknown): void {
    if (this.#closed || !isPlainObject(message)) return;
    const { type, data } = message as { type?: unknown; data?: unknown };
    const session = this.#session;
    try {
      switch (type) {
        case 'session': {
          const { peerId, resumeToken, resumeGraceMs } = (isPlainObject(data) ? data : {}) as Record<string, unknown>;
          if (typeof peerId === 'string' && typeof resumeToken === 'string') {
            const graceMs = typeof resumeGraceMs === 'number' && resumeGraceMs > 0 ? resumeGraceMs : 0;
            this.#resume = { peerId, token: resumeToken, graceMs };
          }
          break;
        }
        case 'serverShutdown': {
          const text = (isPlainObject(data) ? data : {}).message;
          const message = typeof text === 'string' ? text : 'the server is stopping';
          this.#restartExpected = true;
          this.#resume = null;
          this.#updateConnectionState();
          this.#events.emit('serverShutdown', { message });
          break;
        }
        case 'peerConnection':
          for (const peerId of asIdList(data)) this.#notePeer(peerId);
          break;
        case 'peerDisconnection':
          for (const peerId of asIdList(data)) this.#forgetPeer(peerId, true);
          break;
        case 'availableProducers':
          if (session) this.#onAvailableProducers(session, data);
          break;
        case 'createConsumer':
          if (session) {
            this.#consume(session, data as CreateConsumerPush).catch((error) =>
              this.#reportError(`consuming ${(data as CreateConsumerPush)?.producerId}`, error),
            );
          }
          break;
        case 'createDataConsumer':
          if (session) {
            this.#consumeData(session, data as CreateDataConsumerPush).catch((error) =>
              this.#reportError(`consuming data ${(data as CreateDataConsumerPush)?.dataProducerId}`, error),
            );
          }
          break;
        case 'consumerClosed': {
          const producerId = (data as { producerId?: unknown })?.producerId;
          const record = typeof producerId === 'string' ? session?.consumers.get(producerId) : undefined;
          if (session && record) this.#dropConsumer(session, producerId as string, record);
          break;
        }
        case 'dataConsumerClosed': {
          const producerId = (data as { producerId?: unknown })?.producerId;
          const dataConsumer = typeof producerId === 'string' ? session?.dataConsumers.get(producerId) : undefined;
          if (session && dataConsumer) {
            dataConsumer.close();
            session.dataConsumers.delete(producerId as string);
          }
          break;
        }
        default:
          log('ignoring push %s', type);
      }
    } catch (error) {
      this.#reportError(`handling ${String(type)}`, error);
    }
  }

  #notePeer(peerId: string): void {
    if (peerId === this.#session?.peerId || this.#peers.has(peerId)) return;
    this.#peers.add(peerId);
    this.#events.emit('peerConnection', { peerId });
  }

  #forgetPeer(peerId: string, notify: boolean): void {
    if (!this.#peers.delete(peerId)) return;
    this.#available.delete(peerId);
    const session = this.#session;
    if (session) {
      for (const [producerId, record] of [...session.consumers]) {
        if (record.peerId === peerId) this.#dropConsumer(session, producerId, record);
      }
    }
    if (notify) this.#events.emit('peerDisconnection', { peerId });
  }

  #onAvailableProducers(session: Session, data: unknown): void {
    if (!isPlainObject(data)) return;
    const available = new Map<string, AvailablePeer>();
    for (const [peerId, offer] of Object.entries(data as Record<string, unknown>)) {
      if (peerId === session.peerId || !isPlainObject(offer)) continue;
      const { producers, dataProducers } = offer as { producers?: unknown; dataProducers?: unknown };
      const peer: AvailablePeer = { producers: new Map(), dataProducers: new Set() };
      if (isPlainObject(producers)) {
        for (const [producerId, info] of Object.entries(producers as Record<string, unknown>)) {
          const { label, broadcast, kind } = (isPlainObject(info) ? info : {}) as Record<string, unknown>;
          peer.producers.set(producerId, {
            label: typeof label === 'string' ? label : '',
            broadcast: broadcast === true,
            kind: typeof kind === 'string' ? kind : '',
          });
        }
      }
      if (isPlainObject(dataProducers)) {
        for (const dataProducerId of Object.keys(dataProducers as object)) peer.dataProducers.add(dataProducerId);
      }
      available.set(peerId, peer);
      this.#notePeer(peerId);
    }
    this.#available = available;
    for (const peerId of available.keys()) {
      this.#requestConsumers(session, peerId).catch((error) => this.#reportError(`consuming peer ${peerId}`, error));
    }
  }

  /** Asks for consumers of every wanted producer of `peerId` not consumed yet. */
  async #requestConsumers(session: Session, peerId: string): Promise<void> {
    const peer = this.#available.get(peerId);
    if (!peer || this.#session !== session) return;
    const now = Date.now();
    const asked: Promise<unknown>[] = [];
    const ask = (type: string, producerId: string, requests: Map<string, number>) => {
      const since = requests.get(producerId);
      if (since !== undefined && now - since < CONSUMER_REQUEST_RETRY_MS) return;
      requests.set(producerId, now);
      asked.push(
        this.#request(type, { producingPeerId: peerId, producerId }).catch((error) => {
          requests.delete(producerId);
          if (!isGone(error)) throw error;
        }),
      );
    };
    for (const [producerId, info] of peer.producers) {
      if (session.consumers.has(producerId) || session.consuming.has(producerId)) continue;
      if (this.#wants(peerId, info.broadcast)) ask('createConsumer', producerId, session.consumerRequests);
    }
    if (this.#wants(peerId, false)) {
      for (const dataProducerId of peer.dataProducers) {
        if (!session.dataConsumers.has(dataProducerId)) {
          ask('createDataConsumer', dataProducerId, session.dataConsumerRequests);
        }
      }
    }
    await Promise.all(asked);
  }

  async #consume(session: Session, push: CreateConsumerPush): Promise<void> {
    if (!isPlainObject(push) || typeof push.producerId !== 'string' || typeof push.peerId !== 'string') {
      throw new Error(`malformed createConsumer push: ${JSON.stringify(push)}`);
    }
    const { peerId, producerId, id, kind, rtpParameters } = push;
    if (session.consumers.has(producerId) || session.consuming.has(producerId)) return; // pushed again
    const appData = isPlainObject(push.appData) ? push.appData : {};
    const broadcast = appData.broadcast === true;
    const label = typeof appData.label === 'string' ? appData.label : '';
    if (!this.#wants(peerId, broadcast)) {
      // Asked for before a disconnectFromPeer, or a broadcast of a disconnected peer.
      session.consumerRequests.delete(producerId);
      await this.#request('closeConsumer', { producerId }).catch((error) => {
        if (!isGone(error) && (error as SignalingError).code !== 'consumer_not_found') throw error;
      });
      return;
    }
    session.consuming.add(producerId);
    try {
      const consumer = await session.recvTransport.consume({
        id,
        producerId,
        kind,
        rtpParameters,
        appData: { ...appData, peerId },
      });
      if (this.#session !== session) {
        consumer.close();
        return;
      }
      const record: ConsumerRecord = { consumer, peerId, label, broadcast };
      session.consumers.set(producerId, record);
      // The server creates consumers paused; a paused peer stays so.
      const paused = this.#pausedPeers.has(peerId);
      if (paused) {
        consumer.pause();
      } else {
        await this.#request('resumeConsumer', { producerId }).catch((error) => {
          // Cut before the answer: resumed again once the session is.
          if ((error as SignalingError).code !== 'disconnected') throw error;
        });
        if (consumer.closed) return;
        consumer.resume();
      }
      const event: TrackEvent = {
        track: consumer.track,
        peerId,
        label,
        broadcast,
        kind: consumer.kind as MediaKind,
        producerId,
        paused,
      };
      this.#events.emit('track', event);
      this.#callLegacyOnTrack(event);
    } finally {
      session.consuming.delete(producerId);
      session.consumerRequests.delete(producerId);
    }
  }

  #callLegacyOnTrack(event: TrackEvent): void {
    const onTrack = this.onTrack;
    if (typeof onTrack !== 'function') return;
    try {
      const result = onTrack(event.track, event.peerId, event);
      if (result && typeof (result as Promise<unknown>).then === 'function') {
        (result as Promise<unknown>).then(undefined, (error) => console.error('SimpleMediasoupPeer: onTrack threw', error));
      }
    } catch (error) {
      console.error('SimpleMediasoupPeer: onTrack threw', error);
    }
  }

  /** Closes a local consumer and tells the user its track ended. */
  #dropConsumer(session: Session, producerId: string, record: ConsumerRecord): void {
    session.consumers.delete(producerId);
    const { consumer, peerId, label, broadcast } = record;
    consumer.close();
    const event: TrackEndedEvent = {
      track: consumer.track,
      peerId,
      label,
      broadcast,
      kind: consumer.kind as MediaKind,
      producerId,
    };
    this.#events.emit('trackEnded', event);
    this.#events.emit('trackRemoved', event);
  }

  async #consumeData(session: Session, push: CreateDataConsumerPush): Promise<void> {
    if (!isPlainObject(push) || typeof push.dataProducerId !== 'string' || typeof push.peerId !== 'string') {
      throw new Error(`malformed createDataConsumer push: ${JSON.stringify(push)}`);
    }
    const { peerId, dataProducerId, id, sctpStreamParameters, label, protocol } = push;
    if (session.dataConsumers.has(dataProducerId)) return;
    const appData = isPlainObject(push.appData) ? push.appData : {};
    const dataConsumer = await session.recvTransport.consumeData({
      id,
      dataProducerId,
      sctpStreamParameters,
      label,
      protocol,
      appData: { ...appData, peerId },
    });
    session.dataConsumerRequests.delete(dataProducerId);
    if (this.#session !== session || session.dataConsumers.has(dataProducerId)) {
      dataConsumer.close();
      return;
    }
    session.dataConsumers.set(dataProducerId, dataConsumer);
    dataConsumer.on('message', (data) => {
      // Data of a peer we disconnected from is dropped here: the protocol has
      // no request to close a data consumer.
      if (this.#session === session && this.#wants(peerId, false)) this.#events.emit('data', { from: peerId, data });
    });
  }

  async #setPeerPaused(peerId: string, paused: boolean): Promise<void> {
    const session = this.#session;
    if (!session) return;
    const records = [...session.consumers.entries()].filter(
      ([, record]) => record.peerId === peerId && record.consumer.paused !== paused,
    );
    await Promise.all(
      records.map(async ([producerId, { consumer }]) => {
        await this.#request(paused ? 'pauseConsumer' : 'resumeConsumer', { producerId });
        if (consumer.closed) return;
        if (paused) consumer.pause();
        else consumer.resume();
      }),
    );
  }
}

interface CreateConsumerPush {
  peerId: string;
  producerId: string;
  id: string;
  kind: MediaKind;
  rtpParameters: types.RtpParameters;
  appData?: Record<string, unknown>;
}

interface CreateDataConsumerPush {
  peerId: string;
  dataProducerId: string;
  id: string;
  sctpStreamParameters: types.SctpStreamParameters;
  label?: string;
  protocol?: string;
  appData?: Record<string, unknown>;
}


function isGone(error: unknown): boolean {
  return error instanceof SignalingError && GONE_CODES.has(error.code);
}

function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

/** Whether `transport` reaches `connected` within `timeoutMs` (false when it fails or closes). */
function waitConnected(transport: types.Transport, timeoutMs: number): Promise<boolean> {
  if (transport.connectionState === 'connected') return Promise.resolve(true);
  return new Promise((resolve) => {
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      clearInterval(poll);
      transport.off('connectionstatechange', onState);
      resolve(ok);
    };
    const onState = (state: string) => {
      if (state === 'connected') finish(true);
      else if (state === 'closed') finish(false);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    const poll = setInterval(() => transport.closed && finish(false), 250);
    transport.on('connectionstatechange', onState);
  });
}

/** Waits for a data producer's channel to open; the queue must never wait forever. */
function waitOpen(dataProducer: types.DataProducer, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onOpen = () => {
      cleanup();
      resolve();
    };
    const onClose = () => fail(new Error('the data channel closed before it opened'));
    const timer = setTimeout(
      () => fail(new SignalingError('send', 'timeout', `the data channel did not open within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const cleanup = () => {
      clearTimeout(timer);
      dataProducer.off('open', onOpen);
      dataProducer.off('close', onClose);
      dataProducer.off('transportclose', onClose);
      dataProducer.off('error', fail);
    };
    dataProducer.on('open', onOpen);
    dataProducer.on('close', onClose);
    dataProducer.on('transportclose', onClose);
    dataProducer.on('error', fail);
  });
}
