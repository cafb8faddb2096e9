/**
 * Checks of what callers and the server hand the library: option parsing,
 * argument checks that throw `TypeError`, and shape tests of unknown values.
 */
import type { DataMessage, SimpleMediasoupPeerOptions } from './api.js';
import type { SignalingSocket } from './signaling.js';

export function parseOptions(arg: unknown): SimpleMediasoupPeerOptions {
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
  if (options.adaptiveStream !== undefined && typeof options.adaptiveStream !== 'boolean') {
    throw new TypeError('options.adaptiveStream must be a boolean');
  }
  if (options.adaptiveStream && (typeof ResizeObserver === 'undefined' || typeof IntersectionObserver === 'undefined')) {
    throw new TypeError('options.adaptiveStream needs ResizeObserver and IntersectionObserver (a browser)');
  }
  if (options.roomId !== undefined && options.roomId !== null) normalizeRoomId(options.roomId);
  return options;
}

function isSocketLike(value: unknown): value is SignalingSocket {
  if (typeof value !== 'object' || value === null) return false;
  const socket = value as Record<string, unknown>;
  return typeof socket.emit === 'function' && typeof socket.on === 'function' && typeof socket.off === 'function';
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export function isMediaStreamTrack(value: unknown): value is MediaStreamTrack {
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

export function isDataMessage(value: unknown): value is DataMessage {
  return (
    typeof value === 'string' ||
    value instanceof ArrayBuffer ||
    ArrayBuffer.isView(value) ||
    (typeof Blob !== 'undefined' && value instanceof Blob)
  );
}

export function assertLabel(label: unknown): asserts label is string {
  if (typeof label !== 'string' || label.length === 0) throw new TypeError('label must be a non-empty string');
}

export function assertPeerId(peerId: unknown): asserts peerId is string {
  if (typeof peerId !== 'string' || peerId.length === 0) throw new TypeError('peerId must be a non-empty string');
}

/** The protocol's room ids: 1 to 128 printable characters; numbers as decimal text. */
export function normalizeRoomId(roomId: unknown): string {
  let room: string;
  if (typeof roomId === 'number' && Number.isFinite(roomId)) room = String(roomId);
  else if (typeof roomId === 'string') room = roomId;
  else throw new TypeError('roomId must be a string or a number');
  if (room.length < 1 || room.length > 128 || /[\u0000-\u001f\u007f]/.test(room)) {
    throw new TypeError('roomId must be 1 to 128 printable characters');
  }
  return room;
}

export function asIdList(data: unknown): string[] {
  if (!Array.isArray(data)) return [];
  return data.filter((id): id is string => typeof id === 'string' && id.length > 0);
}
