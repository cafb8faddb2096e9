// Firefox with the server's default address settings: a Firefox ESR page
// running our client and a Chromium page running the published 0.0.20
// client, in one room of the real simplesfu binary started without
// --rtc-listen-ip or --announced-ip, exchange video and audio both ways.
// Firefox ignores loopback candidates, so this passes only when the server
// announces the machine's other addresses by default (scripts/test gives the
// test's network namespace a dummy interface with one).

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Cleanup, PAGES_DIR, buildPages, launchBrowser, launchFirefox, startServer } from './harness.mjs';
import { describePeers, exchangeWithPublished, openClientPage, openPublishedPage } from './client-pages.mjs';

const cleanup = new Cleanup();
after(() => cleanup.run());

test('Firefox (our client) and Chromium (the published client) exchange video and audio with the default addresses', { timeout: 120_000 }, async (t) => {
  await buildPages();
  const server = await startServer({ staticDir: PAGES_DIR, defaultAddresses: true });
  cleanup.add('stop simplesfu', () => server.stop());
  const [chromium, firefox] = await Promise.all([launchBrowser(), launchFirefox()]);
  cleanup.add('close chromium', () => chromium.close());
  cleanup.add('close firefox', () => firefox.close());
  const room = `firefox-${randomUUID()}`;

  const published = await openPublishedPage(chromium.context, server.url, 'published-chromium', room);
  const ours = await openClientPage(firefox.context, server.url, 'ours-firefox', { roomId: room });
  const describe = () => describePeers([published, ours], server);
  const flows = await exchangeWithPublished(published, ours, room, {
    describe,
    timeoutMs: 30_000,
    what: 'video and audio both ways between Firefox and Chromium',
  });
  for (const [key, { stats }] of flows) {
    t.diagnostic(`${key}: ${stats.kind === 'video' ? `${stats.framesDecoded} frames` : `${stats.packetsReceived} packets`}`);
  }
  const inFirefox = flows.get('ours-firefox<-published-chromium/camera').stats;
  assert.ok(inFirefox.framesDecoded > 0 && inFirefox.frameWidth > 0, 'Firefox decodes real frames');
  const inChromium = flows.get('published-chromium<-ours-firefox/camera').stats;
  assert.ok(inChromium.framesDecoded > 0 && inChromium.frameWidth > 0, 'Chromium decodes the frames Firefox sends');
  assert.deepEqual(published.problems, [], 'the published client logged no error');
  assert.deepEqual(ours.problems, [], 'our client in Firefox logged no error');
});
