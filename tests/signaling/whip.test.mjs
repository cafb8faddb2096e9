// WHIP (RFC 9725) as an HTTP client sees it: the answer, Location and ETag
// of a session, PATCH (trickle, ICE restart, stale ETag), DELETE, OPTIONS,
// and every refusal with its status and a message that says what to do:
// malformed SDP 400, wrong content type 415, too large 413, no or bad token
// 401, another room or no publish right or a full room 403, unknown
// session 404. After all of it the server holds nothing (/health).
// Media over WHIP is in e2e/whip.test.mjs (GStreamer into a browser).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, startSecureServer, mintToken, connect } from './harness.mjs';

const FINGERPRINT =
  'AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99';

/** A browser-shaped offer: Opus, and VP8 with RTX in three simulcast layers. */
function offer({ ufrag = 'abcd', codec = 'VP8' } = {}) {
  return [
    'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0 1',
    'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0', `a=ice-ufrag:${ufrag}`,
    'a=ice-pwd:abcdefghijklmnopqrstuvwx', `a=fingerprint:sha-256 ${FINGERPRINT}`, 'a=setup:actpass',
    'a=mid:0', 'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid', 'a=sendonly', 'a=rtcp-mux',
    'a=rtpmap:111 opus/48000/2', 'a=fmtp:111 minptime=10;useinbandfec=1', 'a=ssrc:1001 cname:whip',
    'm=video 9 UDP/TLS/RTP/SAVPF 96 97', 'c=IN IP4 0.0.0.0', `a=ice-ufrag:${ufrag}`,
    'a=ice-pwd:abcdefghijklmnopqrstuvwx', `a=fingerprint:sha-256 ${FINGERPRINT}`, 'a=setup:actpass',
    'a=mid:1', 'a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=extmap:10 urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id',
    'a=extmap:11 urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id', 'a=sendonly', 'a=rtcp-mux',
    `a=rtpmap:96 ${codec}/90000`, 'a=rtcp-fb:96 nack', 'a=rtcp-fb:96 nack pli', 'a=rtpmap:97 rtx/90000',
    'a=fmtp:97 apt=96', 'a=rid:q send', 'a=rid:h send', 'a=rid:f send', 'a=simulcast:send q;h;f', '',
  ].join('\r\n');
}

function post(url, room, body, { type = 'application/sdp', token, query = '' } = {}) {
  const headers = { 'Content-Type': type };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(`${url}/whip/${room}${query}`, { method: 'POST', headers, body });
}

async function health(url) {
  return (await fetch(`${url}/health`)).json();
}

