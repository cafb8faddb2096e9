// What an operator deploying the server sees: HTTPS/WSS, the CORS policy,
// the configuration file and its precedence, and logs that keep IP
// addresses, tokens and SDP out at info level.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { mkdtempSync, writeFileSync, rmSync, readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  startServer,
  startSecureServer,
  connect,
  mintToken,
  createTransports,
  opusParameters,
  vp8Parameters,
  DTLS_PARAMETERS,
  TEST_SECRET,
} from './harness.mjs';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const bin = process.env.SIMPLESFU_BIN || path.join(repoRoot, 'target', 'debug', 'simplesfu');

function tempDir(t) {
  const dir = mkdtempSync(path.join(tmpdir(), 'simplesfu-deploy-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function httpsGet(url) {
  return new Promise((resolve, reject) => {
    https
      .get(url, { rejectUnauthorized: false, agent: false }, (res) => {
        const cert = res.socket.getPeerCertificate();
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body, cert }));
      })
      .on('error', reject);
  });
}

test('--tls-self-signed serves HTTPS and socket.io over wss', async (t) => {
  const { url } = await startServer(t, { args: ['--tls-self-signed'] });
  assert.match(url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const health = await httpsGet(`${url}/health`);
  assert.equal(health.status, 200);
  assert.equal(JSON.parse(health.body).status, 'ok');
  assert.match(health.cert.subjectaltname, /DNS:localhost/);
  assert.match(health.cert.subjectaltname, /IP Address:127\.0\.0\.1/);

  const peer = await connect(url, t, { rejectUnauthorized: false });
  assert.equal(peer.socket.io.engine.transport.name, 'websocket');
  assert.deepEqual(await peer.ok('joinRoom', { roomId: 'secure' }), { success: true });
  await peer.ok('getRouterRtpCapabilities');
});

test('--tls-cert/--tls-key serve the given certificate; unusable files stop the start with their paths', async (t) => {
  const dir = tempDir(t);
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  let haveOpenssl = true;
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=sfu.test', '-addext', 'subjectAltName=DNS:sfu.test'],
      { stdio: 'ignore' });
  } catch {
    haveOpenssl = false;
  }
  if (haveOpenssl) {
    const { url } = await startServer(t, { args: ['--tls-cert', cert, '--tls-key', key] });
    const health = await httpsGet(`${url}/health`);
    assert.equal(health.status, 200);
    assert.equal(health.cert.subject.CN, 'sfu.test', 'the configured certificate is served');
    const peer = await connect(url, t, { rejectUnauthorized: false });
    await peer.ok('joinRoom', { roomId: 'given-cert' });
  } else {
    t.diagnostic('openssl not found: only the refusals are checked');
  }
  writeFileSync(cert, 'not a certificate');
  writeFileSync(key, 'not a key');
  await assert.rejects(startServer(t, { args: ['--tls-cert', cert, '--tls-key', key] }), /cannot use the TLS certificate .*cert\.pem/);
  await assert.rejects(startServer(t, { args: ['--tls-cert', cert] }), /tls\.cert and tls\.key/);
});

test('with tokens on, only this server\'s pages and the configured origins may signal', async (t) => {
  const { url } = await startSecureServer(t, { args: ['--cors-origins', 'https://app.example'] });
  const host = new URL(url).host;
  const poll = (origin) =>
    fetch(`${url}/socket.io/?EIO=4&transport=polling`, origin ? { headers: { Origin: origin } } : {});

  const foreign = await poll('https://evil.example');
  assert.equal(foreign.status, 403);
  assert.match(await foreign.text(), /http\.cors_origins/);
  const listed = await poll('https://app.example');
  assert.equal(listed.status, 200);
  assert.equal(listed.headers.get('access-control-allow-origin'), 'https://app.example');
  assert.equal((await poll(`http://${host}`)).status, 200, 'the server\'s own pages');
  assert.equal((await poll()).status, 200, 'clients that are not browsers send no Origin');
  const preflight = await fetch(`${url}/socket.io/?EIO=4&transport=polling`, {
    method: 'OPTIONS',
    headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' },
  });
  assert.equal(preflight.headers.get('access-control-allow-origin'), null);
});

