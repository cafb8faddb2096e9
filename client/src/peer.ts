/**
 * SimpleMediasoupPeer: one browser peer of a simplesfu room. It owns the
 * mediasoup-client Device, one send and one receive transport per socket
 * connection (a "session"), the producers of the tracks the user added, and
 * the consumers of the other peers it is connected to. What the user asked
 * for (tracks, room, connected/paused peers) outlives a session, so a
 * reconnecting socket gets it all back.
 */
import { Device, debug, type types } from 'mediasoup-client';
import { io, type ManagerOptions, type SocketOptions } from 'socket.io-client';
import { TypedEmitter, type Listener } from './emitter.js';
import { ENCODINGS, resolveEncodings, type Encodings, type EncodingsPreset } from './encodings.js';
import { PeerClosedError, SignalingError } from './errors.js';
import { SerialQueue } from './queue.js';
import { request, socketUrl, SIGNALING_EVENT, type Ack, type SignalingSocket } from './signaling.js';

const log = debug('simplesfu-client');

const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** A createConsumer request whose consumer never arrived is asked again after this. */
const CONSUMER_REQUEST_RETRY_MS = 5_000;
/** The data producer's label; one per peer. */
const DATA_LABEL = 'simplesfu-data';
/** Sent when creating transports; the server sizes SCTP from it. */
const SCTP_CAPABILITIES = { numStreams: { OS: 1024, MIS: 1024 } };
/** Errors of requests that raced with a producer or peer going away: not failures. */
const GONE_CODES = new Set(['producer_not_found', 'peer_not_found', 'producer_not_in_room', 'not_in_room']);

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
}

export type MediaKind = 'audio' | 'video';

/** A remote track: `track` is ready to put in a MediaStream. */
export interface TrackEvent {
  track: MediaStreamTrack;
  peerId: string;
  label: string;
  broadcast: boolean;
  kind: MediaKind;
  producerId: string;
  /** True when the peer is paused (`pausePeer`): no media flows until `resumePeer`. */
  paused: boolean;
}

/** A remote track that went away (producer closed, peer left or disconnected). */
export interface TrackEndedEvent {
  track: MediaStreamTrack;
  peerId: string;
  label: string;
  broadcast: boolean;
  kind: MediaKind;
  producerId: string;
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
  /** Video only (0 for audio). */
  framesDecoded: number;
  frameWidth: number;
  frameHeight: number;
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
}

const EVENT_NAMES: ReadonlySet<string> = new Set<keyof SimpleMediasoupPeerEvents>([
  'track',
  'trackEnded',
  'trackRemoved',
  'peerConnection',
  'peerDisconnection',
  'data',
  'error',
]);

