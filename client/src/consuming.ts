/**
 * Consuming: the other peers of our room and what they offer
 * (`availableProducers`), asking the server for consumers of what we want
 * (media and data), setting up the media consumers it pushes on the receive
 * transport and telling the user (`track`, `trackEnded`, `onTrack`), pausing
 * and resuming peers, and receive statistics.
 */
import type { MediaKind, PreferredLayers, RemoteTrackStats, TrackEndedEvent, TrackEvent } from './api.js';
import { isGone, type AvailablePeer, type ConsumerRecord, type PeerCore, type Session } from './core.js';
import type { SignalingError } from './errors.js';
import type { types } from 'mediasoup-client';
import { isPlainObject } from './validate.js';

/** A createConsumer request whose consumer never arrived is asked again after this. */
const CONSUMER_REQUEST_RETRY_MS = 5_000;

export interface CreateConsumerPush {
  peerId: string;
  producerId: string;
  id: string;
  kind: MediaKind;
  rtpParameters: types.RtpParameters;
  appData?: Record<string, unknown>;
}

/** A peer is in the room with us. */
export function notePeer(core: PeerCore, peerId: string): void {
  if (peerId === core.session?.peerId || core.peers.has(peerId)) return;
  core.peers.add(peerId);
  core.events.emit('peerConnection', { peerId });
}

/** A peer left (or we did): its consumers go; `notify` fires peerDisconnection. */
export function forgetPeer(core: PeerCore, peerId: string, notify: boolean): void {
  if (!core.peers.delete(peerId)) return;
  core.available.delete(peerId);
  const session = core.session;
  if (session) {
    for (const [producerId, record] of [...session.consumers]) {
      if (record.peerId === peerId) dropConsumer(core, session, producerId, record);
    }
  }
  if (notify) core.events.emit('peerDisconnection', { peerId });
}

/** The `availableProducers` push: what every peer of the room offers now. */
export function onAvailableProducers(core: PeerCore, session: Session, data: unknown): void {
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
    notePeer(core, peerId);
  }
  core.available = available;
  requestAllConsumers(core, session);
}

/** Asks for what we want of every available peer, without waiting. */
export function requestAllConsumers(core: PeerCore, session: Session): void {
  for (const peerId of core.available.keys()) {
    requestConsumers(core, session, peerId).catch((error) => core.reportError(`consuming peer ${peerId}`, error));
  }
}

/** Asks for consumers of every wanted producer of `peerId` not consumed yet. */
export async function requestConsumers(core: PeerCore, session: Session, peerId: string): Promise<void> {
  const peer = core.available.get(peerId);
  if (!peer || core.session !== session) return;
  const now = Date.now();
  const asked: Promise<unknown>[] = [];
  const ask = (type: string, producerId: string, requests: Map<string, number>) => {
    const since = requests.get(producerId);
    if (since !== undefined && now - since < CONSUMER_REQUEST_RETRY_MS) return;
    requests.set(producerId, now);
    asked.push(
      core.request(type, { producingPeerId: peerId, producerId }).catch((error) => {
        requests.delete(producerId);
        if (!isGone(error)) throw error;
      }),
    );
  };
  for (const [producerId, info] of peer.producers) {
    if (session.consumers.has(producerId) || session.consuming.has(producerId)) continue;
    if (core.wants(peerId, info.broadcast)) ask('createConsumer', producerId, session.consumerRequests);
  }
  if (core.wants(peerId, false)) {
    for (const dataProducerId of peer.dataProducers) {
      if (!session.dataConsumers.has(dataProducerId)) {
        ask('createDataConsumer', dataProducerId, session.dataConsumerRequests);
      }
    }
  }
  await Promise.all(asked);
}

