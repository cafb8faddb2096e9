import { test } from 'node:test';
import assert from 'node:assert/strict';
import { resolveEncodings, SIMULCAST, SCREEN_SHARE } from './encodings.js';

test('defaults per kind, presets by name, arrays copied', () => {
  assert.deepEqual(resolveEncodings('video', undefined), [{ maxBitrate: 500_000 }]);
  assert.deepEqual(resolveEncodings('audio', undefined), [{ maxBitrate: 64_000 }]);
  const simulcast = resolveEncodings('video', 'simulcast');
  assert.deepEqual(simulcast, SIMULCAST);
  assert.equal(simulcast.length, 3);
  assert.ok(simulcast[0].scaleResolutionDownBy! > simulcast[2].scaleResolutionDownBy!, 'lowest layer first');
  simulcast[0].maxBitrate = 1; // mediasoup-client may write into what it gets
  assert.notEqual(SIMULCAST[0].maxBitrate, 1);
  assert.deepEqual(resolveEncodings('video', 'screenShare'), SCREEN_SHARE);
  const own = [{ maxBitrate: 42 }];
  const resolved = resolveEncodings('video', own);
  assert.deepEqual(resolved, own);
  assert.notEqual(resolved[0], own[0]);
});

test('anything else is a TypeError', () => {
  assert.throws(() => resolveEncodings('video', 'hd' as never), TypeError);
  assert.throws(() => resolveEncodings('video', [] as never), TypeError);
  assert.throws(() => resolveEncodings('video', [1] as never), TypeError);
  assert.throws(() => resolveEncodings('video', 5 as never), TypeError);
});