test('a WHIP offer gets an answer, a session URL and an ETag; the room sees its producers; DELETE ends it', async (t) => {
  const { url } = await startServer(t);
  const viewer = await connect(url, t);
  await viewer.request('joinRoom', { roomId: 'stage' });

  const response = await post(url, 'stage', offer(), { query: '?label=camera' });
  assert.equal(response.status, 201, await response.clone().text());
  assert.equal(response.headers.get('content-type'), 'application/sdp');
  const location = response.headers.get('location');
  assert.match(location, /^\/whip\/stage\/[0-9a-f]{64}$/);
  const etag = response.headers.get('etag');
  assert.match(etag, /^"[0-9a-f]+"$/);
  const answer = await response.text();
  assert.match(answer, /^v=0\r\n/);
  assert.match(answer, /a=ice-lite\r\n/);
  assert.match(answer, /a=group:BUNDLE 0 1\r\n/);
  assert.match(answer, /m=audio 9 UDP\/TLS\/RTP\/SAVPF 111\r\n/);
  assert.match(answer, /m=video 9 UDP\/TLS\/RTP\/SAVPF 96 97\r\n/);
  assert.match(answer, /a=setup:passive\r\n/);
  assert.match(answer, /a=simulcast:recv q;h;f\r\n/);
  assert.match(answer, /a=candidate:\S+ 1 udp \d+ 127\.0\.0\.1 \d+ typ host\r\n/);
  assert.match(answer, /a=end-of-candidates\r\n/);

  // The viewer's room now lists the WHIP peer's two producers, labelled.
  const listed = await viewer.waitForPush('availableProducers', (data) =>
    Object.values(data).some((p) => p.producers && Object.keys(p.producers).length === 2),
  );
  const producers = Object.values(listed).flatMap((p) => Object.values(p.producers ?? {}));
  assert.deepEqual(producers.map((p) => p.label).sort(), ['camera', 'camera']);
  assert.deepEqual(producers.map((p) => p.kind).sort(), ['audio', 'video']);

  const options = await fetch(`${url}${location}`, { method: 'OPTIONS' });
  assert.equal(options.status, 204);
  assert.match(options.headers.get('accept-patch'), /trickle-ice-sdpfrag/);

  // Trickle: acknowledged with the current ETag, refused with a stale one.
  const frag = 'a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\n';
  const patch = (body, ifMatch) =>
    fetch(`${url}${location}`, {
      method: 'PATCH',
      headers: { 'Content-Type': 'application/trickle-ice-sdpfrag', ...(ifMatch ? { 'If-Match': ifMatch } : {}) },
      body,
    });
  assert.equal((await patch(frag, etag)).status, 204);
  const stale = await patch(frag, '"stale"');
  assert.equal(stale.status, 412);
  assert.match(await stale.text(), /ETag/);
  assert.equal((await patch(frag)).status, 428, 'If-Match is required');
  // ICE restart: new credentials from the client, new ones from us, a new ETag.
  const restart = await patch(frag.replace('ice-ufrag:abcd', 'ice-ufrag:wxyz').replace('abcdefghijklmnopqrstuvwx', 'zyxwvutsrqponmlkjihgfedcba'), '*');
  assert.equal(restart.status, 200, await restart.clone().text());
  assert.equal(restart.headers.get('content-type'), 'application/trickle-ice-sdpfrag');
  const newEtag = restart.headers.get('etag');
  assert.notEqual(newEtag, etag);
  const fragment = await restart.text();
  const ufrag = /a=ice-ufrag:(\S+)/.exec(fragment)?.[1];
  assert.ok(ufrag && !answer.includes(`a=ice-ufrag:${ufrag}\r\n`), 'new server credentials');
  assert.match(fragment, /a=candidate:/);
  assert.equal((await patch(frag, etag)).status, 412, 'the old ETag is stale after a restart');

  const deleted = await fetch(`${url}${location}`, { method: 'DELETE' });
  assert.equal(deleted.status, 200);
  assert.equal((await fetch(`${url}${location}`, { method: 'DELETE' })).status, 404);
  assert.equal((await patch(frag, newEtag)).status, 404);
  const left = await health(url);
  assert.equal(left.peers, 1, `only the viewer: ${JSON.stringify(left)}`);
  assert.equal(left.producers, 0);
  assert.equal(left.transports, 0);
});

test('WHIP refusals: status and reason for each kind of bad request, and nothing stays allocated', async (t) => {
  const { url } = await startServer(t, { args: ['--max-peers-per-room', '1'] });
  const cases = [
    ['wrong content type', post(url, 'r', offer(), { type: 'application/json' }), 415, /application\/sdp/],
    ['not SDP', post(url, 'r', 'hello world'), 400, /not an SDP offer/],
    ['no fingerprint', post(url, 'r', offer().replaceAll(/a=fingerprint:.*\r\n/g, '')), 400, /fingerprint/],
    ['no codec we forward', post(url, 'r', offer({ codec: 'H265' }).replace('opus/48000/2', 'PCMU/8000')), 400, /codec/],
    ['too large', post(url, 'r', `${offer()}${'a=x\r\n'.repeat(20_000)}`), 413, /./],
    ['bad label', post(url, 'r', offer(), { query: '?label=%3Cscript%3E' }), 400, /label/],
    ['unknown session', fetch(`${url}/whip/r/0123`, { method: 'DELETE' }), 404, /no such WHIP session/],
  ];
  for (const [what, pending, status, message] of cases) {
    const response = await pending;
    assert.equal(response.status, status, `${what}: ${await response.clone().text()}`);
    assert.match(await response.text(), message, what);
  }
  const options = await fetch(`${url}/whip/r`, { method: 'OPTIONS' });
  assert.equal(options.status, 204);
  assert.equal(options.headers.get('accept-post'), 'application/sdp');

  // A full room: one peer allowed, the second publisher is refused.
  const first = await post(url, 'full', offer());
  assert.equal(first.status, 201);
  const second = await post(url, 'full', offer({ ufrag: 'efgh' }));
  assert.equal(second.status, 403);
  assert.match(await second.text(), /room is full/);
  assert.equal((await fetch(`${url}${first.headers.get('location')}`, { method: 'DELETE' })).status, 200);

  const left = await health(url);
  assert.deepEqual([left.peers, left.rooms, left.transports, left.producers], [0, 0, 0, 0], JSON.stringify(left));
});

