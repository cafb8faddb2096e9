// Reconnection without losing identity (issue 6), with our client library in
// headless Chromium against the real binary: a cut socket resumes the
// session (same peer id, the others see nothing, video flows again); a page
// gone longer than the grace period disappears for everyone; an ICE restart
// after the network path breaks brings media back. One server (short grace
// period) and one browser for the file.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { pollUntil, useServerAndBrowser } from './harness.mjs';
import { counterOf, describePeers, openClientPage, readClientState, sampleTrack, waitForFlows } from './client-pages.mjs';

const TEST_TIMEOUT_MS = 90_000;
const GRACE_MS = 4_000;

const env = useServerAndBrowser({ args: ['--resume-grace-ms', String(GRACE_MS)] });

const room = `resume-${randomUUID()}`;
let a;
let b;
const describe = () => describePeers([a, b].filter(Boolean), env.server);

const eventsOf = (state, name) => state.events.filter(([event]) => event === name).map(([, value]) => value);

/** Waits until `receiver`'s decoded frames of `from`'s camera rise past what they were now. */
async function videoFlowsAgain(receiver, from, what, timeoutMs = 15_000) {
  const start = counterOf((await sampleTrack(receiver, from, 'camera')).stats);
  let last = start;
  await pollUntil(
    async () => {
      last = counterOf((await sampleTrack(receiver, from, 'camera')).stats);
      return last > start + 10;
    },
    { timeoutMs, intervalMs: 100, what, describe: async () => `frames ${start} -> ${last}\n${await describe()}` },
  );
}

test('two pages exchange video', { timeout: TEST_TIMEOUT_MS }, async () => {
  a = await openClientPage(env.browser.context, env.server.url, 'A', { roomId: room });
  b = await openClientPage(env.browser.context, env.server.url, 'B', { roomId: room });
  for (const peer of [a, b]) await peer.page.evaluate(() => window.t.publish({ camera: 'camera' }));
  await waitForFlows([[a, b, 'camera'], [b, a, 'camera']], { describe, what: 'video between A and B' });
});

test('a page whose socket is cut resumes: same peer id, the other page sees nothing, its video flows again', { timeout: TEST_TIMEOUT_MS }, async () => {
  const before = await readClientState(b.page);
  const requestsBefore = (await readClientState(a.page)).requests.length;
  await a.page.evaluate(() => window.t.cutSocket());
  const cutAt = Date.now();
  await pollUntil(
    async () => {
      const state = await readClientState(a.page);
      return eventsOf(state, 'connectionStateChange').slice(-2).join() === 'reconnecting,connected' && state;
    },
    { timeoutMs: 10_000, what: 'A to reconnect', describe },
  );
  const state = await readClientState(a.page);
  assert.equal(state.id, a.id, 'A keeps its peer id');
  assert.deepEqual(state.errors, []);
  const sent = state.requests.slice(requestsBefore);
  for (const type of ['createWebRtcTransport', 'produce', 'joinRoom', 'getRouterRtpCapabilities']) {
    assert.ok(!sent.includes(type), `no ${type} after a resume (sent: ${sent})`);
  }
  // Its video reaches B again (it never really stopped: media does not need the socket).
  await videoFlowsAgain(b, a, 'B to decode A again after the resume');
  const took = Date.now() - cutAt;
  // B saw no one leave, no one new, no track end.
  const after = await readClientState(b.page);
  assert.deepEqual(eventsOf(after, 'peerDisconnection'), eventsOf(before, 'peerDisconnection'));
  assert.deepEqual(eventsOf(after, 'peerConnection'), [a.id]);
  assert.deepEqual(eventsOf(after, 'trackEnded'), []);
  assert.deepEqual(after.peers, [a.id]);
  // And A still gets B's video on the same consumer.
  assert.deepEqual(eventsOf(state, 'track'), [`${b.id}/camera`]);
  await videoFlowsAgain(a, b, 'A to decode B after the resume');
  assert.ok(took < 10_000, `resumed and flowing after ${took} ms`);
});

test('ICE restart after the network path breaks: the page comes back connected, same id, video flows', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  if (process.getuid?.() !== 0) {
    t.skip('needs root in a private network namespace (scripts/test runs `unshare -n`)');
    return;
  }
  const initial = await readClientState(a.page);
  const eventsBefore = eventsOf(initial, 'connectionStateChange').length;
  const requestsBefore = initial.requests.length;
  // Every path breaks, socket.io and ICE alike; playwright talks over a pipe.
  execFileSync('ip', ['link', 'set', 'lo', 'down']);
  try {
    // Long enough for the browser to see ICE `disconnected`.
    await pollUntil(
      async () => eventsOf(await readClientState(a.page), 'connectionStateChange').length > eventsBefore,
      { timeoutMs: 15_000, what: 'A to notice the broken path', describe },
    );
  } finally {
    execFileSync('ip', ['link', 'set', 'lo', 'up']);
  }
  await pollUntil(async () => (await readClientState(a.page)).connectionState === 'connected', {
    timeoutMs: 30_000,
    what: 'A to be connected again',
    describe,
  });
  const state = await readClientState(a.page);
  assert.ok(eventsOf(state, 'connectionStateChange').slice(eventsBefore).includes('reconnecting'));
  assert.equal(state.id, a.id, 'A keeps its peer id');
  const sent = state.requests.slice(requestsBefore);
  assert.ok(sent.includes('restartIce'), `ICE was restarted (sent: ${sent})`);
  assert.ok(!sent.includes('produce'), `no re-produce (sent: ${sent})`);
  await videoFlowsAgain(b, a, 'B to decode A after the ICE restart', 30_000);
  await videoFlowsAgain(a, b, 'A to decode B after the ICE restart', 30_000);
  t.diagnostic(`A's states: ${eventsOf(state, 'connectionStateChange').join(' ')}; requests: ${sent.join(' ')}`);
});

test('a page gone longer than the grace period disappears for everyone', { timeout: TEST_TIMEOUT_MS }, async () => {
  const goneId = a.id;
  const closedAt = Date.now();
  // Closing the tab without socket.disconnect() counts as a drop.
  await a.page.close({ runBeforeUnload: false });
  await sleep(GRACE_MS / 2);
  let state = await readClientState(b.page);
  assert.deepEqual(eventsOf(state, 'peerDisconnection'), [], 'still there within the grace period');
  state = await pollUntil(
    async () => {
      const state = await readClientState(b.page);
      return eventsOf(state, 'peerDisconnection').includes(goneId) && eventsOf(state, 'trackEnded').length > 0 && state;
    },
    { timeoutMs: GRACE_MS + 10_000, what: 'B to see A gone', describe: () => describePeers([b], env.server) },
  );
  const took = Date.now() - closedAt;
  assert.ok(took >= GRACE_MS - 500, `gone after the grace period (${took} ms)`);
  assert.deepEqual(eventsOf(state, 'trackEnded'), [`${goneId}/camera`]);
  assert.deepEqual(state.peers, []);
  a = null;
});
