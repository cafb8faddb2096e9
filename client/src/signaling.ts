/**
 * Requests and pushes of the simplesfu protocol (docs/PROTOCOL.md) over a
 * socket.io socket: one event, `mediasoupSignaling`, `{type, data}` with an
 * ack that is `{success: true, ...}` or `{error: {code, message}}`.
 */
import { SignalingError } from './errors.js';

export const SIGNALING_EVENT = 'mediasoupSignaling';

/** What the library needs of a socket.io client socket (tests pass fakes). */
export interface SignalingSocket {
  readonly id?: string | undefined;
  readonly connected: boolean;
  on(event: string, listener: (...args: any[]) => void): unknown;
  off(event: string, listener?: (...args: any[]) => void): unknown;
  emit(event: string, ...args: any[]): unknown;
  connect?(): unknown;
  disconnect?(): unknown;
}

export type Ack = { success?: boolean; [field: string]: unknown };

/**
 * Sends one request; resolves with the success ack, rejects with a
 * SignalingError carrying the server's code, or `timeout` when no ack comes
 * within `timeoutMs`, or `disconnected` when the socket is not connected or
 * drops before the ack.
 */
export function request(
  socket: SignalingSocket,
  type: string,
  data: unknown,
  timeoutMs: number,
): Promise<Ack> {
  return new Promise((resolve, reject) => {
    if (!socket.connected) {
      reject(new SignalingError(type, 'disconnected', 'the socket is not connected'));
      return;
    }
    let settled = false;
    const finish = () => {
      settled = true;
      clearTimeout(timer);
      socket.off('disconnect', onDisconnect);
    };
    const onDisconnect = () => {
      if (settled) return;
      finish();
      reject(new SignalingError(type, 'disconnected', 'the socket disconnected before the server answered'));
    };
    const timer = setTimeout(() => {
      if (settled) return;
      finish();
      reject(new SignalingError(type, 'timeout', `no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.on('disconnect', onDisconnect);
    const message = data === undefined ? { type } : { type, data };
    socket.emit(SIGNALING_EVENT, message, (ack: unknown) => {
      if (settled) return;
      finish();
      if (typeof ack !== 'object' || ack === null) {
        reject(new SignalingError(type, 'invalid_response', `unexpected answer ${JSON.stringify(ack)}`));
        return;
      }
      const { error } = ack as { error?: unknown };
      if (error) {
        const { code, message } =
          typeof error === 'object' ? (error as { code?: unknown; message?: unknown }) : { code: undefined, message: error };
        reject(
          new SignalingError(
            type,
            typeof code === 'string' && code ? code : 'server_error',
            typeof message === 'string' && message ? message : 'the server refused the request',
          ),
        );
        return;
      }
      resolve(ack as Ack);
    });
  });
}

/** Where to connect when the options name no socket. */
export function socketUrl(
  options: { url?: string | undefined; port?: number | string | undefined },
  location: { protocol: string; hostname: string; port: string } | undefined,
): string | undefined {
  const { url, port } = options;
  if (url === undefined && port === undefined) return undefined; // the page's own origin
  const protocol = location?.protocol === 'https:' ? 'https:' : 'http:';
  let base = url ?? location?.hostname ?? 'localhost';
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(base)) base = `${protocol}//${base}`;
  if (port === undefined) return base;
  const parsed = new URL(base);
  parsed.port = String(port);
  return parsed.origin + (parsed.pathname === '/' ? '' : parsed.pathname);
}
