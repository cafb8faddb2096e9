/**
 * A fake simplesfu for unit tests: sockets that speak docs/PROTOCOL.md to an
 * in-memory server with rooms, producers and consumers (autoConsume: false
 * semantics, broadcast producers consumed for everyone), and
 * mediasoup-client's FakeHandler in place of a browser.
 */
import { FakeHandler, testFakeParameters } from 'mediasoup-client';
import { FakeMediaStreamTrack } from 'fake-mediastreamtrack';
import type { SignalingSocket } from '../signaling.js';

type Handler = (...args: any[]) => void;
type Message = { type: string; data?: any };
type ErrorAck = { error: { code: string; message: string } };

export const handlerFactory = FakeHandler.createFactory(testFakeParameters);

export function fakeTrack(kind: 'audio' | 'video'): MediaStreamTrack {
  return new FakeMediaStreamTrack({ kind }) as unknown as MediaStreamTrack;
}

let nextId = 1;
const newId = (prefix: string) => `${prefix}-${nextId++}`;

export class FakeSocket implements SignalingSocket {
  id: string | undefined = undefined;
  connected = false;
  /** socket.io's auth option: an object or `(cb) => cb(object)`, read on every connect. */
  auth: unknown = undefined;
  /** The peer this socket speaks for (differs from `id` after a resume). */
  peerId: string | undefined = undefined;
  /** Every auth payload sent, in order. */
  readonly auths: any[] = [];
  readonly #handlers = new Map<string, Set<Handler>>();
  readonly #server: FakeServer;

  constructor(server: FakeServer) {
    this.#server = server;
  }

  on(event: string, handler: Handler): this {
    let set = this.#handlers.get(event);
    if (!set) this.#handlers.set(event, (set = new Set()));
    set.add(handler);
    return this;
  }

  off(event: string, handler?: Handler): this {
    if (handler) this.#handlers.get(event)?.delete(handler);
    else this.#handlers.delete(event);
    return this;
  }

  /** Client to server. */
  emit(event: string, message: Message, ack: (answer: unknown) => void): this {
    if (event !== 'mediasoupSignaling') throw new Error(`unexpected event ${event}`);
    // Asynchronous, as over a network.
    setImmediate(() => {
      if (!this.connected) return;
      const answer = this.#server.handle(this, message);
      setImmediate(() => ack(answer));
    });
    return this;
  }

