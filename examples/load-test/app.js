// Load test: this one page opens N peers, each with its own socket.io
// connection, publishing synthetic media (an animated canvas and a tone), all
// in one room with auto-connect, so every peer consumes every other one.
// The table sums what they receive, from getRemoteTrackStats(), every second.

const params = new URLSearchParams(location.search);
const countInput = document.getElementById('count');
const roomInput = document.getElementById('room');
if (params.get('n')) countInput.value = params.get('n');
if (params.get('room')) roomInput.value = params.get('room');
const status = document.getElementById('status');
const log = document.getElementById('log');

let peers = [];
let errors = 0;
let timers = [];
let audioContext = null;

function note(text) {
  const line = document.createElement('div');
  line.textContent = text;
  log.prepend(line);
}

/** A 320x240 canvas that draws the peer's number and a moving bar at 15 fps. */
function syntheticVideo(index) {
  const canvas = document.createElement('canvas');
  canvas.width = 320;
  canvas.height = 240;
  const context = canvas.getContext('2d');
  let frame = 0;
  timers.push(
    setInterval(() => {
      frame += 1;
      context.fillStyle = `hsl(${(index * 47) % 360} 60% 35%)`;
      context.fillRect(0, 0, 320, 240);
      context.fillStyle = '#fff';
      context.font = '48px sans-serif';
      context.fillText(`peer ${index}`, 60, 110);
      context.fillRect((frame * 8) % 320, 180, 40, 20);
    }, 1000 / 15),
  );
  return canvas.captureStream(15).getVideoTracks()[0];
}

function syntheticAudio(index) {
  const oscillator = audioContext.createOscillator();
  oscillator.frequency.value = 220 + index * 20;
  const gain = audioContext.createGain();
  gain.gain.value = 0.05;
  const destination = audioContext.createMediaStreamDestination();
  oscillator.connect(gain).connect(destination);
  oscillator.start();
  return destination.stream.getAudioTracks()[0];
}

async function start() {
  const count = Math.max(1, Math.min(50, Number(countInput.value) || 1));
  const roomId = roomInput.value || 'load-test';
  const withAudio = document.getElementById('audio').checked;
  document.getElementById('start').disabled = true;
  document.getElementById('stop').disabled = false;
  if (withAudio) {
    audioContext ??= new AudioContext();
    await audioContext.resume(); // Start was a click: allowed to play
  }
  status.textContent = `starting ${count} peers in room ${roomId}`;
  for (let index = 0; index < count; index += 1) {
    // forceNew: one connection per peer, as if each were its own browser.
    const peer = new SimpleMediasoupPeer({ roomId, socketClientOptions: { forceNew: true } });
    peer.on('error', (error) => {
      errors += 1;
      note(`peer ${index}: ${error.message}`);
      console.error(error);
    });
    peers.push(peer);
    peer.addTrack(syntheticVideo(index), 'video').catch((error) => note(`peer ${index}: ${error.message}`));
    if (withAudio) peer.addTrack(syntheticAudio(index), 'audio').catch((error) => note(`peer ${index}: ${error.message}`));
  }
  timers.push(setInterval(refresh, 1000));
  status.textContent = `${count} peers in room ${roomId}`;
}

async function refresh() {
  let inRoom = 0;
  let tracks = 0;
  let frames = 0;
  let packets = 0;
  for (const peer of peers) {
    if (peer.closed) continue;
    if (peer.roomId) inRoom += 1;
    for (const stats of await peer.getRemoteTrackStats()) {
      tracks += 1;
      if (stats.kind === 'video') frames += stats.framesDecoded;
      else packets += stats.packetsReceived;
    }
  }
  const cells = document.getElementById('totals').children;
  [peers.length, inRoom, tracks, frames, packets, errors].forEach((value, i) => {
    cells[i].textContent = String(value);
  });
}

function stop() {
  for (const timer of timers) clearInterval(timer);
  timers = [];
  for (const peer of peers) peer.close();
  peers = [];
  status.textContent = 'stopped';
  document.getElementById('start').disabled = false;
  document.getElementById('stop').disabled = true;
  refresh();
}

document.getElementById('start').addEventListener('click', () => {
  start().catch((error) => {
    status.textContent = `error: ${error.message}`;
    console.error(error);
  });
});
document.getElementById('stop').addEventListener('click', stop);
