// Shared harness of the browser tests: the real simplesfu binary serving the
// test pages, Debian's Chromium driven by playwright-core and Debian's
// Firefox ESR driven by puppeteer-core (WebDriver BiDi), console capture,
// polling with deadlines, and cleanup that runs even when a test fails.

import { after, before } from 'node:test';
import { spawn } from 'node:child_process';
import { appendFileSync, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chromium } from 'playwright-core';
import puppeteer from 'puppeteer-core';

import { buildPages, PAGES_DIR } from './build.mjs';

export { buildPages, PAGES_DIR };

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));

export const SERVER_BIN = process.env.SIMPLESFU_BIN ?? join(REPO_ROOT, 'target/debug/simplesfu');
/** Every line the servers print is also appended here, when set (for debugging a test). */
const SERVER_LOG = process.env.SIMPLESFU_E2E_SERVER_LOG;
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const FIREFOX = process.env.FIREFOX_PATH ?? '/usr/bin/firefox-esr';

/** Firefox's fake camera and microphone, granted without a prompt. */
export const FIREFOX_PREFS = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
};

/** The flags of DESIGN.md "Tests at every level". */
export const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream',
  '--allow-loopback-in-peer-connection',
];

const SERVER_READY_TIMEOUT_MS = 15_000;
const SERVER_STOP_TIMEOUT_MS = 5_000;
const LOG_TAIL_LINES = 40;

/**
 * Cleanup actions run last-in first-out, each at most once, errors collected
 * rather than thrown halfway. Register it with node:test's `after` as well as
 * a `finally`, so that a test that times out still releases its processes.
 */
export class Cleanup {
  #actions = [];

  add(description, action) {
    this.#actions.push({ description, action });
  }

  async run() {
    const errors = [];
    while (this.#actions.length > 0) {
      const { description, action } = this.#actions.pop();
      try {
        await action();
      } catch (error) {
        errors.push(`${description}: ${error?.message ?? error}`);
      }
    }
    if (errors.length > 0) throw new Error(`cleanup failed:\n${errors.join('\n')}`);
  }
}

// Child processes still running when Node exits (a test that timed out, a
// crash): killed synchronously so that nothing outlives the test run.
const liveChildren = new Set();
process.on('exit', () => {
  for (const child of liveChildren) child.kill('SIGKILL');
});

/**
 * Starts `simplesfu` with ephemeral ports and waits for its "listening"
 * line. Media binds loopback and announces it, unless `defaultAddresses`:
 * then the server's defaults (bound to 0.0.0.0, announcing every local
 * address), as a user's first run has them; `env` is added to the
 * environment. Returns {url, logTail(), kill(), stop()}.
 */
export async function startServer({ staticDir, logLevel = 'warn', workers = 2, defaultAddresses = false, args: extraArgs = [], env = {} } = {}) {
  if (!existsSync(SERVER_BIN)) {
    throw new Error(`${SERVER_BIN} does not exist: build it with \`cargo build -p simplesfu\``);
  }
  const args = [
    '--http-listen', '127.0.0.1:0',
    ...(defaultAddresses ? [] : ['--rtc-listen-ip', '127.0.0.1']),
    '--rtc-port', '0',
    // Two workers whatever the machine: peers spread over both, so the
    // browser tests also cross the pipes between workers.
    '--workers', String(workers),
    '--static-dir', staticDir,
    '--log-level', logLevel,
    ...extraArgs,
  ];
  const child = spawn(SERVER_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  liveChildren.add(child);
  const lines = [];
  const exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      resolve({ code, signal });
    });
  });
  const logTail = () => lines.slice(-LOG_TAIL_LINES).join('\n');

  const url = await new Promise((resolve, reject) => {
    const buffered = { stdout: '', stderr: '' };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`simplesfu did not print its listening line within ${SERVER_READY_TIMEOUT_MS} ms:\n${logTail()}`));
    }, SERVER_READY_TIMEOUT_MS);
    const onData = (stream) => (chunk) => {
      buffered[stream] += chunk.toString();
      const parts = buffered[stream].split('\n');
      buffered[stream] = parts.pop();
      for (const line of parts) {
        lines.push(`[simplesfu ${stream}] ${line}`);
        if (SERVER_LOG) appendFileSync(SERVER_LOG, `${line}\n`);
        const match = /simplesfu listening on (http:\/\/\S+)/.exec(line);
        if (match) {
          clearTimeout(timer);
          resolve(match[1].replace(/\/$/, ''));
        }
      }
    };
    child.stdout.on('data', onData('stdout'));
    child.stderr.on('data', onData('stderr'));
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${SERVER_BIN}: ${error.message}`));
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`simplesfu exited before it was ready (code ${code}, signal ${signal}):\n${logTail()}`));
    });
  });

  return {
    url,
    logTail,
    /** SIGKILL, as a crash or a machine lost: no goodbye. */
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const stopped = await Promise.race([exited, sleep(SERVER_STOP_TIMEOUT_MS, null, { ref: false })]);
      if (stopped === null) {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`simplesfu ignored SIGTERM for ${SERVER_STOP_TIMEOUT_MS} ms and was killed`);
      }
    },
  };
}

/**
 * Launches Debian's Chromium, headless, with a fresh profile (removed again
 * by close()). Returns {context, close()}.
 */
export async function launchBrowser({ args = [] } = {}) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} does not exist: install Debian's chromium (apt-get install -y chromium)`);
  }
  const profileDir = await mkdtemp(join(tmpdir(), 'simplesfu-e2e-profile-'));
  let context;
  try {
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [...CHROMIUM_ARGS, ...args],
      timeout: 30_000,
    });
  } catch (error) {
    await rm(profileDir, { recursive: true, force: true });
    throw error;
  }
  return {
    context,
    async close() {
      try {
        await context.close();
      } finally {
        await rm(profileDir, { recursive: true, force: true });
      }
    },
  };
}

