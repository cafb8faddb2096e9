// Starts the original SimpleMediasoupPeer server (npm simple-mediasoup-peer-server)
// for the bench: `node bench/mediasoup-server.cjs <npm install dir>`, run in a
// directory holding dtls-cert.pem/dtls-key.pem (bench/mediasoup-setup prepares
// both). It listens on HOST:PORT (default 127.0.0.1 and a port the system
// picks) and prints one line the harness waits for:
//   simple-mediasoup-peer-server listening on http://HOST:PORT workers=N routers=N
// The server's own settings come from the environment its config.js reads
// (MEDIASOUP_WORKER_BIN, NUM_WORKERS, LISTEN_IP).
const http = require('http');

const dir = process.argv[2] || process.cwd();
const load = (name) => require(require.resolve(name, { paths: [dir] }));
const { Server } = load('socket.io');
const SimpleMediasoupPeerServer = load('simple-mediasoup-peer-server');

const host = process.env.HOST || '127.0.0.1';
const port = Number(process.env.PORT || 0);
const httpServer = http.createServer();
const io = new Server(httpServer, {
  path: '/socket.io/',
  cors: { origin: '*', methods: ['GET', 'POST'], credentials: true },
  serveClient: false,
});
const server = new SimpleMediasoupPeerServer({ io });

// The server's init() is async and attaches its connection handler only once
// every worker and router exists (it sets server.io then): listen after that.
const started = Date.now();
const timer = setInterval(() => {
  if (server.io) {
    clearInterval(timer);
    httpServer.listen(port, host, () => {
      const { port: bound } = httpServer.address();
      console.log(
        `simple-mediasoup-peer-server listening on http://${host}:${bound} ` +
          `workers=${server.workers.length} routers=${server.routers.length}`,
      );
    });
  } else if (Date.now() - started > 30000) {
    console.error('the server did not finish its init within 30 s');
    process.exit(1);
  }
}, 20);

// Stop the mediasoup workers with the server.
const stop = () => {
  for (const worker of server.workers || []) worker.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
