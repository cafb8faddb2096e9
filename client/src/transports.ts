/**
 * Transports: a session's send and receive transports, from the
 * `createWebRtcTransport` request through their wiring to signaling
 * (`connect`, `produce`, `producedata`) to their recovery (docs/PROTOCOL.md
 * "ICE restart"): when one goes `disconnected` or `failed`, ICE is restarted
 * on it; when that does not bring it back, it is rebuilt and what it carried
 * is produced or consumed on the new one.
 */
import type { types } from 'mediasoup-client';
import { log, type Direction, type PeerCore, type Session } from './core.js';
import { dropAllConsumers, requestAllConsumers } from './consuming.js';
import { SignalingError } from './errors.js';
import { publishAll } from './publishing.js';
import type { Ack } from './signaling.js';
import { isPlainObject } from './validate.js';

/** Sent when creating transports; the server sizes SCTP from it. */
const SCTP_CAPABILITIES = { numStreams: { OS: 1024, MIS: 1024 } };
/** ICE restarts tried before rebuilding the transport. */
const ICE_RESTART_ATTEMPTS = 2;

/** Asks the server for a transport of `direction`. */
export async function createTransportInfo(core: PeerCore, direction: Direction): Promise<types.TransportOptions> {
  const ack = await core.request('createWebRtcTransport', {
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

/** The local side of the server's transport `info`. */
export function createTransport(
  core: PeerCore,
  device: types.Device,
  direction: Direction,
  info: types.TransportOptions,
): types.Transport {
  const options = { ...info, iceServers: core.iceServers };
  return direction === 'send' ? device.createSendTransport(options) : device.createRecvTransport(options);
}

/**
 * Connects `transport`'s events to signaling and recovery; `onConnected`
 * runs once the server has acked `connectWebRtcTransport`.
 */
export function wireTransport(
  core: PeerCore,
  session: Session,
  transport: types.Transport,
  direction: Direction,
  onConnected: () => void,
): void {
  transport.on('connect', ({ dtlsParameters }, callback, errback) => {
    core.request('connectWebRtcTransport', { transportId: transport.id, dtlsParameters }).then(
      () => {
        onConnected();
        callback();
      },
      errback,
    );
  });
  transport.on('connectionstatechange', (state) => {
    log('%s transport %s', direction, state);
    if (core.session !== session || core.transport(session, direction) !== transport) return;
    if (state === 'disconnected' || state === 'failed') recoverTransport(core, session, direction);
    core.updateConnectionState();
  });
  if (direction === 'recv') return;
  // Never produce on a transport the server does not see as connected.
  const produceOnServer = (type: 'produce' | 'produceData', data: object, missing: string) =>
    session.sendConnected
      .then(() => core.request(type, { transportId: transport.id, ...data }))
      .then((ack) => {
        if (typeof ack.id !== 'string') throw new SignalingError(type, 'invalid_response', missing);
        return { id: ack.id };
      });
  transport.on('produce', ({ kind, rtpParameters, appData }, callback, errback) => {
    produceOnServer('produce', { kind, rtpParameters, appData }, 'no producer id').then(callback).catch(errback);
  });
  transport.on('producedata', ({ sctpStreamParameters, label, protocol, appData }, callback, errback) => {
    produceOnServer('produceData', { sctpStreamParameters, label, protocol, appData }, 'no id')
      .then(callback)
      .catch(errback);
  });
}

/** Starts (once per direction) bringing a transport back; resolves when done. */
export function recoverTransport(core: PeerCore, session: Session, direction: Direction, force = false): Promise<void> {
  if (session.recovering.has(direction)) return Promise.resolve();
  session.recovering.add(direction);
  core.updateConnectionState();
  return recover(core, session, direction, force)
    .catch((error) => core.reportError(`recovering the ${direction} transport`, error))
    .finally(() => {
      session.recovering.delete(direction);
      if (core.session === session) core.updateConnectionState();
    });
}

/** ICE restarts first; a rebuild when they do not bring the transport back. */
async function recover(core: PeerCore, session: Session, direction: Direction, force: boolean): Promise<void> {
  for (let attempt = 0; attempt < ICE_RESTART_ATTEMPTS; attempt++) {
    await waitForSocket(core, session);
    const transport = core.transport(session, direction);
    if (!force && transport.connectionState === 'connected') return;
    force = false;
    let ack: Ack;
    try {
      ack = await core.request('restartIce', { transportId: transport.id });
    } catch (error) {
      core.checkCurrent(session);
      const code = (error as SignalingError).code;
      if (code === 'transport_not_found') break; // the server closed it: rebuild
      if (code === 'disconnected' || code === 'timeout') continue;
      throw error;
    }
    core.checkCurrent(session);
    if (transport.closed || transport !== core.transport(session, direction)) return;
    log('restarting ICE of the %s transport', direction);
    await transport.restartIce({ iceParameters: ack.iceParameters as types.IceParameters });
    if (await waitConnected(transport, core.iceRestartTimeoutMs)) {
      log('the %s transport is back', direction);
      return;
    }
    core.checkCurrent(session);
  }
  await waitForSocket(core, session);
  await core.queue.push(() => rebuildTransport(core, session, direction));
}

/** Resolves once the socket is connected for this session; throws StaleSession if it is gone. */
async function waitForSocket(core: PeerCore, session: Session): Promise<void> {
  while (!core.socket.connected || core.resumeAttempt !== null) {
    core.checkCurrent(session);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  core.checkCurrent(session);
}

/**
 * A new transport for `direction`, then produces or consumes on it again.
 * The protocol allows one transport per direction: when the server still
 * has the old one, the only way is a new session.
 */
async function rebuildTransport(core: PeerCore, session: Session, direction: Direction): Promise<void> {
  core.checkCurrent(session);
  let info: types.TransportOptions;
  try {
    info = await createTransportInfo(core, direction);
  } catch (error) {
    core.checkCurrent(session);
    if ((error as SignalingError).code !== 'transport_already_exists') throw error;
    log('the server keeps the old %s transport: starting a new session', direction);
    core.resume = null;
    core.socket.disconnect?.();
    core.socket.connect?.();
    return;
  }
  core.checkCurrent(session);
  log('rebuilding the %s transport', direction);
  if (direction === 'send') {
    session.sendTransport.close();
    const connected = deferred();
    session.sendConnected = connected.promise;
    session.producers.clear();
    session.dataProducer = null;
    session.sendTransport = createTransport(core, session.device, 'send', info);
    wireTransport(core, session, session.sendTransport, 'send', connected.resolve);
    await publishAll(core, session);
  } else {
    dropAllConsumers(core, session);
    session.recvTransport.close();
    session.recvTransport = createTransport(core, session.device, 'recv', info);
    wireTransport(core, session, session.recvTransport, 'recv', () => undefined);
    requestAllConsumers(core, session);
  }
}

export function deferred(): { promise: Promise<void>; resolve: () => void } {
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
