// Simple video chat: everyone who opens this page (with the same ?room=) sees
// and hears everyone else. Auto-connect is on, so the library consumes every
// peer of the room by itself.

const roomId = new URLSearchParams(location.search).get('room') || 'video-chat';
document.getElementById('room').textContent = roomId;
const status = document.getElementById('status');

const peer = new SimpleMediasoupPeer({ roomId });

/** One tile per peer: its video, with its audio in a hidden element. */
function tileOf(peerId, name = peerId) {
  let tile = document.querySelector(`.tile[data-peer-id="${peerId}"]`);
  if (!tile) {
    tile = document.createElement('div');
    tile.className = 'tile';
    tile.dataset.peerId = peerId;
    tile.innerHTML = '<video autoplay playsinline muted></video><span class="name"></span>';
    tile.querySelector('.name').textContent = name;
    document.getElementById('tiles').append(tile);
  }
  return tile;
}

peer.on('track', ({ track, peerId, kind }) => {
  const tile = tileOf(peerId);
  if (kind === 'video') {
    tile.querySelector('video').srcObject = new MediaStream([track]);
  } else {
    const audio = document.createElement('audio');
    audio.autoplay = true;
    audio.srcObject = new MediaStream([track]);
    audio.dataset.producerId = track.id;
    tile.append(audio);
  }
});

peer.on('trackEnded', ({ peerId, kind, track }) => {
  const tile = document.querySelector(`.tile[data-peer-id="${peerId}"]`);
  if (!tile) return;
  if (kind === 'video') tile.querySelector('video').srcObject = null;
  else tile.querySelector(`audio[data-producer-id="${track.id}"]`)?.remove();
});

// The server tells who is talking: that tile is highlighted (ours too).
peer.on('activeSpeaker', ({ peerId }) => {
  const speaking = peerId === peer.id ? 'me' : peerId;
  for (const tile of document.querySelectorAll('.tile')) {
    tile.classList.toggle('speaking', tile.dataset.peerId === speaking);
  }
});

peer.on('peerDisconnection', ({ peerId }) => {
  document.querySelector(`.tile[data-peer-id="${peerId}"]`)?.remove();
});

peer.on('error', (error) => {
  status.textContent = `error: ${error.message}`;
  status.className = 'error';
  console.error(error);
});

async function start() {
  const stream = await navigator.mediaDevices.getUserMedia({ video: true, audio: true });
  tileOf('me', 'me').querySelector('video').srcObject = new MediaStream(stream.getVideoTracks());
  for (const track of stream.getTracks()) {
    await peer.addTrack(track, track.kind === 'video' ? 'camera' : 'microphone');
  }
  status.textContent = 'publishing camera and microphone';
}

start().catch((error) => {
  status.textContent = `cannot start: ${error.message}`;
  status.className = 'error';
  console.error(error);
});
