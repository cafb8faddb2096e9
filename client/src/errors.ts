/**
 * The named errors of the library. Every failed request rejects with a
 * `SignalingError` whose `code` is the server's (`not_in_room`,
 * `producer_not_found`, ...) or one of the client's own: `timeout` (no ack in
 * time), `disconnected` (the socket was not connected or dropped),
 * `invalid_response` (an ack of the wrong shape).
 */
export class SignalingError extends Error {
  override readonly name = 'SignalingError';
  /** The server's error code, or `timeout` / `disconnected` / `invalid_response`. */
  readonly code: string;
  /** The request that failed, e.g. `produce`. */
  readonly request: string;

  constructor(request: string, code: string, message: string) {
    super(`${request} failed: ${message} [${code}]`);
    this.code = code;
    this.request = request;
  }
}

/** Thrown by every method of a peer after `close()`. */
export class PeerClosedError extends Error {
  override readonly name = 'PeerClosedError';

  constructor(method: string) {
    super(`SimpleMediasoupPeer.${method}() called on a closed peer`);
  }
}