test('with tokens on and no origins configured, other origins are refused', async (t) => {
  const { url } = await startSecureServer(t);
  const res = await fetch(`${url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: 'https://elsewhere.example' } });
  assert.equal(res.status, 403);
  const health = await fetch(`${url}/health`, { headers: { Origin: 'https://elsewhere.example' } });
  assert.equal(health.headers.get('access-control-allow-origin'), null);
});

test('the configuration file is read, and environment and flags override it', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'simplesfu.toml');
  writeFileSync(file, '[limits]\npeers_per_room = 1\nproducers_per_peer = 1\n[rtc]\nworkers = 1\n');
  // File: one peer per room; environment: 3 workers over the file's 1; flag: 2 over the environment.
  const { url } = await startServer(t, {
    args: ['--config', file, '--workers', '2'],
    env: { SIMPLESFU_WORKERS: '3', SIMPLESFU_MAX_PRODUCERS_PER_PEER: '5' },
  });
  const health = await (await fetch(`${url}/health`)).json();
  assert.equal(health.workers, 2, 'the flag wins over the environment and the file');
  const a = await connect(url, t);
  const b = await connect(url, t);
  await a.ok('joinRoom', { roomId: 'one' });
  await b.fails('joinRoom', { roomId: 'one' }, 'limit_reached');
  const { send } = await createTransports(a);
  await a.ok('produce', { transportId: send, kind: 'audio', rtpParameters: opusParameters(), appData: {} });
  await a.ok('produce', { transportId: send, kind: 'video', rtpParameters: vp8Parameters(), appData: {} }, 'the environment (5) wins over the file (1)');
});

test('an unknown key in the configuration file stops the start with its name', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 'typo.toml');
  writeFileSync(file, '[limits]\npeers_per_rom = 3\n');
  let stderr = '';
  try {
    execFileSync(bin, ['--config', file], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_BACKTRACE: '0' } });
    assert.fail('the server started with an unknown key');
  } catch (err) {
    stderr = err.stderr;
    assert.equal(err.status, 1);
  }
  assert.match(stderr, /unknown field `peers_per_rom`/);
  assert.match(stderr, /expected one of `peers_per_room`/);
  assert.match(stderr, /typo\.toml/);
  assert.match(stderr, /line 2/);
});

test('the sample configuration starts the server as it is', async (t) => {
  const sample = path.join(repoRoot, 'simplesfu.example.toml');
  assert.match(readFileSync(sample, 'utf8'), /\[limits\]/);
  const { url } = await startServer(t, { args: ['--config', sample] });
  const p = await connect(url, t);
  await p.ok('joinRoom', { roomId: 'sample' });
});

test('info logs name peers and rooms but never IP addresses, tokens or SDP', async (t) => {
  const { url, output, stop } = await startSecureServer(t, { args: ['--log-level', 'info', '--announced-ip', '127.0.0.1'] });
  const token = mintToken({ room: 'private-room', publish: true, subscribe: true, data: true });
  const a = await connect(url, t, { auth: { token } });
  const b = await connect(url, t, { auth: { token } });
  const ta = await createTransports(a, { connectRecv: true });
  const tb = await createTransports(b, { connectRecv: true });
  await a.ok('joinRoom', { roomId: 'private-room' });
  await b.ok('joinRoom', { roomId: 'private-room' });
  await a.ok('produce', { transportId: ta.send, kind: 'video', rtpParameters: vp8Parameters(), appData: { label: 'cam' } });
  await b.waitForPush('createConsumer');
  await b.fails('joinRoom', { roomId: 'another-room' }, 'forbidden');
  await b.ok('produceData', { transportId: tb.send, sctpStreamParameters: { streamId: 3, ordered: true }, label: 'chat' });
  // A refused connection is logged too.
  const { connectRefused } = await import('./harness.mjs');
  await connectRefused(url, { auth: { token: `${token}x` } });
  const peerId = a.id;
  a.close();
  await b.waitForPush('peerDisconnection');
  b.close();
  await new Promise((r) => setTimeout(r, 200));
  await stop();

  // Without each line's timestamp, whose colons look like an IPv6 address.
  const logs = output().replace(/^\S+Z /gm, '');
  // The session did get logged, with its fields.
  assert.match(logs, /INFO .*peer connected/);
  assert.match(logs, new RegExp(`peer connected peer=${peerId}`));
  assert.match(logs, /room=private-room/);
  assert.match(logs, /connection refused.*reason="?bad_signature/);
  // ...and nothing that identifies a network location or grants access.
  assert.doesNotMatch(logs, /\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b/, 'an IPv4 address');
  assert.doesNotMatch(logs, /\[?::1\]?|\b[0-9a-f]{1,4}(:[0-9a-f]{0,4}){2,7}\b/i, 'an IPv6 address');
  assert.ok(!logs.includes(token.split('.')[2]), 'the token (its signature)');
  assert.ok(!logs.includes(TEST_SECRET), 'the secret');
  assert.doesNotMatch(logs, /a=(fingerprint|ice-ufrag|ice-pwd|candidate)|\bv=0\b/, 'SDP');
  assert.ok(!logs.includes(DTLS_PARAMETERS.fingerprints[0].value), 'the DTLS fingerprint');
});
