// WHIP ingest and WHEP playback (issue 15) with clients that are not ours:
// - GStreamer's webrtcbin (e2e/whip/gst-whip-publish.py: H264 and Opus test
//   sources) publishes into a room over WHIP, and a Chromium page of our
//   client in that room decodes the video (640x360) and hears the tone.
//   When the publisher ends its session (DELETE), the page sees its tracks
//   end and the server holds nothing of it; one that vanishes is gone once
//   its ICE consent lapses.
// - The WHIP/WHEP example page (a plain RTCPeerConnection) publishes VP8 in
//   three simulcast layers: our client's page gets each layer it asks for,
//   and a WHEP page (the same example) plays the top one.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomUUID } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import { Cleanup, PAGES_DIR, buildPages, launchBrowser, launchFirefox, pollUntil, startServer } from './harness.mjs';
import { call, describePeers, openClientPage, readClientState, readClientStats } from './client-pages.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
const PUBLISHER = join(HERE, 'whip', 'gst-whip-publish.py');
const EXAMPLES_DIR = join(HERE, '..', 'examples');
const PYTHON = '/usr/bin/python3';

/** Whether Debian's GStreamer Python bindings and plugins are here. */
function gstreamerMissing() {
  if (!existsSync(PYTHON)) return 'no /usr/bin/python3';
  for (const plugin of ['libgstwebrtc.so', 'libgstx264.so', 'libgstopus.so', 'libgstnice.so']) {
    if (!existsSync(`/usr/lib/x86_64-linux-gnu/gstreamer-1.0/${plugin}`)) return `GStreamer plugin ${plugin} missing`;
  }
  if (!existsSync('/usr/lib/python3/dist-packages/gi')) return 'python3-gi missing';
  return null;
}

const missing = gstreamerMissing();
const env = { server: null, browser: null, cleanup: new Cleanup() };
after(() => env.cleanup.run());
before(async () => {
  await buildPages();
  // The test pages and the WHIP/WHEP example, served side by side.
  const served = mkdtempSync(join(tmpdir(), 'simplesfu-whip-pages-'));
  env.cleanup.add('remove the served pages', () => rmSync(served, { recursive: true, force: true }));
  cpSync(PAGES_DIR, served, { recursive: true });
  cpSync(join(EXAMPLES_DIR, 'whip-whep'), join(served, 'whip-whep'), { recursive: true });
  cpSync(join(EXAMPLES_DIR, 'style.css'), join(served, 'style.css'));
  // Listening on every address: libnice (GStreamer) pairs no loopback
  // candidates, so the server must announce the namespace's own address.
  env.server = await startServer({ staticDir: served, defaultAddresses: true, logLevel: 'warn,simplesfu::whip=debug' });
  env.cleanup.add('stop simplesfu', () => env.server.stop());
  env.browser = await launchBrowser();
  env.cleanup.add('close chromium', () => env.browser.close());
});