  /** Server to client. */
  deliver(event: string, ...args: unknown[]): void {
    for (const handler of [...(this.#handlers.get(event) ?? [])]) handler(...args);
  }

  listenerCount(event: string): number {
    return this.#handlers.get(event)?.size ?? 0;
  }

  connect(): this {
    if (this.connected) return this;
    let auth: any;
    if (typeof this.auth === 'function') (this.auth as (cb: (data: unknown) => void) => void)((data) => (auth = data));
    else auth = this.auth;
    this.auths.push(auth);
    this.id = newId('peer');
    const refusal = this.#server.admit(this, auth);
    if (refusal) {
      setImmediate(() => this.deliver('connect_error', new Error(refusal)));
      return this;
    }
    this.connected = true;
    setImmediate(() => {
      if (!this.connected) return;
      this.deliver('connect');
      this.#server.connected(this);
    });
    return this;
  }

  disconnect(): this {
    if (!this.connected) return this;
    this.connected = false;
    this.#server.detach(this);
    this.deliver('disconnect', 'io client disconnect');
    return this;
  }

  /** The network drops the connection (not the client's choice): a resumable peer stays. */
  drop(): this {
    if (!this.connected) return this;
    this.connected = false;
    this.#server.dropped(this);
    this.deliver('disconnect', 'transport close');
    return this;
  }
}

interface ProducerEntry {
  id: string;
  kind: 'audio' | 'video';
  label: string;
  broadcast: boolean;
}

interface PeerEntry {
  socket: FakeSocket;
  /** Announced `resume: true`; then the token of its latest `session` push. */
  resumable: boolean;
  token: string;
  /** Its socket dropped; pushes wait in `missed` until it resumes or the grace period ends. */
  away: boolean;
  missed: Message[];
  graceTimer?: ReturnType<typeof setTimeout>;
  room: string | null;
  autoConsume: boolean;
  transports: Map<string, { producing: boolean; connected: boolean; restarts: number }>;
  producers: Map<string, ProducerEntry>;
  dataProducers: Map<string, { id: string; label: string }>;
  /** producerId -> consumer. */
  consumers: Map<string, { id: string; paused: boolean; producingPeerId: string }>;
  dataConsumers: Map<string, string>;
}

export class FakeServer {
  readonly peers = new Map<string, PeerEntry>();
  /** Every request, in arrival order: `${peerId} ${type}`. */
  readonly log: { peerId: string; type: string; data: any }[] = [];
  /** Request type -> error to answer once. */
  readonly failNext = new Map<string, { code: string; message: string }>();
  resumeGraceMs = 1_000;

  socket(): FakeSocket {
    return new FakeSocket(this);
  }

  /** Checks a connection's auth; returns a refusal message, or null (then the socket speaks for `peerId`). */
  admit(socket: FakeSocket, auth: any): string | null {
    const resume = auth?.resume;
    if (resume !== undefined && resume !== true) {
      if (typeof resume?.peerId !== 'string' || typeof resume?.token !== 'string') return 'invalid_auth: bad resume';
      const peer = this.peers.get(resume.peerId);
      if (!peer || !peer.resumable || peer.token !== resume.token) return 'resume_failed: no such session, start a new session';
      if (peer.socket.connected) {
        peer.socket.connected = false;
        peer.socket.deliver('disconnect', 'io server disconnect');
      }
      clearTimeout(peer.graceTimer);
      peer.socket = socket;
      socket.peerId = resume.peerId;
      return null;
    }
    socket.peerId = socket.id;
    this.attach(socket, resume === true);
    return null;
  }

  /** After the connect event: the session push, then what a resumed peer missed. */
  connected(socket: FakeSocket): void {
    const peerId = socket.peerId!;
    const peer = this.peers.get(peerId);
    if (!peer?.resumable) return;
    peer.token = newId('token');
    this.#push(peerId, 'session', { peerId, resumeToken: peer.token, resumeGraceMs: this.resumeGraceMs });
    if (peer.away) {
      peer.away = false;
      for (const message of peer.missed.splice(0)) this.#push(peerId, message.type, message.data);
      if (peer.room !== null) this.#announce(peer.room);
    }
  }

  dropped(socket: FakeSocket): void {
    const peer = this.peers.get(socket.peerId!);
    if (!peer || peer.socket !== socket) return;
    if (!peer.resumable) {
      this.detach(socket);
      return;
    }
    peer.away = true;
    peer.graceTimer = setTimeout(() => {
      if (peer.away && this.peers.get(socket.peerId!) === peer) this.detach(socket);
    }, this.resumeGraceMs);
  }

  /** SIGTERM: every peer hears `serverShutdown`, then its socket is closed. */
  shutdown(message = 'the server is stopping'): void {
    for (const [peerId, peer] of this.peers) {
      const socket = peer.socket;
      if (!socket.connected) continue;
      socket.deliver('mediasoupSignaling', { type: 'serverShutdown', data: { message } });
      socket.connected = false;
      clearTimeout(peer.graceTimer);
      this.peers.delete(peerId);
      socket.deliver('disconnect', 'io server disconnect');
    }
  }

  /** The engine closed a transport (e.g. its worker died): the slot is free again. */
  closeTransport(peerId: string, producing: boolean): void {
    const peer = this.peers.get(peerId)!;
    for (const [id, transport] of peer.transports) if (transport.producing === producing) peer.transports.delete(id);
  }

  transportsOf(peerId: string) {
    return this.peers.get(peerId)?.transports;
  }

  attach(socket: FakeSocket, resumable = false): void {
    this.peers.set(socket.id!, {
      socket,
      resumable,
      token: '',
      away: false,
      missed: [],
      room: null,
      autoConsume: true,
      transports: new Map(),
      producers: new Map(),
      dataProducers: new Map(),
      consumers: new Map(),
      dataConsumers: new Map(),
    });
  }

  detach(socket: FakeSocket): void {
    const peerId = socket.peerId ?? socket.id!;
    if (this.peers.get(peerId)?.socket !== socket) return;
    clearTimeout(this.peers.get(peerId)!.graceTimer);
    this.#leave(peerId);
    this.peers.delete(peerId);
  }

  requests(type: string, peerId?: string): any[] {
    return this.log.filter((r) => r.type === type && (!peerId || r.peerId === peerId)).map((r) => r.data);
  }

  handle(socket: FakeSocket, message: Message): unknown {
    const peerId = socket.peerId ?? socket.id!;
    const peer = this.peers.get(peerId)!;
    const { type, data } = message;
    this.log.push({ peerId, type, data });
    const failure = this.failNext.get(type);
    if (failure) {
      this.failNext.delete(type);
      return { error: failure };
    }
    const err = (code: string, text = code): ErrorAck => ({ error: { code, message: text } });
    switch (type) {
      case 'getRouterRtpCapabilities':
        return { success: true, routerRtpCapabilities: testFakeParameters.generateRouterRtpCapabilities(), peerId };
      case 'createWebRtcTransport': {
        const producing = data.producing === true;
        if ([...peer.transports.values()].some((t) => t.producing === producing)) return err('transport_already_exists');
        const info = testFakeParameters.generateTransportRemoteParameters();
        peer.transports.set(info.id, { producing, connected: false, restarts: 0 });
        return { success: true, transportInfo: info };
      }
      case 'restartIce': {
        const transport = peer.transports.get(data.transportId);
        if (!transport) return err('transport_not_found');
        transport.restarts += 1;
        return { success: true, iceParameters: testFakeParameters.generateTransportRemoteParameters().iceParameters };
      }
      case 'connectWebRtcTransport': {
        const transport = peer.transports.get(data.transportId);
        if (!transport) return err('transport_not_found');
        transport.connected = true;
        return { success: true };
      }
      case 'produce': {
        const transport = peer.transports.get(data.transportId);
        if (!transport) return err('transport_not_found');
        if (!transport.connected) return err('transport_not_connected');
        const producer: ProducerEntry = {
          id: newId('producer'),
          kind: data.kind,
          label: data.appData?.label,
          broadcast: data.appData?.broadcast === true,
        };
        peer.producers.set(producer.id, producer);
        if (peer.room !== null) {
          for (const [otherId, other] of this.#roomPeers(peer.room)) {
            if (otherId !== peerId && (other.autoConsume || producer.broadcast)) {
              this.#createConsumer(otherId, peerId, producer);
            }
          }
          this.#announce(peer.room);
        }
        return { success: true, id: producer.id };
      }
      case 'produceData': {
        const transport = peer.transports.get(data.transportId);
        if (!transport?.connected) return err('transport_not_connected');
        const id = newId('dataproducer');
        peer.dataProducers.set(id, { id, label: data.label });
        if (peer.room !== null) this.#announce(peer.room);
        return { success: true, id };
      }
      case 'joinRoom': {
        if (peer.room !== null) this.#leave(peerId);
        const room = String(data.roomId);
        peer.room = room;
        peer.autoConsume = data.autoConsume !== false;
        const others = [...this.#roomPeers(room)].filter(([id]) => id !== peerId);
        if (others.length > 0) this.#push(peerId, 'peerConnection', others.map(([id]) => id));
        for (const [otherId, other] of others) {
          this.#push(otherId, 'peerConnection', [peerId]);
          for (const producer of other.producers.values()) {
            if (peer.autoConsume || producer.broadcast) this.#createConsumer(peerId, otherId, producer);
          }
          for (const producer of peer.producers.values()) {
            if (other.autoConsume || producer.broadcast) this.#createConsumer(otherId, peerId, producer);
          }
        }
        this.#announce(room);
        return { success: true };
      }
      case 'leaveRoom':
        this.#leave(peerId);
        return { success: true };
      case 'createConsumer': {
        if (peer.room === null) return err('not_in_room');
        const producing = this.peers.get(data.producingPeerId);
        if (!producing) return err('peer_not_found');
        const producer = producing.producers.get(data.producerId);
        if (!producer) return err('producer_not_found');
        if (producing.room !== peer.room) return err('producer_not_in_room');
        this.#createConsumer(peerId, data.producingPeerId, producer);
        return { success: true };
      }
      case 'createDataConsumer': {
        if (peer.room === null) return err('not_in_room');
        const producing = this.peers.get(data.producingPeerId);
        const dataProducer = producing?.dataProducers.get(data.producerId);
        if (!producing || !dataProducer) return err('producer_not_found');
        const id = peer.dataConsumers.get(dataProducer.id) ?? newId('dataconsumer');
        peer.dataConsumers.set(dataProducer.id, id);
        this.#push(peerId, 'createDataConsumer', {
          peerId: data.producingPeerId,
          dataProducerId: dataProducer.id,
          id,
          sctpStreamParameters: { streamId: peer.dataConsumers.size, ordered: true },
          label: dataProducer.label,
          protocol: '',
          appData: {},
        });
        return { success: true };
      }
      case 'pauseConsumer':
      case 'resumeConsumer': {
        const consumer = peer.consumers.get(data.producerId);
        if (!consumer) return err('consumer_not_found');
        consumer.paused = type === 'pauseConsumer';
        return { success: true };
      }
      case 'closeConsumer':
        if (!peer.consumers.delete(data.producerId)) return err('consumer_not_found');
        return { success: true };
      case 'closeProducer': {
        if (!peer.producers.delete(data.producerId)) return err('producer_not_found');
        this.#closeConsumersOf(data.producerId);
        if (peer.room !== null) this.#announce(peer.room);
        return { success: true };
      }
      case 'subscribeAudioLevels':
        if (typeof data?.enabled !== 'boolean') return err('invalid_request');
        return { success: true };
      case 'setConsumerPreferredLayers': {
        if (!peer.consumers.has(data.producerId)) return err('consumer_not_found');
        if (data.spatialLayer > 2) return err('layers_out_of_range');
        return { success: true };
      }
      default:
        return err('unknown_request', `unknown request ${type}`);
    }
  }

  /** The server's view of `peerId`'s consumer of `producerId`. */
  consumer(peerId: string, producerId: string) {
    return this.peers.get(peerId)?.consumers.get(producerId);
  }

  producerOf(peerId: string, label: string): ProducerEntry | undefined {
    return [...(this.peers.get(peerId)?.producers.values() ?? [])].find((p) => p.label === label);
  }

  #roomPeers(room: string): Map<string, PeerEntry> {
    return new Map([...this.peers].filter(([, peer]) => peer.room === room));
  }

  /** Sends `peerId` a push as the server would (e.g. `activeSpeaker`). */
  pushTo(peerId: string, type: string, data: unknown): void {
    this.#push(peerId, type, data);
  }

  #push(peerId: string, type: string, data: unknown): void {
    const peer = this.peers.get(peerId);
    if (!peer) return;
    if (peer.away) {
      if (type !== 'availableProducers') peer.missed.push({ type, data });
      return;
    }
    const socket = peer.socket;
    setImmediate(() => socket.connected && socket.deliver('mediasoupSignaling', { type, data }));
  }

