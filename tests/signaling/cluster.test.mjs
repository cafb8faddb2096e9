// Several nodes (issue 16), membership: nodes started with the same Redis
// (Debian's redis-server, started here) find each other, see each other's
// load, drop a node killed with SIGKILL when its heartbeat expires and one
// that stops at once, and survive Redis restarting empty.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { startServer, startSecureServer, mintToken, connect, assertStillServing, expectError, scrapeMetrics } from './harness.mjs';

const REDIS = '/usr/bin/redis-server';
const haveRedis = spawnSync(REDIS, ['--version']).status === 0;

async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** An empty Redis on `port` (no persistence: a restart loses everything). */
async function startRedis(t, port) {
  const child = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  t.after(kill);
  const deadline = Date.now() + 10_000;
  while (!output.includes('Ready to accept connections')) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
    if (Date.now() > deadline) throw new Error(`redis-server not ready within 10 s: ${output}`);
    await sleep(50);
  }
  return {
    kill: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      kill();
      await exited;
    },
  };
}

function startNode(t, redisPort, id) {
  return startServer(t, { args: ['--cluster-redis-url', `redis://127.0.0.1:${redisPort}`, '--cluster-node-id', id] });
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

test('nodes of one Redis see each other, their load, and who left', { skip: !haveRedis && `${REDIS} not installed (apt-get install redis-server)` }, async (t) => {
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

test('a node keeps serving while Redis is down and registers again when it is back', { skip: !haveRedis && `${REDIS} not installed (apt-get install redis-server)` }, async (t) => {
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

test('a room lives on the node that has it; the others send its peers there', { skip: !haveRedis && `${REDIS} not installed (apt-get install redis-server)` }, async (t) => {
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

test('with join tokens, /cluster/rooms answers only a token of that room', { skip: !haveRedis && `${REDIS} not installed (apt-get install redis-server)` }, async (t) => {
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
