/**
 * Data: our one data producer (created on the first `send`), the data
 * consumers the server pushes for the other peers' data producers, and the
 * `data` event. Which data producers to ask consumers for is consuming's
 * `requestConsumers`.
 */
import type { types } from 'mediasoup-client';
import type { DataMessage } from './api.js';
import type { PeerCore, Session } from './core.js';
import { SignalingError } from './errors.js';
import { isPlainObject } from './validate.js';

/** The data producer's label; one per peer. */
const DATA_LABEL = 'simplesfu-data';

export interface CreateDataConsumerPush {
  peerId: string;
  dataProducerId: string;
  id: string;
  sctpStreamParameters: types.SctpStreamParameters;
  label?: string;
  protocol?: string;
  appData?: Record<string, unknown>;
}

/** Sends `data` over our data producer, creating it first if need be; rejects when not connected. */
export async function sendData(core: PeerCore, data: DataMessage): Promise<void> {
  const session = core.session;
  if (!session) throw new SignalingError('send', 'disconnected', 'not connected to the server');
  const dataProducer = session.dataProducer ?? (await createDataProducer(core, session));
  if (dataProducer.readyState !== 'open') await waitOpen(dataProducer, core.requestTimeoutMs);
  dataProducer.send(data as string);
}

async function createDataProducer(core: PeerCore, session: Session): Promise<types.DataProducer> {
  const dataProducer = await session.sendTransport.produceData({
    ordered: true,
    label: DATA_LABEL,
    appData: { label: DATA_LABEL },
  });
  core.checkCurrent(session);
  session.dataProducer = dataProducer;
  return dataProducer;
}

/** The `createDataConsumer` push: sets up the data consumer; its messages become `data` events. */
export async function consumeData(core: PeerCore, session: Session, push: CreateDataConsumerPush): Promise<void> {
  if (!isPlainObject(push) || typeof push.dataProducerId !== 'string' || typeof push.peerId !== 'string') {
    throw new Error(`malformed createDataConsumer push: ${JSON.stringify(push)}`);
  }
  const { peerId, dataProducerId, id, sctpStreamParameters, label, protocol } = push;
  if (session.dataConsumers.has(dataProducerId)) return;
  const appData = isPlainObject(push.appData) ? push.appData : {};
  const dataConsumer = await session.recvTransport.consumeData({
    id,
    dataProducerId,
    sctpStreamParameters,
    label,
    protocol,
    appData: { ...appData, peerId },
  });
  session.dataConsumerRequests.delete(dataProducerId);
  if (core.session !== session || session.dataConsumers.has(dataProducerId)) {
    dataConsumer.close();
    return;
  }
  session.dataConsumers.set(dataProducerId, dataConsumer);
  dataConsumer.on('message', (data) => {
    // Data of a peer we disconnected from is dropped here: the protocol has
    // no request to close a data consumer.
    if (core.session === session && core.wants(peerId, false)) core.events.emit('data', { from: peerId, data });
  });
}

/** The `dataConsumerClosed` push (`producerId` names the data producer). */
export function dropDataConsumer(session: Session, dataProducerId: string): void {
  const dataConsumer = session.dataConsumers.get(dataProducerId);
  if (!dataConsumer) return;
  dataConsumer.close();
  session.dataConsumers.delete(dataProducerId);
}

/** Waits for a data producer's channel to open; the queue must never wait forever. */
function waitOpen(dataProducer: types.DataProducer, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const fail = (error: Error) => {
      cleanup();
      reject(error);
    };
    const onOpen = () => {
      cleanup();
      resolve();
    };
    const onClose = () => fail(new Error('the data channel closed before it opened'));
    const timer = setTimeout(
      () => fail(new SignalingError('send', 'timeout', `the data channel did not open within ${timeoutMs} ms`)),
      timeoutMs,
    );
    const cleanup = () => {
      clearTimeout(timer);
      dataProducer.off('open', onOpen);
      dataProducer.off('close', onClose);
      dataProducer.off('transportclose', onClose);
      dataProducer.off('error', fail);
    };
    dataProducer.on('open', onOpen);
    dataProducer.on('close', onClose);
    dataProducer.on('transportclose', onClose);
    dataProducer.on('error', fail);
  });
}
