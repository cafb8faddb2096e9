// Our client library (SimpleMediasoupPeer, from client/src) in headless
// Chromium against the real simplesfu binary. One server and one browser for
// the whole file; each test asserts what a user of the library sees: remote
// tracks arriving, frames decoded and audio packets rising, events fired.
// The tests run in order and build on each other's pages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { pollUntil, useServerAndBrowser } from './harness.mjs';
import {
  assertNoTrack,
  call,
  counterOf,
  describePeers,
  openClientPage,
  readClientState,
  sampleTrack,
  waitForFlows,
} from './client-pages.mjs';

const TEST_TIMEOUT_MS = 90_000;
/** Longer than two availableProducers rounds (1 s each): enough for a wrong consumer to show up. */
const QUIET_MS = 2_500;

const env = useServerAndBrowser();

const room = `room-${randomUUID()}`;
// The three pages of the first room, and one in another room.
let a;
let b;
let c;
let stranger;
const describe = () => describePeers([a, b, c, stranger].filter(Boolean), env.server);

/** [receiver, from, label] for every pair of the three pages. */
function allFlows(labels) {
  const flows = [];
  for (const receiver of [a, b, c]) {
    for (const from of [a, b, c]) {
      if (receiver !== from) for (const label of labels) flows.push([receiver, from, label]);
    }
  }
  return flows;
}

test('three pages in one room see and hear each other; a page in another room receives nothing', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  stranger = await openClientPage(env.browser.context, env.server.url, 'D', { roomId: `other-${room}` });
  await stranger.page.evaluate(() => window.t.publish({ camera: 'camera', microphone: 'microphone' }));
  a = await openClientPage(env.browser.context, env.server.url, 'A', { roomId: room });
  b = await openClientPage(env.browser.context, env.server.url, 'B', { roomId: room });
  // C the seed's way: new SimpleMediasoupPeer(socket), joinRoom, onTrack.
  c = await openClientPage(env.browser.context, env.server.url, 'C', { roomId: room, seedStyle: true });
  for (const peer of [a, b, c]) {
    await peer.page.evaluate(() => window.t.publish({ camera: 'camera', microphone: 'microphone' }));
  }
  const flows = await waitForFlows(allFlows(['camera', 'microphone']), { describe, what: 'video and audio between A, B and C' });
  for (const [key, { stats }] of flows) {
    t.diagnostic(`${key}: ${stats.kind === 'video' ? `${stats.framesDecoded} frames ${stats.frameWidth}x${stats.frameHeight}` : `${stats.packetsReceived} packets`}`);
  }
  for (const peer of [a, b, c]) {
    const state = await readClientState(peer.page);
    const others = [a, b, c].filter((p) => p !== peer).map((p) => p.id).sort();
    assert.deepEqual([...state.peers].sort(), others, `page ${peer.name} knows the others`);
    const connections = state.events.filter(([name]) => name === 'peerConnection').map(([, id]) => id).sort();
    assert.deepEqual(connections, others, `page ${peer.name} got peerConnection for each other page`);
  }

  // The server runs two workers (see the harness): the pages were spread over
  // both, so the flows above crossed the pipes between workers.
  const metrics = await (await fetch(`${env.server.url}/metrics`)).text();
  for (const worker of ['0', '1']) {
    const match = metrics.match(new RegExp(`^simplesfu_worker_transports\\{worker="${worker}"\\} (\\d+)$`, 'm'));
    assert.ok(match && Number(match[1]) > 0, `worker ${worker} carries some of the pages' transports`);
  }

  const stateC = await readClientState(c.page);
  assert.equal(stateC.legacyTracks, Object.keys(stateC.tracks).length, 'the seed\'s onTrack saw every track');
  assert.ok(stateC.legacyTracks >= 4);

  const strangerState = await readClientState(stranger.page);
  assert.deepEqual(strangerState.tracks, {}, 'the page in another room got no track');
  assert.deepEqual(strangerState.peers, [], 'the page in another room sees no peer');
  for (const peer of [a, b, c]) {
    const state = await readClientState(peer.page);
    assert.ok(!state.peers.includes(stranger.id), `page ${peer.name} does not see D`);
    assert.ok(!Object.values(state.tracks).some((track) => track.peerId === stranger.id), `page ${peer.name} got nothing of D`);
  }
});

