import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request, socketUrl, type SignalingSocket } from './signaling.js';
import { SignalingError } from './errors.js';

/** A socket whose server answers with `answer(message)` (undefined: never). */
function socketAnswering(answer: (message: unknown) => unknown, connected = true) {
  const listeners = new Map<string, Set<(...args: any[]) => void>>();
  const sent: unknown[] = [];
  const socket: SignalingSocket & { drop(): void } = {
    id: 'me',
    connected,
    on(event, listener) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event)!.add(listener);
    },
    off(event, listener) {
      listeners.get(event)?.delete(listener!);
    },
    emit(_event, message, ack) {
      sent.push(message);
      const reply = answer(message);
      if (reply !== undefined) setImmediate(() => ack(reply));
    },
    drop() {
      for (const listener of listeners.get('disconnect') ?? []) listener('transport close');
    },
  };
  return { socket, sent, listeners };
}

test('a success ack resolves; the message has no data key when there is no data', async () => {
  const { socket, sent } = socketAnswering(() => ({ success: true, id: 'x' }));
  assert.deepEqual(await request(socket, 'getRouterRtpCapabilities', undefined, 1000), { success: true, id: 'x' });
  await request(socket, 'joinRoom', { roomId: 'r' }, 1000);
  assert.deepEqual(sent, [{ type: 'getRouterRtpCapabilities' }, { type: 'joinRoom', data: { roomId: 'r' } }]);
});

test("an error ack rejects with a SignalingError carrying the server's code", async () => {
  const { socket, listeners } = socketAnswering(() => ({ error: { code: 'not_in_room', message: 'join first' } }));
  const error = await request(socket, 'createConsumer', {}, 1000).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof SignalingError);
  assert.equal(error.name, 'SignalingError');
  assert.equal(error.code, 'not_in_room');
  assert.equal(error.request, 'createConsumer');
  assert.match(error.message, /join first/);
  assert.equal(listeners.get('disconnect')?.size ?? 0, 0, 'no listener left behind');
});

test('the published server style {error: "text"} and odd acks are errors too', async () => {
  const text = socketAnswering(() => ({ error: 'Internal server error: boom' }));
  await assert.rejects(request(text.socket, 'produce', {}, 1000), { code: 'server_error', message: /boom/ });
  const nothing = socketAnswering(() => null);
  await assert.rejects(request(nothing.socket, 'produce', {}, 1000), { code: 'invalid_response' });
});

test('no ack in time: timeout; not connected or dropped: disconnected', async () => {
  const silent = socketAnswering(() => undefined);
  await assert.rejects(request(silent.socket, 'joinRoom', {}, 20), { name: 'SignalingError', code: 'timeout' });
  const offline = socketAnswering(() => ({ success: true }), false);
  await assert.rejects(request(offline.socket, 'joinRoom', {}, 1000), { code: 'disconnected' });
  assert.equal(offline.sent.length, 0, 'nothing is sent on a disconnected socket');
  const dropping = socketAnswering(() => undefined);
  const pending = request(dropping.socket, 'joinRoom', {}, 5000);
  dropping.socket.drop();
  await assert.rejects(pending, { code: 'disconnected' });
});

test('socketUrl: the page origin by default, url and port combined otherwise', () => {
  const page = { protocol: 'https:', hostname: 'example.org', port: '8443' };
  assert.equal(socketUrl({}, page), undefined);
  assert.equal(socketUrl({ port: 3000 }, page), 'https://example.org:3000');
  assert.equal(socketUrl({ url: 'sfu.example.org', port: '4000' }, page), 'https://sfu.example.org:4000');
  assert.equal(socketUrl({ url: 'http://10.0.0.1:5000' }, page), 'http://10.0.0.1:5000');
  assert.equal(socketUrl({ url: 'http://10.0.0.1:5000', port: 6000 }, page), 'http://10.0.0.1:6000');
  assert.equal(socketUrl({ url: 'localhost', port: 3000 }, undefined), 'http://localhost:3000');
});
