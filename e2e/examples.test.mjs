// The examples (examples/, served by the real binary at /, loading the client
// from /simplesfu-client.js) in headless Chromium: every page linked from the
// index loads without console errors and does what it says: video chat pages
// see each other, a broadcast viewer sees the sender, multiple-rooms pages say
// hello, the load test page counts frames. Also: the binary serves exactly the
// committed client bundle.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { Cleanup, launchBrowser, pollUntil, startServer, watchPage } from './harness.mjs';

const EXAMPLES_DIR = fileURLToPath(new URL('../examples/', import.meta.url));
const BUNDLE = fileURLToPath(new URL('../client/bundle/simplesfu-client.js', import.meta.url));
const TEST_TIMEOUT_MS = 60_000;

const cleanup = new Cleanup();
let server;
let browser;
/** Every page opened, for the final console check. */
const opened = [];
after(() => cleanup.run());

before(async () => {
  server = await startServer({ staticDir: EXAMPLES_DIR });
  cleanup.add('stop simplesfu', () => server.stop());
  browser = await launchBrowser();
  cleanup.add('close chromium', () => browser.close());
});

async function open(name, path) {
  const page = await browser.context.newPage();
  const watched = { name, page, ...watchPage(page, name) };
  opened.push(watched);
  await page.goto(`${server.url}${path}`);
  return watched;
}

function assertNoConsoleErrors(pages) {
  const problems = pages.flatMap((p) => p.problems);
  assert.deepEqual(problems, [], 'console errors');
}

const describe = async () => {
  const parts = [];
  for (const { name, page, problems } of opened) {
    if (page.isClosed()) continue;
    const text = await page.evaluate(() => document.body.innerText).catch((e) => `unreadable: ${e.message}`);
    parts.push(`page ${name}: ${JSON.stringify(text.slice(0, 400))} ${problems.join(' | ')}`);
  }
  parts.push(`simplesfu log tail:\n${server.logTail() || '(empty)'}`);
  return parts.join('\n');
};

/** Frames presented by every <video> with a source in `page` (selector-filtered). */
function videoFrames(page, selector) {
  return page.evaluate(
    (selector) =>
      [...document.querySelectorAll(selector)]
        .filter((video) => video.srcObject)
        .map((video) => ({ width: video.videoWidth, frames: video.getVideoPlaybackQuality().totalVideoFrames })),
    selector,
  );
}

/** Waits until `count` videos matching `selector` show frames, and their frame counts rise. */
async function waitForPlayingVideos(page, selector, count, what) {
  let previous = null;
  await pollUntil(
    async () => {
      const videos = await videoFrames(page, selector);
      const ok =
        videos.length >= count &&
        videos.every((v) => v.width > 0 && v.frames > 0) &&
        previous !== null &&
        videos.every((v, i) => v.frames > (previous[i]?.frames ?? Infinity));
      previous = videos;
      return ok;
    },
    { timeoutMs: 20_000, intervalMs: 500, what, describe },
  );
}

test('the binary serves the committed client bundle; the index links the five examples', { timeout: TEST_TIMEOUT_MS }, async () => {
  const response = await fetch(`${server.url}/simplesfu-client.js`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type'), /javascript/);
  assert.ok((await response.text()) === (await readFile(BUNDLE, 'utf8')), 'served bundle = client/bundle/simplesfu-client.js (rebuild the binary?)');

  const index = await open('index', '/');
  const links = await index.page.$$eval('#examples a', (anchors) => anchors.map((a) => a.getAttribute('href')));
  assert.deepEqual(links, ['/video-chat/', '/broadcast/', '/multiple-rooms/', '/load-test/', '/whip-whep/']);
  for (const link of links) {
    const response = await fetch(`${server.url}${link}`);
    assert.equal(response.status, 200, `${link} is served`);
  }
  assertNoConsoleErrors([index]);
});

test('video chat: two pages see each other', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = `chat-${randomUUID()}`;
  const pages = [await open('chat-1', `/video-chat/?room=${room}`), await open('chat-2', `/video-chat/?room=${room}`)];
  for (const { page, name } of pages) {
    await waitForPlayingVideos(page, '.tile:not([data-peer-id="me"]) video', 1, `${name} to show the other's video`);
  }
  assertNoConsoleErrors(pages);
  for (const { page } of pages) await page.close();
});

