// Dynacast (issue 13) with real browsers: a Chromium page publishes a
// three-layer simulcast camera; when the only viewer asks for the lowest
// layer (setPreferredLayers), the server tells the publisher
// (producerLayersWanted) and its browser stops the two upper encodings;
// when the viewer wants the best again, they come back. The same with the
// client's adaptiveStream option, where the size and visibility of the
// viewer's <video> element ask for the layers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pollUntil, useServerAndBrowser } from './harness.mjs';
import { call, describePeers, liveTrack, openClientPage, readClientState, readClientStats, waitForFlows } from './client-pages.mjs';

const env = useServerAndBrowser();

const SIMULCAST = [
  { scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { scaleResolutionDownBy: 1, maxBitrate: 1_500_000 },
];

/** The publisher's camera sender: which encodings are on, and their bytes sent. */
async function camera(page) {
  const senders = await page.evaluate(() => window.t.videoSenders());
  assert.equal(senders.length, 1, `one video sender: ${JSON.stringify(senders)}`);
  return senders[0];
}

/** A fresh room with a page publishing the 1280x720 simulcast camera and a viewer page (`viewerOptions` for its peer). */
async function publisherAndViewer(t, prefix, viewerOptions = {}) {
  const room = `${prefix}-${randomUUID()}`;
  const publisher = await openClientPage(env.browser.context, env.server.url, 'publisher', { roomId: room });
  t.after(() => publisher.page.close());
  await publisher.page.evaluate(
    (encodings) => window.t.publish({ camera: 'camera', encodings, video: { width: 1280, height: 720 } }),
    SIMULCAST,
  );
  const viewer = await openClientPage(env.browser.context, env.server.url, 'viewer', { roomId: room, ...viewerOptions });
  t.after(() => viewer.page.close());
  return { publisher, viewer };
}

test('the publisher stops the simulcast layers nobody wants and starts them again when wanted', { timeout: 90_000 }, async (t) => {
  const { publisher, viewer } = await publisherAndViewer(t, 'dynacast');
  const describe = async () => `${await describePeers([viewer, publisher], env.server)}\npublisher's camera: ${JSON.stringify(await camera(publisher.page))}`;
  await waitForFlows([[viewer, publisher, 'camera']], { describe, what: 'the viewer to receive the camera' });
  assert.deepEqual((await camera(publisher.page)).active, [true, true, true], 'all three layers on while the viewer wants the best');

  await call(viewer, 'setPreferredLayers', publisher.id, 'camera', { spatial: 0 });
  const off = Date.now();
  await pollUntil(async () => JSON.stringify((await camera(publisher.page)).active) === '[true,false,false]', {
    timeoutMs: 10_000,
    what: 'the publisher to turn its two upper layers off',
    describe,
  });
  t.diagnostic(`upper layers off ${Date.now() - off} ms after the viewer asked for the lowest`);
  // Off means not sent: the upper encodings' bytes stop growing, the lowest goes on.
  const before = await camera(publisher.page);
  await sleep(2000);
  const after = await camera(publisher.page);
  assert.ok(after.bytesSent[0] > before.bytesSent[0], 'the lowest layer is still sent');
  assert.ok(after.bytesSent[2] - before.bytesSent[2] < 2000, `the top layer is not: ${after.bytesSent[2] - before.bytesSent[2]} bytes in 2 s`);
  await waitForFlows([[viewer, publisher, 'camera']], { describe, what: 'the viewer to keep receiving the lowest layer' });

  await call(viewer, 'setPreferredLayers', publisher.id, 'camera', { spatial: 2 });
  const on = Date.now();
  await pollUntil(async () => JSON.stringify((await camera(publisher.page)).active) === '[true,true,true]', {
    timeoutMs: 5_000,
    what: 'the publisher to turn its upper layers on again',
    describe,
  });
  t.diagnostic(`upper layers on again ${Date.now() - on} ms after the viewer wanted the best`);
});

test('adaptiveStream: a thumbnail gets the low layer, a large element the top, a hidden one nothing', { timeout: 120_000 }, async (t) => {
  const { publisher, viewer } = await publisherAndViewer(t, 'adaptive', { adaptiveStream: true });
  await waitForFlows([[viewer, publisher, 'camera']], { what: 'the viewer to receive the camera', describe: () => describePeers([viewer, publisher], env.server) });
  const producerId = liveTrack(await readClientState(viewer.page), publisher, 'camera');
  const received = async () => (await readClientStats(viewer.page))[producerId];
  const describe = async () =>
    `${await describePeers([viewer, publisher], env.server)}\nviewer's camera: ${JSON.stringify(await received())}\npublisher's camera: ${JSON.stringify(await camera(publisher.page))}`;
  const show = (size) => viewer.page.evaluate(([id, size]) => window.t.showRemote(id, size), [producerId, size]);
  /** Waits until the viewer decodes `width`-wide frames of the layer the server says, and the publisher sends `active`. */
  const until = async (width, spatialLayer, active, what) => {
    const started = Date.now();
    await pollUntil(
      async () => {
        const stats = await received();
        const sender = await camera(publisher.page);
        return stats.frameWidth === width && stats.spatialLayer === spatialLayer && JSON.stringify(sender.active) === JSON.stringify(active);
      },
      { timeoutMs: 20_000, what, describe },
    );
    return Date.now() - started;
  };

  // A 160x90 thumbnail: the low layer (320x180); nobody wants more, so the publisher stops the others.
  await show({ width: 160, height: 90 });
  const thumb = await until(320, 0, [true, false, false], 'the thumbnail to get the low layer only');
  t.diagnostic(`thumbnail: the low layer after ${thumb} ms`);
  // 1280x720: the top layer, and the publisher sends every layer again.
  await show({ width: 1280, height: 720 });
  const large = await until(1280, 2, [true, true, true], 'the large element to get the top layer');
  t.diagnostic(`large: the top layer after ${large} ms`);

  // Hidden: the consumer is paused, no frames come; the publisher keeps only the lowest layer.
  await show(null);
  await pollUntil(async () => (await received()).paused === true, { timeoutMs: 5_000, what: 'the hidden track to be paused', describe });
  await pollUntil(async () => JSON.stringify((await camera(publisher.page)).active) === '[true,false,false]', {
    timeoutMs: 10_000,
    what: 'the publisher to stop the layers nobody watches',
    describe,
  });
  const before = await received();
  await sleep(2000);
  const after = await received();
  assert.ok(after.framesDecoded - before.framesDecoded <= 1, `no frames while hidden: ${after.framesDecoded - before.framesDecoded} in 2 s`);
  assert.ok(after.bytesReceived - before.bytesReceived < 2000, `no video bytes while hidden: ${after.bytesReceived - before.bytesReceived} in 2 s`);

  // Shown again at 640x360: frames again, on the middle layer.
  await show({ width: 640, height: 360 });
  const again = await until(640, 1, [true, true, false], 'the track shown again to play the middle layer');
  t.diagnostic(`shown again: the middle layer after ${again} ms`);
  const playing = await received();
  await sleep(2000);
  assert.ok((await received()).framesDecoded - playing.framesDecoded >= 10, 'frames keep coming once shown');
});
