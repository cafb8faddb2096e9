// The hostile-client suite: rounds of broken and malicious clients against
// the real binary, over real socket.io, UDP and TCP, while the Rust bot plays
// a well-behaved room (one publisher, two subscribers) in the same server.
//
// Each round: random and malformed requests, out-of-order flows, a flood,
// ids of other peers' rooms, transports and producers, huge payloads; then
// garbage and truncated STUN, DTLS, RTP and RTCP datagrams at the media
// ports, both from unknown addresses (the demux drops them) and from an
// address that passed ICE with the right credentials (so they reach str0m),
// and garbage on the ICE-TCP port; and WHIP/WHEP over HTTP: mangled and
// oversized offers, wrong content types, garbage PATCHes, and real sessions
// (a WHEP player of the victim's producer, a WHIP publisher) ended with
// DELETE. After each round:
//   - every request was answered, exactly once (socket.io acks once; a
//     missing ack fails the round),
//   - the server still serves a fresh client and the victims' state is intact,
//   - once the hostile clients are gone, /health counts are back to the bot's.
// At the end: the bot's subscribers received media throughout with little
// loss, and the server's memory (VmRSS) did not keep growing across rounds.
//
// HOSTILE_ROUNDS (default 3) and HOSTILE_SEED (default: time-based, printed)
// control a run; `npm run test:hostile` is the CI version, longer runs:
// HOSTILE_ROUNDS=30 npm run test:hostile.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { io } from 'socket.io-client';
import { startServer, connect, scrapeMetrics, DTLS_PARAMETERS, vp8Parameters, opusParameters } from '../signaling/harness.mjs';
import { rng, udpClient, passIce, garbageDatagrams, tcpGarbage, rssKb, runBot } from './lib.mjs';

const ROUNDS = Number(process.env.HOSTILE_ROUNDS ?? 3);
const SEED = Number(process.env.HOSTILE_SEED ?? (Date.now() % 1_000_000_007));
const BOT_PEERS = 3; // one publisher, two subscribers
const TYPES = [
  'joinRoom', 'leaveRoom', 'getRouterRtpCapabilities', 'createWebRtcTransport', 'connectWebRtcTransport', 'produce',
  'produceData', 'createConsumer', 'createDataConsumer', 'pauseConsumer', 'resumeConsumer', 'closeConsumer',
  'closeProducer', 'pauseProducer', 'resumeProducer', 'restartIce',
];

async function health(url) {
  return (await fetch(`${url}/health`)).json();
}