/** The seed's callback: `peer.onTrack = (track, peerId, info) => {}`. */
export type LegacyTrackCallback = (track: MediaStreamTrack, peerId: string, info: TrackEvent) => unknown;

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

  readonly #onSocketConnect = () => this.#startSession();
  readonly #onSocketDisconnect = () => this.#endSession(true);
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
    this.#events = new TypedEmitter((event, error) => {
      console.error(`SimpleMediasoupPeer: a "${String(event)}" listener threw`, error);
    });
    if (options.roomId !== undefined) this.#desiredRoom = normalizeRoomId(options.roomId);

    if (options.socket) {
      this.#socket = options.socket;
      this.#ownsSocket = false;
    } else {
      const url = socketUrl(options, globalThis.location);
      const socketOptions = { path: '/socket.io/', ...options.socketClientOptions };
      this.#socket = (url === undefined ? io(socketOptions) : io(url, socketOptions)) as unknown as SignalingSocket;
      this.#ownsSocket = true;
    }
    this.#socket.on(SIGNALING_EVENT, this.#onSignaling);
    this.#socket.on('connect', this.#onSocketConnect);
    this.#socket.on('disconnect', this.#onSocketDisconnect);
    if (this.#socket.connected) this.#startSession();
  }

  // ---------------------------------------------------------------- state

  /** Our peer id (the socket id), once the connection is set up; else null. */
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
    return this.#queue.push(async () => {
      const session = this.#session;
      if (session && this.#tracks.get(label) === desired) await this.#publish(session, label);
    });
  }

  /** Stops publishing `label`; every consumer of it, everywhere, is closed. */
  removeTrack(label: string): Promise<void> {
    this.#assertOpen('removeTrack');
    assertLabel(label);
    this.#tracks.delete(label);
    return this.#queue.push(async () => {
      const session = this.#session;
      if (session) await this.#unpublish(session, label);
    });
  }

  // ---------------------------------------------------------------- rooms

  /** Joins room `roomId` (leaving the current one); rejoined after reconnects. */
  joinRoom(roomId: RoomId): Promise<void> {
    this.#assertOpen('joinRoom');
    const room = normalizeRoomId(roomId);
    this.#desiredRoom = room;
    return this.#queue.push(async () => {
      const session = this.#session;
      if (session && this.#desiredRoom === room) await this.#join(session, room);
    });
  }

  /** Leaves the current room (`roomId`, if given, must be it). */
  leaveRoom(roomId?: RoomId): Promise<void> {
    this.#assertOpen('leaveRoom');
    if (roomId !== undefined) {
      const room = normalizeRoomId(roomId);
      if (room !== this.#desiredRoom && room !== this.#currentRoom) return Promise.resolve();
    }
    this.#desiredRoom = null;
    return this.#queue.push(async () => {
      const session = this.#session;
      if (session && this.#desiredRoom === null) await this.#leave(session);
    });
  }

  // ---------------------------------------------------------------- peers

  /** Consumes `peerId`'s tracks and data (also before it arrives). */
  connectToPeer(peerId: string): Promise<void> {
    this.#assertOpen('connectToPeer');
    assertPeerId(peerId);
    this.#disconnectedFrom.delete(peerId);
    this.#connectTo.add(peerId);
    return this.#queue.push(async () => {
      const session = this.#session;
      if (session) await this.#requestConsumers(session, peerId);
    });
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
    this.#socket.off(SIGNALING_EVENT, this.#onSignaling);
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

  #request(type: string, data?: unknown): Promise<Ack> {
    return request(this.#socket, type, data, this.#requestTimeoutMs);
  }

  /** A failure nobody awaits: to `error` listeners, else to the console. */
  #reportError(operation: string, error: unknown): void {
    if (error instanceof StaleSession || this.#closed) return;
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
    const peerId = this.#socket.id;
    if (!peerId) throw new SignalingError('connect', 'disconnected', 'the socket has no id');
    const caps = await this.#request('getRouterRtpCapabilities');
    current();
    if (!isPlainObject(caps.routerRtpCapabilities)) {
      throw new SignalingError('getRouterRtpCapabilities', 'invalid_response', 'no routerRtpCapabilities');
    }
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
      if (state === 'failed' && this.#session === session) {
        this.#reportError(`the ${direction} transport`, new Error(`${direction} transport connection failed (ICE or DTLS)`));
      }
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
        await this.#request('resumeConsumer', { producerId });
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

// ---------------------------------------------------------------- helpers

function parseOptions(arg: unknown): SimpleMediasoupPeerOptions {
  if (arg === undefined || arg === null) return {};
  if (isSocketLike(arg)) return { socket: arg };
  if (!isPlainObject(arg)) {
    throw new TypeError('SimpleMediasoupPeer takes a socket.io socket or an options object');
  }
  const options = arg as SimpleMediasoupPeerOptions;
  if (options.socket !== undefined && !isSocketLike(options.socket)) {
    throw new TypeError('options.socket must be a socket.io client socket');
  }
  if (options.url !== undefined && typeof options.url !== 'string') throw new TypeError('options.url must be a string');
  if (options.port !== undefined && !['number', 'string'].includes(typeof options.port)) {
    throw new TypeError('options.port must be a number or a string');
  }
  if (options.autoConnect !== undefined && typeof options.autoConnect !== 'boolean') {
    throw new TypeError('options.autoConnect must be a boolean');
  }
  if (options.iceServers !== undefined && !Array.isArray(options.iceServers)) {
    throw new TypeError('options.iceServers must be an array');
  }
  if (
    options.requestTimeoutMs !== undefined &&
    !(typeof options.requestTimeoutMs === 'number' && options.requestTimeoutMs > 0)
  ) {
    throw new TypeError('options.requestTimeoutMs must be a positive number');
  }
  if (options.roomId !== undefined && options.roomId !== null) normalizeRoomId(options.roomId);
  return options;
}

function isSocketLike(value: unknown): value is SignalingSocket {
  if (typeof value !== 'object' || value === null) return false;
  const socket = value as Record<string, unknown>;
  return typeof socket.emit === 'function' && typeof socket.on === 'function' && typeof socket.off === 'function';
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function isMediaStreamTrack(value: unknown): value is MediaStreamTrack {
  if (typeof MediaStreamTrack !== 'undefined' && value instanceof MediaStreamTrack) return true;
  // Fake tracks (tests, other environments) need only look like one.
  const track = value as { kind?: unknown; readyState?: unknown } | null;
  return (
    typeof track === 'object' &&
    track !== null &&
    (track.kind === 'audio' || track.kind === 'video') &&
    typeof track.readyState === 'string'
  );
}

function isDataMessage(value: unknown): value is DataMessage {
  return (
    typeof value === 'string' ||
    value instanceof ArrayBuffer ||
    ArrayBuffer.isView(value) ||
    (typeof Blob !== 'undefined' && value instanceof Blob)
  );
}

function assertLabel(label: unknown): asserts label is string {
  if (typeof label !== 'string' || label.length === 0) throw new TypeError('label must be a non-empty string');
}

function assertPeerId(peerId: unknown): asserts peerId is string {
  if (typeof peerId !== 'string' || peerId.length === 0) throw new TypeError('peerId must be a non-empty string');
}

/** The protocol's room ids: 1 to 128 printable characters; numbers as decimal text. */
function normalizeRoomId(roomId: unknown): string {
  let room: string;
  if (typeof roomId === 'number' && Number.isFinite(roomId)) room = String(roomId);
  else if (typeof roomId === 'string') room = roomId;
  else throw new TypeError('roomId must be a string or a number');
  if (room.length < 1 || room.length > 128 || /[\u0000-\u001f\u007f]/.test(room)) {
    throw new TypeError('roomId must be 1 to 128 printable characters');
  }
  return room;
}

function asIdList(data: unknown): string[] {
  if (!Array.isArray(data)) return [];
  return data.filter((id): id is string => typeof id === 'string' && id.length > 0);
}

function isGone(error: unknown): boolean {
  return error instanceof SignalingError && GONE_CODES.has(error.code);
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
