/**
 * The session: what lives as long as one socket connection (the Device
 * loaded with the router's capabilities, the send and receive transports)
 * and room membership. A new session publishes every track the user added
 * and joins the room they asked for; tearing one down ends its tracks and
 * forgets its peers.
 */
import { Device, type types } from 'mediasoup-client';
import { dropAllConsumers, dropConsumer, forgetPeer } from './consuming.js';
import { log, StaleSession, type PeerCore, type Session } from './core.js';
import { SignalingError } from './errors.js';
import { publishAll } from './publishing.js';
import { createTransport, createTransportInfo, deferred, wireTransport } from './transports.js';
import { isPlainObject } from './validate.js';

/** Ends the current session, if any, and queues setting up a new one. */
export function startSession(core: PeerCore): void {
  if (core.closed) return;
  endSession(core, true);
  const generation = ++core.generation;
  core.queue
    .push(() => setUpSession(core, generation))
    .catch((error) => core.reportError('connecting to the server', error));
}

async function setUpSession(core: PeerCore, generation: number): Promise<void> {
  const current = () => {
    if (generation !== core.generation || core.closed) throw new StaleSession('the connection was reset');
  };
  current();
  const caps = await core.request('getRouterRtpCapabilities');
  current();
  if (!isPlainObject(caps.routerRtpCapabilities)) {
    throw new SignalingError('getRouterRtpCapabilities', 'invalid_response', 'no routerRtpCapabilities');
  }
  // The server names our peer id (it is not the socket id, which is a
  // connection credential); the latest `session` push names it too.
  const peerId = typeof caps.peerId === 'string' ? caps.peerId : core.resume?.peerId;
  if (!peerId) throw new SignalingError('getRouterRtpCapabilities', 'invalid_response', 'no peerId');
  const device = core.handlerFactory ? new Device({ handlerFactory: core.handlerFactory }) : await Device.factory();
  await device.load({ routerRtpCapabilities: caps.routerRtpCapabilities as types.RtpCapabilities });
  current();

  const sendConnected = deferred();
  const sendInfo = await createTransportInfo(core, 'send');
  current();
  const recvInfo = await createTransportInfo(core, 'recv');
  current();
  const session: Session = {
    generation,
    peerId,
    device,
    sendTransport: createTransport(core, device, 'send', sendInfo),
    recvTransport: createTransport(core, device, 'recv', recvInfo),
    sendConnected: sendConnected.promise,
    recovering: new Set(),
    producers: new Map(),
    consumers: new Map(),
    consumerRequests: new Map(),
    consuming: new Set(),
    dataProducer: null,
    dataConsumers: new Map(),
    dataConsumerRequests: new Map(),
  };
  wireTransport(core, session, session.sendTransport, 'send', sendConnected.resolve);
  wireTransport(core, session, session.recvTransport, 'recv', () => undefined);
  core.session = session;
  log('session %d set up as peer %s', generation, peerId);
  core.updateConnectionState();

  await publishAll(core, session);
  if (core.wantsAudioLevels) await subscribeAudioLevels(core, session);
  if (core.desiredRoom !== null) await join(core, session, core.desiredRoom);
}

/** Asks the server for `audioLevels` pushes in this session. */
export async function subscribeAudioLevels(core: PeerCore, session: Session): Promise<void> {
  core.checkCurrent(session);
  await core.request('subscribeAudioLevels', { enabled: true });
}

/** Tears the session down locally; `notify` fires trackEnded/peerDisconnection. */
export function endSession(core: PeerCore, notify: boolean): void {
  core.generation += 1;
  const session = core.session;
  core.session = null;
  core.currentRoom = null;
  core.available = new Map();
  if (session) {
    for (const [producerId, record] of [...session.consumers]) {
      if (notify) dropConsumer(core, session, producerId, record);
      else record.consumer.close();
    }
    session.sendTransport.close();
    session.recvTransport.close();
  }
  for (const peerId of [...core.peers]) forgetPeer(core, peerId, notify);
}

/** Joins `room`, leaving the current one first. */
export async function join(core: PeerCore, session: Session, room: string): Promise<void> {
  core.checkCurrent(session);
  if (core.currentRoom === room) return;
  if (core.currentRoom !== null) await leave(core, session);
  await core.request('joinRoom', { roomId: room, autoConsume: false });
  core.checkCurrent(session);
  core.currentRoom = room;
  log('joined room %s', room);
}

/** Leaves the current room: its peers and everything we consumed of them go. */
export async function leave(core: PeerCore, session: Session): Promise<void> {
  core.checkCurrent(session);
  if (core.currentRoom === null) return;
  const room = core.currentRoom;
  await core.request('leaveRoom', { roomId: room });
  core.checkCurrent(session);
  core.currentRoom = null;
  core.available = new Map();
  dropAllConsumers(core, session);
  for (const peerId of [...core.peers]) forgetPeer(core, peerId, true);
  log('left room %s', room);
}