test('with join tokens, WHIP needs a Bearer token with the publish right for that room', async (t) => {
  const { url } = await startSecureServer(t);
  const missing = await post(url, 'stage', offer());
  assert.equal(missing.status, 401);
  assert.equal(missing.headers.get('www-authenticate'), 'Bearer');
  assert.match(await missing.text(), /Authorization: Bearer/);
  const garbage = await post(url, 'stage', offer(), { token: 'not-a-jwt' });
  assert.equal(garbage.status, 401);
  assert.match(await garbage.text(), /invalid join token/);
  const viewerOnly = await post(url, 'stage', offer(), { token: mintToken({ room: 'stage', subscribe: true }) });
  assert.equal(viewerOnly.status, 403);
  assert.match(await viewerOnly.text(), /publish/);
  const otherRoom = await post(url, 'stage', offer(), { token: mintToken({ room: 'elsewhere', publish: true }) });
  assert.equal(otherRoom.status, 403);
  assert.match(await otherRoom.text(), /elsewhere/);

  const token = mintToken({ room: 'stage', publish: true });
  const ok = await post(url, 'stage', offer(), { token });
  assert.equal(ok.status, 201, await ok.clone().text());
  const location = ok.headers.get('location');
  assert.equal((await fetch(`${url}${location}`, { method: 'DELETE' })).status, 401, 'DELETE needs the token too');
  const deleted = await fetch(`${url}${location}`, { method: 'DELETE', headers: { Authorization: `Bearer ${token}` } });
  assert.equal(deleted.status, 200);
  const left = await health(url);
  assert.equal(left.peers, 0, JSON.stringify(left));
});

/** A recvonly offer as a WHEP player writes it: one video and one audio m-line. */
function playOffer({ ufrag = 'play', direction = 'recvonly' } = {}) {
  return [
    'v=0', 'o=- 3 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE v a',
    'm=video 9 UDP/TLS/RTP/SAVPF 98 99 100', 'c=IN IP4 0.0.0.0', `a=ice-ufrag:${ufrag}`,
    'a=ice-pwd:abcdefghijklmnopqrstuvwx', `a=fingerprint:sha-256 ${FINGERPRINT}`, 'a=setup:actpass',
    'a=mid:v', 'a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid',
    'a=extmap:7 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01', `a=${direction}`,
    'a=rtcp-mux', 'a=rtcp-rsize', 'a=rtpmap:98 VP8/90000', 'a=rtcp-fb:98 nack', 'a=rtcp-fb:98 nack pli',
    'a=rtcp-fb:98 transport-cc', 'a=rtpmap:99 rtx/90000', 'a=fmtp:99 apt=98', 'a=rtpmap:100 AV1/90000',
    'm=audio 9 UDP/TLS/RTP/SAVPF 109', 'c=IN IP4 0.0.0.0', `a=ice-ufrag:${ufrag}`,
    'a=ice-pwd:abcdefghijklmnopqrstuvwx', `a=fingerprint:sha-256 ${FINGERPRINT}`, 'a=setup:actpass',
    'a=mid:a', 'a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid', `a=${direction}`, 'a=rtcp-mux',
    'a=rtpmap:109 opus/48000/2', 'a=fmtp:109 minptime=10;useinbandfec=1', '',
  ].join('\r\n');
}

function postPlay(url, room, body, { token, query = '' } = {}) {
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  return fetch(`${url}/whep/${room}${query}`, { method: 'POST', headers, body });
}

