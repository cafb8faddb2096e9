// Rooms across nodes (issue 16) with real browsers: three simplesfu nodes
// share Debian's redis-server and a secret; pages of our client in one room
// are connected to different nodes and see and hear each other and
// exchange data messages (media and data relayed between the nodes over
// links). Redis restarted mid-call: media
// keeps flowing, and a page that joins after it is back is seen and heard
// across nodes. A node killed with SIGKILL: the pages on the other nodes see
// its peer leave within 10 s, and the others go on.

import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cleanup, PAGES_DIR, buildPages, launchBrowser, pollUntil, startServer } from './harness.mjs';
import { describePeers, openClientPage, readClientState, waitForFlows } from './client-pages.mjs';
import { NO_REDIS, freePort, startRedis } from '../tests/support/redis.mjs';

const cleanup = new Cleanup();
after(() => cleanup.run());

const SECRET = 'e2e-cluster-secret-0123456789abcdef01234567';

async function startNode(redisPort, id) {
  const node = await startServer({
    staticDir: PAGES_DIR,
    workers: 2,
    logLevel: process.env.CLUSTER_LOG ?? 'warn',
    args: ['--cluster-redis-url', `redis://127.0.0.1:${redisPort}`, '--cluster-node-id', id],
    env: { SIMPLESFU_CLUSTER_SECRET: SECRET },
  });
  cleanup.add(`stop ${id}`, () => node.stop());
  return node;
}

async function clusterView(url) {
  return (await (await fetch(`${url}/health`)).json()).cluster;
}

/** `from` sends numbered messages until every page of `to` got one. */
async function exchangeData(t, from, to, describe) {
  let sent = 0;
  const started = Date.now();
  await pollUntil(
    async () => {
      sent += 1;
      await from.page.evaluate((text) => window.t.send(text), `hello from ${from.name} #${sent}`);
      const got = await Promise.all(
        to.map(async (page) => (await readClientState(page.page)).data.some((m) => m.from === from.id && m.data.startsWith(`hello from ${from.name} #`))),
      );
      return got.every(Boolean);
    },
    { timeoutMs: 20_000, intervalMs: 300, what: `${from.name}'s data messages to reach ${to.map((p) => p.name).join(', ')}`, describe },
  );
  t.diagnostic(`${from.name}: data across nodes after ${Date.now() - started} ms (${sent} sent)`);
}

test('pages on three nodes share a room: they see, hear and message each other through Redis restarts and a killed node', { skip: NO_REDIS, timeout: 180_000 }, async (t) => {
  await buildPages();
  const redisPort = await freePort();
  let redis = await startRedis((kill) => cleanup.add('kill redis', kill), redisPort);
  const nodes = [];
  for (const id of ['node-1', 'node-2', 'node-3']) nodes.push(await startNode(redisPort, id));
  const [n1, n2, n3] = nodes;
  for (const node of nodes) {
    await pollUntil(async () => (await clusterView(node.url)).nodes.length === 3, { timeoutMs: 10_000, what: 'every node to see the three' });
  }
  const browser = await launchBrowser();
  cleanup.add('close chromium', () => browser.close());
  const room = `cluster-${randomUUID()}`;

  const a = await openClientPage(browser.context, n1.url, 'A@node-1', { roomId: room });
  const b = await openClientPage(browser.context, n2.url, 'B@node-2', { roomId: room });
  const c = await openClientPage(browser.context, n3.url, 'C@node-3', { roomId: room });
  const pages = [a, b, c];
  const describe = async () => `${await describePeers(pages)}\n${nodes.map((n, i) => `node-${i + 1} log:\n${n.logTail()}`).join('\n')}`;
  await a.page.evaluate(() => window.t.publish({ camera: 'camera', microphone: 'mic' }));
  await b.page.evaluate(() => window.t.publish({ camera: 'camera', microphone: 'mic' }));
  const flows = [
    [b, a, 'camera'],
    [b, a, 'mic'],
    [a, b, 'camera'],
    [a, b, 'mic'],
    [c, a, 'camera'],
    [c, b, 'camera'],
  ];
  const startedAt = Date.now();
  await waitForFlows(flows, { timeoutMs: 30_000, describe, what: 'video and audio between pages on three nodes' });
  t.diagnostic(`media across nodes within ${Date.now() - startedAt} ms`);
  for (const node of nodes) {
    const { span } = await clusterView(node.url);
    assert.ok(span.links >= 1, `${node.url} has links: ${JSON.stringify(span)}`);
  }
  // Data across nodes: A's messages reach B and C, B's reach A. A client
  // makes its data producer on its first send, and the others consume it
  // once it is announced, so the first messages may find no consumer yet:
  // each sender sends until its message arrives.
  await exchangeData(t, a, [b, c], describe);
  await exchangeData(t, b, [a], describe);
  const relayedData = (await clusterView(n3.url)).span.relayedDataIn;
  assert.ok(relayedData >= 1, `node-3 has data producers of other nodes relayed in: ${relayedData}`);

  // Redis restarts, empty: media goes on meanwhile (the links do not need it).
  await redis.kill();
  await waitForFlows(flows, { timeoutMs: 20_000, describe, what: 'media while Redis is down' });
  redis = await startRedis((kill) => cleanup.add('kill redis again', kill), redisPort);
  for (const node of nodes) {
    await pollUntil(async () => {
      const view = await clusterView(node.url);
      return view.redis === 'connected' && view.nodes.length === 3;
    }, { timeoutMs: 15_000, what: 'every node registered again' });
  }
  // A page that joins now is seen and heard across nodes.
  const d = await openClientPage(browser.context, n3.url, 'D@node-3', { roomId: room });
  pages.push(d);
  await d.page.evaluate(() => window.t.publish({ camera: 'camera' }));
  await waitForFlows([[a, d, 'camera'], [d, a, 'camera'], [d, b, 'camera']], { timeoutMs: 30_000, describe, what: 'a page joined after Redis came back, across nodes' });

  // node-2 killed: its page leaves the room for the others within 10 s.
  await n2.kill();
  const killedAt = Date.now();
  for (const page of [a, c, d]) {
    await pollUntil(
      async () => (await readClientState(page.page)).events.some(([kind, id]) => kind === 'peerDisconnection' && id === b.id),
      { timeoutMs: 10_000, what: `${page.name} to see B leave`, describe },
    );
  }
  t.diagnostic(`B's departure seen everywhere ${Date.now() - killedAt} ms after node-2 was killed`);
  assert.ok(Date.now() - killedAt <= 10_500, 'within 10 s');
  // The others go on.
  await sleep(500);
  await waitForFlows([[c, a, 'camera'], [a, d, 'camera']], { timeoutMs: 20_000, describe, what: 'media between the remaining nodes' });
});