/**
 * Launches Debian's Firefox ESR, headless, through WebDriver BiDi with a
 * fresh profile (puppeteer makes and removes it) and the fake media devices.
 * Returns {context, close()}; `context.newPage()` gives pages with the same
 * `goto`/`evaluate`/`on` as Playwright's for what the tests use.
 */
export async function launchFirefox() {
  if (!existsSync(FIREFOX)) {
    throw new Error(`${FIREFOX} does not exist: install Debian's firefox-esr (apt-get install -y firefox-esr)`);
  }
  const browser = await puppeteer.launch({
    browser: 'firefox',
    executablePath: FIREFOX,
    protocol: 'webDriverBiDi',
    headless: true,
    extraPrefsFirefox: FIREFOX_PREFS,
    timeout: 30_000,
  });
  return {
    context: browser,
    async close() {
      await browser.close();
    },
  };
}

/**
 * Collects what a page reports as wrong: console errors and uncaught
 * exceptions. Warnings are kept apart, for diagnostics only.
 */
export function watchPage(page, name) {
  const problems = [];
  const warnings = [];
  page.on('console', (message) => {
    const text = `${name} console.${message.type()}: ${message.text()}`;
    if (message.type() === 'error') problems.push(text);
    // Playwright says 'warning', puppeteer 'warn'.
    else if (message.type() === 'warning' || message.type() === 'warn') warnings.push(text);
  });
  page.on('pageerror', (error) => problems.push(`${name} uncaught: ${error.message}`));
  page.on('crash', () => problems.push(`${name} crashed`));
  return { problems, warnings };
}

/**
 * Calls `probe` every `intervalMs` until it returns a truthy value, which is
 * returned. After `timeoutMs` throws, with `describe()` (the last observed
 * state) in the message. `probe` may throw to stop at once.
 */
export async function pollUntil(probe, { timeoutMs = 20_000, intervalMs = 200, what, describe = () => '' }) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${await describe()}`);
    }
    await sleep(intervalMs);
  }
}

/**
 * One simplesfu (serving the test pages, with `args`) and one Chromium for a
 * whole test file: started before its first test, stopped after its last
 * (even when a test fails). Returns {server, browser, cleanup}, filled in
 * once the file's `before` ran.
 */
export function useServerAndBrowser({ args = [], browserArgs = [] } = {}) {
  const env = { server: null, browser: null, cleanup: new Cleanup() };
  after(() => env.cleanup.run());
  before(async () => {
    await buildPages();
    env.server = await startServer({ staticDir: PAGES_DIR, args });
    env.cleanup.add('stop simplesfu', () => env.server.stop());
    env.browser = await launchBrowser({ args: browserArgs });
    env.cleanup.add('close chromium', () => env.browser.close());
  });
  return env;
}
