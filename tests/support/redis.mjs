// Debian's redis-server for the cluster tests (signaling and browser): an
// empty Redis on a free port, without persistence, so a restart loses
// everything, killed when the test ends.

import { spawn, spawnSync } from 'node:child_process';
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export const REDIS = '/usr/bin/redis-server';
export const haveRedis = spawnSync(REDIS, ['--version']).status === 0;
export const NO_REDIS = !haveRedis && `${REDIS} not installed (apt-get install redis-server)`;

/** A TCP port nobody listens on right now. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/**
 * An empty Redis on `port`; `onExit(kill)` registers the cleanup (node:test's
 * `t.after`, or a Cleanup). Resolves once it accepts connections, with
 * `kill()` (resolves when it has exited).
 */
export async function startRedis(onExit, port) {
  const child = spawn(REDIS, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (c) => (output += c));
  const kill = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  };
  onExit(kill);
  const deadline = Date.now() + 10_000;
  while (!output.includes('Ready to accept connections')) {
    if (child.exitCode !== null) throw new Error(`redis-server exited: ${output}`);
    if (Date.now() > deadline) throw new Error(`redis-server not ready within 10 s: ${output}`);
    await sleep(50);
  }
  return {
    kill: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      kill();
      await exited;
    },
  };
}
