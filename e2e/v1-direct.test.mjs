// Two browser pages that speak protocol v1 through stock mediasoup-client join
// one room; each must receive the other's video, audio and data messages
// through the real simplesfu binary.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import {
  Cleanup,
  PAGES_DIR,
  buildPages,
  launchBrowser,
  pollUntil,
  startServer,
  watchPage,
} from './harness.mjs';

const TEST_TIMEOUT_MS = 120_000;
const SETUP_DEADLINE_MS = 20_000;
const MEDIA_DEADLINE_MS = 20_000;
const PROGRESS_DEADLINE_MS = 10_000;

const cleanup = new Cleanup();
// Also runs when the test times out, which abandons its `finally`.
after(() => cleanup.run());

/** The page's state without its function members. */
function readState(page) {
  return page.evaluate(() => {
    if (!window.testState) return null;
    const { mediaStats, ...rest } = window.testState;
    return rest;
  });
}

function readMediaStats(page) {
  return page.evaluate(() => window.testState?.mediaStats() ?? {});
}

test('two v1 pages in one room exchange video, audio and data', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  await withCleanup(t, () => run(t));
});

// A network that lets no UDP through: the server offers only its ICE-TCP
// candidates, so everything (ICE, DTLS, media, data) must cross TCP.
test('the same over ICE-TCP when UDP is not offered', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  await withCleanup(t, () => run(t, { args: ['--ice-udp', 'false'] }));
});

async function withCleanup(t, body) {
  let failure;
  try {
    await body();
  } catch (error) {
    failure = error;
  }
  try {
    await cleanup.run();
  } catch (cleanupError) {
    if (!failure) throw cleanupError;
    t.diagnostic(cleanupError.message);
  }
  if (failure) throw failure;
}

