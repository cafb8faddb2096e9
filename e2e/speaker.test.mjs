// Active speaker (issue 14) with real browsers: two pages of our client in a
// room, both publishing a microphone fed by the same test signal (a tone
// from a WAV file, Chromium's fake capture); one page mutes its track (it
// sends silence). The server reads the audio levels the pages' packets
// carry (ssrc-audio-level) and both pages are told the talking one is the
// active speaker; when they swap, the speaker follows.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pollUntil, useServerAndBrowser } from './harness.mjs';
import { describePeers, openClientPage, readClientState } from './client-pages.mjs';

/** A 16-bit mono WAV of a 440 Hz tone at half scale (about -9 dBFS RMS). */
function toneWav(seconds = 4, rate = 48_000) {
  const samples = seconds * rate;
  const wav = Buffer.alloc(44 + samples * 2);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write('WAVEfmt ', 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(1, 22); // mono
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 2, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i += 1) wav.writeInt16LE(Math.round(16_000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  const path = join(mkdtempSync(join(tmpdir(), 'simplesfu-tone-')), 'tone.wav');
  writeFileSync(path, wav);
  return path;
}

const env = useServerAndBrowser({ browserArgs: [`--use-file-for-fake-audio-capture=${toneWav()}`] });

/** The last activeSpeaker event `page` saw. */
async function lastSpeaker(page) {
  const speakers = (await readClientState(page.page)).events.filter(([kind]) => kind === 'activeSpeaker');
  return speakers.at(-1)?.[1] ?? null;
}

test('the page that talks is the active speaker on both pages, and the speaker follows a swap', { timeout: 90_000 }, async (t) => {
  const room = `speaker-${randomUUID()}`;
  const a = await openClientPage(env.browser.context, env.server.url, 'A', { roomId: room });
  const b = await openClientPage(env.browser.context, env.server.url, 'B', { roomId: room });
  const describe = () => describePeers([a, b], env.server);
  await b.page.evaluate(() => window.t.publish({ microphone: 'mic', rawAudio: true }));
  await b.page.evaluate(() => window.t.setTrackEnabled('mic', false));
  await a.page.evaluate(() => window.t.publish({ microphone: 'mic', rawAudio: true }));

  await pollUntil(async () => (await lastSpeaker(a)) === a.id && (await lastSpeaker(b)) === a.id, {
    timeoutMs: 20_000,
    what: 'both pages to name A (talking) the active speaker',
    describe,
  });

  const swappedAt = Date.now();
  await a.page.evaluate(() => window.t.setTrackEnabled('mic', false));
  await b.page.evaluate(() => window.t.setTrackEnabled('mic', true));
  await pollUntil(async () => (await lastSpeaker(a)) === b.id && (await lastSpeaker(b)) === b.id, {
    timeoutMs: 20_000,
    what: 'the active speaker to follow to B',
    describe,
  });
  const followed = Date.now() - swappedAt;
  t.diagnostic(`the speaker followed the swap in ${followed} ms`);
  // Steady input afterwards: no more changes.
  const changes = async (page) => (await readClientState(page.page)).events.filter(([k]) => k === 'activeSpeaker').length;
  const before = [await changes(a), await changes(b)];
  await new Promise((r) => setTimeout(r, 3000));
  assert.deepEqual([await changes(a), await changes(b)], before, 'no flapping while the input is steady');
  assert.equal(await lastSpeaker(a), b.id);
});
