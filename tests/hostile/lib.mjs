// Tools of the hostile-client suite: raw ICE (STUN binding requests with real
// MESSAGE-INTEGRITY, so datagrams get past the demux and into a transport),
// garbage generators for STUN, DTLS, RTP and RTCP, the server's memory, and
// the Rust bot as the well-behaved peers whose media must keep flowing.

import crypto from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import zlib from 'node:zlib';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** A seeded PRNG (mulberry32), so a failing round can be replayed with HOSTILE_SEED. */
export function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return {
    next,
    int: (n) => Math.floor(next() * n),
    pick: (list) => list[Math.floor(next() * list.length)],
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256))),
  };
}

function stunAttr(type, value) {
  const pad = (4 - (value.length % 4)) % 4;
  const b = Buffer.alloc(4 + value.length + pad);
  b.writeUInt16BE(type, 0);
  b.writeUInt16BE(value.length, 2);
  value.copy(b, 4);
  return b;
}

/**
 * An ICE binding request from a controlling client: USERNAME
 * `serverUfrag:clientUfrag`, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE,
 * MESSAGE-INTEGRITY keyed with the server's password, FINGERPRINT.
 */
export function bindingRequest({ serverUfrag, serverPassword, clientUfrag = 'hostile1', integrity = true }) {
  const txid = crypto.randomBytes(12);
  const header = (bodyLength) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(0x0001, 0);
    h.writeUInt16BE(bodyLength, 2);
    h.writeUInt32BE(0x2112a442, 4);
    txid.copy(h, 8);
    return h;
  };
  const priority = Buffer.alloc(4);
  priority.writeUInt32BE(1853824767);
  let body = Buffer.concat([
    stunAttr(0x0006, Buffer.from(`${serverUfrag}:${clientUfrag}`)),
    stunAttr(0x0024, priority),
    stunAttr(0x802a, crypto.randomBytes(8)),
    stunAttr(0x0025, Buffer.alloc(0)),
  ]);
  if (integrity) {
    const mac = crypto.createHmac('sha1', serverPassword).update(Buffer.concat([header(body.length + 24), body])).digest();
    body = Buffer.concat([body, stunAttr(0x0008, mac)]);
  }
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE((zlib.crc32(Buffer.concat([header(body.length + 8), body])) ^ 0x5354554e) >>> 0);
  body = Buffer.concat([body, stunAttr(0x8028, crc)]);
  return { packet: Buffer.concat([header(body.length), body]), txid };
}

/** A UDP socket on loopback with a queue of what arrives. */
export async function udpClient() {
  const socket = dgram.createSocket('udp4');
  const inbox = [];
  const waiters = [];
  socket.on('message', (msg) => {
    inbox.push(msg);
    for (const w of waiters.splice(0)) w();
  });
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  return {
    socket,
    inbox,
    send: (buf, port) => new Promise((resolve) => socket.send(buf, port, '127.0.0.1', () => resolve())),
    /** Resolves with the first datagram matching `predicate`, or null after `ms`. */
    async receive(predicate, ms = 2000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = inbox.find(predicate);
        if (found) return found;
        const left = deadline - Date.now();
        if (left <= 0) return null;
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, left);
          waiters.push(() => {
            clearTimeout(timer);
            resolve();
          });
        });
      }
    },
    close: () => socket.close(),
  };
}

/** Pass ICE on a transport from `client`: gives the success response (or null). */
export async function passIce(client, transportInfo) {
  const udp = transportInfo.iceCandidates.find((c) => c.protocol === 'udp');
  const { packet, txid } = bindingRequest({
    serverUfrag: transportInfo.iceParameters.usernameFragment,
    serverPassword: transportInfo.iceParameters.password,
  });
  await client.send(packet, udp.port);
  return client.receive((m) => m.length >= 20 && m.readUInt16BE(0) === 0x0101 && m.subarray(8, 20).equals(txid));
}

