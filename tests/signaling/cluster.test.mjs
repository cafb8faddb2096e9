// Several nodes (issue 16), membership: nodes started with the same Redis
// (Debian's redis-server, started here) find each other, see each other's
// load, drop a node killed with SIGKILL when its heartbeat expires and one
// that stops at once, and survive Redis restarting empty; rooms live on one
// node without a shared secret, and span nodes with one.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer, startSecureServer, mintToken, connect, assertStillServing, expectError, scrapeMetrics, createTransports, vp8Parameters } from './harness.mjs';
import { NO_REDIS, freePort, startRedis as startRedisOn } from '../support/redis.mjs';

const startRedis = (t, port) => startRedisOn((kill) => t.after(kill), port);

function startNode(t, redisPort, id) {
  return startServer(t, { args: ['--cluster-redis-url', `redis://127.0.0.1:${redisPort}`, '--cluster-node-id', id] });
}

const CLUSTER_SECRET = 'cluster-tests-secret-0123456789abcdef0123';

/** A node of a cluster whose rooms span nodes (a shared secret). */
function startSpanningNode(t, redisPort, id, secret = CLUSTER_SECRET) {
  return startServer(t, {
    args: ['--cluster-redis-url', `redis://127.0.0.1:${redisPort}`, '--cluster-node-id', id],
    env: { SIMPLESFU_CLUSTER_SECRET: secret },
  });
}

async function health(url) {
  const response = await fetch(`${url}/health`);
  assert.equal(response.status, 200);
  return response.json();
}

/** Poll `url`'s /health until `ok(cluster)` holds; the last view otherwise. */
async function waitForCluster(url, ok, what, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = (await health(url)).cluster;
    if (last && ok(last)) return last;
    await sleep(100);
  }
  assert.fail(`${what}: not within ${timeoutMs} ms; last view ${JSON.stringify(last)}`);
}

const ids = (cluster) => cluster.nodes.map((n) => n.id);

test('nodes of one Redis see each other, their load, and who left', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  const a = await startNode(t, redisPort, 'node-a');
  const b = await startNode(t, redisPort, 'node-b');
  const c = await startNode(t, redisPort, 'node-c');

  const all = await waitForCluster(a.url, (v) => v.redis === 'connected' && ids(v).length === 3, 'node-a sees three nodes');
  assert.equal(all.node, 'node-a');
  assert.deepEqual(ids(all), ['node-a', 'node-b', 'node-c']);
  assert.equal(all.nodes.find((n) => n.id === 'node-b').url, b.url, 'each node says where it is reached');
  await waitForCluster(b.url, (v) => ids(v).length === 3, 'node-b sees three nodes');

  // A peer in a room on node-b shows in node-a's view of node-b.
  const peer = await connect(b.url, t);
  await peer.ok('joinRoom', { roomId: 'cluster-room' });
  await waitForCluster(a.url, (v) => v.nodes.find((n) => n.id === 'node-b')?.peers === 1, "node-b's peer counted on node-a");

  // A node that stops says goodbye: gone at once, without waiting for its key to expire.
  await c.stop();
  await waitForCluster(a.url, (v) => !ids(v).includes('node-c'), 'node-c, stopped, is gone', 2_000);

  // A node killed outright is dropped when its heartbeat expires (5 s) and
  // the next heartbeat finds it gone: within 10 s.
  b.child.kill('SIGKILL');
  const afterKill = await waitForCluster(a.url, (v) => ids(v).length === 1, 'node-b, killed, is dropped', 10_000);
  assert.deepEqual(ids(afterKill), ['node-a']);
  assert.equal(afterKill.departed, 2);
  const metrics = await scrapeMetrics(a.url);
  assert.equal(metrics.simplesfu_cluster_nodes, 1);
  assert.equal(metrics.simplesfu_cluster_nodes_departed_total, 2);
  assert.equal(metrics.simplesfu_cluster_redis_up, 1);
});

test('a node keeps serving while Redis is down and registers again when it is back', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  let redis = await startRedis(t, redisPort);
  const a = await startNode(t, redisPort, 'node-a');
  await waitForCluster(a.url, (v) => v.redis === 'connected', 'node-a registered');

  await redis.kill();
  const down = await waitForCluster(a.url, (v) => v.redis === 'unreachable', 'node-a notices Redis is gone');
  assert.deepEqual(ids(down), ['node-a']);
  assert.equal((await scrapeMetrics(a.url)).simplesfu_cluster_redis_up, 0);
  await assertStillServing(a.url, t);

  // Back, empty (no persistence): node-a registers again, and a node that
  // starts now finds it.
  redis = await startRedis(t, redisPort);
  await waitForCluster(a.url, (v) => v.redis === 'connected', 'node-a registered again');
  const b = await startNode(t, redisPort, 'node-b');
  await waitForCluster(b.url, (v) => ids(v).includes('node-a'), 'node-b finds node-a');
  await waitForCluster(a.url, (v) => ids(v).includes('node-b'), 'node-a finds node-b');
});