test('send reaches the others, and only them', { timeout: TEST_TIMEOUT_MS }, async () => {
  // The data producer is created on the first send and the others consume it
  // on the next availableProducers: keep sending until both have a message.
  let n = 0;
  await pollUntil(
    async () => {
      n += 1;
      await call(a, 'send', `hello ${n}`);
      const [stateB, stateC] = await Promise.all([readClientState(b.page), readClientState(c.page)]);
      return [stateB, stateC].every((state) => state.data.some(({ from, data }) => from === a.id && data.startsWith('hello ')));
    },
    { timeoutMs: 15_000, intervalMs: 300, what: 'B and C to receive A\'s message', describe },
  );
  const last = `last ${randomUUID()}`;
  await call(a, 'send', last);
  await pollUntil(
    async () => {
      const states = await Promise.all([b, c].map((peer) => readClientState(peer.page)));
      return states.every((state) => state.data.at(-1)?.data === last);
    },
    { timeoutMs: 5_000, what: 'B and C to receive the latest message, in order', describe },
  );
  assert.deepEqual((await readClientState(stranger.page)).data, [], 'D in another room got no data');
  assert.deepEqual((await readClientState(a.page)).data, [], 'A does not receive its own messages');
});

/** Frames (or packets) of `from`'s `label` that `receiver` gets within `ms`. */
async function growthOver(receiver, from, label, ms) {
  const before = await sampleTrack(receiver, from, label);
  await sleep(ms);
  const after = await sampleTrack(receiver, from, label);
  assert.equal(after.producerId, before.producerId, `${receiver.name} still has ${from.name}/${label}`);
  return counterOf(after.stats) - counterOf(before.stats);
}

test('pausePeer stops frames and audio, also of a re-added track; resumePeer restarts them', { timeout: TEST_TIMEOUT_MS }, async () => {
  await call(b, 'pausePeer', a.id);
  await sleep(700); // what was in flight
  const frames = await growthOver(b, a, 'camera', 1_500);
  const packets = await growthOver(b, a, 'microphone', 1_500);
  assert.ok(frames <= 1, `B decoded ${frames} frames of paused A`);
  assert.ok(packets <= 2, `B received ${packets} audio packets of paused A`);
  // Nobody else is affected.
  await waitForFlows([[c, a, 'camera']], { describe, what: 'C to keep receiving A' });

  // A removes and re-adds its camera: a new producer, and B's new consumer
  // of it stays paused.
  const old = await sampleTrack(b, a, 'camera');
  await call(a, 'removeTrack', 'camera');
  await a.page.evaluate(() => window.t.publish({ camera: 'camera' }));
  await pollUntil(
    async () => {
      const { producerId } = await sampleTrack(b, a, 'camera');
      return producerId && producerId !== old.producerId;
    },
    { timeoutMs: 10_000, what: 'B to get A\'s re-added camera', describe },
  );
  const readded = Object.values((await readClientState(b.page)).tracks).find(
    (track) => track.peerId === a.id && track.label === 'camera' && !track.ended,
  );
  assert.equal(readded.paused, true, 'the re-added track arrives paused');
  await waitForFlows([[c, a, 'camera']], { describe, what: 'C to receive A\'s re-added camera' });
  const framesAfterReadd = await growthOver(b, a, 'camera', 1_500);
  assert.ok(framesAfterReadd <= 1, `B decoded ${framesAfterReadd} frames of A's re-added camera while A is paused`);

  await call(b, 'resumePeer', a.id);
  await waitForFlows([[b, a, 'camera'], [b, a, 'microphone']], { describe, what: 'B to receive A again after resume' });
});

