// Wire compatibility: the published simple-mediasoup-peer-client 0.0.20 from
// npm (unmodified) in one page and our client in another page, in one room
// of the real simplesfu binary, exchange video and audio.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Cleanup, PAGES_DIR, buildPages, launchBrowser, startServer } from './harness.mjs';
import { describePeers, exchangeWithPublished, openClientPage, openPublishedPage } from './client-pages.mjs';

const cleanup = new Cleanup();
after(() => cleanup.run());

test('the published client 0.0.20 and our client exchange video and audio', { timeout: 90_000 }, async (t) => {
  await buildPages();
  const server = await startServer({ staticDir: PAGES_DIR });
  cleanup.add('stop simplesfu', () => server.stop());
  const browser = await launchBrowser();
  cleanup.add('close chromium', () => browser.close());
  const room = `compat-${randomUUID()}`;

  const published = await openPublishedPage(browser.context, server.url, 'published', room);
  const ours = await openClientPage(browser.context, server.url, 'ours', { roomId: room });
  const describe = () => describePeers([published, ours], server);
  const flows = await exchangeWithPublished(published, ours, room, {
    describe,
    what: 'video and audio both ways between the published client and ours',
  });
  for (const [key, { stats }] of flows) {
    t.diagnostic(`${key}: ${stats.kind === 'video' ? `${stats.framesDecoded} frames` : `${stats.packetsReceived} packets`}`);
  }
  const video = flows.get('published<-ours/camera').stats;
  assert.ok(video.frameWidth > 0 && video.frameHeight > 0, 'the published client decodes real frames');
  assert.deepEqual(published.problems, [], 'the published client logged no error');
  assert.deepEqual(ours.problems, []);
});