  #createConsumer(consumingPeerId: string, producingPeerId: string, producer: ProducerEntry): void {
    const consuming = this.peers.get(consumingPeerId)!;
    const existing = consuming.consumers.get(producer.id);
    const id = existing?.id ?? newId('consumer');
    if (!existing) consuming.consumers.set(producer.id, { id, paused: true, producingPeerId });
    const { rtpParameters } = testFakeParameters.generateConsumerRemoteParameters({
      id,
      codecMimeType: producer.kind === 'audio' ? 'audio/opus' : 'video/VP8',
    });
    this.#push(consumingPeerId, 'createConsumer', {
      peerId: producingPeerId,
      producerId: producer.id,
      id,
      kind: producer.kind,
      rtpParameters,
      type: 'simple',
      appData: { label: producer.label, broadcast: producer.broadcast, peerId: producingPeerId },
      producerPaused: false,
    });
  }

  #closeConsumersOf(producerId: string, onlyIn?: Set<string>): void {
    for (const [peerId, peer] of this.peers) {
      if (onlyIn && !onlyIn.has(peerId)) continue;
      const consumer = peer.consumers.get(producerId);
      if (!consumer) continue;
      peer.consumers.delete(producerId);
      this.#push(peerId, 'consumerClosed', { producingPeerId: consumer.producingPeerId, producerId });
    }
  }

  #announce(room: string): void {
    const peers = this.#roomPeers(room);
    const available: Record<string, unknown> = {};
    for (const [peerId, peer] of peers) {
      available[peerId] = {
        producers: Object.fromEntries(
          [...peer.producers.values()].map((p) => [
            p.id,
            { label: p.label, broadcast: p.broadcast, peerId, kind: p.kind, paused: false },
          ]),
        ),
        dataProducers: Object.fromEntries([...peer.dataProducers.values()].map((d) => [d.id, { label: d.label }])),
      };
    }
    for (const peerId of peers.keys()) this.#push(peerId, 'availableProducers', available);
  }

  #leave(peerId: string): void {
    const peer = this.peers.get(peerId);
    if (!peer || peer.room === null) return;
    const room = peer.room;
    peer.room = null;
    const others = this.#roomPeers(room);
    // Our consumers, and the others' consumers of our producers.
    for (const [producerId, consumer] of [...peer.consumers]) {
      peer.consumers.delete(producerId);
      this.#push(peerId, 'consumerClosed', { producingPeerId: consumer.producingPeerId, producerId });
    }
    for (const producerId of peer.producers.keys()) this.#closeConsumersOf(producerId, new Set(others.keys()));
    if (others.size > 0) this.#push(peerId, 'peerDisconnection', [...others.keys()]);
    for (const otherId of others.keys()) this.#push(otherId, 'peerDisconnection', [peerId]);
    this.#announce(room);
  }
}

/** Resolves when `predicate()` holds, checking after every macrotask; rejects after `timeoutMs`. */
export async function until(predicate: () => boolean, what: string, timeoutMs = 2_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}
