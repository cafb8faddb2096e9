/**
 * The set-up the peer tests share: a fresh FakeServer for every test, peers
 * on its sockets that record what they see (and whose transports' fake
 * handlers a test can drive), all closed after the test. Call `usePeers()`
 * once at the top of a test file.
 */
import { afterEach, beforeEach } from 'node:test';
import type { types } from 'mediasoup-client';
import type { ConnectionState, SimpleMediasoupPeerOptions, TrackEndedEvent, TrackEvent } from '../api.js';
import { SimpleMediasoupPeer } from '../peer.js';
import { FakeServer, handlerFactory } from './fake-server.js';

export type TestPeerOptions = Omit<SimpleMediasoupPeerOptions, 'socket' | 'handlerFactory'>;

/** A fake handler as far as tests drive it. */
interface DrivableHandler {
  setConnectionState(state: string): void;
}

export class PeerHarness {
  server = new FakeServer();
  #peers: SimpleMediasoupPeer[] = [];

  /** Closes `peer` after the test (for peers a test makes itself). */
  readonly adopt = (peer: SimpleMediasoupPeer): SimpleMediasoupPeer => {
    this.#peers.push(peer);
    return peer;
  };

  /** A peer on a connected fake socket, with what it saw. */
  readonly makePeer = (options: TestPeerOptions = {}) => {
    const socket = this.server.socket();
    const handlers: { direction: string; handler: DrivableHandler }[] = [];
    const factory: types.HandlerFactory = {
      ...handlerFactory,
      factory: (handlerOptions) => {
        const handler = handlerFactory.factory(handlerOptions);
        handlers.push({ direction: handlerOptions.direction, handler: handler as never });
        return handler;
      },
    };
    const peer = this.adopt(new SimpleMediasoupPeer({ socket, handlerFactory: factory, ...options }));
    const seen = {
      tracks: [] as TrackEvent[],
      ended: [] as TrackEndedEvent[],
      joined: [] as string[],
      left: [] as string[],
      errors: [] as Error[],
      states: [] as ConnectionState[],
      shutdown: [] as string[],
    };
    peer.on('track', (event) => seen.tracks.push(event));
    peer.on('trackEnded', (event) => seen.ended.push(event));
    peer.on('peerConnection', ({ peerId }) => seen.joined.push(peerId));
    peer.on('peerDisconnection', ({ peerId }) => seen.left.push(peerId));
    peer.on('error', (error) => seen.errors.push(error));
    peer.on('connectionStateChange', ({ state }) => seen.states.push(state));
    peer.on('serverShutdown', ({ message }) => seen.shutdown.push(message));
    socket.connect();
    /** The latest handler of a direction (a rebuild makes a new one). */
    const handler = (direction: 'send' | 'recv') => handlers.filter((h) => h.direction === direction).at(-1)!.handler;
    return { peer, socket, seen, handlers, handler };
  };

  reset(): void {
    this.server = new FakeServer();
    this.#peers = [];
  }

  closeAll(): void {
    for (const peer of this.#peers) peer.close();
  }
}

export type MadePeer = ReturnType<PeerHarness['makePeer']>;

/** A PeerHarness reset before and cleaned up after every test of the file. */
export function usePeers(): PeerHarness {
  const harness = new PeerHarness();
  beforeEach(() => harness.reset());
  afterEach(() => harness.closeAll());
  return harness;
}
