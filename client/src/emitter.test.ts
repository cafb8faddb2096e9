import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TypedEmitter } from './emitter.js';

type Events = { ping: { n: number }; pong: string };

test('every listener is called; a throwing or rejecting one is reported, not propagated', async () => {
  const reported: [string, unknown][] = [];
  const emitter = new TypedEmitter<Events>((event, error) => reported.push([String(event), error]));
  const seen: number[] = [];
  emitter.on('ping', () => {
    throw new Error('sync boom');
  });
  emitter.on('ping', async () => {
    throw new Error('async boom');
  });
  emitter.on('ping', ({ n }) => seen.push(n));
  assert.equal(emitter.emit('ping', { n: 7 }), 3);
  assert.deepEqual(seen, [7]);
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(
    reported.map(([event, error]) => [event, (error as Error).message]),
    [
      ['ping', 'sync boom'],
      ['ping', 'async boom'],
    ],
  );
});

test('on returns an unsubscribe function; off and removeAll remove listeners', () => {
  const emitter = new TypedEmitter<Events>(() => assert.fail('no listener throws'));
  const seen: string[] = [];
  const unsubscribe = emitter.on('pong', (text) => seen.push(`a:${text}`));
  const b = (text: string) => seen.push(`b:${text}`);
  emitter.on('pong', b);
  emitter.emit('pong', '1');
  unsubscribe();
  emitter.emit('pong', '2');
  emitter.off('pong', b);
  assert.equal(emitter.emit('pong', '3'), 0);
  emitter.on('pong', b);
  emitter.removeAll();
  assert.equal(emitter.listenerCount('pong'), 0);
  assert.deepEqual(seen, ['a:1', 'b:1', 'b:2']);
});