async function run(t, serverOptions = {}) {
  await buildPages();
  const server = await startServer({ staticDir: PAGES_DIR, ...serverOptions });
  cleanup.add('stop simplesfu', () => server.stop());
  const browser = await launchBrowser();
  cleanup.add('close chromium', () => browser.close());

  const roomId = `e2e-${randomUUID()}`;
  const peers = [];
  for (const name of ['A', 'B']) {
    const page = await browser.context.newPage();
    const { problems, warnings } = watchPage(page, name);
    peers.push({ name, page, problems, warnings, id: null });
    await page.goto(`${server.url}/v1-direct.html?room=${encodeURIComponent(roomId)}`);
  }

  // Everything the pages and the server say, for failure messages.
  const describe = async () => {
    const parts = [];
    for (const peer of peers) {
      const state = await readState(peer.page).catch((error) => `unreadable: ${error.message}`);
      const stats = await readMediaStats(peer.page).catch((error) => `unreadable: ${error.message}`);
      // The message list repeats what dataReceived sums up.
      const shown = state && typeof state === 'object' ? { ...state, dataMessages: undefined } : state;
      parts.push(`page ${peer.name} state: ${JSON.stringify(shown)}`);
      parts.push(`page ${peer.name} media: ${JSON.stringify(stats)}`);
      parts.push(...peer.warnings.slice(-10));
    }
    parts.push(`simplesfu log tail:\n${server.logTail() || '(empty)'}`);
    return parts.join('\n');
  };

  // Fails at once, with everything known, as soon as a page reports a problem.
  const assertHealthy = async (states) => {
    const problems = peers.flatMap((peer, i) => [
      ...peer.problems,
      ...(states?.[i]?.errors ?? []).map((error) => `${peer.name} page error: ${error}`),
    ]);
    if (problems.length > 0) {
      assert.fail(`the pages reported problems:\n${problems.join('\n')}\n${await describe()}`);
    }
  };

  // 1. Both pages connect, load the device, create transports, join, publish.
  const states = await pollUntil(
    async () => {
      const states = await Promise.all(peers.map((peer) => readState(peer.page)));
      await assertHealthy(states);
      return states.every((state) => state?.phase === 'running') && states;
    },
    { timeoutMs: SETUP_DEADLINE_MS, what: 'both pages to reach phase "running"', describe },
  );
  for (const [i, peer] of peers.entries()) {
    peer.id = states[i].peerId;
    assert.ok(peer.id, `page ${peer.name} has a peer id`);
    assert.ok(states[i].producers.video, `page ${peer.name} produces video`);
    assert.ok(states[i].producers.audio, `page ${peer.name} produces audio`);
    assert.ok(states[i].dataProducer.id, `page ${peer.name} has a data producer`);
  }
  assert.notEqual(peers[0].id, peers[1].id, 'the pages have distinct peer ids');
  t.diagnostic(`pages running: A=${peers[0].id} B=${peers[1].id}`);

  // [receiver, sender]: each page must receive from the other.
  const directions = [
    [peers[0], peers[1]],
    [peers[1], peers[0]],
  ];
  const sample = async () => {
    const states = await Promise.all(peers.map((peer) => readState(peer.page)));
    await assertHealthy(states);
    const stats = await Promise.all(peers.map((peer) => readMediaStats(peer.page)));
    return directions.map(([receiver, sender]) => {
      const i = peers.indexOf(receiver);
      return {
        label: `${receiver.name} from ${sender.name}`,
        sender,
        video: stats[i][sender.id]?.video,
        audio: stats[i][sender.id]?.audio,
        data: states[i].dataReceived[sender.id],
      };
    });
  };

  // 2. Each page decodes the other's video, receives its audio and a data message.
  const received = await pollUntil(
    async () => {
      const flows = await sample();
      const complete = flows.every(
        ({ video, audio, data, sender }) =>
          video?.framesDecoded > 0 &&
          video.frameWidth > 0 &&
          video.videoWidth > 0 &&
          audio?.packetsReceived > 0 &&
          data?.first.startsWith(`hello from ${sender.id} #`),
      );
      return complete && flows;
    },
    { timeoutMs: MEDIA_DEADLINE_MS, what: 'video, audio and data in both directions', describe },
  );
  for (const { label, video, audio, data } of received) {
    t.diagnostic(
      `${label}: ${video.framesDecoded} frames decoded at ${video.frameWidth}x${video.frameHeight}, ` +
        `${audio.packetsReceived} audio packets, ${data.count} data messages ("${data.last}")`,
    );
  }

  // 3. Media keeps flowing: both counters rise between two samples.
  await pollUntil(
    async () => {
      const later = await sample();
      return later.every(
        (flow, i) =>
          flow.video.framesDecoded > received[i].video.framesDecoded &&
          flow.audio.packetsReceived > received[i].audio.packetsReceived,
      );
    },
    { timeoutMs: PROGRESS_DEADLINE_MS, what: 'framesDecoded and packetsReceived to keep rising', describe },
  );

  // 4. The operator's view agrees: /metrics counts the media the pages exchanged.
  const metrics = await scrapeMetrics(server.url);
  const total = (name) =>
    Object.entries(metrics).filter(([key]) => key.startsWith(`simplesfu_${name}{`)).reduce((sum, [, v]) => sum + v, 0);
  t.diagnostic(`metrics: ${total('rtp_packets_received_total')} RTP packets in, ${total('rtp_packets_sent_total')} out`);
  assert.equal(metrics.simplesfu_peers, 2);
  assert.equal(metrics.simplesfu_producers, 4, 'video and audio of each page');
  assert.equal(metrics.simplesfu_consumers, 4);
  assert.ok(total('rtp_packets_received_total') > 10, 'RTP packets received from the pages');
  assert.ok(total('rtp_packets_sent_total') > 10, 'RTP packets forwarded to the pages');
  assert.ok(total('rtp_bytes_sent_total') > 10 * 100, 'RTP payload bytes forwarded to the pages');
  assert.ok(total('worker_cpu_microseconds_total') > 0, 'the workers report the CPU time they used');
  assert.ok(total('data_messages_received_total') > 0, 'data messages received');
  assert.ok(total('data_messages_sent_total') > 0, 'data messages forwarded');

  // 5. Nothing went wrong along the way.
  for (const peer of peers) assert.deepEqual(peer.problems, [], `page ${peer.name} console errors`);
}

/** The Prometheus page as {"name{labels}": value}. */
async function scrapeMetrics(url) {
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200, 'GET /metrics');
  const samples = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return samples;
}
