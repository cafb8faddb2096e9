// Restarts heal: three pages in a room (the published 0.0.20 client and two
// of ours) exchange media; the server is stopped (SIGTERM, as a deploy does)
// and a new one started on the same port. Without a reload, every page comes
// back by itself as a new peer and media flows again between all of them.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Cleanup, PAGES_DIR, buildPages, launchBrowser, pollUntil, startServer, watchPage } from './harness.mjs';
import { describePeers, openClientPage, readClientState, waitForFlows } from './client-pages.mjs';

const cleanup = new Cleanup();
after(() => cleanup.run());

/** Waits until the page has an id other than `old` and is in `room`; sets `peer.id`. */
async function rejoined(peer, room, old, describe) {
  const state = await pollUntil(
    async () => {
      const state = await readClientState(peer.page);
      return state.id && state.id !== old && state.roomId === room && state;
    },
    { timeoutMs: 30_000, what: `page ${peer.name} to come back as a new peer`, describe },
  );
  peer.id = state.id;
}

test('after the server restarts, pages of both clients come back by themselves and media flows again', { timeout: 150_000 }, async (t) => {
  await buildPages();
  let server = await startServer({ staticDir: PAGES_DIR });
  cleanup.add('stop simplesfu', () => server.stop());
  const port = new URL(server.url).port;
  const browser = await launchBrowser();
  cleanup.add('close chromium', () => browser.close());
  const room = `restart-${randomUUID()}`;

  const published = { name: 'published', page: await browser.context.newPage(), id: null };
  Object.assign(published, watchPage(published.page, published.name));
  await published.page.goto(`${server.url}/published-client.html?room=${encodeURIComponent(room)}`);
  const ours = await openClientPage(browser.context, server.url, 'ours', { roomId: room });
  const viewer = await openClientPage(browser.context, server.url, 'viewer', { roomId: room });
  const pages = [published, ours, viewer];
  const describe = () => describePeers([ours, viewer], server);
  await published.page.evaluate(() => window.t.publish());
  await ours.page.evaluate(() => window.t.publish({ camera: 'camera', microphone: 'microphone' }));
  await rejoined(published, room, null, describe);
  const flows = [
    [ours, published, 'camera'],
    [viewer, published, 'camera'],
    [published, ours, 'camera'],
    [viewer, ours, 'microphone'],
  ];
  await waitForFlows(flows, { describe, what: 'media before the restart' });

  // The lost connection makes the clients log errors on their way back
  // (requests that failed while the server was away; the published client
  // closes its old producers on the new server, which never had them):
  // keep them as warnings, anything else still fails the test.
  const expected = /socket|transport|connect|ERR_CONNECTION|websocket|net::|server-side producer|no producer|disconnected|Server error/i;
  for (const page of pages) {
    const push = page.problems.push.bind(page.problems);
    page.problems.push = (...items) => {
      page.warnings.push(...items.filter((item) => expected.test(item)));
      return push(...items.filter((item) => !expected.test(item)));
    };
  }
  const before = pages.map((p) => p.id);
  await server.stop();
  const stoppedAt = Date.now();
  server = await startServer({ staticDir: PAGES_DIR, args: ['--http-listen', `127.0.0.1:${port}`] });
  for (const [i, page] of pages.entries()) await rejoined(page, room, before[i], describe);
  await waitForFlows(flows, { timeoutMs: 30_000, describe, what: 'media again after the restart, without a reload' });
  t.diagnostic(`media flowed again ${Date.now() - stoppedAt} ms after the old server stopped`);
  for (const page of pages) assert.deepEqual([...page.problems], [], `page ${page.name} reported no problem besides the lost connection`);
});
