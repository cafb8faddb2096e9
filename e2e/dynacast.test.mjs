// Dynacast (issue 13) with real browsers: a Chromium page publishes a
// three-layer simulcast camera; when the only viewer asks for the lowest
// layer (setPreferredLayers), the server tells the publisher
// (producerLayersWanted) and its browser stops the two upper encodings;
// when the viewer wants the best again, they come back.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pollUntil, useServerAndBrowser } from './harness.mjs';
import { call, describePeers, openClientPage, waitForFlows } from './client-pages.mjs';

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

test('the publisher stops the simulcast layers nobody wants and starts them again when wanted', { timeout: 90_000 }, async (t) => {
  const room = `dynacast-${randomUUID()}`;
  const publisher = await openClientPage(env.browser.context, env.server.url, 'publisher', { roomId: room });
  t.after(() => publisher.page.close());
  await publisher.page.evaluate(
    (encodings) => window.t.publish({ camera: 'camera', encodings, video: { width: 1280, height: 720 } }),
    SIMULCAST,
  );
  const viewer = await openClientPage(env.browser.context, env.server.url, 'viewer', { roomId: room });
  t.after(() => viewer.page.close());
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