/** Wait until `check(await health())` holds; fails with the last counts. */
async function settles(url, check, what, ms = 8000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await health(url);
    if (check(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`${what}; /health: ${JSON.stringify(last)}`);
}

function nested(depth) {
  let v = {};
  for (let i = 0; i < depth; i += 1) v = i % 2 ? { roomId: v } : [v];
  return v;
}

/** Data that is wrong in every way a request can be wrong, with real ids of other peers mixed in. */
function randomData(r, known) {
  const id = () => r.pick([...known.ids, 'x', '', '00000000-0000-0000-0000-000000000000', 42, null]);
  const choices = [
    () => undefined,
    () => null,
    () => r.int(1e9),
    () => 'x'.repeat(r.int(100)),
    () => [id(), id()],
    () => ({ roomId: r.pick([...known.rooms, '', 'x'.repeat(200), 7, { roomId: 'nested' }, '\u0000\u202e']) }),
    () => ({ transportId: id(), dtlsParameters: r.pick([DTLS_PARAMETERS, {}, { fingerprints: 'no' }, null]) }),
    () => ({ transportId: id(), kind: r.pick(['video', 'audio', 'smell']), rtpParameters: r.pick([vp8Parameters({ ssrc: r.int(1e9) }), opusParameters(), {}, { codecs: [{}] }]) }),
    () => ({ producingPeerId: id(), producerId: id() }),
    () => ({ producerId: id() }),
    () => ({ transportId: id(), sctpStreamParameters: { streamId: r.int(70000) - 100, ordered: r.int(2) === 0 }, label: 'x'.repeat(r.int(300)) }),
    () => ({ producing: r.int(2) === 0, consuming: r.int(2) === 0, forceTcp: 'yes' }),
    () => ({ blob: 'y'.repeat(70 * 1024) }), // over the 64 KiB request limit
    () => nested(100 + r.int(100)),
  ];
  return r.pick(choices)();
}

/** One hostile client's burst of requests; resolves with the number sent and answered. */
async function chaos(peer, r, known, count) {
  const sends = [];
  for (let i = 0; i < count; i += 1) {
    const roll = r.int(10);
    if (roll === 0) {
      // Not a {type, data} object at all.
      sends.push(peer.raw(r.pick(['hello', 42, null, [1, 2], Buffer.from([1, 2, 3]), true])));
    } else if (roll === 1) {
      sends.push(peer.raw({ type: r.pick(['fly', '', '__proto__', 'x'.repeat(500)]), data: {} }));
    } else if (roll === 2) {
      // No ack callback: nothing to answer, nothing may break.
      peer.socket.emit('mediasoupSignaling', { type: r.pick(TYPES), data: randomData(r, known) });
    } else {
      sends.push(peer.request(r.pick(TYPES), randomData(r, known)));
    }
  }
  const acks = await Promise.all(sends);
  for (const ack of acks) {
    assert.ok(ack && (ack.success === true || typeof ack.error?.code === 'string'), `a proper ack, got ${JSON.stringify(ack).slice(0, 200)}`);
  }
  return acks.length;
}

/** Requests in the wrong order and on other peers' objects. */
async function outOfOrder(peer, victim) {
  const send = await peer.request('createWebRtcTransport', { producing: true, consuming: false });
  const mine = send.id;
  const answers = await Promise.all([
    peer.request('produce', { transportId: mine, kind: 'video', rtpParameters: vp8Parameters(), appData: {} }), // before connect
    peer.request('createConsumer', { producingPeerId: victim.id, producerId: victim.producerId }), // before joining
    peer.request('resumeConsumer', { producerId: victim.producerId }),
    peer.request('closeProducer', { producerId: victim.producerId }), // another peer's producer
    peer.request('pauseProducer', { producerId: victim.producerId }),
    peer.request('connectWebRtcTransport', { transportId: victim.transportId, dtlsParameters: DTLS_PARAMETERS }), // another peer's transport
    peer.request('restartIce', { transportId: victim.transportId }),
    peer.request('leaveRoom', { roomId: victim.room }),
    peer.request('joinRoom', { roomId: victim.room }),
    peer.request('joinRoom', { roomId: victim.room }),
    peer.request('createConsumer', { producingPeerId: victim.id, producerId: victim.producerId }), // no receive transport
  ]);
  const codes = answers.map((a) => a.error?.code ?? 'ok');
  for (const forbidden of [3, 4, 5, 6]) {
    assert.notEqual(codes[forbidden], 'ok', `touching another peer's objects must fail: ${codes}`);
  }
  return send;
}

/** Garbage at a transport's media port, from a path that passed ICE and from unknown ones. */
const FP = 'AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99';
/** A WHIP (sendonly, VP8) or WHEP (recvonly) offer. */
function sdpOffer(direction) {
  return ['v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0',
    'm=video 9 UDP/TLS/RTP/SAVPF 96 97', 'c=IN IP4 0.0.0.0', 'a=ice-ufrag:abcd',
    'a=ice-pwd:abcdefghijklmnopqrstuvwx', `a=fingerprint:sha-256 ${FP}`, 'a=setup:actpass', 'a=mid:0',
    'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid', `a=${direction}`, 'a=rtcp-mux',
    'a=rtpmap:96 VP8/90000', 'a=rtpmap:97 rtx/90000', 'a=fmtp:97 apt=96', 'a=ssrc:4242 cname:h', ''].join('\r\n');
}

/**
 * WHIP and WHEP from a hostile client: mangled offers (lines cut, bytes
 * flipped, attributes repeated past the limits, oversized), wrong content
 * types, PATCHes of garbage and of unknown sessions; then one real WHEP
 * session of the victim's room and one WHIP session, both ended with DELETE.
 * Returns the number of requests answered (every one must be).
 */
async function whipChaos(url, r) {
  const postSdp = (path, body, type = 'application/sdp') =>
    fetch(`${url}${path}`, { method: 'POST', headers: { 'Content-Type': type }, body });
  let answered = 0;
  const expectRefused = async (pending, what) => {
    const response = await pending;
    assert.ok(response.status >= 400 && response.status < 500, `${what}: ${response.status} ${await response.text()}`);
    answered += 1;
  };
  const valid = sdpOffer('sendonly');
  const lines = valid.split('\r\n');
  for (let i = 0; i < 12; i += 1) {
    const kind = r.int(5);
    let body;
    if (kind === 0) body = lines.slice(0, r.int(lines.length)).join('\r\n').replace('a=fingerprint', 'a=x');
    else if (kind === 1) body = r.bytes(1 + r.int(2000)).toString('latin1');
    else if (kind === 2) body = `${valid}${'a=ssrc:1 cname:x\r\n'.repeat(500)}`;
    else if (kind === 3) body = valid.replace('m=video 9', `m=video 9 ${'96 '.repeat(100)}`);
    else body = `v=0\r\n${'m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n'.repeat(20)}`;
    await expectRefused(postSdp(`/whip/hostile-whip`, body), `mangled offer (${kind})`);
  }
  await expectRefused(postSdp('/whip/hostile-whip', valid, 'text/plain'), 'wrong content type');
  await expectRefused(postSdp('/whip/hostile-whip', 'v=0\r\n'.repeat(20_000)), 'oversized');
  await expectRefused(fetch(`${url}/whip/hostile-whip/${'0'.repeat(64)}`, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': '*' }, body: r.bytes(300) }), 'PATCH of no session');
  // Real sessions, ended properly.
  const player = await postSdp('/whep/victim-room', sdpOffer('recvonly'));
  assert.equal(player.status, 201, await player.clone().text());
  const publisher = await postSdp('/whip/hostile-whip', valid);
  assert.equal(publisher.status, 201, await publisher.clone().text());
  const patch = await fetch(`${url}${publisher.headers.get('location')}`, {
    method: 'PATCH',
    headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', 'If-Match': publisher.headers.get('etag') },
    body: r.bytes(500).toString('latin1'),
  });
  assert.equal(patch.status, 204, 'garbage trickle with the right ETag is acknowledged and ignored');
  for (const session of [player, publisher]) {
    assert.equal((await fetch(`${url}${session.headers.get('location')}`, { method: 'DELETE' })).status, 200);
  }
  return answered + 5;
}

async function mediaGarbage(r, transportInfo, repeats) {
  const udp = transportInfo.iceCandidates.find((c) => c.protocol === 'udp');
  const tcp = transportInfo.iceCandidates.find((c) => c.protocol === 'tcp');
  const inside = await udpClient();
  const outside = await udpClient();
  try {
    const answered = await passIce(inside, transportInfo);
    assert.ok(answered, 'a correct binding request from Node is answered (so the garbage below reaches the transport)');
    for (let i = 0; i < repeats; i += 1) {
      for (const datagram of garbageDatagrams(r, transportInfo)) {
        await inside.send(datagram, udp.port);
        await outside.send(datagram, udp.port);
      }
    }
    if (tcp) await tcpGarbage(r, tcp.port);
  } finally {
    inside.close();
    outside.close();
  }
}

test(`hostile clients (${ROUNDS} rounds, seed ${SEED}) never break the server or a well-behaved room`, { timeout: 60_000 + ROUNDS * 20_000 }, async (t) => {
  console.log(`hostile suite: HOSTILE_SEED=${SEED} HOSTILE_ROUNDS=${ROUNDS}`);
  const { url, child, output } = await startServer(t, {
    args: ['--resume-grace-ms', '300', ...(process.env.HOSTILE_LOG_LEVEL ? ['--log-level', process.env.HOSTILE_LOG_LEVEL] : [])],
  });
  t.after(() => {
    if (process.env.HOSTILE_SHOW_LOG) console.log(output().slice(-5000));
  });
  const roundSeconds = 4;
  const bot = runBot(url, { seconds: 3 + ROUNDS * roundSeconds, out: path.join(os.tmpdir(), `hostile-bot-${process.pid}.json`) });
  t.after(() => bot.child.kill('SIGKILL'));
  bot.done.catch(() => {}); // awaited below; a failure before then must not also be unhandled
  await settles(url, (h) => h.peers >= BOT_PEERS && h.consumers >= 2, 'the bot room is up');
  const baseline = await health(url);

  // A victim peer whose producer hostile clients try to take over.
  const victim = await connect(url, t);
  const victimSend = await victim.ok('createWebRtcTransport', { producing: true, consuming: false });
  await victim.ok('connectWebRtcTransport', { transportId: victimSend.id, dtlsParameters: DTLS_PARAMETERS });
  await victim.ok('joinRoom', { roomId: 'victim-room' });
  const { id: victimProducer } = await victim.ok('produce', { transportId: victimSend.id, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'cam' } });
  const victimInfo = { id: victim.id, producerId: victimProducer, transportId: victimSend.id, room: 'victim-room' };

  const rss = [];
  let answered = 0;
  for (let round = 0; round < ROUNDS; round += 1) {
    const r = rng(SEED + round);
    const started = Date.now();
    const hostile = [];
    for (let i = 0; i < 3; i += 1) hostile.push(await connect(url, t, i === 0 ? { auth: { resume: true } } : {}));
    const known = {
      ids: [victim.id, victimProducer, victimSend.id, ...hostile.map((h) => h.id)],
      rooms: ['victim-room', `hostile-${round}`],
    };
    await hostile[1].ok('joinRoom', { roomId: `hostile-${round}` });
    const [send0, send1] = await Promise.all([outOfOrder(hostile[0], victimInfo), outOfOrder(hostile[1], victimInfo)]);
    known.ids.push(send0.id, send1.id);
    answered += 22;
    // A flood from one client and random requests from the others, at once.
    const counts = await Promise.all([chaos(hostile[0], r, known, 300), chaos(hostile[1], r, known, 60), chaos(hostile[2], r, known, 60)]);
    answered += counts.reduce((a, b) => a + b, 0);
    // Media-port garbage at both workers (peers alternate between them), on
    // fresh transports (the chaos above may have restarted ICE on the others).
    const targets = new Map(); // media port -> transportInfo
    for (let i = 0; i < 6 && targets.size < 2; i += 1) {
      const udpHostile = await connect(url, t);
      hostile.push(udpHostile);
      const info = await udpHostile.ok('createWebRtcTransport', { producing: true, consuming: false });
      if (i % 2 === 0) await udpHostile.ok('connectWebRtcTransport', { transportId: info.id, dtlsParameters: DTLS_PARAMETERS });
      targets.set(info.transportInfo.iceCandidates[0].port, info.transportInfo);
    }
    assert.equal(targets.size, 2, 'both workers are hit');
    await Promise.all([...targets.values()].map((info) => mediaGarbage(r, info, 3)));
    answered += await whipChaos(url, r);

    // The victim is intact: its producer is still its own and listed.
    const listed = await victim.waitForPush('availableProducers', (d) => d[victim.id]?.producers[victimProducer]?.paused === false);
    assert.ok(listed, 'the victim keeps its producer, unpaused');
    assert.deepEqual(victim.received('consumerClosed'), []);
    // Hostile clients leave every way there is: goodbye, socket cut, resumable cut.
    hostile[0].socket.io.engine.close();
    hostile[1].close();
    hostile[2].socket.io.engine.close();
    for (const udpHostile of hostile.slice(3)) udpHostile.close();
    await settles(url, (h) => h.peers === baseline.peers + 1 && h.transports === baseline.transports + 1 && h.producers === baseline.producers + 1,
      `round ${round}: the hostile clients' peers, transports and producers are gone`);
    // A fresh, polite client is served.
    const polite = await connect(url, t);
    await polite.ok('joinRoom', { roomId: `polite-${round}` });
    assert.ok(Array.isArray((await polite.ok('getRouterRtpCapabilities')).routerRtpCapabilities.codecs));
    polite.close();
    rss.push(rssKb(child.pid));
    console.log(`round ${round}: ${Date.now() - started} ms, ${answered} requests answered so far, VmRSS ${rss.at(-1)} kB`);
    const spare = roundSeconds * 1000 - (Date.now() - started);
    if (spare > 0) await new Promise((res) => setTimeout(res, spare));
  }

  const report = await bot.done;
  console.log(`bot: ${report.receiving_streams}/${report.expected_streams} streams receiving, loss ${report.loss_pct.toFixed(2)} %, p99 ${report.latency.p99_ms} ms`);
  assert.equal(report.join_failures, 0, 'the bot peers joined');
  assert.equal(report.receiving_streams, report.expected_streams, 'every well-behaved subscriber received media');
  assert.ok(report.loss_pct < 5, `well-behaved media kept flowing (loss ${report.loss_pct} %)`);
  // Memory: after the first round (allocator warm-up), rounds must not keep adding.
  if (rss.length >= 3) {
    const growth = rss.at(-1) - rss[1];
    assert.ok(growth < 16 * 1024 + 1024 * rss.length, `VmRSS grew ${growth} kB across rounds: ${rss.join(', ')}`);
  }
});

test('a resumable hostile client cannot use a resume token of another peer or a forged one', async (t) => {
  const { url } = await startServer(t);
  const r = rng(SEED);
  for (let i = 0; i < 20; i += 1) {
    const auth = { resume: { peerId: r.pick(['a', 'x'.repeat(64), '']), token: r.bytes(32).toString('hex') } };
    const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, auth });
    const message = await new Promise((resolve) => {
      socket.once('connect', () => resolve('connected'));
      socket.once('connect_error', (e) => resolve(e.message));
    });
    socket.disconnect();
    assert.match(message, /^(resume_failed|invalid_auth): /);
  }
});

