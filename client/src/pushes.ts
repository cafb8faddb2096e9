/**
 * The server's pushes (docs/PROTOCOL.md "Pushes"), each handed to the part
 * that owns it. A push that cannot be handled is reported, never thrown.
 */
import {
  consume,
  dropConsumer,
  forgetPeer,
  notePeer,
  onAvailableProducers,
  onLayersChanged,
  type CreateConsumerPush,
} from './consuming.js';
import { log, type PeerCore } from './core.js';
import { consumeData, dropDataConsumer, type CreateDataConsumerPush } from './data.js';
import { onLayersWanted } from './publishing.js';
import { onServerShutdown, onSessionPush } from './resume.js';
import { asIdList, isPlainObject } from './validate.js';

export function handlePush(core: PeerCore, message: unknown): void {
  if (core.closed || !isPlainObject(message)) return;
  const { type, data } = message as { type?: unknown; data?: unknown };
  const session = core.session;
  try {
    switch (type) {
      case 'session':
        onSessionPush(core, data);
        break;
      case 'serverShutdown':
        onServerShutdown(core, data);
        break;
      case 'peerConnection':
        for (const peerId of asIdList(data)) notePeer(core, peerId);
        break;
      case 'peerDisconnection':
        for (const peerId of asIdList(data)) forgetPeer(core, peerId, true);
        break;
      case 'availableProducers':
        if (session) onAvailableProducers(core, session, data);
        break;
      case 'createConsumer':
        if (session) {
          consume(core, session, data as CreateConsumerPush).catch((error) =>
            core.reportError(`consuming ${(data as CreateConsumerPush)?.producerId}`, error),
          );
        }
        break;
      case 'createDataConsumer':
        if (session) {
          consumeData(core, session, data as CreateDataConsumerPush).catch((error) =>
            core.reportError(`consuming data ${(data as CreateDataConsumerPush)?.dataProducerId}`, error),
          );
        }
        break;
      case 'activeSpeaker': {
        const peerId = (data as { peerId?: unknown })?.peerId;
        if (typeof peerId === 'string') core.events.emit('activeSpeaker', { peerId });
        break;
      }
      case 'audioLevels': {
        const levels = (Array.isArray(data) ? data : []).filter(
          (l): l is { peerId: string; level: number } =>
            isPlainObject(l) && typeof l.peerId === 'string' && typeof l.level === 'number',
        );
        core.events.emit('audioLevels', { levels: levels.map(({ peerId, level }) => ({ peerId, level })) });
        break;
      }
      case 'consumerLayersChanged':
        if (session) onLayersChanged(core, session, data);
        break;
      case 'producerLayersWanted':
        if (session) onLayersWanted(core, session, data);
        break;
      case 'consumerClosed': {
        const producerId = (data as { producerId?: unknown })?.producerId;
        const record = typeof producerId === 'string' ? session?.consumers.get(producerId) : undefined;
        if (session && record) dropConsumer(core, session, producerId as string, record);
        break;
      }
      case 'dataConsumerClosed': {
        const producerId = (data as { producerId?: unknown })?.producerId;
        if (session && typeof producerId === 'string') dropDataConsumer(session, producerId);
        break;
      }
      default:
        log('ignoring push %s', type);
    }
  } catch (error) {
    core.reportError(`handling ${String(type)}`, error);
  }
}