/** The `createConsumer` push: sets up the consumer, resumes it unless its peer is paused, tells the user. */
export async function consume(core: PeerCore, session: Session, push: CreateConsumerPush): Promise<void> {
  if (!isPlainObject(push) || typeof push.producerId !== 'string' || typeof push.peerId !== 'string') {
    throw new Error(`malformed createConsumer push: ${JSON.stringify(push)}`);
  }
  const { peerId, producerId, id, kind, rtpParameters } = push;
  if (session.consumers.has(producerId) || session.consuming.has(producerId)) return; // pushed again
  const appData = isPlainObject(push.appData) ? push.appData : {};
  const broadcast = appData.broadcast === true;
  const label = typeof appData.label === 'string' ? appData.label : '';
  if (!core.wants(peerId, broadcast)) {
    // Asked for before a disconnectFromPeer, or a broadcast of a disconnected peer.
    session.consumerRequests.delete(producerId);
    await core.request('closeConsumer', { producerId }).catch(unlessConsumerGone);
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
    if (core.session !== session) {
      consumer.close();
      return;
    }
    const record: ConsumerRecord = { consumer, peerId, label, broadcast };
    session.consumers.set(producerId, record);
    const preferred = core.preferredLayers.get(layersKey(peerId, label));
    if (preferred && kind === 'video') {
      await requestPreferredLayers(core, producerId, preferred).catch((error) =>
        core.reportError(`setPreferredLayers of ${producerId}`, error),
      );
    }
    // The server creates consumers paused; a paused peer stays so, and a
    // video track no element shows (adaptiveStream).
    const paused = core.pausedPeers.has(peerId) || (kind === 'video' && core.adaptive?.isHidden(peerId, label) === true);
    if (paused) {
      consumer.pause();
    } else {
      await core.request('resumeConsumer', { producerId }).catch((error) => {
        // Cut before the answer: resumed again once the session is.
        if ((error as SignalingError).code !== 'disconnected') throw error;
      });
      if (consumer.closed) return;
      consumer.resume();
    }
    if (kind === 'video') core.adaptive?.refresh(peerId, label);
    const event: TrackEvent = { ...trackEventOf(producerId, record), paused };
    core.events.emit('track', event);
    callLegacyOnTrack(core, event);
  } finally {
    session.consuming.delete(producerId);
    session.consumerRequests.delete(producerId);
  }
}