/** joinRoom until it succeeds (a claim is released within a heartbeat or two). */
async function joinWhenFree(peer, roomId, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    last = await peer.request('joinRoom', { roomId });
    if (last?.success) return;
    await sleep(200);
  }
  assert.fail(`joinRoom ${roomId} still refused after ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

test('a room lives on the node that has it; the others send its peers there', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  const a = await startNode(t, redisPort, 'node-a');
  const b = await startNode(t, redisPort, 'node-b');
  await waitForCluster(a.url, (v) => ids(v).length === 2, 'node-a sees node-b');
  await waitForCluster(b.url, (v) => ids(v).length === 2, 'node-b sees node-a');

  const onA = await connect(a.url, t);
  await onA.ok('joinRoom', { roomId: 'stage' });
  const onB = await connect(b.url, t);
  const error = expectError(await onB.request('joinRoom', { roomId: 'stage' }), 'room_on_another_node', 'joinRoom on node-b');
  assert.match(error.message, /node-a/);
  assert.ok(error.message.includes(a.url), `the message says where: ${error.message}`);

  assert.equal((await scrapeMetrics(b.url))['simplesfu_request_errors_total{code="room_on_another_node"}'], 1);
  await waitForCluster(a.url, (v) => v.rooms_served === 1, 'node-a serves one room');
  const place = await (await fetch(`${b.url}/cluster/rooms/stage`)).json();
  assert.deepEqual(place, { room: 'stage', node: 'node-a', url: a.url, served: true });
  const open = await (await fetch(`${b.url}/cluster/rooms/nobody-here`)).json();
  assert.equal(open.served, false, 'a room nobody serves: a suggestion');
  assert.ok(['node-a', 'node-b'].includes(open.node));

  // WHIP and WHEP clients are redirected to the room's node (RFC 9725 §4.5).
  for (const [path, body] of [['/whip/stage?label=cam', 'v=0\r\n'], ['/whep/stage', 'v=0\r\n']]) {
    const response = await fetch(`${b.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body, redirect: 'manual' });
    assert.equal(response.status, 307, path);
    assert.equal(response.headers.get('location'), `${a.url}${path}`);
  }

  // Its last peer gone, the room is free for any node.
  onA.close();
  await joinWhenFree(onB, 'stage');
  assert.equal((await (await fetch(`${a.url}/cluster/rooms/stage`)).json()).node, 'node-b');

  // Its node killed, the room is free once that node's claim expires.
  b.child.kill('SIGKILL');
  const again = await connect(a.url, t);
  await joinWhenFree(again, 'stage');
});

test('with join tokens, /cluster/rooms answers only a token of that room', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  const { url } = await startSecureServer(t, { args: ['--cluster-redis-url', `redis://127.0.0.1:${redisPort}`, '--cluster-node-id', 'node-s'] });
  const ask = (token) => fetch(`${url}/cluster/rooms/secret-room`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
  assert.equal((await ask()).status, 401);
  assert.equal((await ask('not-a-token')).status, 401, 'a token that does not verify');
  assert.equal((await ask(mintToken({ room: 'other-room', subscribe: true }))).status, 403);
  const ok = await ask(mintToken({ room: 'secret-room', subscribe: true }));
  assert.equal(ok.status, 200);
  assert.equal((await ok.json()).node, 'node-s');
});

test('a single node answers /cluster/rooms with 404', async (t) => {
  const { url } = await startServer(t);
  const response = await fetch(`${url}/cluster/rooms/x`);
  assert.equal(response.status, 404);
  assert.match(await response.text(), /single node/);
});

