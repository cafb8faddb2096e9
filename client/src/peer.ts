/**
 * SimpleMediasoupPeer: one browser peer of a simplesfu room. This file is
 * its public facade: it checks arguments, records what the user asks for
 * (tracks, room, connected/paused peers: it outlives a session, so a
 * reconnecting socket gets it all back) and queues the work on the PeerCore
 * that the internal modules share:
 *
 * - api.ts, validate.ts: the public types; option and argument checks
 * - core.ts: shared state, requests, error reporting, connection state
 * - session.ts: a socket connection's Device and transports, rooms
 * - transports.ts: transport wiring, ICE restart and rebuild
 * - resume.ts: socket (re)connects and session resume
 * - publishing.ts, consuming.ts, data.ts: producers, consumers, data
 * - pushes.ts: the server's pushes, to their owners
 */
import {
  EVENT_NAMES,
  type ConnectionState,
  type DataMessage,
  type LegacyTrackCallback,
  type MediaKind,
  type PreferredLayers,
  type RemoteTrackStats,
  type RoomId,
  type SimpleMediasoupPeerEvents,
  type SimpleMediasoupPeerOptions,
} from './api.js';
import {
  applyPreferredLayers,
  layersKey,
  remoteTrackStats,
  requestConsumers,
  setPeerPaused,
  stopConsuming,
} from './consuming.js';
import { AdaptiveStream } from './adaptive.js';
import { log, PeerCore, type DesiredTrack } from './core.js';
import { sendData } from './data.js';
import type { Listener } from './emitter.js';
import { ENCODINGS, resolveEncodings, type Encodings, type EncodingsPreset } from './encodings.js';
import { PeerClosedError, SignalingError } from './errors.js';
import { publish, removeTrack } from './publishing.js';
import { handlePush } from './pushes.js';
import { clearGraceTimer, onConnect, onConnectError, onDisconnect, resumeClaim } from './resume.js';
import { endSession, join, leave, startSession, subscribeAudioLevels } from './session.js';
import { SIGNALING_EVENT, type SignalingSocket } from './signaling.js';
import { recoverTransport } from './transports.js';
import {
  assertLabel,
  assertPeerId,
  isDataMessage,
  isMediaStreamTrack,
  isPlainObject,
  normalizeRoomId,
  parseOptions,
} from './validate.js';

export class SimpleMediasoupPeer {
  /** Encodings presets for `addTrack`: `simulcast`, `screenShare`. */
  static readonly encodings = ENCODINGS;

  /** The seed's callback, called for every new remote track after the `track` listeners. */
  onTrack: LegacyTrackCallback | null = null;

  readonly #core: PeerCore;

  readonly #onSocketConnect = () => onConnect(this.#core);
  readonly #onSocketDisconnect = (reason?: unknown) => onDisconnect(this.#core, String(reason ?? ''));
  readonly #onSocketConnectError = (error: unknown) => onConnectError(this.#core, error);
  readonly #onSignaling = (message: unknown) => handlePush(this.#core, message);

