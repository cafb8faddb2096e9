import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { types } from 'mediasoup-client';
import { chooseSpatialLayer, learnTopHeight, spatialLayerCount } from './adaptive.js';
import { SimpleMediasoupPeer } from './peer.js';

test('the layer count comes from the consumer scalability mode', () => {
  const params = (scalabilityMode?: string) => ({ codecs: [], encodings: [{ scalabilityMode }] }) as types.RtpParameters;
  assert.equal(spatialLayerCount(params('L3T3')), 3);
  assert.equal(spatialLayerCount(params('S2T1')), 2);
  assert.equal(spatialLayerCount(params('L1T3')), 1);
  assert.equal(spatialLayerCount(params(undefined)), 1, 'no simulcast');
  assert.equal(spatialLayerCount(params('L99T3')), 1, 'nonsense is one layer');
  assert.equal(spatialLayerCount(undefined), 1);
});

test('the lowest layer at least as tall as the element, the top when unknown', () => {
  // Layers of 180, 360 and 720 rows.
  assert.equal(chooseSpatialLayer(720, 90, 3), 0, 'a thumbnail');
  assert.equal(chooseSpatialLayer(720, 180, 3), 0);
  assert.equal(chooseSpatialLayer(720, 210, 3), 1, 'taller than the low layer by more than a tenth');
  assert.equal(chooseSpatialLayer(720, 390, 3), 1, 'within a tenth of the middle layer');
  assert.equal(chooseSpatialLayer(720, 500, 3), 2);
  assert.equal(chooseSpatialLayer(720, 2000, 3), 2, 'never above the top');
  assert.equal(chooseSpatialLayer(0, 90, 3), 2, 'the top until a frame tells its height');
  assert.equal(chooseSpatialLayer(720, 90, 1), 0, 'one layer');
});

test('adaptiveStream is checked as an option and needs browser observers', () => {
  assert.throws(() => new SimpleMediasoupPeer({ adaptiveStream: 'yes' as unknown as boolean }), /adaptiveStream must be a boolean/);
  assert.throws(() => new SimpleMediasoupPeer({ adaptiveStream: true }), /needs ResizeObserver/);
});

test('the top layer height is learned from a frame height and layer that agreed for half a second', () => {
  // The server reports S0 while the element still shows the 720-row frames of S2.
  let step = learnTopHeight(null, 720, 0, 3, 1000);
  assert.equal(step.topHeight, undefined, 'not at first sight');
  assert.equal(step.recheckInMs, 500);
  // The low layer's frames arrive: a new sample, still nothing learned (720 x 4 was wrong).
  step = learnTopHeight(step.sample, 180, 0, 3, 1100);
  assert.equal(step.topHeight, undefined);
  step = learnTopHeight(step.sample, 180, 0, 3, 1400);
  assert.equal(step.topHeight, undefined, 'held 300 ms only');
  assert.equal(step.recheckInMs, 200);
  step = learnTopHeight(step.sample, 180, 0, 3, 1600);
  assert.equal(step.topHeight, 720, '180 rows of the lowest of three layers: a 720-row top');
  assert.deepEqual(learnTopHeight(step.sample, 0, 0, 3, 2000), { sample: step.sample }, 'no frame yet: nothing');
  assert.deepEqual(learnTopHeight(null, 360, null, 3, 2000), { sample: null }, 'no layer report: nothing');
});
