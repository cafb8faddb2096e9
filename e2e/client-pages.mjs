// Helpers of the browser tests that drive our client library through
// e2e/pages/client.html (`window.t`): open a peer page, read what its user
// sees, and wait for media to flow or to stop. Built on harness.mjs.

import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { pollUntil, watchPage } from './harness.mjs';

const READY_DEADLINE_MS = 20_000;

/**
 * Opens client.html in `context`, starts a SimpleMediasoupPeer with
 * `options` and waits until it has an id (and is in `options.roomId`).
 */
export async function openClientPage(context, serverUrl, name, options = {}) {
  const page = await context.newPage();
  const { problems, warnings } = watchPage(page, name);
  await page.goto(`${serverUrl}/client.html`);
  await page.evaluate((options) => window.t.start(options), options);
  const peer = { name, page, problems, warnings, id: null };
  const state = await pollUntil(
    async () => {
      const state = await readClientState(page);
      assertPageHealthy(peer, state);
      return state.id && (options.roomId === undefined || state.roomId === String(options.roomId)) && state;
    },
    { timeoutMs: READY_DEADLINE_MS, what: `page ${name} to connect and join`, describe: () => describePeers([peer]) },
  );
  peer.id = state.id;
  return peer;
}

export function readClientState(page) {
  return page.evaluate(() => window.t.state());
}

export function readClientStats(page) {
  return page.evaluate(() => window.t.stats());
}

/** Calls `peer[method](...args)` in the page; fails the test if it threw. */
export async function call(peer, method, ...args) {
  const error = await peer.page.evaluate(([method, args]) => window.t.call(method, ...args), [method, args]);
  assert.equal(error, null, `page ${peer.name}: ${method}(${args.map((a) => JSON.stringify(a)).join(', ')}) threw`);
}

/** Fails with everything known when the page reported an error. */
export function assertPageHealthy(peer, state) {
  const problems = [...peer.problems, ...(state?.errors ?? []).map((e) => `${peer.name} page error: ${e}`)];
  if (problems.length > 0) assert.fail(`page ${peer.name} reported problems:\n${problems.join('\n')}`);
}

export async function describePeers(peers, server) {
  const parts = [];
  for (const peer of peers) {
    const state = await readClientState(peer.page).catch((error) => `unreadable: ${error.message}`);
    const stats = await readClientStats(peer.page).catch((error) => `unreadable: ${error.message}`);
    parts.push(`page ${peer.name} (${peer.id}) state: ${JSON.stringify(state)}`);
    parts.push(`page ${peer.name} stats: ${JSON.stringify(stats)}`);
    parts.push(...peer.warnings.slice(-5));
  }
  if (server) parts.push(`simplesfu log tail:\n${server.logTail() || '(empty)'}`);
  return parts.join('\n');
}

/** The producer id of `from`'s live track `label` as `receiver` sees it, or undefined. */
export function liveTrack(state, from, label) {
  const entry = Object.entries(state.tracks).find(
    ([, track]) => track.peerId === from.id && track.label === label && !track.ended,
  );
  return entry?.[0];
}

/**
 * Samples what `receiver` gets of `from`'s `label`: {producerId, stats} (stats
 * undefined while the track has not arrived).
 */
export async function sampleTrack(receiver, from, label) {
  const state = await readClientState(receiver.page);
  assertPageHealthy(receiver, state);
  const producerId = liveTrack(state, from, label);
  const stats = producerId ? (await readClientStats(receiver.page))[producerId] : undefined;
  return { producerId, stats };
}

/** The counter that shows media arriving: decoded frames for video, packets for audio. */
export function counterOf(stats) {
  if (!stats) return 0;
  return stats.kind === 'video' ? stats.framesDecoded : stats.packetsReceived;
}

/**
 * Waits until every [receiver, from, label] flow has arrived and its counter
 * (frames decoded / audio packets) rose twice; returns the last samples.
 */
export async function waitForFlows(flows, { timeoutMs = 20_000, describe, what = 'media to flow' } = {}) {
  const first = new Map();
  const rises = new Map();
  const last = new Map();
  await pollUntil(
    async () => {
      let done = true;
      for (const flow of flows) {
        const [receiver, from, label] = flow;
        const { producerId, stats } = await sampleTrack(receiver, from, label);
        const value = counterOf(stats);
        const key = `${receiver.name}<-${from.name}/${label}`;
        const previous = last.get(key);
        last.set(key, { producerId, stats, value });
        if (!first.has(key) && value > 0) first.set(key, value);
        if (previous && value > previous.value && previous.value > 0) rises.set(key, (rises.get(key) ?? 0) + 1);
        if ((rises.get(key) ?? 0) < 2) done = false;
      }
      return done;
    },
    { timeoutMs, intervalMs: 250, what, describe: async () => `${JSON.stringify([...last])}\n${await describe?.()}` },
  );
  return last;
}

/** Asserts `receiver` gets nothing of `from`'s `label` for `ms`. */
export async function assertNoTrack(receiver, from, label, ms) {
  const deadline = Date.now() + ms;
  do {
    const { producerId } = await sampleTrack(receiver, from, label);
    assert.equal(producerId, undefined, `page ${receiver.name} must not receive ${from.name}/${label}`);
    await sleep(250);
  } while (Date.now() < deadline);
}

/**
 * Opens published-client.html (the published 0.0.20 client) in `context`,
 * in `room`. Returns a peer like openClientPage's (its id set by
 * exchangeWithPublished).
 */
export async function openPublishedPage(context, serverUrl, name, room) {
  const published = { name, page: await context.newPage(), id: null };
  Object.assign(published, watchPage(published.page, name));
  await published.page.goto(`${serverUrl}/published-client.html?room=${encodeURIComponent(room)}`);
  return published;
}

/**
 * Both pages publish camera and microphone; waits until each decodes the
 * other's video and receives its audio. Returns waitForFlows' samples.
 */
export async function exchangeWithPublished(published, ours, room, { describe, timeoutMs = 20_000, what }) {
  await published.page.evaluate(() => window.t.publish());
  await ours.page.evaluate(() => window.t.publish({ camera: 'camera', microphone: 'microphone' }));
  const state = await pollUntil(
    async () => {
      const state = await readClientState(published.page);
      if (state.errors.length > 0 || published.problems.length > 0) {
        assert.fail(`the published client failed:\n${[...state.errors, ...published.problems].join('\n')}`);
      }
      return state.id && state.roomId === room && state.producers.length === 2 && state;
    },
    { timeoutMs: 20_000, what: 'the published client to join and produce', describe },
  );
  published.id = state.id;
  return waitForFlows(
    [
      [ours, published, 'camera'],
      [ours, published, 'microphone'],
      [published, ours, 'camera'],
      [published, ours, 'microphone'],
    ],
    { timeoutMs, describe, what },
  );
}
