/**
 * The socket's connection lifecycle and session resume (docs/PROTOCOL.md
 * "Session resume"): the `session` and `serverShutdown` pushes, what a
 * (re)connecting socket claims, whether a connect resumed our session or
 * needs a new one, the grace period after a cut, a refused resume, a server
 * that is restarting, and, after a resume, doing again what failed while
 * the socket was away.
 */
import { requestConsumers, resumeConsumers } from './consuming.js';
import { log, type PeerCore, type ResumeClaim, type Session } from './core.js';
import { publishAll, unpublish } from './publishing.js';
import { endSession, join, leave, startSession } from './session.js';
import { recoverTransport } from './transports.js';
import { isPlainObject } from './validate.js';

/** `{peerId, token}` while our session can still be resumed, else `true` (a new session). */
export function resumeClaim(core: PeerCore): ResumeClaim {
  const session = core.session;
  const resume = core.resume;
  if (
    !core.closed &&
    !core.restartExpected &&
    session &&
    resume &&
    resume.peerId === session.peerId &&
    Date.now() - core.disconnectedAt < resume.graceMs
  ) {
    core.resumeAttempt = resume.peerId;
    return { peerId: resume.peerId, token: resume.token };
  }
  core.resumeAttempt = null;
  return true;
}

/** The `session` push: what a reconnect claims to resume. */
export function onSessionPush(core: PeerCore, data: unknown): void {
  const { peerId, resumeToken, resumeGraceMs } = (isPlainObject(data) ? data : {}) as Record<string, unknown>;
  if (typeof peerId === 'string' && typeof resumeToken === 'string') {
    const graceMs = typeof resumeGraceMs === 'number' && resumeGraceMs > 0 ? resumeGraceMs : 0;
    core.resume = { peerId, token: resumeToken, graceMs };
  }
}

/** The `serverShutdown` push: no resume; the next connection is a new session. */
export function onServerShutdown(core: PeerCore, data: unknown): void {
  const text = (isPlainObject(data) ? data : {}).message;
  const message = typeof text === 'string' ? text : 'the server is stopping';
  core.restartExpected = true;
  core.resume = null;
  core.updateConnectionState();
  core.events.emit('serverShutdown', { message });
}

/** The socket connected: our session resumed, or a new one. */
export function onConnect(core: PeerCore): void {
  if (core.closed) return;
  core.restartExpected = false;
  clearGraceTimer(core);
  const session = core.session;
  if (session && core.resumeAttempt !== null && core.resumeAttempt === session.peerId) {
    // Resumed: same peer, transports, producers and consumers; the pushes
    // we missed follow. Redo what failed while we were away.
    core.resumeAttempt = null;
    log('resumed session as peer %s', session.peerId);
    core.updateConnectionState();
    core.queue.push(() => reconcile(core, session)).catch((error) => core.reportError('resuming', error));
    return;
  }
  core.resumeAttempt = null;
  startSession(core);
}

export function onDisconnect(core: PeerCore, reason: string): void {
  if (core.closed) return;
  if (core.restartExpected) {
    // The server is restarting: socket.io reconnects by itself after a
    // dropped connection; a server that disconnected us on its way down
    // would not be retried, so come back ourselves, a little later and
    // at a random moment, so that a server's clients do not all return
    // at once. The next connection is a new session.
    endSession(core, true);
    if (reason === 'io server disconnect') {
      const delayMs = 1000 + Math.random() * 2000;
      log('the server stopped; reconnecting in %d ms', Math.round(delayMs));
      setTimeout(() => {
        if (!core.closed && !core.socket.connected) core.socket.connect?.();
      }, delayMs);
    }
    core.updateConnectionState();
    return;
  }
  // Our own socket.disconnect() or the server's: socket.io does not come
  // back by itself, and the server has dropped the peer.
  const final = reason === 'io client disconnect' || reason === 'io server disconnect';
  const session = core.session;
  const resume = core.resume;
  if (!final && core.canResume && session && resume && resume.peerId === session.peerId) {
    log('socket lost (%s); resumable for %d ms', reason, resume.graceMs);
    core.disconnectedAt = Date.now();
    clearGraceTimer(core);
    core.graceTimer = setTimeout(() => {
      core.graceTimer = null;
      if (core.closed || core.socket.connected) return;
      log('the grace period passed: the next connection is a new session');
      core.resume = null;
      endSession(core, true);
      core.updateConnectionState();
    }, resume.graceMs);
  } else {
    if (final) core.resume = null;
    endSession(core, true);
  }
  core.updateConnectionState();
}

export function onConnectError(core: PeerCore, error: unknown): void {
  if (core.closed) return;
  const message = String((error as { message?: unknown } | null)?.message ?? error);
  if (/^(resume_failed|invalid_auth)\b/.test(message) && core.resumeAttempt !== null) {
    // Too late, or the server forgot us: start a new session. socket.io
    // does not retry a refused connection by itself.
    log('resume refused (%s): new session', message);
    core.resume = null;
    core.resumeAttempt = null;
    clearGraceTimer(core);
    endSession(core, true);
    setTimeout(() => {
      if (!core.closed && !core.socket.connected) core.socket.connect?.();
    }, 0);
    core.updateConnectionState('reconnecting');
    return;
  }
  core.updateConnectionState();
}

export function clearGraceTimer(core: PeerCore): void {
  if (core.graceTimer !== null) clearTimeout(core.graceTimer);
  core.graceTimer = null;
}

/** After a resume: what failed while the socket was away is done again. */
async function reconcile(core: PeerCore, session: Session): Promise<void> {
  core.checkCurrent(session);
  for (const [label, record] of [...session.producers]) {
    if (!core.tracks.has(label) || record.producer.closed) await unpublish(core, session, label);
  }
  await publishAll(core, session);
  if (core.desiredRoom !== null) await join(core, session, core.desiredRoom);
  else await leave(core, session);
  await resumeConsumers(core, session);
  for (const peerId of core.available.keys()) await requestConsumers(core, session, peerId);
  for (const direction of ['send', 'recv'] as const) {
    const state = core.transport(session, direction).connectionState;
    if (state === 'disconnected' || state === 'failed') recoverTransport(core, session, direction);
  }
}
