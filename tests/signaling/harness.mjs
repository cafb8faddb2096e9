// Test harness for the signaling tests: starts the real `simplesfu` binary on
// free ports, connects socket.io clients to it, and gives each client a
// `request` that fails the test when no ack arrives (the server must always
// ack) plus a record of every push it received.

import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const defaultBin = path.join(repoRoot, 'target', 'debug', 'simplesfu');

export const ACK_TIMEOUT_MS = 5000;
const PUSH_TIMEOUT_MS = 3000;
const START_TIMEOUT_MS = 15000;

/**
 * Start the server. Resolves with {url, stop, output()}; `stop` kills it and
 * is registered with the test context's `after` when `t` is given, so the
 * server dies even when the test fails.
 */
export async function startServer(t, { args = [], env = {}, cwd } = {}) {
  const bin = process.env.SIMPLESFU_BIN || defaultBin;
  // Two workers whatever the machine, so consumers also cross the pipes between workers.
  const base = ['--http-listen', '127.0.0.1:0', '--rtc-listen-ip', '127.0.0.1', '--rtc-port', '0', '--workers', '2', '--log-level', 'warn'];
  return startProcess(t, bin, [...base, ...args], { env, cwd, ready: /^simplesfu listening on (https?:\/\/\S+)$/m });
}

/**
 * Start a server program and wait for the stdout line `ready` matches (its
 * first group is the URL). Resolves with {url, stop, child, output()}.
 */
export async function startProcess(t, bin, args, { env = {}, cwd, ready }) {
  const child = spawn(bin, args, { env: { ...process.env, RUST_LOG: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'], cwd });
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  };
  if (t) t.after(stop);

  const url = await new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => {
      reject(new Error(`server did not print its address within ${START_TIMEOUT_MS} ms; stderr:\n${stderr}`));
    }, START_TIMEOUT_MS);
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      const match = stdout.match(ready);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`server exited early (code ${code}, signal ${signal}); stderr:\n${stderr}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${bin}: ${err.message} (build it with \`cargo build -p simplesfu --examples\`)`));
    });
  });
  return { url, stop, child, output: () => stderr };
}

/** A token secret for tests (long enough for the server's minimum). */
export const TEST_SECRET = 'signaling-tests-secret-0123456789abcdef';

/** Start the server with join tokens on (secret from the environment, as in production). */
export function startSecureServer(t, { args = [], env = {} } = {}) {
  return startServer(t, { args, env: { SIMPLESFU_AUTH_SECRET: TEST_SECRET, ...env } });
}

/** A join token printed by `simplesfu token` (what an operator runs). */
export function mintToken({ room, publish = false, subscribe = false, data = false, ttl = '1h', secret = TEST_SECRET }) {
  const bin = process.env.SIMPLESFU_BIN || defaultBin;
  const args = ['token', '--room', room, '--ttl', ttl];
  if (publish) args.push('--publish');
  if (subscribe) args.push('--subscribe');
  if (data) args.push('--data');
  return execFileSync(bin, args, { env: { ...process.env, SIMPLESFU_AUTH_SECRET: secret }, encoding: 'utf8' }).trim();
}

/** An HS256 JWT with arbitrary claims, signed here (for tokens the CLI would never make). */
export function signJwt(claims, secret = TEST_SECRET) {
  const part = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');
  const body = `${part({ alg: 'HS256', typ: 'JWT' })}.${part(claims)}`;
  return `${body}.${createHmac('sha256', secret).update(body).digest('base64url')}`;
}

/** The connect_error a refused client gets (fails if it connects). */
export async function connectRefused(url, options = {}) {
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, ...options });
  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('neither connected nor refused within 5 s')), 5000);
      socket.once('connect', () => {
        clearTimeout(timer);
        reject(new Error('connected, but the server should have refused the connection'));
      });
      socket.once('connect_error', (err) => {
        clearTimeout(timer);
        resolve(err);
      });
    });
  } finally {
    socket.disconnect();
  }
}

/** The Prometheus page as {"name{labels}": value}. */
export async function scrapeMetrics(url, fetchOptions = {}) {
  const res = await fetch(`${url}/metrics`, fetchOptions);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/plain/);
  const samples = {};
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    samples[line.slice(0, at)] = Number(line.slice(at + 1));
  }
  return samples;
}

