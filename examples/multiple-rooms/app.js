// Multiple rooms: pick a room and switch at will; share your screen; pause
// and resume any peer; say "hello" to everyone in the room over data.

const picker = document.getElementById('room-picker');
const status = document.getElementById('status');
const log = document.getElementById('log');
const initialRoom = new URLSearchParams(location.search).get('room') || 'lobby';
if (![...picker.options].some((option) => option.value === initialRoom)) picker.add(new Option(initialRoom));
picker.value = initialRoom;

const peer = new SimpleMediasoupPeer({ roomId: initialRoom });
let screenTrack = null;

function say(text) {
  const line = document.createElement('div');
  line.textContent = text;
  log.prepend(line);
}

function showError(error) {
  status.textContent = `error: ${error.message}`;
  status.className = 'error';
  console.error(error);
}

function showRoom() {
  status.className = 'status';
  status.textContent = peer.roomId ? `in room ${peer.roomId} with ${peer.peers.length} other(s)` : 'in no room';
}

/** One tile per remote peer, with a pause/resume button; one video per label. */
function tileOf(peerId) {
  let tile = document.querySelector(`.tile[data-peer-id="${peerId}"]`);
  if (!tile) {
    tile = document.createElement('div');
    tile.className = 'tile';
    tile.dataset.peerId = peerId;
    tile.innerHTML = '<span class="name"></span><span class="controls"><button class="pause">Pause</button></span>';
    tile.querySelector('.name').textContent = peerId;
    const button = tile.querySelector('.pause');
    button.addEventListener('click', () => {
      const pausing = button.textContent === 'Pause';
      (pausing ? peer.pausePeer(peerId) : peer.resumePeer(peerId))
        .then(() => {
          button.textContent = pausing ? 'Resume' : 'Pause';
        })
        .catch(showError);
    });
    document.getElementById('tiles').append(tile);
  }
  return tile;
}

peer.on('track', ({ track, peerId, label, kind, producerId }) => {
  const element = document.createElement(kind);
  element.autoplay = true;
  element.playsInline = true;
  element.muted = kind === 'video';
  element.dataset.producerId = producerId;
  element.title = label;
  element.srcObject = new MediaStream([track]);
  tileOf(peerId).prepend(element);
});
peer.on('trackEnded', ({ producerId }) => document.querySelector(`[data-producer-id="${producerId}"]`)?.remove());
peer.on('peerConnection', ({ peerId }) => {
  say(`${peerId} is here`);
  showRoom();
});
peer.on('peerDisconnection', ({ peerId }) => {
  document.querySelector(`.tile[data-peer-id="${peerId}"]`)?.remove();
  say(`${peerId} left`);
  showRoom();
});
peer.on('data', ({ from, data }) => say(`${from}: ${data}`));
peer.on('error', showError);

document.getElementById('join').addEventListener('click', () => {
  peer.joinRoom(picker.value).then(showRoom, showError);
});
document.getElementById('leave').addEventListener('click', () => {
  peer.leaveRoom().then(showRoom, showError);
});
document.getElementById('hello').addEventListener('click', () => {
  peer.send(`hello from ${peer.id}`).then(() => say(`me: hello from ${peer.id}`), showError);
});
document.getElementById('share').addEventListener('click', async () => {
  try {
    if (screenTrack) {
      screenTrack.stop();
      await peer.removeTrack('screen');
      screenTrack = null;
      document.getElementById('share').textContent = 'Share screen';
      return;
    }
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true });
    screenTrack = stream.getVideoTracks()[0];
    screenTrack.contentHint = 'detail';
    // Stopping the share from the browser's own bar ends the track; the
    // library then removes it for everyone.
    screenTrack.addEventListener('ended', () => {
      screenTrack = null;
      document.getElementById('share').textContent = 'Share screen';
    });
    await peer.addTrack(screenTrack, 'screen', false, 'screenShare');
    document.getElementById('share').textContent = 'Stop sharing';
  } catch (error) {
    showError(error);
  }
});

navigator.mediaDevices
  .getUserMedia({ video: true, audio: true })
  .then(async (stream) => {
    for (const track of stream.getTracks()) await peer.addTrack(track, track.kind === 'video' ? 'camera' : 'microphone');
    showRoom();
  })
  .catch(showError);
