import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SerialQueue } from './queue.js';

test('tasks run one at a time, in order, and a failure does not stop the next', async () => {
  const queue = new SerialQueue();
  const events: string[] = [];
  const task = (name: string, ms: number, fail = false) => async () => {
    events.push(`start ${name}`);
    await new Promise((resolve) => setTimeout(resolve, ms));
    events.push(`end ${name}`);
    if (fail) throw new Error(`${name} failed`);
    return name;
  };
  const a = queue.push(task('a', 20));
  const b = queue.push(task('b', 1, true));
  const c = queue.push(task('c', 1));
  assert.equal(queue.pending, 3);
  assert.equal(await a, 'a');
  await assert.rejects(b, /b failed/);
  assert.equal(await c, 'c');
  assert.deepEqual(events, ['start a', 'end a', 'start b', 'end b', 'start c', 'end c']);
  assert.equal(queue.pending, 0);
});

test('a synchronous throw rejects only its own task', async () => {
  const queue = new SerialQueue();
  const failing = queue.push(() => {
    throw new TypeError('bad');
  });
  await assert.rejects(failing, TypeError);
  assert.equal(await queue.push(() => 42), 42);
});
