/**
 * Entry of the script-tag bundle: defines the global `SimpleMediasoupPeer`
 * (the class), with the library's other exports as its static members.
 */
import { ENCODINGS, PeerClosedError, SignalingError, SimpleMediasoupPeer } from './index.js';

const globalClass = Object.assign(SimpleMediasoupPeer, {
  SimpleMediasoupPeer,
  SignalingError,
  PeerClosedError,
  ENCODINGS,
});

(globalThis as { SimpleMediasoupPeer?: typeof globalClass }).SimpleMediasoupPeer = globalClass;