/** Create (and connect) a peer's send and receive transports. */
export async function createTransports(peer, { connectSend = true, connectRecv = false } = {}) {
  const sctpCapabilities = SCTP_CAPABILITIES;
  const send = await peer.ok('createWebRtcTransport', { forceTcp: false, producing: true, consuming: false, sctpCapabilities });
  const recv = await peer.ok('createWebRtcTransport', { forceTcp: false, producing: false, consuming: true, sctpCapabilities });
  if (connectSend) await peer.ok('connectWebRtcTransport', { transportId: send.id, dtlsParameters: DTLS_PARAMETERS });
  if (connectRecv) await peer.ok('connectWebRtcTransport', { transportId: recv.id, dtlsParameters: DTLS_PARAMETERS });
  return { send: send.id, recv: recv.id };
}

/** A connected socket.io client with a push log. */
export class Peer {
  constructor(socket) {
    this.socket = socket;
    this.pushes = [];
    this.waiters = new Set();
    socket.on('mediasoupSignaling', (message) => {
      this.pushes.push(message);
      for (const waiter of [...this.waiters]) waiter(message);
    });
  }

  /** This peer's id, which the server names in the capabilities ack (never the socket id). */
  get id() {
    assert.ok(this.peerId, 'the peer id is known once connect() resolved');
    return this.peerId;
  }

  /** Ask the server for our peer id (the `peerId` of the capabilities ack). */
  async learnId() {
    const caps = await this.request('getRouterRtpCapabilities');
    if (typeof caps?.peerId === 'string') this.peerId = caps.peerId;
    return this.peerId;
  }

  /** Send a request; resolves with the ack, rejects if none arrives in time. */
  async request(type, data) {
    const message = data === undefined ? { type } : { type, data };
    return this.raw(message);
  }

  /** Emit arbitrary arguments (the last argument receives the ack). */
  async raw(...args) {
    try {
      return await this.socket.timeout(ACK_TIMEOUT_MS).emitWithAck('mediasoupSignaling', ...args);
    } catch (err) {
      throw new Error(`no ack within ${ACK_TIMEOUT_MS} ms for ${JSON.stringify(args).slice(0, 200)}: ${err.message}`);
    }
  }

  /** A request that must succeed; returns the ack. */
  async ok(type, data) {
    const ack = await this.request(type, data);
    assert.equal(ack?.success, true, `${type} should succeed, got ${JSON.stringify(ack)}`);
    return ack;
  }

  /** A request that must fail with `code`; returns the error. */
  async fails(type, data, code) {
    return expectError(await this.request(type, data), code, type);
  }

  /** Forget the pushes received so far. */
  clearPushes() {
    this.pushes = [];
  }

  /** Pushes of `type` received so far, as their data. */
  received(type, predicate = () => true) {
    return this.pushes.filter((m) => m.type === type && predicate(m.data)).map((m) => m.data);
  }

  /** Resolve with the data of the first push of `type` matching `predicate` (already received or future). */
  waitForPush(type, predicate = () => true, timeoutMs = PUSH_TIMEOUT_MS) {
    const seen = this.pushes.find((m) => m.type === type && predicate(m.data));
    if (seen) return Promise.resolve(seen.data);
    return new Promise((resolve, reject) => {
      const waiter = (m) => {
        if (m.type === type && predicate(m.data)) {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          resolve(m.data);
        }
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`no ${type} push within ${timeoutMs} ms; got: ${JSON.stringify(this.pushes).slice(0, 500)}`));
      }, timeoutMs);
      this.waiters.add(waiter);
    });
  }

  /** Assert that no push of `type` matching `predicate` arrives within `ms`. */
  async noPush(type, predicate = () => true, ms = 300) {
    await new Promise((r) => setTimeout(r, ms));
    assert.deepEqual(this.received(type, predicate), [], `unexpected ${type} push`);
  }

  close() {
    this.socket.disconnect();
  }
}

export function expectError(ack, code, what = 'request') {
  assert.equal(ack?.success, undefined, `${what} should fail with ${code}, got ${JSON.stringify(ack).slice(0, 300)}`);
  assert.equal(typeof ack?.error?.message, 'string', `error ack needs a message: ${JSON.stringify(ack)}`);
  assert.ok(ack.error.message.length > 0);
  assert.equal(ack.error.code, code, `expected ${code}, got ${JSON.stringify(ack.error)}`);
  return ack.error;
}

