// Constrained links for the browser tests: `tc` (iproute2) shapes what the
// server sends to one page, by the UDP port that page receives on, with an
// htb class per shaped port on the loopback interface of the test's own
// network namespace (server and browser share it, so every datagram between
// them crosses `lo`). Everything else stays unshaped. Only ever used inside a
// private network namespace: `shapingUnavailable()` says why not otherwise.

import { execFileSync } from 'node:child_process';
import { readlinkSync } from 'node:fs';

const DEVICE = 'lo';
/** Queue in front of a shaped link: 100 ms of its rate, as a home router's. */
const QUEUE_MS = 100;
/** A queue holds at least a few full datagrams, or even slow links drop bursts of one frame. */
const MIN_QUEUE_BYTES = 4 * 1500;

function tc(...args) {
  try {
    execFileSync('tc', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (error) {
    throw new Error(`tc ${args.join(' ')} failed: ${error.stderr?.toString().trim() || error.message}`);
  }
}

/**
 * Why shaping cannot run here, or null. It needs `tc` and a network namespace
 * of its own (never the host's: it would shape the machine's loopback).
 * scripts/test runs the browser stage in one and names the namespace it left
 * in SIMPLESFU_HOST_NETNS (`readlink /proc/self/ns/net` outside), so shaping
 * runs only where the namespace is known to differ.
 */
export function shapingUnavailable() {
  const host = process.env.SIMPLESFU_HOST_NETNS;
  if (!host) return 'SIMPLESFU_HOST_NETNS is not set: run the browser tests through scripts/test (a private network namespace)';
  if (readlinkSync('/proc/self/ns/net') === host) return 'still in the host network namespace (SIMPLESFU_HOST_NETNS)';
  try {
    execFileSync('tc', ['qdisc', 'show', 'dev', DEVICE], { stdio: 'ignore' });
  } catch {
    return '`tc` (iproute2) is missing';
  }
  // The qdiscs and the classifier this needs (sch_htb, sch_tbf, cls_u32).
  try {
    const probe = new Shaper();
    probe.limit([9], 100);
    probe.close();
  } catch (error) {
    return `this kernel cannot shape here: ${error.message}`;
  }
  return null;
}

/** The downlinks of the pages of one test; `close()` removes every class. */
export class Shaper {
  #classes = new Map(); // port -> class minor
  #next = 10;

  constructor() {
    // Unclassified traffic goes to 1:1, far faster than anything here.
    tc('qdisc', 'replace', 'dev', DEVICE, 'root', 'handle', '1:', 'htb', 'default', '1');
    tc('class', 'replace', 'dev', DEVICE, 'parent', '1:', 'classid', '1:1', 'htb', 'rate', '10gbit', 'quantum', '60000');
  }

  /**
   * Caps what reaches the UDP `ports` (one receiver's sockets: they share
   * the link) at `kbps` kbit/s, dropping what overflows its queue. The first
   * port names the link in later calls.
   */
  limit(ports, kbps) {
    ports = [ports].flat();
    let minor = this.#classes.get(ports[0]);
    const fresh = minor === undefined;
    if (fresh) {
      minor = this.#next++;
      this.#classes.set(ports[0], minor);
    }
    const classid = `1:${minor}`;
    // About one datagram of burst: the link sends at its rate, no faster.
    const spec = ['htb', 'rate', `${kbps}kbit`, 'ceil', `${kbps}kbit`, 'burst', '1600', 'cburst', '1600', 'quantum', '1514'];
    tc('class', fresh ? 'add' : 'change', 'dev', DEVICE, 'parent', '1:', 'classid', classid, ...spec);
    const queue = Math.max(MIN_QUEUE_BYTES, Math.round((kbps * 1000 * QUEUE_MS) / 8000));
    // The queue is a tbf at the same rate rather than a plain fifo: the
    // server sends a frame's datagrams as one GSO batch, which loopback
    // carries as one buffer of up to 64 KB, and tbf cuts such a buffer into
    // its datagrams (a real link sees datagrams) where htb and fifos take it
    // whole: a fifo then drops a whole frame at once, and htb lets it
    // through at once, both unlike any link.
    tc('qdisc', 'replace', 'dev', DEVICE, 'parent', classid, 'handle', `${minor}:`,
      'tbf', 'rate', `${kbps}kbit`, 'burst', '3000', 'limit', String(queue));
    if (fresh) {
      for (const port of ports) {
        tc('filter', 'add', 'dev', DEVICE, 'parent', '1:', 'protocol', 'ip', 'prio', '1', 'u32',
          'match', 'ip', 'protocol', '17', '0xff', 'match', 'ip', 'dport', String(port), '0xffff', 'flowid', classid);
      }
    }
  }

  /** Lifts the cap of the link named by `ports` (its class stays, far above any media rate). */
  lift(ports) {
    this.limit(ports, 1_000_000);
  }

  /** The classes' counters (`tc -s class show`), for a failing test's message. */
  stats() {
    try {
      return execFileSync('tc', ['-s', 'class', 'show', 'dev', DEVICE]).toString();
    } catch (error) {
      return `tc -s class show failed: ${error.message}`;
    }
  }

  close() {
    try {
      tc('qdisc', 'del', 'dev', DEVICE, 'root');
    } catch {
      // Already gone.
    }
  }
}

const NFT_TABLE = 'simplesfu_e2e';

function nft(...args) {
  try {
    return execFileSync('nft', args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  } catch (error) {
    throw new Error(`nft ${args.join(' ')} failed: ${error.stderr?.toString().trim() || error.message}`);
  }
}

/** Why random loss cannot be made here, or null (needs nftables, as .ci/run installs). */
export function lossUnavailable() {
  const shaping = shapingUnavailable();
  if (shaping) return shaping;
  try {
    execFileSync('nft', ['--version'], { stdio: 'ignore' });
  } catch {
    return '`nft` (nftables) is missing: apt-get install nftables (or run .ci/run)';
  }
  return null;
}

/**
 * Random loss on the way from the server to some pages: nftables drops a
 * share of the datagrams sent to their UDP ports (`numgen random`), as a
 * lossy radio link would. `close()` removes the rules.
 */
export class Loss {
  constructor() {
    nft('add', 'table', 'inet', NFT_TABLE);
    nft('add', 'chain', 'inet', NFT_TABLE, 'out', '{ type filter hook output priority 0; }');
  }

  /** Drops `percent` % of what is sent to the UDP `ports`, at random. */
  lose(ports, percent) {
    const set = `{ ${[ports].flat().join(', ')} }`;
    nft('add', 'rule', 'inet', NFT_TABLE, 'out', 'udp', 'dport', set, 'numgen', 'random', 'mod', '100', '<', String(percent), 'counter', 'drop');
  }

  /** Datagrams dropped so far. */
  dropped() {
    const rules = nft('list', 'chain', 'inet', NFT_TABLE, 'out');
    return [...rules.matchAll(/counter packets (\d+)/g)].reduce((sum, m) => sum + Number(m[1]), 0);
  }

  close() {
    try {
      nft('delete', 'table', 'inet', NFT_TABLE);
    } catch {
      // Already gone.
    }
  }
}
