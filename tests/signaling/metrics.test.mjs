// /metrics as an operator's Prometheus sees it: gauges of what exists,
// per-worker counters from the media engine, and signaling counters, all
// moving with what clients do.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { startServer, connect, createTransports, opusParameters, scrapeMetrics } from './harness.mjs';

test('/metrics is Prometheus text with HELP and TYPE for every family', async (t) => {
  const { url } = await startServer(t);
  const res = await fetch(`${url}/metrics`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const text = await res.text();
  for (const family of [
    'peers',
    'rooms',
    'transports',
    'producers',
    'consumers',
    'worker_load',
    'rtp_packets_received_total',
    'rtp_packets_sent_total',
    'rtp_bytes_received_total',
    'rtp_bytes_sent_total',
    'worker_cpu_microseconds_total',
    'datagrams_dropped_total',
    'data_messages_dropped_total',
    'ice_tcp_connections',
    'ice_tcp_connections_refused_total',
    'ice_tcp_connections_unauthenticated_total',
    'ice_tcp_connections_idle_total',
    'ice_tcp_frames_dropped_total',
    'ice_tcp_accept_errors_total',
    'requests_total',
    'request_errors_total',
    'layer_switches_total',
    'consumers_paused_for_bandwidth',
  ]) {
    assert.match(text, new RegExp(`^# TYPE simplesfu_${family} (gauge|counter)$`, 'm'), family);
  }
  assert.match(text, /^# TYPE simplesfu_bandwidth_estimate_bps histogram$/m);
  assert.match(text, /^simplesfu_bandwidth_estimate_bps_bucket\{worker="0",le="\+Inf"\} 0$/m, 'no estimates before any viewer');
  assert.match(text, /^simplesfu_bandwidth_estimate_bps_count\{worker="1"\} 0$/m);
  for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) {
    assert.match(line, /^simplesfu_[a-z_]+(\{[a-z]+="[^"]*"(,[a-z]+="[^"]*")*\})? \d+$/, `sample line: ${line}`);
  }
});

test('counts move with what clients do', async (t) => {
  const { url } = await startServer(t);
  const before = await scrapeMetrics(url);
  assert.equal(before['simplesfu_peers'], 0);
  assert.equal(before['simplesfu_workers'], 2);
  assert.equal(before['simplesfu_worker_load{worker="0"}'], 0);
  assert.equal(before['simplesfu_worker_load{worker="1"}'], 0);

  const a = await connect(url, t);
  const b = await connect(url, t);
  const ta = await createTransports(a);
  await createTransports(b);
  await a.ok('joinRoom', { roomId: 'm' });
  await b.ok('joinRoom', { roomId: 'm' });
  await a.ok('produce', { transportId: ta.send, kind: 'audio', rtpParameters: opusParameters(), appData: { label: 'mic' } });
  await b.waitForPush('createConsumer');
  await a.fails('closeProducer', { producerId: '00000000-0000-4000-8000-000000000000' }, 'producer_not_found');
  await a.request('noSuchRequest');

  const after = await scrapeMetrics(url);
  assert.equal(after['simplesfu_peers'], 2);
  assert.equal(after['simplesfu_rooms'], 1);
  assert.equal(after['simplesfu_transports'], 4);
  assert.equal(after['simplesfu_producers'], 1);
  assert.equal(after['simplesfu_consumers'], 1);
  assert.equal(after['simplesfu_connections_total'], 2);
  assert.equal(after['simplesfu_requests_total{type="joinRoom"}'], 2);
  assert.equal(after['simplesfu_requests_total{type="produce"}'], 1);
  assert.equal(after['simplesfu_requests_total{type="unknown"}'], 1, 'unknown types share one label');
  assert.equal(after['simplesfu_request_errors_total{code="producer_not_found"}'], 1);
  assert.equal(after['simplesfu_request_errors_total{code="unknown_request"}'], 1);
  const load = after['simplesfu_worker_load{worker="0"}'] + after['simplesfu_worker_load{worker="1"}'];
  assert.ok(load >= 5, `the workers carry 4 transports and a consumer (load ${load})`);
  const transports = after['simplesfu_worker_transports{worker="0"}'] + after['simplesfu_worker_transports{worker="1"}'];
  assert.equal(transports, 4);

  a.close();
  await b.waitForPush('peerDisconnection');
  const gone = await scrapeMetrics(url);
  assert.equal(gone['simplesfu_peers'], 1);
  assert.equal(gone['simplesfu_producers'], 0);
});

test('datagrams that belong to no transport are counted as dropped', async (t) => {
  const { url } = await startServer(t);
  const p = await connect(url, t);
  const ack = await p.ok('createWebRtcTransport', { producing: true, consuming: false });
  const udp = ack.iceCandidates.find((c) => (c.protocol ?? 'udp') === 'udp');
  const before = await scrapeMetrics(url);
  const dropped = (m) => Object.entries(m).filter(([k]) => k.startsWith('simplesfu_datagrams_dropped_total')).reduce((s, [, v]) => s + v, 0);

  const socket = dgram.createSocket('udp4');
  t.after(() => socket.close());
  for (let i = 0; i < 3; i++) {
    await new Promise((resolve, reject) => socket.send(Buffer.from('not webrtc'), udp.port, udp.ip ?? udp.address, (e) => (e ? reject(e) : resolve())));
  }
  // The worker counts asynchronously: poll the page, as Prometheus would.
  let after = before;
  for (let i = 0; i < 50 && dropped(after) < dropped(before) + 3; i++) {
    await new Promise((r) => setTimeout(r, 20));
    after = await scrapeMetrics(url);
  }
  assert.equal(dropped(after), dropped(before) + 3);
});