test('a flood of 10000 requests at once, rate limit off: every request is acked or counted as dropped, and another peer does not notice', async (t) => {
  // socketioxide queues at most max_buffer_size packets per connection (4096
  // here). A client that sends faster than it reads its answers may find it
  // full; those acks are dropped and counted, never silently lost, and the
  // server keeps serving everyone else. (With socketioxide's default of 128, a
  // flood of 2000 lost about a tenth of its acks; with 4096 most floods of
  // 10000 lose none, but not all: it depends on how fast the writer drains.)
  const { url, output } = await startServer(t, { args: ['--requests-per-second', '1000000', '--request-burst', '1000000'] });
  const flooder = await connect(url, t);
  const bystander = await connect(url, t);
  const r = rng(SEED);
  const flood = Promise.allSettled(Array.from({ length: 10000 }, (_, i) => flooder.request(r.pick(['leaveRoom', 'closeProducer', 'fly']), i)));
  // Meanwhile another peer is answered as usual.
  const started = Date.now();
  const own = await bystander.request('getRouterRtpCapabilities');
  assert.ok(Array.isArray(own.codecs), `the bystander got its capabilities: ${JSON.stringify(own).slice(0, 200)}`);
  const settled = await flood;
  const answered = settled.filter((s) => s.status === 'fulfilled');
  assert.ok(answered.every((s) => typeof s.value?.error?.code === 'string'), 'every ack that arrived is a coded error');
  const timedOut = settled.length - answered.length;
  const dropped = (await scrapeMetrics(url)).simplesfu_acks_dropped_total;
  assert.equal(answered.length + dropped, 10000, `${answered.length} acks arrived, ${dropped} counted as dropped, ${timedOut} timed out`);
  assert.equal(timedOut, dropped, 'every ack that did not arrive was counted');
  // The send queue's worth of answers always gets through.
  assert.ok(answered.length >= 4096, `only ${answered.length} acks arrived`);
  // Drops are logged once, not once each.
  assert.ok((output().match(/could not send an ack/g) ?? []).length <= 1);
  t.diagnostic(`flood: ${answered.length} acked, ${dropped} dropped and counted; bystander answered after ${Date.now() - started} ms`);
});