test('a cluster setting that cannot work is refused at start with the reason', async () => {
  const bin = process.env.SIMPLESFU_BIN || new URL('../../target/debug/simplesfu', import.meta.url).pathname;
  for (const [args, reason] of [
    [['--cluster-redis-url', 'http://127.0.0.1:6379'], /must start with redis:\/\//],
    [['--cluster-redis-url', 'redis://127.0.0.1:1', '--cluster-node-id', 'a:b'], /cluster.node_id/],
  ]) {
    const run = spawnSync(bin, ['--http-listen', '127.0.0.1:0', ...args], { encoding: 'utf8', timeout: 10_000 });
    assert.notEqual(run.status, 0, `${args.join(' ')} must not start`);
    assert.match(run.stderr, reason);
  }
  const withPassword = spawnSync(bin, ['--http-listen', '127.0.0.1:0', '--cluster-redis-url', 'rediss://:hunter2@127.0.0.1:1'], {
    encoding: 'utf8',
    timeout: 10_000,
  });
  assert.notEqual(withPassword.status, 0);
  assert.doesNotMatch(withPassword.stderr, /hunter2/, 'the password never reaches the output');
});

test('with a shared secret, one room spans nodes: peers on each see the others, consume across, and see a killed node leave', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  const a = await startSpanningNode(t, redisPort, 'node-a');
  const b = await startSpanningNode(t, redisPort, 'node-b');
  const c = await startSpanningNode(t, redisPort, 'node-c');
  await waitForCluster(a.url, (v) => ids(v).length === 3, 'node-a sees three nodes');
  await waitForCluster(b.url, (v) => ids(v).length === 3, 'node-b sees three nodes');

  // A publisher on node-a, viewers on node-b and node-c, all in one room.
  const pub = await connect(a.url, t);
  const pubT = await createTransports(pub);
  await pub.ok('joinRoom', { roomId: 'spread' });
  const { id: producerId } = await pub.ok('produce', {
    transportId: pubT.send,
    kind: 'video',
    rtpParameters: vp8Parameters(),
    appData: { label: 'camera', broadcast: false },
  });
  const viewers = [];
  for (const node of [b, c]) {
    const v = await connect(node.url, t);
    await createTransports(v, { connectRecv: true });
    await v.ok('joinRoom', { roomId: 'spread' });
    viewers.push(v);
  }
  const [onB, onC] = viewers;

  // Each viewer hears of the publisher and of the other viewer, sees the
  // remote producer in availableProducers and gets a consumer of it.
  for (const v of viewers) {
    await v.waitForPush('peerConnection', (ids) => ids.includes(pub.id), 5000);
    await v.waitForPush('availableProducers', (list) => list[pub.id]?.producers?.[producerId]?.label === 'camera', 5000);
    const consumer = await v.waitForPush('createConsumer', (c) => c.producerId === producerId, 5000);
    assert.equal(consumer.peerId, pub.id);
    assert.equal(consumer.kind, 'video');
  }
  await onB.waitForPush('peerConnection', (ids) => ids.includes(onC.id), 5000);
  await pub.waitForPush('peerConnection', (ids) => ids.includes(onB.id) && ids.includes(onC.id) || ids.includes(onB.id), 5000);
  await pub.waitForPush('availableProducers', (list) => Boolean(list[onB.id] && list[onC.id]), 5000);

  // Pausing on node-a shows on node-b.
  await pub.ok('pauseProducer', { producerId });
  await onB.waitForPush('availableProducers', (list) => list[pub.id]?.producers?.[producerId]?.paused === true, 5000);

  // A peer id cannot be consumed from a node that does not know it.
  await onB.fails('createConsumer', { producingPeerId: 'nobody', producerId }, 'peer_not_found');

  // Closing the producer on node-a closes the consumers on node-b and node-c.
  await pub.ok('closeProducer', { producerId });
  for (const v of viewers) {
    await v.waitForPush('consumerClosed', (c) => c.producerId === producerId, 5000);
  }

  // node-a killed: its peer leaves the room on node-b and node-c within 10 s.
  const { id: second } = await (async () => {
    const again = await pub.ok('produce', { transportId: pubT.send, kind: 'video', rtpParameters: vp8Parameters({ ssrc: 4444, rtxSsrc: 5555, mid: '3' }), appData: { label: 'again' } });
    return again;
  })();
  for (const v of viewers) await v.waitForPush('createConsumer', (c) => c.producerId === second, 5000);
  const pubId = pub.id;
  a.child.kill('SIGKILL');
  const killedAt = Date.now();
  for (const v of viewers) {
    await v.waitForPush('peerDisconnection', (ids) => ids.includes(pubId), 10_000);
    await v.waitForPush('consumerClosed', (c) => c.producerId === second, 1000);
  }
  assert.ok(Date.now() - killedAt < 10_000, 'within 10 s');
  // The room goes on between node-b and node-c.
  const late = await connect(c.url, t);
  await late.ok('joinRoom', { roomId: 'spread' });
  await onB.waitForPush('peerConnection', (ids) => ids.includes(late.id), 5000);
});

test('a node with another secret takes no part in the rooms of the others', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  const a = await startSpanningNode(t, redisPort, 'node-a');
  const stranger = await startSpanningNode(t, redisPort, 'node-x', 'a-different-secret-0123456789abcdef0123');
  await waitForCluster(a.url, (v) => ids(v).length === 2, 'both registered');
  const onA = await connect(a.url, t);
  await onA.ok('joinRoom', { roomId: 'closed' });
  const onX = await connect(stranger.url, t);
  await onX.ok('joinRoom', { roomId: 'closed' });
  await onA.noPush('peerConnection', () => true, 2500);
  await onX.noPush('peerConnection', () => true, 10);
  const health = await (await fetch(`${a.url}/health`)).json();
  assert.ok(health.cluster.span.messagesDropped > 0, `node-a dropped the stranger's messages: ${JSON.stringify(health.cluster.span)}`);
});