/** Connect a new client (its own connection) and wait until it is connected. */
export async function connect(url, t, options = {}) {
  const socket = io(url, { transports: ['websocket'], forceNew: true, reconnection: false, ...options });
  const peer = new Peer(socket);
  if (t) t.after(() => socket.disconnect());
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('could not connect within 5 s')), 5000);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  await peer.learnId();
  return peer;
}

/** A well-behaved peer must still be served: join a room, get capabilities. */
export async function assertStillServing(url, t) {
  const peer = await connect(url, t);
  await peer.ok('joinRoom', { roomId: `sanity-${Math.random()}` });
  const caps = await peer.ok('getRouterRtpCapabilities');
  assert.ok(Array.isArray(caps.routerRtpCapabilities.codecs));
  peer.close();
}

// ---- Realistic client parameters (what Chromium + mediasoup-client send) ----

export const DTLS_PARAMETERS = {
  role: 'client',
  fingerprints: [
    {
      algorithm: 'sha-256',
      value: Array.from({ length: 32 }, (_, i) => ((i * 37 + 11) & 0xff).toString(16).padStart(2, '0').toUpperCase()).join(':'),
    },
  ],
};

export const SCTP_CAPABILITIES = { numStreams: { OS: 1024, MIS: 1024 } };

export function opusParameters({ ssrc = 3333, mid = '0' } = {}) {
  return {
    mid,
    codecs: [
      {
        mimeType: 'audio/opus',
        payloadType: 111,
        clockRate: 48000,
        channels: 2,
        parameters: { minptime: 10, useinbandfec: 1 },
        rtcpFeedback: [{ type: 'transport-cc', parameter: '' }],
      },
    ],
    headerExtensions: [
      { uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4, encrypt: false, parameters: {} },
      { uri: 'urn:ietf:params:rtp-hdrext:ssrc-audio-level', id: 1, encrypt: false, parameters: {} },
    ],
    encodings: [{ ssrc, dtx: false }],
    rtcp: { cname: 'abc', reducedSize: true },
  };
}

function vp8Codecs() {
  return [
    {
      mimeType: 'video/VP8',
      payloadType: 96,
      clockRate: 90000,
      parameters: {},
      rtcpFeedback: [
        { type: 'goog-remb', parameter: '' },
        { type: 'transport-cc', parameter: '' },
        { type: 'ccm', parameter: 'fir' },
        { type: 'nack', parameter: '' },
        { type: 'nack', parameter: 'pli' },
      ],
    },
    { mimeType: 'video/rtx', payloadType: 97, clockRate: 90000, parameters: { apt: 96 }, rtcpFeedback: [] },
  ];
}

const VIDEO_EXTENSIONS = [
  { uri: 'urn:ietf:params:rtp-hdrext:sdes:mid', id: 4, encrypt: false, parameters: {} },
  { uri: 'http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time', id: 2, encrypt: false, parameters: {} },
  { uri: 'http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', id: 3, encrypt: false, parameters: {} },
  { uri: 'urn:3gpp:video-orientation', id: 13, encrypt: false, parameters: {} },
];

export function vp8Parameters({ ssrc = 1111, rtxSsrc = 2222, mid = '1' } = {}) {
  return {
    mid,
    codecs: vp8Codecs(),
    headerExtensions: VIDEO_EXTENSIONS,
    encodings: [{ ssrc, rtx: { ssrc: rtxSsrc }, dtx: false }],
    rtcp: { cname: 'abc', reducedSize: true },
  };
}

export function vp8SimulcastParameters({ mid = '2' } = {}) {
  return {
    mid,
    codecs: vp8Codecs(),
    headerExtensions: [
      ...VIDEO_EXTENSIONS,
      { uri: 'urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id', id: 10, encrypt: false, parameters: {} },
      { uri: 'urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id', id: 11, encrypt: false, parameters: {} },
    ],
    encodings: [
      { active: true, maxBitrate: 100000, rid: 'r0', scaleResolutionDownBy: 4, scalabilityMode: 'L1T3', dtx: false },
      { active: true, maxBitrate: 300000, rid: 'r1', scaleResolutionDownBy: 2, scalabilityMode: 'L1T3', dtx: false },
      { active: true, maxBitrate: 900000, rid: 'r2', scaleResolutionDownBy: 1, scalabilityMode: 'L1T3', dtx: false },
    ],
    rtcp: { cname: 'abc', reducedSize: true },
  };
}