function callLegacyOnTrack(core: PeerCore, event: TrackEvent): void {
  const onTrack = core.legacyOnTrack();
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
export function dropConsumer(core: PeerCore, session: Session, producerId: string, record: ConsumerRecord): void {
  session.consumers.delete(producerId);
  record.consumer.close();
  const event = trackEventOf(producerId, record);
  core.events.emit('trackEnded', event);
  core.events.emit('trackRemoved', event);
}

/** What `track` and `trackEnded` tell of a consumer's track. */
function trackEventOf(producerId: string, { consumer, peerId, label, broadcast }: ConsumerRecord): TrackEndedEvent {
  return { track: consumer.track, peerId, label, broadcast, kind: consumer.kind as MediaKind, producerId };
}

/** Closes every consumer, media and data, of the session and forgets what was asked for. */
export function dropAllConsumers(core: PeerCore, session: Session): void {
  for (const [producerId, record] of [...session.consumers]) dropConsumer(core, session, producerId, record);
  for (const dataConsumer of session.dataConsumers.values()) dataConsumer.close();
  session.dataConsumers.clear();
  session.consumerRequests.clear();
  session.dataConsumerRequests.clear();
}

/** Closes our consumers of `peerId`, here and on the server (disconnectFromPeer). */
export async function stopConsuming(core: PeerCore, peerId: string): Promise<void> {
  const session = core.session;
  if (!session) return;
  const closing = [...session.consumers].filter(([, record]) => record.peerId === peerId);
  for (const [producerId, record] of closing) dropConsumer(core, session, producerId, record);
  await Promise.all(
    closing.map(([producerId]) =>
      core.request('closeConsumer', { producerId }).catch((error) => {
        if (!isGone(error)) throw error;
      }),
    ),
  );
}

/**
 * After a resume: consumers whose resumeConsumer was lost in the cut are
 * resumed; the others get a fresh key frame.
 */
export async function resumeConsumers(core: PeerCore, session: Session): Promise<void> {
  await Promise.all(
    [...session.consumers].map(async ([producerId, record]) => {
      if (core.pausedPeers.has(record.peerId) || record.consumer.closed || hiddenByAdaptive(core, record)) return;
      await core.request('resumeConsumer', { producerId }).catch(unlessConsumerGone);
    }),
  );
}

/** Pauses or resumes our consumers of `peerId`, on the server, then here. */
export async function setPeerPaused(core: PeerCore, peerId: string, paused: boolean): Promise<void> {
  const session = core.session;
  if (!session) return;
  const records = [...session.consumers.entries()].filter(
    ([, record]) =>
      record.peerId === peerId && record.consumer.paused !== paused && (paused || !hiddenByAdaptive(core, record)),
  );
  await Promise.all(
    records.map(async ([producerId, { consumer }]) => {
      await core.request(paused ? 'pauseConsumer' : 'resumeConsumer', { producerId });
      if (consumer.closed) return;
      if (paused) consumer.pause();
      else consumer.resume();
    }),
  );
}

/** A video consumer that adaptiveStream keeps paused: no element shows its track. */
function hiddenByAdaptive(core: PeerCore, record: ConsumerRecord): boolean {
  return record.consumer.kind === 'video' && core.adaptive?.isHidden(record.peerId, record.label) === true;
}

/**
 * adaptiveStream: pauses our video consumers of `peerId`'s track `label`
 * when no element shows it, on the server, then here; resumes them when one
 * does (unless the user paused the peer).
 */
export async function setTrackHidden(core: PeerCore, peerId: string, label: string, hidden: boolean): Promise<void> {
  const session = core.session;
  if (!session) return;
  if (!hidden && core.pausedPeers.has(peerId)) return;
  const records = [...session.consumers.entries()].filter(
    ([, record]) =>
      record.peerId === peerId &&
      record.label === label &&
      record.consumer.kind === 'video' &&
      record.consumer.paused !== hidden,
  );
  await Promise.all(
    records.map(async ([producerId, { consumer }]) => {
      await core.request(hidden ? 'pauseConsumer' : 'resumeConsumer', { producerId }).catch(unlessConsumerGone);
      if (consumer.closed) return;
      if (hidden) consumer.pause();
      else consumer.resume();
    }),
  );
}

/** The key of `PeerCore.preferredLayers`. */
export function layersKey(peerId: string, label: string): string {
  return `${peerId}\n${label}`;
}

function requestPreferredLayers(core: PeerCore, producerId: string, layers: PreferredLayers): Promise<unknown> {
  const data: Record<string, unknown> = { producerId, spatialLayer: layers.spatial };
  if (layers.temporal !== undefined) data.temporalLayer = layers.temporal;
  return core.request('setConsumerPreferredLayers', data);
}

/** Send the preferred layers of `peerId`'s track `label` to its video consumers now (if any). */
export async function applyPreferredLayers(core: PeerCore, peerId: string, label: string): Promise<void> {
  const session = core.session;
  const layers = core.preferredLayers.get(layersKey(peerId, label));
  if (!session || !layers) return;
  const records = [...session.consumers].filter(
    ([, record]) => record.peerId === peerId && record.label === label && record.consumer.kind === 'video',
  );
  await Promise.all(records.map(([producerId]) => requestPreferredLayers(core, producerId, layers)));
}

/** The `consumerLayersChanged` push: tell the user which consumer it is about. */
export function onLayersChanged(core: PeerCore, session: Session, data: unknown): void {
  if (!isPlainObject(data) || typeof data.producerId !== 'string') return;
  const record = session.consumers.get(data.producerId);
  if (!record) return;
  const layer = (v: unknown) => (Number.isInteger(v) ? (v as number) : null);
  record.layers = { spatialLayer: layer(data.spatialLayer), temporalLayer: layer(data.temporalLayer) };
  core.adaptive?.refresh(record.peerId, record.label);
  core.events.emit('layersChanged', {
    peerId: record.peerId,
    label: record.label,
    producerId: data.producerId,
    ...record.layers,
  });
}

/** Receive statistics of every remote track we consume. */
export async function remoteTrackStats(core: PeerCore): Promise<RemoteTrackStats[]> {
  const session = core.session;
  if (!session) return [];
  return Promise.all(
    [...session.consumers].map(async ([producerId, { consumer, peerId, label, broadcast, layers }]) => {
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
        packetsLost: count('packetsLost'),
        framesDecoded: count('framesDecoded'),
        framesPerSecond: count('framesPerSecond'),
        freezeCount: count('freezeCount'),
        frameWidth: count('frameWidth'),
        frameHeight: count('frameHeight'),
        spatialLayer: layers?.spatialLayer ?? null,
        temporalLayer: layers?.temporalLayer ?? null,
      };
    }),
  );
}

/** For a consumer request that raced with its producer, peer or consumer going away. */
function unlessConsumerGone(error: unknown): void {
  if (!isGone(error) && (error as SignalingError).code !== 'consumer_not_found') throw error;
}
