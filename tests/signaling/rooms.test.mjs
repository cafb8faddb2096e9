// Rooms as clients see them: joinRoom/leaveRoom acks, peerConnection and
// peerDisconnection pushes, availableProducers to every member, and cleanup
// on disconnect. None of this needs the media engine.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect } from './harness.mjs';

test('joining a room announces peers both ways', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const c = await connect(url, t);

  assert.deepEqual(await a.ok('joinRoom', { roomId: 'r1' }), { success: true });
  await b.ok('joinRoom', { roomId: 'r1' });
  assert.deepEqual(await a.waitForPush('peerConnection'), [b.id]);
  assert.deepEqual(await b.waitForPush('peerConnection'), [a.id]);

  await c.ok('joinRoom', { roomId: 'r1' });
  assert.deepEqual(await c.waitForPush('peerConnection'), [a.id, b.id]);
  await a.waitForPush('peerConnection', (ids) => ids.includes(c.id));
  await b.waitForPush('peerConnection', (ids) => ids.includes(c.id));
  assert.deepEqual(a.received('peerConnection', (ids) => ids.includes(a.id)), [], 'never announced to itself');
});

test('availableProducers reaches every member and lists every member', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'r2' });
  await b.ok('joinRoom', { roomId: 'r2' });
  const both = (data) => data[a.id] && data[b.id];
  for (const peer of [a, b]) {
    const data = await peer.waitForPush('availableProducers', both);
    assert.deepEqual(data[a.id], { producers: {}, dataProducers: {} });
    assert.deepEqual(data[b.id], { producers: {}, dataProducers: {} });
    assert.equal(Object.keys(data).length, 2);
  }
});

test('availableProducers is resent periodically', async (t) => {
  const { url } = await startServer(t, { args: ['--available-producers-interval-ms', '100'] });
  const a = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'tick' });
  await a.waitForPush('availableProducers');
  a.clearPushes();
  const again = await a.waitForPush('availableProducers', () => true, 2000);
  assert.deepEqual(Object.keys(again), [a.id]);
});

test('room ids may be numbers (taken as their decimal text)', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 7 });
  await b.ok('joinRoom', { roomId: '7' });
  assert.deepEqual(await b.waitForPush('peerConnection'), [a.id]);
});

test('leaving tells the leaver and the rest of the room', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const c = await connect(url, t);
  for (const p of [a, b, c]) await p.ok('joinRoom', { roomId: 'r3' });

  await a.ok('leaveRoom', { roomId: 'r3' });
  assert.deepEqual(await a.waitForPush('peerDisconnection'), [b.id, c.id]);
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [a.id]);
  assert.deepEqual(await c.waitForPush('peerDisconnection'), [a.id]);
  const remaining = await b.waitForPush('availableProducers', (d) => !d[a.id] && d[c.id]);
  assert.deepEqual(Object.keys(remaining).sort(), [b.id, c.id].sort());

  // Leaving again: the peer is in no room.
  await a.fails('leaveRoom', { roomId: 'r3' }, 'not_in_room');
});

test('leaveRoom leaves the current room whatever roomId says', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'cur' });
  await b.ok('joinRoom', { roomId: 'cur' });
  await a.ok('leaveRoom', { roomId: 'some-other-room' });
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [a.id]);
});

test('joining another room leaves the first one', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  const c = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'x' });
  await b.ok('joinRoom', { roomId: 'x' });
  await c.ok('joinRoom', { roomId: 'y' });

  await a.ok('joinRoom', { roomId: 'y' });
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [a.id]);
  assert.deepEqual(await a.waitForPush('peerDisconnection'), [b.id]);
  assert.deepEqual(await a.waitForPush('peerConnection', (ids) => ids.includes(c.id)), [c.id]);
  assert.deepEqual(await c.waitForPush('peerConnection'), [a.id]);
  const inY = await c.waitForPush('availableProducers', (d) => d[a.id]);
  assert.deepEqual(Object.keys(inY).sort(), [a.id, c.id].sort());
});

test('joining the room one is in already changes nothing', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'same' });
  await b.ok('joinRoom', { roomId: 'same' });
  await b.waitForPush('peerConnection');
  b.clearPushes();
  await a.ok('joinRoom', { roomId: 'same' });
  await b.noPush('peerDisconnection');
  await b.noPush('peerConnection');
});

test('a disconnecting peer leaves its room', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'bye' });
  await b.ok('joinRoom', { roomId: 'bye' });
  const aId = a.id;
  a.close();
  assert.deepEqual(await b.waitForPush('peerDisconnection'), [aId]);
  const after = await b.waitForPush('availableProducers', (d) => !d[aId]);
  assert.deepEqual(Object.keys(after), [b.id]);
});

test('rooms are separate', async (t) => {
  const { url } = await startServer(t);
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'one' });
  await b.ok('joinRoom', { roomId: 'two' });
  await a.noPush('peerConnection');
  const data = await a.waitForPush('availableProducers');
  assert.deepEqual(Object.keys(data), [a.id]);
});
