// getRouterRtpCapabilities: what mediasoup-client's Device.load receives.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, connect } from './harness.mjs';

test('router RTP capabilities have opus, VP8 with RTX and header extensions', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  const ack = await p.ok('getRouterRtpCapabilities');
  const caps = ack.routerRtpCapabilities;
  assert.ok(Array.isArray(caps.codecs) && Array.isArray(caps.headerExtensions));

  const opus = caps.codecs.find((c) => c.mimeType.toLowerCase() === 'audio/opus');
  assert.ok(opus, 'opus offered');
  assert.equal(opus.kind, 'audio');
  assert.equal(opus.clockRate, 48000);
  assert.equal(opus.channels, 2);
  assert.equal(opus.preferredPayloadType, 100);

  const vp8 = caps.codecs.find((c) => c.mimeType.toLowerCase() === 'video/vp8');
  assert.ok(vp8, 'VP8 offered');
  assert.equal(vp8.kind, 'video');
  assert.equal(vp8.clockRate, 90000);
  assert.equal(vp8.preferredPayloadType, 101);
  for (const fb of ['nack', 'ccm', 'transport-cc']) {
    assert.ok(vp8.rtcpFeedback.some((f) => f.type === fb), `VP8 has ${fb} feedback`);
  }
  const rtx = caps.codecs.find((c) => c.mimeType.toLowerCase() === 'video/rtx' && c.parameters.apt === 101);
  assert.ok(rtx, 'RTX for VP8 offered');
  assert.equal(rtx.preferredPayloadType, 102);

  const uris = caps.headerExtensions.map((e) => e.uri);
  assert.ok(uris.includes('urn:ietf:params:rtp-hdrext:sdes:mid'));
  for (const ext of caps.headerExtensions) {
    assert.ok(['audio', 'video'].includes(ext.kind));
    assert.equal(typeof ext.preferredId, 'number');
  }

  // The published client hands the whole ack to device.load(): the
  // capabilities' own fields are at the top level too.
  assert.deepEqual(ack.codecs, caps.codecs);
  assert.deepEqual(ack.headerExtensions, caps.headerExtensions);
});