test('replacing a track under the same label keeps the remote video flowing', { timeout: TEST_TIMEOUT_MS }, async () => {
  const endEvents = async () =>
    (await readClientState(b.page)).events.filter(([name, what]) => name === 'trackEnded' && what === `${a.id}/camera`).length;
  const endedBefore = await endEvents();
  const before = await sampleTrack(b, a, 'camera');
  // A fresh camera track under the same label; the page stops the old one.
  await a.page.evaluate(() => window.t.publish({ camera: 'camera' }));
  const flows = await waitForFlows([[b, a, 'camera'], [c, a, 'camera']], { describe, what: 'A\'s replaced camera to flow' });
  for (const { producerId } of flows.values()) {
    assert.equal(producerId, before.producerId, 'the same producer: switched, not republished');
  }
  assert.equal(await endEvents(), endedBefore, 'no end event');
});

test('removeTrack fires the remote end event', { timeout: TEST_TIMEOUT_MS }, async () => {
  await call(a, 'removeTrack', 'microphone');
  await pollUntil(
    async () => {
      const states = await Promise.all([b, c].map((peer) => readClientState(peer.page)));
      return states.every((state) => state.events.some(([name, what]) => name === 'trackEnded' && what === `${a.id}/microphone`));
    },
    { timeoutMs: 10_000, what: 'B and C to see A\'s microphone end', describe },
  );
  await waitForFlows([[b, a, 'camera']], { describe, what: 'A\'s camera to keep flowing' });
});

test('disconnectFromPeer stays disconnected, auto-connect does not undo it', { timeout: TEST_TIMEOUT_MS }, async () => {
  await call(c, 'disconnectFromPeer', a.id);
  await pollUntil(
    async () => (await readClientState(c.page)).events.some(([name, what]) => name === 'trackEnded' && what === `${a.id}/camera`),
    { timeoutMs: 10_000, what: 'C to see A\'s camera end', describe },
  );
  await assertNoTrack(c, a, 'camera', QUIET_MS);
  // A publishes a new track: B gets it, C does not.
  await a.page.evaluate(() => window.t.publish({ camera: 'second-camera' }));
  await waitForFlows([[b, a, 'second-camera']], { describe, what: 'B to get A\'s new track' });
  await assertNoTrack(c, a, 'second-camera', QUIET_MS);
  // C still receives B.
  await waitForFlows([[c, b, 'camera']], { describe, what: 'C to keep receiving B' });
});

test('autoConnect: false: only connectToPeer\'ed peers arrive; a broadcast arrives without it', { timeout: TEST_TIMEOUT_MS }, async () => {
  for (const peer of [a, b, c, stranger]) await peer.page.close();
  const stage = `stage-${randomUUID()}`;
  const viewer = await openClientPage(env.browser.context, env.server.url, 'viewer', { roomId: stage, autoConnect: false });
  const chosen = await openClientPage(env.browser.context, env.server.url, 'chosen', { roomId: stage });
  const ignored = await openClientPage(env.browser.context, env.server.url, 'ignored', { roomId: stage });
  const broadcaster = await openClientPage(env.browser.context, env.server.url, 'broadcaster', { roomId: stage });
  const describeStage = () => describePeers([viewer, chosen, ignored, broadcaster], env.server);
  await chosen.page.evaluate(() => window.t.publish({ camera: 'camera' }));
  await ignored.page.evaluate(() => window.t.publish({ camera: 'camera' }));
  await broadcaster.page.evaluate(() => window.t.publish({ camera: 'stage', broadcast: true }));

  await call(viewer, 'connectToPeer', chosen.id);
  await waitForFlows([[viewer, chosen, 'camera'], [viewer, broadcaster, 'stage']], {
    describe: describeStage,
    what: 'the viewer to get the chosen peer and the broadcast',
  });
  await assertNoTrack(viewer, ignored, 'camera', QUIET_MS);
  const state = await readClientState(viewer.page);
  assert.deepEqual([...state.peers].sort(), [chosen.id, ignored.id, broadcaster.id].sort(), 'the viewer knows every peer');
  const broadcastTrack = Object.values(state.tracks).find((track) => track.peerId === broadcaster.id);
  assert.equal(broadcastTrack.broadcast, true);
  // The others auto-connect: the ignored page does get the chosen one.
  await waitForFlows([[ignored, chosen, 'camera']], { describe: describeStage, what: 'auto-connect between the others' });
});