test('WHIP and WHEP: a page publishes over WHIP, a WHEP page plays it, a video chat page in the room sees it', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = `whip-${randomUUID()}`;
  const publisher = await open('whip-publish', `/whip-whep/?role=publish&room=${room}&label=stage`);
  await pollUntil(async () => (await publisher.page.textContent('#status')) === 'publishing: connected', {
    what: 'the WHIP page to connect',
    describe,
  });
  const player = await open('whep-play', `/whip-whep/?role=play&room=${room}`);
  await pollUntil(async () => (await player.page.textContent('#status')) === 'playing: connected', {
    what: 'the WHEP page to connect',
    describe,
  });
  await waitForPlayingVideos(player.page, '.tile video', 1, 'the WHEP page to play the WHIP publisher');
  const received = await player.page.evaluate(async () => {
    const kinds = {};
    for (const s of (await window.whepPeerConnection.getStats()).values()) {
      if (s.type === 'inbound-rtp') kinds[s.kind] = { packets: s.packetsReceived, frames: s.framesDecoded, width: s.frameWidth };
    }
    return kinds;
  });
  assert.ok(received.audio?.packets > 0, `the WHEP page receives audio: ${JSON.stringify(received)}`);
  assert.ok(received.video?.frames > 0, `and decodes video: ${JSON.stringify(received)}`);
  // Our client, through the video chat example, sees the WHIP peer like any other.
  const chat = await open('chat', `/video-chat/?room=${room}`);
  await waitForPlayingVideos(chat.page, '.tile:not([data-peer-id="me"]) video', 1, 'the video chat page to show the WHIP publisher');
  assertNoConsoleErrors([publisher, player, chat]);
  for (const { page } of [chat, player, publisher]) await page.close();
});

test('broadcast: a viewer sees the sender and publishes nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = `broadcast-${randomUUID()}`;
  const chooser = await open('broadcast-choose', `/broadcast/?room=${room}`);
  assert.equal(await chooser.page.locator('#as-viewer').getAttribute('href'), `?role=viewer&room=${room}`);
  const sender = await open('broadcast-sender', `/broadcast/?role=sender&room=${room}`);
  const viewers = [await open('viewer-1', `/broadcast/?role=viewer&room=${room}`), await open('viewer-2', `/broadcast/?role=viewer&room=${room}`)];
  for (const viewer of viewers) {
    await waitForPlayingVideos(viewer.page, '.tile video', 1, `${viewer.name} to show the broadcast`);
    assert.equal(await viewer.page.locator('.tile').count(), 1, `${viewer.name} shows only the broadcast`);
  }
  await pollUntil(
    async () => /broadcasting to 2 viewer/.test(await sender.page.locator('#status').innerText()),
    { timeoutMs: 10_000, what: 'the sender to count two viewers', describe },
  );
  assertNoConsoleErrors([chooser, sender, ...viewers]);
  for (const { page } of [chooser, sender, ...viewers]) await page.close();
});

test('multiple rooms: pages in one room see each other and say hello; another room sees nothing', { timeout: TEST_TIMEOUT_MS }, async () => {
  const room = `rooms-${randomUUID()}`;
  const first = await open('rooms-1', `/multiple-rooms/?room=${room}`);
  const second = await open('rooms-2', `/multiple-rooms/?room=${room}`);
  const elsewhere = await open('rooms-3', `/multiple-rooms/?room=other-${room}`);
  await waitForPlayingVideos(second.page, '.tile video', 1, 'rooms-2 to show rooms-1');
  // The data producer is created on the first hello: click until it arrives.
  await pollUntil(
    async () => {
      await first.page.click('#hello');
      return /: hello from /.test(await second.page.locator('#log').innerText());
    },
    { timeoutMs: 15_000, intervalMs: 500, what: 'rooms-2 to log the hello of rooms-1', describe },
  );
  // Pause the other peer from its tile, then resume.
  await second.page.click('.tile .pause');
  await pollUntil(async () => (await second.page.locator('.tile .pause').innerText()) === 'Resume', { timeoutMs: 5_000, what: 'pause', describe });
  await second.page.click('.tile .pause');
  await pollUntil(async () => (await second.page.locator('.tile .pause').innerText()) === 'Pause', { timeoutMs: 5_000, what: 'resume', describe });
  assert.equal(await elsewhere.page.locator('.tile').count(), 0, 'the page in another room shows nobody');
  assert.doesNotMatch(await elsewhere.page.locator('#log').innerText(), /hello/);
  assertNoConsoleErrors([first, second, elsewhere]);
  for (const { page } of [first, second, elsewhere]) await page.close();
});

test('load test: three peers of synthetic media receive each other and count it', { timeout: TEST_TIMEOUT_MS }, async () => {
  const page = await open('load-test', `/load-test/?n=3&room=load-${randomUUID()}`);
  await page.page.click('#start');
  const cell = (i) => page.page.locator(`#totals td:nth-child(${i})`).innerText().then(Number);
  let lastFrames = 0;
  await pollUntil(
    async () => {
      const [peers, inRoom, tracks, frames, packets, errors] = await Promise.all([1, 2, 3, 4, 5, 6].map(cell));
      assert.equal(errors, 0, 'the load test page counts no errors');
      const ok = peers === 3 && inRoom === 3 && tracks === 12 && frames > lastFrames && lastFrames > 0 && packets > 0;
      lastFrames = frames;
      return ok;
    },
    { timeoutMs: 25_000, intervalMs: 1_000, what: '3 peers, 12 tracks and rising frame counts', describe },
  );
  await page.page.click('#stop');
  assertNoConsoleErrors([page]);
});

test('no example page logged a console error', () => {
  assertNoConsoleErrors(opened);
});
