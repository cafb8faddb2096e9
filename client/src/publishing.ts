/**
 * Publishing: turns the tracks the user added (`PeerCore.tracks`) into
 * producers on the session's send transport, switches or replaces them when
 * the user adds to a used label, and closes them here and on the server.
 */
import { isGone, log, StaleSession, type PeerCore, type Session } from './core.js';
import { isPlainObject } from './validate.js';

/** Publishes (or switches, or replaces) the producer of `label` as the user last asked. */
export async function publish(core: PeerCore, session: Session, label: string): Promise<void> {
  core.checkCurrent(session);
  const desired = core.tracks.get(label);
  if (!desired) return;
  const encodingsKey = JSON.stringify(desired.encodings);
  const existing = session.producers.get(label);
  if (existing && !existing.producer.closed) {
    const producer = existing.producer;
    if (
      producer.kind === desired.track.kind &&
      producer.appData.broadcast === desired.broadcast &&
      existing.encodingsKey === encodingsKey
    ) {
      if (producer.track !== desired.track) await producer.replaceTrack({ track: desired.track });
      return;
    }
    await unpublish(core, session, label);
  }
  const video = desired.track.kind === 'video';
  const producer = await session.sendTransport.produce({
    track: desired.track,
    encodings: desired.encodings.map((encoding) => ({ ...encoding })),
    codecOptions: video ? { videoGoogleStartBitrate: 1000 } : undefined,
    stopTracks: false,
    appData: { label, broadcast: desired.broadcast },
  });
  if (core.session !== session) {
    producer.close();
    throw new StaleSession('the connection was reset');
  }
  session.producers.set(label, { producer, encodingsKey });
  producer.on('trackended', () => {
    // The user's track ended (camera unplugged, screen share stopped).
    if (core.tracks.get(label)?.track !== producer.track || core.closed) return;
    removeTrack(core, label).catch((error) => core.reportError(`removing ended track "${label}"`, error));
  });
  log('producing %s as %s', label, producer.id);
}

/**
 * Publishes every track the user added (on a new session or transport, or
 * after a resume); a track that fails is reported and does not stop the others.
 */
export async function publishAll(core: PeerCore, session: Session): Promise<void> {
  for (const label of [...core.tracks.keys()]) {
    try {
      await publish(core, session, label);
    } catch (error) {
      core.checkCurrent(session);
      core.reportError(`publishing "${label}"`, error);
    }
  }
}

/** Stops publishing `label`, now or, while the socket is away, once it is back. */
export function removeTrack(core: PeerCore, label: string): Promise<void> {
  core.tracks.delete(label);
  return core.whenConnected((session) => unpublish(core, session, label));
}

/** Closes the producer of `label`, here and on the server. */
export async function unpublish(core: PeerCore, session: Session, label: string): Promise<void> {
  const record = session.producers.get(label);
  if (!record) return;
  session.producers.delete(label);
  record.producer.close();
  try {
    await core.request('closeProducer', { producerId: record.producer.id });
  } catch (error) {
    if (!isGone(error)) throw error;
  }
}

/**
 * The `producerLayersWanted` push (dynacast): no consumer wants the
 * simulcast layers of this producer above `maxSpatialLayer`, so the browser
 * stops encoding and sending them (mediasoup-client's `setMaxSpatialLayer`);
 * a later push brings them back.
 */
export function onLayersWanted(core: PeerCore, session: Session, data: unknown): void {
  if (!isPlainObject(data) || typeof data.producerId !== 'string') return;
  const wanted = data.maxSpatialLayer;
  if (typeof wanted !== 'number' || !Number.isInteger(wanted) || wanted < 0) return;
  const record = [...session.producers.values()].find(({ producer }) => producer.id === data.producerId);
  const producer = record?.producer;
  if (!producer || producer.closed || producer.kind !== 'video') return;
  const layers = producer.rtpParameters.encodings?.length ?? 1;
  if (layers <= 1) return;
  const layer = Math.min(wanted, layers - 1);
  if (producer.maxSpatialLayer === layer) return;
  log('layers wanted of %s: up to %d', producer.id, layer);
  producer.setMaxSpatialLayer(layer).catch((error: unknown) => {
    if (!producer.closed && core.session === session) core.reportError(`limiting the layers of ${producer.id}`, error);
  });
}
