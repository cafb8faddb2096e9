// Broadcast: one sender publishes its camera with three simulcast layers as a
// *broadcast* track, which the server consumes for every peer of the room.
// Viewers publish nothing and connect to nobody (autoConnect: false): the
// broadcast reaches them anyway, and they never receive each other.

const params = new URLSearchParams(location.search);
const roomId = params.get('room') || 'broadcast';
const role = params.get('role');
document.getElementById('room').textContent = roomId;
for (const link of document.querySelectorAll('#choose a')) {
  link.href = `?role=${link.id === 'as-sender' ? 'sender' : 'viewer'}&room=${encodeURIComponent(roomId)}`;
}
const status = document.getElementById('status');

function showError(error) {
  status.textContent = `error: ${error.message}`;
  status.className = 'error';
  console.error(error);
}

function showVideo(key, track, name) {
  let tile = document.querySelector(`.tile[data-key="${key}"]`);
  if (!tile) {
    tile = document.createElement('div');
    tile.className = 'tile';
    tile.dataset.key = key;
    tile.innerHTML = '<video autoplay playsinline muted></video><span class="name"></span>';
    tile.querySelector('.name').textContent = name;
    document.getElementById('tiles').append(tile);
  }
  tile.querySelector('video').srcObject = new MediaStream([track]);
}

if (role === 'sender' || role === 'viewer') {
  document.getElementById('choose').hidden = true;
  const peer = new SimpleMediasoupPeer({ roomId, autoConnect: false });
  peer.on('error', showError);

  if (role === 'sender') {
    const countViewers = () => {
      status.textContent = `broadcasting to ${peer.peers.length} viewer(s)`;
    };
    peer.on('peerConnection', countViewers);
    peer.on('peerDisconnection', countViewers);
    navigator.mediaDevices
      .getUserMedia({ video: { width: 1280, height: 720 }, audio: true })
      .then(async (stream) => {
        const [video] = stream.getVideoTracks();
        const [audio] = stream.getAudioTracks();
        showVideo('me', video, 'me (sending)');
        // broadcast = true; 'simulcast' = SimpleMediasoupPeer.encodings.simulcast.
        await peer.addTrack(video, 'stage-video', true, 'simulcast');
        await peer.addTrack(audio, 'stage-audio', true);
        countViewers();
      })
      .catch(showError);
  } else {
    status.textContent = 'waiting for the broadcast';
    peer.on('track', ({ track, kind, peerId }) => {
      if (kind === 'video') {
        showVideo(peerId, track, 'broadcast');
        status.textContent = 'watching';
      } else {
        const audio = document.createElement('audio');
        audio.autoplay = true;
        audio.srcObject = new MediaStream([track]);
        document.body.append(audio);
      }
    });
    peer.on('trackEnded', ({ peerId, kind }) => {
      if (kind !== 'video') return;
      document.querySelector(`.tile[data-key="${peerId}"]`)?.remove();
      status.textContent = 'the broadcast ended; waiting for the next one';
    });
  }
}