/** Datagrams of every kind a broken or hostile client might send. */
export function garbageDatagrams(r, transportInfo) {
  const ufrag = transportInfo?.iceParameters.usernameFragment ?? 'nobody';
  const stunHeader = (type, length) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(length, 2);
    h.writeUInt32BE(0x2112a442, 4);
    r.bytes(12).copy(h, 8);
    return h;
  };
  const good = bindingRequest({ serverUfrag: ufrag, serverPassword: 'wrong-password' }).packet;
  const rtp = (pt) => Buffer.concat([Buffer.from([0x80, pt, r.int(256), r.int(256)]), r.bytes(8 + r.int(200))]);
  return [
    Buffer.alloc(0),
    r.bytes(1),
    r.bytes(1 + r.int(1500)),
    r.bytes(9000), // over the MTU and the receive buffer
    stunHeader(0x0001, 0).subarray(0, 10 + r.int(10)), // truncated STUN header
    stunHeader(0x0001, 400), // length says more than there is
    Buffer.concat([stunHeader(0x0001, 8), Buffer.from([0x00, 0x06, 0xff, 0xff]), r.bytes(4)]), // attribute overruns
    good, // right ufrag, wrong integrity
    good.subarray(0, good.length - r.int(good.length - 20) - 1), // truncated request
    bindingRequest({ serverUfrag: 'unknown-ufrag', serverPassword: 'x' }).packet,
    Buffer.concat([Buffer.from([22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0]), Buffer.from([0x01, 0x00]), r.bytes(256)]), // DTLS handshake record, lying length
    Buffer.concat([Buffer.from([23, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 5, 0, 64]), r.bytes(64)]), // DTLS application data, epoch 1
    Buffer.from([21, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 9, 0, 2]), // DTLS alert, truncated
    Buffer.from([20 + r.int(44)]), // one byte in the DTLS range
    rtp(96), // RTP without SRTP
    rtp(111).subarray(0, 12), // bare RTP header
    Buffer.from([0x80, 96, 0, 1]), // truncated RTP header
    Buffer.concat([Buffer.from([0x90, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xbe, 0xde, 0xff, 0xff]), r.bytes(8)]), // extension header overruns
    rtp(200 + r.int(7)), // RTCP types
    Buffer.concat([Buffer.from([0x81, 201, 0xff, 0xff]), r.bytes(20)]), // RTCP length overruns
    Buffer.concat([Buffer.from([0x80 | 0x20, 96, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1]), Buffer.from([0xff])]), // padding bit, bad pad length
  ];
}

/** Send garbage over ICE-TCP: unframed bytes, lying RFC 4571 lengths, floods. */
export async function tcpGarbage(r, port) {
  const sessions = [
    r.bytes(1 + r.int(3000)),
    Buffer.concat([Buffer.from([0xff, 0xff]), r.bytes(100)]), // frame length 65535, never completed
    Buffer.concat([Buffer.from([0x00, 0x00]), Buffer.from([0x00, 0x04]), r.bytes(4)]), // empty frame, then garbage
    Buffer.concat(Array.from({ length: 50 }, () => { const d = r.bytes(1 + r.int(200)); const l = Buffer.alloc(2); l.writeUInt16BE(d.length); return Buffer.concat([l, d]); })),
  ];
  await Promise.all(
    sessions.map(
      (bytes) =>
        new Promise((resolve) => {
          const c = net.connect(port, '127.0.0.1', () => {
            c.write(bytes, () => setTimeout(() => c.destroy(), 50));
          });
          c.on('error', () => resolve());
          c.on('close', () => resolve());
        }),
    ),
  );
}

/** The server's resident memory in kB, from /proc. */
export function rssKb(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = status.match(/^VmRSS:\s+(\d+) kB/m);
  return match ? Number(match[1]) : NaN;
}

/** Run the bot (well-behaved publisher and subscribers) for `seconds`; resolves with its JSON report. */
export function runBot(url, { seconds, subscribers = 2, out }) {
  const bin = process.env.SIMPLESFU_BOT_BIN || path.join(repoRoot, 'target', 'debug', 'simplesfu-bot');
  const args = ['run', '--server', url, '--publishers', '1', '--subscribers', String(subscribers), '--duration', String(seconds),
    '--bitrate', '300000', '--packet-rate', '50', '--json', out, '--quiet'];
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr += c; });
  const done = new Promise((resolve, reject) => {
    child.once('error', (e) => reject(new Error(`could not start ${bin}: ${e.message} (cargo build -p simplesfu-bot)`)));
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`bot exited with ${code}: ${stderr.slice(-1000)}`));
      resolve(JSON.parse(readFileSync(out, 'utf8')));
    });
  });
  return { child, done };
}