  /**
   * `new SimpleMediasoupPeer(socket)` (the seed) or
   * `new SimpleMediasoupPeer({socket?, url?, port?, roomId?, autoConnect?, ...})`.
   */
  constructor(socketOrOptions?: SignalingSocket | SimpleMediasoupPeerOptions) {
    const options = parseOptions(socketOrOptions);
    const core = new PeerCore(options, resumeClaim, () => this.onTrack);
    this.#core = core;
    if (options.adaptiveStream) core.adaptive = new AdaptiveStream(core);
    if (options.roomId !== undefined) core.desiredRoom = normalizeRoomId(options.roomId);
    core.socket.on(SIGNALING_EVENT, this.#onSignaling);
    core.socket.on('connect', this.#onSocketConnect);
    core.socket.on('disconnect', this.#onSocketDisconnect);
    core.socket.on('connect_error', this.#onSocketConnectError);
    if (core.socket.connected) startSession(core);
  }

  // ---------------------------------------------------------------- state

  /** The socket.io socket the peer signals over. */
  get socket(): SignalingSocket {
    return this.#core.socket;
  }

  /** See ConnectionState. */
  get connectionState(): ConnectionState {
    return this.#core.connectionState;
  }

  /** Our peer id (from the server's `session` push: it outlives socket reconnects), once set up; else null. */
  get id(): string | null {
    return this.#core.session?.peerId ?? null;
  }

  /** The room we are in, or null. */
  get roomId(): string | null {
    return this.#core.currentRoom;
  }

  /** Ids of the other peers in our room. */
  get peers(): string[] {
    return [...this.#core.peers];
  }

  get closed(): boolean {
    return this.#core.closed;
  }

  // --------------------------------------------------------------- events

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof SimpleMediasoupPeerEvents>(event: K, listener: Listener<SimpleMediasoupPeerEvents[K]>): () => void {
    this.#assertOpen('on');
    if (typeof event !== 'string' || !EVENT_NAMES.has(event)) {
      throw new TypeError(`unknown event "${String(event)}" (one of: ${[...EVENT_NAMES].join(', ')})`);
    }
    if (typeof listener !== 'function') throw new TypeError('listener must be a function');
    const off = this.#core.events.on(event, listener);
    if (event === 'audioLevels' && !this.#core.wantsAudioLevels) {
      // Levels cost the server a push every 250 ms: asked for only once someone listens.
      const core = this.#core;
      core.wantsAudioLevels = true;
      core.whenConnected((session) => subscribeAudioLevels(core, session)).catch((error) => core.reportError('subscribeAudioLevels', error));
    }
    return off;
  }

  off<K extends keyof SimpleMediasoupPeerEvents>(event: K, listener: Listener<SimpleMediasoupPeerEvents[K]>): void {
    this.#core.events.off(event, listener);
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
    const core = this.#core;
    core.tracks.set(label, desired);
    return core.whenConnected(
      (session) => publish(core, session, label),
      () => core.tracks.get(label) === desired,
    );
  }

  /** Stops publishing `label`; every consumer of it, everywhere, is closed. */
  removeTrack(label: string): Promise<void> {
    this.#assertOpen('removeTrack');
    assertLabel(label);
    return removeTrack(this.#core, label);
  }

  // ---------------------------------------------------------------- rooms

  /** Joins room `roomId` (leaving the current one); rejoined after reconnects. */
  joinRoom(roomId: RoomId): Promise<void> {
    this.#assertOpen('joinRoom');
    const core = this.#core;
    const room = normalizeRoomId(roomId);
    core.desiredRoom = room;
    return core.whenConnected(
      (session) => join(core, session, room),
      () => core.desiredRoom === room,
    );
  }

  /** Leaves the current room (`roomId`, if given, must be it). */
  leaveRoom(roomId?: RoomId): Promise<void> {
    this.#assertOpen('leaveRoom');
    const core = this.#core;
    if (roomId !== undefined) {
      const room = normalizeRoomId(roomId);
      if (room !== core.desiredRoom && room !== core.currentRoom) return Promise.resolve();
    }
    core.desiredRoom = null;
    return core.whenConnected(
      (session) => leave(core, session),
      () => core.desiredRoom === null,
    );
  }

  // ---------------------------------------------------------------- peers

  /** Consumes `peerId`'s tracks and data (also before it arrives). */
  connectToPeer(peerId: string): Promise<void> {
    this.#assertOpen('connectToPeer');
    assertPeerId(peerId);
    const core = this.#core;
    core.disconnectedFrom.delete(peerId);
    core.connectTo.add(peerId);
    return core.whenConnected((session) => requestConsumers(core, session, peerId));
  }

  /**
   * Stops consuming `peerId` (its broadcast tracks too): closes our consumers
   * here and on the server, ignores its data, and auto-connect stays off for
   * it until `connectToPeer`.
   */
  disconnectFromPeer(peerId: string): Promise<void> {
    this.#assertOpen('disconnectFromPeer');
    assertPeerId(peerId);
    const core = this.#core;
    core.connectTo.delete(peerId);
    core.disconnectedFrom.add(peerId);
    return core.queue.push(() => stopConsuming(core, peerId));
  }

  /** Stops the media of `peerId` (it stays paused across its track changes) until `resumePeer`. */
  pausePeer(peerId: string): Promise<void> {
    this.#assertOpen('pausePeer');
    assertPeerId(peerId);
    const core = this.#core;
    core.pausedPeers.add(peerId);
    return core.queue.push(() => setPeerPaused(core, peerId, true));
  }

  resumePeer(peerId: string): Promise<void> {
    this.#assertOpen('resumePeer');
    assertPeerId(peerId);
    const core = this.#core;
    core.pausedPeers.delete(peerId);
    return core.queue.push(() => setPeerPaused(core, peerId, false));
  }

  /**
   * The highest layers wanted of `peerId`'s video track `label` (a
   * thumbnail asks for `{spatial: 0}`): the server never sends more, and
   * less when our link cannot carry it. Kept for the track's later
   * consumers too (reconnects, the track republished).
   */
  setPreferredLayers(peerId: string, label: string, layers: PreferredLayers): Promise<void> {
    this.#assertOpen('setPreferredLayers');
    assertPeerId(peerId);
    assertLabel(label);
    const { spatial, temporal } = (isPlainObject(layers) ? layers : {}) as Partial<PreferredLayers>;
    const isLayer = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) <= 255;
    if (!isLayer(spatial) || (temporal !== undefined && !isLayer(temporal))) {
      throw new TypeError('layers must be {spatial, temporal?} with integer layers from 0');
    }
    const core = this.#core;
    const preferred: PreferredLayers = temporal === undefined ? { spatial: spatial! } : { spatial: spatial!, temporal };
    core.preferredLayers.set(layersKey(peerId, label), preferred);
    return core.queue.push(() => applyPreferredLayers(core, peerId, label));
  }

  /**
   * With the `adaptiveStream` option: `element` shows `peerId`'s video track
   * `label`, and its size and visibility choose the track's layers (the
   * largest element on screen wins; none on screen for half a second pauses
   * the track). Call it once the element shows the track (`track` event);
   * the returned function stops watching it (call it before removing the
   * element, or the track stays paused as hidden). Watching outlives
   * reconnects and a republished track with the same label.
   */
  observeVideoElement(element: HTMLVideoElement, peerId: string, label: string): () => void {
    this.#assertOpen('observeVideoElement');
    assertPeerId(peerId);
    assertLabel(label);
    const adaptive = this.#core.adaptive;
    if (!adaptive) throw new TypeError('observeVideoElement needs the adaptiveStream option: new SimpleMediasoupPeer({adaptiveStream: true, ...})');
    if (typeof HTMLVideoElement === 'undefined' || !(element instanceof HTMLVideoElement)) {
      throw new TypeError('element must be a <video> element');
    }
    return adaptive.observe(element, peerId, label);
  }

  // ----------------------------------------------------------------- data

  /**
   * Sends `data` to every peer we are connected to, over our one data
   * producer (created on the first send). Rejects when not connected.
   */
  send(data: DataMessage): Promise<void> {
    this.#assertOpen('send');
    if (!isDataMessage(data)) throw new TypeError('data must be a string, ArrayBuffer, typed array or Blob');
    return this.#core.queue.push(() => sendData(this.#core, data));
  }

  // ---------------------------------------------------------------- stats

  /** Receive statistics of every remote track we consume. */
  async getRemoteTrackStats(): Promise<RemoteTrackStats[]> {
    this.#assertOpen('getRemoteTrackStats');
    return remoteTrackStats(this.#core);
  }

  // ------------------------------------------------------- media recovery

  /**
   * Restarts ICE on both transports (e.g. after a network change the
   * browser did not notice); rebuilds a transport that does not come back.
   */
  restartIce(): Promise<void> {
    this.#assertOpen('restartIce');
    const core = this.#core;
    const session = core.session;
    if (!session) return Promise.reject(new SignalingError('restartIce', 'disconnected', 'not connected to the server'));
    return Promise.all([recoverTransport(core, session, 'send', true), recoverTransport(core, session, 'recv', true)]).then(
      () => undefined,
    );
  }

  // -------------------------------------------------------------- closing

  /** Closes everything; the socket too when the library opened it. */
  close(): void {
    const core = this.#core;
    if (core.closed) return;
    core.closed = true;
    const session = core.session;
    const socket = core.socket;
    if (session && !core.ownsSocket && socket.connected) {
      // The socket stays up: tell the server, best effort.
      for (const { producer } of session.producers.values()) {
        core.request('closeProducer', { producerId: producer.id }).catch((error) => log('closeProducer on close: %o', error));
      }
      if (core.currentRoom !== null) {
        core.request('leaveRoom', { roomId: core.currentRoom }).catch((error) => log('leaveRoom on close: %o', error));
      }
    }
    core.adaptive?.close();
    endSession(core, false);
    clearGraceTimer(core);
    core.updateConnectionState();
    socket.off(SIGNALING_EVENT, this.#onSignaling);
    socket.off('connect_error', this.#onSocketConnectError);
    socket.off('connect', this.#onSocketConnect);
    socket.off('disconnect', this.#onSocketDisconnect);
    if (core.ownsSocket) socket.disconnect?.();
    core.events.removeAll();
    this.onTrack = null;
  }

  #assertOpen(method: string): void {
    if (this.#core.closed) throw new PeerClosedError(method);
  }
}