test('a node restarted under its id (before the membership notices) is linked again: consuming across works', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  // node-b has the higher id: it makes the link and its end waits (ICE-lite).
  let a = await startSpanningNode(t, redisPort, 'node-a');
  const b = await startSpanningNode(t, redisPort, 'node-b');
  await waitForCluster(b.url, (v) => ids(v).length === 2, 'node-b sees node-a');

  const viewer = await connect(b.url, t);
  await createTransports(viewer, { connectRecv: true });
  await viewer.ok('joinRoom', { roomId: 'restart' });
  const publishOn = async (node, label) => {
    const pub = await connect(node.url, t);
    const pubT = await createTransports(pub);
    await pub.ok('joinRoom', { roomId: 'restart' });
    const { id } = await pub.ok('produce', { transportId: pubT.send, kind: 'video', rtpParameters: vp8Parameters(), appData: { label } });
    return { pub, id };
  };
  const first = await publishOn(a, 'before');
  await viewer.waitForPush('createConsumer', (c) => c.producerId === first.id, 5000);
  const linksBefore = (await health(b.url)).cluster.span.links;
  assert.equal(linksBefore, 1, 'one link between the nodes');

  // node-a dies and comes back under its id within a heartbeat: node-b
  // never sees it leave the membership.
  a.child.kill('SIGKILL');
  a = await startSpanningNode(t, redisPort, 'node-a');
  await viewer.waitForPush('peerDisconnection', (gone) => gone.includes(first.pub.id), 10_000);
  const second = await publishOn(a, 'after');
  const consumer = await viewer.waitForPush('createConsumer', (c) => c.producerId === second.id, 10_000);
  assert.equal(consumer.peerId, second.pub.id, 'consumed across the new link');
  const span = (await health(b.url)).cluster.span;
  assert.equal(span.links, 1, `the old link replaced, not kept beside: ${JSON.stringify(span)}`);
  assert.equal(span.relayedIn, 1, `only the new producer relayed in: ${JSON.stringify(span)}`);
});

test('with rooms across nodes, a room stays on its node until that node is full, then grows onto a node that has its peers', { skip: NO_REDIS }, async (t) => {
  const redisPort = await freePort();
  await startRedis(t, redisPort);
  const node = (id) =>
    startServer(t, {
      args: ['--cluster-redis-url', `redis://127.0.0.1:${redisPort}`, '--cluster-node-id', id, '--cluster-capacity-peers', '2'],
      env: { SIMPLESFU_CLUSTER_SECRET: CLUSTER_SECRET },
    });
  const a = await node('node-a');
  const b = await node('node-b');
  const c = await node('node-c');
  for (const n of [a, b, c]) await waitForCluster(n.url, (v) => ids(v).length === 3, `${n.url} sees three nodes`);
  const place = async (from) => (await fetch(`${from.url}/cluster/rooms/grow`)).json();
  const peersOf = (id, count) => (v) => v.nodes.find((n) => n.id === id)?.peers === count;

  const first = await connect(a.url, t);
  await first.ok('joinRoom', { roomId: 'grow' });
  await waitForCluster(c.url, peersOf('node-a', 1), 'node-c sees one peer on node-a');
  assert.deepEqual(await place(c), { room: 'grow', node: 'node-a', url: a.url, served: true }, 'the node that holds the room, while it has room');
  assert.equal((await health(a.url)).cluster.nodes.find((n) => n.id === 'node-a').capacity, 2, 'each node says its capacity');

  const second = await connect(a.url, t);
  await second.ok('joinRoom', { roomId: 'grow' });
  await waitForCluster(c.url, peersOf('node-a', 2), 'node-c sees node-a full');
  const spill = await place(c);
  assert.notEqual(spill.node, 'node-a', `a full node is not suggested: ${JSON.stringify(spill)}`);
  assert.equal(spill.served, false, 'a node without the room yet');

  // A peer of the room on node-b: node-b is where the room grows now.
  const third = await connect(b.url, t);
  await third.ok('joinRoom', { roomId: 'grow' });
  await first.waitForPush('peerConnection', (ids) => ids.includes(third.id), 5000);
  await waitForCluster(c.url, peersOf('node-b', 1), 'node-c sees the peer on node-b');
  assert.deepEqual(await place(c), { room: 'grow', node: 'node-b', url: b.url, served: true }, 'the node with the room that has room');
});