/** Starts the publisher; resolves with {child, lines, location} once ICE connected. */
async function publish(url, { args = [] } = {}) {
  const child = spawn(PYTHON, [PUBLISHER, url, '--seconds', '120', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  env.cleanup.add('stop the WHIP publisher', () => child.kill('SIGKILL'));
  const lines = [];
  const collector = () => {
    let partial = '';
    return (chunk) => {
      const parts = (partial + chunk.toString()).split('\n');
      partial = parts.pop();
      lines.push(...parts.filter(Boolean));
    };
  };
  child.stdout.on('data', collector());
  child.stderr.on('data', collector());
  const exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  await pollUntil(() => lines.includes('WHIP_CONNECTED') || child.exitCode !== null, {
    timeoutMs: 20_000,
    what: 'the GStreamer WHIP publisher to connect',
    describe: () => lines.join('\n'),
  });
  assert.ok(lines.includes('WHIP_CONNECTED'), `the publisher stopped:\n${lines.join('\n')}`);
  const location = lines.find((l) => l.startsWith('WHIP_LOCATION '))?.split(' ')[1];
  return { child, lines, location, exited };
}

/** RMS level of what `producerId`'s audio element plays, over half a second. */
function audioLevel(page, producerId) {
  return page.evaluate(async (producerId) => {
    const element = document.querySelector(`[data-producer-id="${producerId}"]`);
    const context = new AudioContext();
    await context.resume();
    const analyser = context.createAnalyser();
    context.createMediaStreamSource(element.srcObject).connect(analyser);
    let peak = 0;
    for (let i = 0; i < 10; i += 1) {
      await new Promise((r) => setTimeout(r, 50));
      const samples = new Float32Array(analyser.fftSize);
      analyser.getFloatTimeDomainData(samples);
      const rms = Math.sqrt(samples.reduce((sum, x) => sum + x * x, 0) / samples.length);
      peak = Math.max(peak, rms);
    }
    await context.close();
    return peak;
  }, producerId);
}

test('a GStreamer WHIP publisher (H264 + Opus) is seen and heard by a page of our client in the room', { skip: missing ?? false, timeout: 120_000 }, async (t) => {
  const room = `whip-${randomUUID()}`;
  const viewer = await openClientPage(env.browser.context, env.server.url, 'viewer', { roomId: room });
  const publisher = await publish(`${env.server.url}/whip/${room}?label=stage`);
  const describe = async () => `${await describePeers([viewer], env.server)}\npublisher:\n${publisher.lines.join('\n')}`;

  let video;
  let audio;
  await pollUntil(
    async () => {
      const state = await readClientState(viewer.page);
      const stats = await readClientStats(viewer.page);
      const of = (kind) =>
        Object.entries(state.tracks).find(([id, track]) => track.label === 'stage' && track.kind === kind && !track.ended && stats[id])?.[0];
      video = of('video') && stats[of('video')];
      audio = of('audio') && stats[of('audio')];
      return video?.framesDecoded > 30 && audio?.packetsReceived > 50;
    },
    { timeoutMs: 30_000, what: 'the page to decode the WHIP publisher\'s video and receive its audio', describe },
  );
  t.diagnostic(`video ${video.frameWidth}x${video.frameHeight}, ${video.framesDecoded} frames; audio ${audio.packetsReceived} packets`);
  assert.equal(video.frameWidth, 640, 'the publisher sends 640x360');
  assert.equal(video.frameHeight, 360);
  const level = await audioLevel(viewer.page, audio.producerId);
  t.diagnostic(`audio RMS ${level.toFixed(3)}`);
  assert.ok(level > 0.01, `the page hears the publisher's tone (RMS ${level})`);

  // The publisher leaves (SIGTERM: the script sends DELETE).
  publisher.child.kill('SIGTERM');
  assert.equal(await publisher.exited, 0, publisher.lines.join('\n'));
  assert.ok(publisher.lines.includes('WHIP_DELETED 200'), publisher.lines.join('\n'));
  await pollUntil(
    async () => {
      const state = await readClientState(viewer.page);
      return Object.values(state.tracks).filter((track) => track.label === 'stage').every((track) => track.ended);
    },
    { timeoutMs: 10_000, what: 'the page to see the WHIP tracks end', describe },
  );
  const health = await (await fetch(`${env.server.url}/health`)).json();
  assert.equal(health.peers, 1, `only the viewer is left: ${JSON.stringify(health)}`);
  assert.equal(health.producers, 0, JSON.stringify(health));
  const again = await fetch(`${env.server.url}${new URL(publisher.location).pathname}`, { method: 'DELETE' });
  assert.equal(again.status, 404, 'the session is gone');
  await viewer.page.close();
});

test('a WHIP publisher that vanishes without DELETE is gone once its ICE consent lapses', { skip: missing ?? false, timeout: 120_000 }, async (t) => {
  const room = `whip-silent-${randomUUID()}`;
  const publisher = await publish(`${env.server.url}/whip/${room}?label=cam`, { args: ['--video-only'] });
  const peers = async () => (await (await fetch(`${env.server.url}/health`)).json()).peers;
  assert.ok((await peers()) >= 1);
  const killedAt = Date.now();
  publisher.child.kill('SIGKILL');
  await publisher.exited;
  await pollUntil(async () => (await peers()) === 0, {
    timeoutMs: 50_000,
    intervalMs: 1000,
    what: 'the silent WHIP session to end',
    describe: () => env.server.logTail(),
  });
  const seconds = (Date.now() - killedAt) / 1000;
  t.diagnostic(`the session ended ${seconds.toFixed(1)} s after its client vanished`);
  assert.ok(seconds >= 25, 'not before the consent timeout (30 s)');
});

test('a browser WHIP page sends VP8 simulcast: our client gets each layer it asks for, a WHEP page plays it', { timeout: 120_000 }, async (t) => {
  const room = `whip-simulcast-${randomUUID()}`;
  const publisher = await env.browser.context.newPage();
  await publisher.goto(`${env.server.url}/whip-whep/?role=publish&room=${room}&label=cam`);
  const status = (page) => page.textContent('#status');
  await pollUntil(async () => (await status(publisher)) === 'publishing: connected', {
    what: 'the WHIP page to connect',
    describe: async () => status(publisher),
  });
  const viewer = await openClientPage(env.browser.context, env.server.url, 'viewer', { roomId: room });
  const describe = () => describePeers([viewer], env.server);
  const videoStats = async () => {
    const state = await readClientState(viewer.page);
    const id = Object.entries(state.tracks).find(([, tr]) => tr.label === 'cam' && tr.kind === 'video' && !tr.ended)?.[0];
    return id && { id, peerId: state.tracks[id].peerId, ...(await readClientStats(viewer.page))[id] };
  };
  // Each layer in turn, as the viewer asks for it: the simulcast layers
  // the page sent (a quarter, half and full of 1280x720) all arrive.
  const widths = [];
  for (const layer of [0, 1, 2]) {
    const first = await pollUntil(videoStats, { what: 'the WHIP video at the viewer', describe });
    await call(viewer, 'setPreferredLayers', first.peerId, 'cam', { spatial: layer });
    // The layer reported, then the decoded size settled (the same for
    // four samples: the decoder's size follows the switch by a few frames)
    // while frames decode: a decoder that waits for the new layer's key
    // frame keeps showing the old size (seen once in CI: 1280 for a second
    // after layer 0 was reported).
    let last = [];
    const seen = await pollUntil(
      async () => {
        const stats = await videoStats();
        if (stats?.spatialLayer !== layer) return (last = []), false;
        last = [...last.slice(-3), { width: stats.frameWidth, frames: stats.framesDecoded }];
        const settled = last.length === 4 && last.every((s) => s.width === last[0].width && s.width > 0);
        return settled && last[3].frames > last[0].frames && stats;
      },
      { timeoutMs: 20_000, intervalMs: 250, what: `the viewer to play layer ${layer}`, describe },
    );
    widths.push(seen.frameWidth);
    t.diagnostic(`layer ${layer}: ${seen.frameWidth}x${seen.frameHeight}`);
  }
  // Chromium may send its top layer smaller than asked while its encoder
  // or its estimate ramps up, never larger than the layer below.
  // On failure, the layers the server reported, in order (once seen: layer
  // 0 reported while 1280-wide frames decoded for a second; not explained).
  const reports = async () =>
    (await readClientState(viewer.page)).events
      .filter(([kind]) => kind === 'layersChanged')
      .map(([, what]) => what.split(' ').pop())
      .join(', ');
  assert.ok(
    widths[0] < widths[1] && widths[1] <= widths[2],
    `the layers' sizes, lowest first: ${widths}; layers reported: ${await reports()}`,
  );

  const player = await env.browser.context.newPage();
  await player.goto(`${env.server.url}/whip-whep/?role=play&room=${room}&label=cam`);
  const whepVideo = () =>
    player.evaluate(async () => {
      if (!window.whepPeerConnection) return null;
      for (const s of (await window.whepPeerConnection.getStats()).values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'video') {
          return {
            frames: s.framesDecoded ?? 0,
            width: s.frameWidth ?? 0,
            packets: s.packetsReceived,
            lost: s.packetsLost,
            framesReceived: s.framesReceived,
            keyFrames: s.keyFramesDecoded,
            pli: s.pliCount,
            fir: s.firCount,
            nack: s.nackCount,
          };
        }
      }
      return null;
    });
  const played = await pollUntil(
    async () => {
      const video = await whepVideo();
      return video?.frames > 30 && video.width === widths[2] && video;
    },
    {
      timeoutMs: 30_000,
      what: 'the WHEP page to play the top layer',
      describe: async () => `${await status(player)}; WHEP video ${JSON.stringify(await whepVideo())}, top layer ${widths[2]} wide`,
    },
  );
  t.diagnostic(`WHEP: ${played.width} wide, ${played.frames} frames`);
  for (const page of [player, viewer.page, publisher]) await page.close();
});

test('Firefox publishes over WHIP and plays over WHEP with the example page', { timeout: 120_000 }, async (t) => {
  const firefox = await launchFirefox();
  env.cleanup.add('close firefox', () => firefox.close());
  const room = `whip-firefox-${randomUUID()}`;
  const status = (page) => page.evaluate(() => document.getElementById('status').textContent);
  const publisher = await firefox.context.newPage();
  await publisher.goto(`${env.server.url}/whip-whep/?role=publish&room=${room}&label=fx`);
  await pollUntil(async () => (await status(publisher)) === 'publishing: connected', {
    timeoutMs: 30_000,
    what: 'the Firefox WHIP page to connect',
    describe: async () => `${await status(publisher)}\n${env.server.logTail()}`,
  });
  const player = await firefox.context.newPage();
  await player.goto(`${env.server.url}/whip-whep/?role=play&room=${room}`);
  const played = await pollUntil(
    async () => {
      const kinds = await player.evaluate(async () => {
        const out = {};
        if (!window.whepPeerConnection) return out;
        for (const s of (await window.whepPeerConnection.getStats()).values()) {
          if (s.type === 'inbound-rtp') out[s.kind] = { packets: s.packetsReceived ?? 0, frames: s.framesDecoded ?? 0 };
        }
        return out;
      });
      return kinds.video?.frames > 30 && kinds.audio?.packets > 50 && kinds;
    },
    { timeoutMs: 30_000, what: 'the Firefox WHEP page to play video and audio', describe: async () => `${await status(player)}\n${env.server.logTail()}` },
  );
  t.diagnostic(`Firefox WHEP: ${played.video.frames} frames, ${played.audio.packets} audio packets`);
  await player.close();
  await publisher.close();
});