test('WHEP: a recvonly offer plays the room with the client\'s own numbering; nothing to play is 404; DELETE ends it', async (t) => {
  const { url } = await startServer(t);
  const empty = await postPlay(url, 'show', playOffer());
  assert.equal(empty.status, 404);
  assert.match(await empty.text(), /nothing to play/);
  assert.equal((await health(url)).peers, 0, 'the refused player left nothing behind');

  const published = await post(url, 'show', offer(), { query: '?label=stage' });
  assert.equal(published.status, 201);
  const sendonly = await postPlay(url, 'show', playOffer({ direction: 'sendonly' }));
  assert.equal(sendonly.status, 400);
  assert.match(await sendonly.text(), /recvonly/);
  const wrongLabel = await postPlay(url, 'show', playOffer(), { query: '?label=other' });
  assert.equal(wrongLabel.status, 404);

  const played = await postPlay(url, 'show', playOffer(), { query: '?label=stage' });
  assert.equal(played.status, 201, await played.clone().text());
  const location = played.headers.get('location');
  assert.match(location, /^\/whep\/show\/[0-9a-f]{64}$/);
  const answer = await played.text();
  // The client's payload types, extension ids and mids, in its order.
  const mLines = answer.split('\r\n').filter((l) => l.startsWith('m='));
  assert.deepEqual(mLines, ['m=video 9 UDP/TLS/RTP/SAVPF 98 99', 'm=audio 9 UDP/TLS/RTP/SAVPF 109']);
  assert.match(answer, /a=group:BUNDLE v a\r\n/);
  assert.match(answer, /a=mid:v\r\n[^]*a=mid:a\r\n/);
  assert.match(answer, /a=extmap:9 urn:ietf:params:rtp-hdrext:sdes:mid\r\n/);
  assert.match(answer, /a=extmap:7 http:\/\/www\.ietf\.org\/id\/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n/);
  assert.match(answer, /a=rtpmap:99 rtx\/90000\r\na=fmtp:99 apt=98\r\n/);
  assert.match(answer, /a=ssrc-group:FID \d+ \d+\r\n/);
  assert.equal(answer.match(/a=sendonly/g)?.length, 2);
  let counts = await health(url);
  assert.equal(counts.consumers, 2, JSON.stringify(counts));

  assert.equal((await fetch(`${url}${location}`, { method: 'DELETE' })).status, 200);
  assert.equal((await fetch(`${url}${location.replace('/whep/', '/whip/')}`, { method: 'DELETE' })).status, 404, 'a WHEP session is not a WHIP one');
  counts = await health(url);
  assert.equal(counts.consumers, 0, JSON.stringify(counts));
  assert.equal((await fetch(`${url}${published.headers.get('location')}`, { method: 'DELETE' })).status, 200);
  counts = await health(url);
  assert.deepEqual([counts.peers, counts.transports, counts.producers], [0, 0, 0], JSON.stringify(counts));
});

test('with join tokens, WHEP needs the subscribe right', async (t) => {
  const { url } = await startSecureServer(t);
  const publishToken = mintToken({ room: 'show', publish: true });
  assert.equal((await post(url, 'show', offer(), { token: publishToken })).status, 201);
  assert.equal((await postPlay(url, 'show', playOffer())).status, 401);
  const noRight = await postPlay(url, 'show', playOffer(), { token: publishToken });
  assert.equal(noRight.status, 403);
  assert.match(await noRight.text(), /subscribe/);
  const ok = await postPlay(url, 'show', playOffer(), { token: mintToken({ room: 'show', subscribe: true }) });
  assert.equal(ok.status, 201, await ok.clone().text());
});

test('configured ICE servers reach WHIP and WHEP clients as Link headers', async (t) => {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const dir = mkdtempSync(join(tmpdir(), 'simplesfu-ice-servers-'));
  const file = join(dir, 'simplesfu.toml');
  writeFileSync(
    file,
    '[rtc]\nice_servers = [{ urls = "stun:stun.example.com:3478" }, { urls = "turn:turn.example.com:3478", username = "u", credential = "p" }]\n',
  );
  const { url } = await startServer(t, { args: ['--config', file] });
  const published = await post(url, 'links', offer());
  assert.equal(published.status, 201);
  assert.equal(
    published.headers.get('link'),
    '<stun:stun.example.com:3478>; rel="ice-server", <turn:turn.example.com:3478>; rel="ice-server"; username="u"; credential="p"; credential-type="password"',
  );
  const played = await postPlay(url, 'links', playOffer());
  assert.equal(played.status, 201);
  assert.match(played.headers.get('link'), /^<stun:stun\.example\.com:3478>; rel="ice-server"/);
});
