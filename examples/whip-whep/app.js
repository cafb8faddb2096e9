// WHIP (RFC 9725) and WHEP with nothing but the browser's RTCPeerConnection
// and fetch: what OBS, GStreamer or a TV player do, in a page.
//
//   ?role=publish  send this page's camera and microphone into the room
//                  (VP8 in three simulcast layers) with POST /whip/<room>
//   ?role=play     play the room with POST /whep/<room> (add &peer=<id> or
//                  &label=<label> to pick one peer's or one label's tracks)
//   &token=<jwt>   the join token, when the server requires one (publish
//                  right for WHIP, subscribe for WHEP)
//
// The session ends with DELETE on the URL the server returned in
// `Location` (here: when the page is closed).

const params = new URLSearchParams(location.search);
const roomId = params.get('room') || 'whip';
const role = params.get('role');
const token = params.get('token');
document.getElementById('room').textContent = roomId;
for (const link of document.querySelectorAll('#choose a')) {
  link.href = `?role=${link.id === 'as-publisher' ? 'publish' : 'play'}&room=${encodeURIComponent(roomId)}`;
}
const status = document.getElementById('status');
const say = (text, error = false) => {
  status.textContent = text;
  status.className = error ? 'error' : '';
};

/**
 * The offer/answer exchange of WHIP and WHEP: POST the complete offer (ICE
 * gathering done, so no trickle is needed), apply the answer, remember the
 * session URL. Returns that URL.
 */
async function exchange(pc, endpoint) {
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    pc.addEventListener('icegatheringstatechange', () => pc.iceGatheringState === 'complete' && resolve());
    setTimeout(resolve, 2000); // enough host candidates by then
  });
  const headers = { 'Content-Type': 'application/sdp' };
  if (token) headers.Authorization = `Bearer ${token}`;
  const response = await fetch(endpoint, { method: 'POST', headers, body: pc.localDescription.sdp });
  if (response.status !== 201) {
    throw new Error(`${endpoint} answered ${response.status}: ${await response.text()}`);
  }
  const session = new URL(response.headers.get('Location'), new URL(endpoint, location.href)).href;
  await pc.setRemoteDescription({ type: 'answer', sdp: await response.text() });
  // Ending the session when the page goes: keepalive lets the request outlive it.
  addEventListener('pagehide', () => fetch(session, { method: 'DELETE', headers: token ? { Authorization: `Bearer ${token}` } : {}, keepalive: true }));
  window.whipSession = session;
  return session;
}

function tile(stream, name) {
  const element = document.createElement('div');
  element.className = 'tile';
  element.innerHTML = '<video autoplay playsinline></video><span class="name"></span>';
  element.querySelector('.name').textContent = name;
  element.querySelector('video').srcObject = stream;
  element.querySelector('video').muted = role === 'publish';
  document.getElementById('tiles').append(element);
  return element.querySelector('video');
}

async function publish() {
  const media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: true });
  tile(media, 'this camera');
  const pc = new RTCPeerConnection();
  for (const track of media.getTracks()) {
    const init = { direction: 'sendonly', streams: [media] };
    if (track.kind === 'video') {
      // Lowest first: the server takes the rids q, h, f as quarter, half, full.
      init.sendEncodings = [
        { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: 150_000 },
        { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: 500_000 },
        { rid: 'f', maxBitrate: 1_500_000 },
      ];
    }
    pc.addTransceiver(track, init);
  }
  const label = params.get('label') || 'whip';
  await exchange(pc, `/whip/${encodeURIComponent(roomId)}?label=${encodeURIComponent(label)}`);
  pc.addEventListener('connectionstatechange', () => say(`publishing: ${pc.connectionState}`, pc.connectionState === 'failed'));
  say('publishing: connecting');
}

async function play() {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const stream = new MediaStream();
  let video = null;
  pc.addEventListener('track', ({ track }) => {
    stream.addTrack(track);
    video ??= tile(stream, 'WHEP');
  });
  const query = new URLSearchParams();
  for (const key of ['peer', 'label']) if (params.get(key)) query.set(key, params.get(key));
  const suffix = query.size ? `?${query}` : '';
  await exchange(pc, `/whep/${encodeURIComponent(roomId)}${suffix}`);
  pc.addEventListener('connectionstatechange', () => say(`playing: ${pc.connectionState}`, pc.connectionState === 'failed'));
  say('playing: connecting');
  window.whepPeerConnection = pc;
}

if (role === 'publish') publish().catch((e) => say(`error: ${e.message}`, true));
else if (role === 'play') play().catch((e) => say(`error: ${e.message}`, true));
