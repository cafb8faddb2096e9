// A bare WebSocket client over node:net, for the attacks a socket.io client
// library would never make: oversized messages, a CONNECT followed by a TCP
// reset, a client that stops reading. It speaks just enough RFC 6455 (masked
// text frames out, unfragmented frames in) and engine.io v4 framing.

import crypto from 'node:crypto';
import net from 'node:net';

/** Open `/socket.io/?EIO=4&transport=websocket` on `url`; resolves once the engine.io open packet arrived. */
export async function rawSocketIo(url, { timeoutMs = 5000 } = {}) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  const key = crypto.randomBytes(16).toString('base64');
  const messages = [];
  const waiters = new Set();
  let buffer = Buffer.alloc(0);
  let upgraded = false;
  let closed = false;
  const notify = () => {
    for (const waiter of [...waiters]) waiter();
  };
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk]);
    if (!upgraded) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buffer.subarray(0, end).toString();
      if (!head.startsWith('HTTP/1.1 101')) {
        socket.destroy(new Error(`upgrade refused: ${head.split('\r\n')[0]}`));
        return;
      }
      upgraded = true;
      buffer = buffer.subarray(end + 4);
    }
    for (;;) {
      if (buffer.length < 2) break;
      let length = buffer[1] & 0x7f;
      let offset = 2;
      if (length === 126) {
        if (buffer.length < 4) break;
        length = buffer.readUInt16BE(2);
        offset = 4;
      } else if (length === 127) {
        if (buffer.length < 10) break;
        length = Number(buffer.readBigUInt64BE(2));
        offset = 10;
      }
      if (buffer.length < offset + length) break;
      const opcode = buffer[0] & 0x0f;
      const payload = buffer.subarray(offset, offset + length);
      buffer = buffer.subarray(offset + length);
      if (opcode === 0x1) messages.push(payload.toString());
      if (opcode === 0x8) closed = true;
    }
    notify();
  });
  /** Resolves at the next message or close, or at `deadline`. */
  const change = (deadline) =>
    new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, deadline - Date.now()));
      const waiter = () => {
        clearTimeout(timer);
        waiters.delete(waiter);
        resolve();
      };
      waiters.add(waiter);
    });
  socket.on('error', () => {});
  socket.on('close', () => {
    closed = true;
    notify();
  });
  socket.write(
    `GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: ${hostname}:${port}\r\nUpgrade: websocket\r\n` +
      `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  const client = {
    socket,
    messages,
    get closed() {
      return closed;
    },
    /** Send one masked text frame. */
    send(text) {
      const payload = Buffer.from(text);
      let header;
      if (payload.length < 126) {
        header = Buffer.from([0x81, 0x80 | payload.length]);
      } else if (payload.length < 65536) {
        header = Buffer.alloc(4);
        header[0] = 0x81;
        header[1] = 0x80 | 126;
        header.writeUInt16BE(payload.length, 2);
      } else {
        header = Buffer.alloc(10);
        header[0] = 0x81;
        header[1] = 0x80 | 127;
        header.writeBigUInt64BE(BigInt(payload.length), 2);
      }
      const mask = crypto.randomBytes(4);
      const masked = Buffer.alloc(payload.length);
      for (let i = 0; i < payload.length; i += 1) masked[i] = payload[i] ^ mask[i & 3];
      return new Promise((resolve) => socket.write(Buffer.concat([header, mask, masked]), () => resolve()));
    },
    /** Resolves with the first message matching `predicate`, or null once closed or after `ms`. */
    async next(predicate, ms = timeoutMs) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = messages.find(predicate);
        if (found !== undefined) return found;
        if (closed || Date.now() >= deadline) return null;
        await change(deadline);
      }
    },
    /** Resolves true once the server closed the connection, false after `ms`. */
    async closedWithin(ms) {
      const deadline = Date.now() + ms;
      while (!closed && Date.now() < deadline) await change(deadline);
      return closed;
    },
    destroy: () => socket.destroy(),
  };
  const open = await client.next((m) => m.startsWith('0{'));
  if (open === null) {
    socket.destroy();
    throw new Error('no engine.io open packet');
  }
  return client;
}

/** A plain TCP connection; resolves with {socket, closedWithin(ms)}. */
export async function rawTcp(url) {
  const { hostname, port } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  let closed = false;
  const done = new Promise((resolve) => socket.on('close', () => {
    closed = true;
    resolve();
  }));
  socket.on('error', () => {});
  socket.on('data', () => {});
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return {
    socket,
    get closed() {
      return closed;
    },
    async closedWithin(ms) {
      await Promise.race([done, new Promise((resolve) => setTimeout(resolve, ms))]);
      return closed;
    },
  };
}
