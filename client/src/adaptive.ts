/**
 * adaptiveStream (opt-in): the preferred layers of each remote video track
 * follow the elements that show it. The app hands the library the `<video>`
 * elements it renders a track in (`observeVideoElement`); the library
 * watches their size (ResizeObserver), whether they are on screen
 * (IntersectionObserver) and whether the page is visible, and
 *
 * - asks for the lowest simulcast layer at least as tall as the largest
 *   element showing the track (a thumbnail gets the low layer, a full-screen
 *   tile the top), through the same path as `setPreferredLayers`;
 * - pauses the track's consumer when no element shows it for
 *   {@link HIDE_DELAY_MS} (a hidden tile gets nothing, and the server tells
 *   the publisher to stop encoding layers nobody wants), and resumes it as
 *   soon as one does.
 *
 * The layer heights are not signalled: the library assumes simulcast layers
 * that halve in size from the top down (what browsers and this library's
 * encodings send) and learns the top layer's height from the frames it
 * decodes and the layer the server says it forwards.
 */
import type { types } from 'mediasoup-client';
import { applyPreferredLayers, layersKey, setTrackHidden } from './consuming.js';
import type { ConsumerRecord, PeerCore } from './core.js';

/** How long a track must stay out of sight before its consumer is paused (scrolling past a tile does not pause it). */
export const HIDE_DELAY_MS = 500;
/**
 * A decoded frame height and the layer the server says it forwards must
 * agree this long before they tell the top layer's height: the layer report
 * and the first frames of a new layer arrive apart (the report over the
 * signaling socket), and a report of S0 read beside a 720-row frame of S2
 * would take the top for 2880 rows and keep the viewer on the low layer.
 */
const SAMPLE_STABLE_MS = 500;
/** Element changes are looked at together, this long after the first. */
const SETTLE_MS = 100;
/** A layer this much shorter than the element still counts as tall enough (scaling up by 10% is not visible). */
const HEIGHT_TOLERANCE = 0.9;

/** The number of spatial layers of a consumer (`L3T3` is three; 1 without simulcast). */
export function spatialLayerCount(rtpParameters: types.RtpParameters | undefined): number {
  const mode = rtpParameters?.encodings?.[0]?.scalabilityMode;
  const match = typeof mode === 'string' ? /^[LS](\d+)T\d+/.exec(mode) : null;
  const count = match ? Number(match[1]) : 1;
  return Number.isInteger(count) && count >= 1 && count <= 8 ? count : 1;
}

/**
 * The lowest of `layers` spatial layers (halving in height from the top,
 * which is `topHeight` pixels tall) that is at least as tall as
 * `renderedHeight` device pixels; the top when the top's height is not known.
 */
export function chooseSpatialLayer(topHeight: number, renderedHeight: number, layers: number): number {
  const top = layers - 1;
  if (!(topHeight > 0)) return top;
  for (let layer = 0; layer < top; layer++) {
    if (topHeight / 2 ** (top - layer) >= renderedHeight * HEIGHT_TOLERANCE) return layer;
  }
  return top;
}

/** The most spatial layers among a track's consumers. */
function layerCount(records: ConsumerRecord[]): number {
  return Math.max(1, ...records.map((r) => spatialLayerCount(r.consumer.rtpParameters)));
}

type Sample = { height: number; layer: number; since: number };

/**
 * The top layer's height from `frameHeight` rows decoded while the server
 * says it forwards layer `current` (of `layers`), once both have held for
 * SAMPLE_STABLE_MS: the sample to keep, the height when learned, and when
 * to look again when not yet.
 */
export function learnTopHeight(
  sample: Sample | null,
  frameHeight: number,
  current: number | null,
  layers: number,
  now: number,
): { sample: Sample | null; topHeight?: number; recheckInMs?: number } {
  if (!(frameHeight > 0) || current === null) return { sample };
  if (!sample || sample.height !== frameHeight || sample.layer !== current) {
    return { sample: { height: frameHeight, layer: current, since: now }, recheckInMs: SAMPLE_STABLE_MS };
  }
  const held = now - sample.since;
  if (held < SAMPLE_STABLE_MS) return { sample, recheckInMs: SAMPLE_STABLE_MS - held };
  return { sample, topHeight: frameHeight * 2 ** (layers - 1 - current) };
}

interface Watched {
  peerId: string;
  label: string;
  /** The elements showing it, and whether each is on screen. */
  elements: Map<HTMLVideoElement, { intersecting: boolean }>;
  /** The top layer's height, from the last frame height and layer that agreed for SAMPLE_STABLE_MS; 0: unknown. */
  topHeight: number;
  /** The frame height and layer seen last, and since when. */
  sample: Sample | null;
  /** What was last asked for. */
  spatial: number | null;
  hidden: boolean;
  /** Since when no element shows it (for HIDE_DELAY_MS). */
  unseenSince: number | null;
  timer: ReturnType<typeof setTimeout> | null;
}

export class AdaptiveStream {
  readonly #core: PeerCore;
  readonly #tracks = new Map<string, Watched>();
  readonly #resize: ResizeObserver;
  readonly #intersection: IntersectionObserver;
  readonly #onVisibility = () => this.#scheduleAll();

  constructor(core: PeerCore) {
    this.#core = core;
    this.#resize = new ResizeObserver((entries) => {
      for (const entry of entries) this.#scheduleFor(entry.target as HTMLVideoElement);
    });
    this.#intersection = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const element = entry.target as HTMLVideoElement;
        for (const watched of this.#tracks.values()) {
          const seen = watched.elements.get(element);
          if (seen) seen.intersecting = entry.isIntersecting;
        }
        this.#scheduleFor(element);
      }
    });
    document.addEventListener('visibilitychange', this.#onVisibility);
  }

  /** Watch `element` as a view of `peerId`'s track `label`; the returned function stops it. */
  observe(element: HTMLVideoElement, peerId: string, label: string): () => void {
    const key = layersKey(peerId, label);
    let watched = this.#tracks.get(key);
    if (!watched) {
      watched = {
        peerId,
        label,
        elements: new Map(),
        topHeight: 0,
        sample: null,
        spatial: null,
        hidden: false,
        unseenSince: null,
        timer: null,
      };
      this.#tracks.set(key, watched);
    }
    if (!watched.elements.has(element)) {
      watched.elements.set(element, { intersecting: false });
      this.#resize.observe(element);
      this.#intersection.observe(element);
      // A new frame size (a layer switch, the first frame) refines the top layer's height.
      element.addEventListener('resize', this.#onElementResize);
    }
    this.#schedule(watched, SETTLE_MS);
    return () => this.#unobserve(key, element);
  }

  /** Look at the elements of `peerId`'s track `label` again: it is consumed anew (a reconnect, a republished track) or the server moved it to other layers (which tells the top layer's height). */
  refresh(peerId: string, label: string): void {
    const watched = this.#tracks.get(layersKey(peerId, label));
    if (watched) this.#schedule(watched, SETTLE_MS);
  }

  /** Whether `peerId`'s track `label` is out of sight (its consumers start paused). */
  isHidden(peerId: string, label: string): boolean {
    return this.#tracks.get(layersKey(peerId, label))?.hidden ?? false;
  }

  close(): void {
    this.#resize.disconnect();
    this.#intersection.disconnect();
    document.removeEventListener('visibilitychange', this.#onVisibility);
    for (const watched of this.#tracks.values()) {
      if (watched.timer) clearTimeout(watched.timer);
      for (const element of watched.elements.keys()) element.removeEventListener('resize', this.#onElementResize);
    }
    this.#tracks.clear();
  }

  readonly #onElementResize = (event: Event) => this.#scheduleFor(event.target as HTMLVideoElement);

  #unobserve(key: string, element: HTMLVideoElement): void {
    const watched = this.#tracks.get(key);
    if (!watched || !watched.elements.delete(element)) return;
    if (![...this.#tracks.values()].some((w) => w.elements.has(element))) {
      this.#resize.unobserve(element);
      this.#intersection.unobserve(element);
      element.removeEventListener('resize', this.#onElementResize);
    }
    if (watched.elements.size === 0) {
      // Nothing watches it any more: back to the best layers, playing.
      if (watched.timer) clearTimeout(watched.timer);
      this.#tracks.delete(key);
      this.#apply(watched, layerCount(this.#records(watched)) - 1, false);
      return;
    }
    this.#schedule(watched, SETTLE_MS);
  }

  #scheduleFor(element: HTMLVideoElement): void {
    for (const watched of this.#tracks.values()) {
      if (watched.elements.has(element)) this.#schedule(watched, SETTLE_MS);
    }
  }

  #scheduleAll(): void {
    for (const watched of this.#tracks.values()) this.#schedule(watched, SETTLE_MS);
  }

  #schedule(watched: Watched, delayMs: number): void {
    if (watched.timer) return;
    watched.timer = setTimeout(() => {
      watched.timer = null;
      this.#evaluate(watched);
    }, delayMs);
  }

  /** Our video consumers of the watched track (one, or none between sessions). */
  #records(watched: Watched): ConsumerRecord[] {
    return [...(this.#core.session?.consumers.values() ?? [])].filter(
      (r) => r.peerId === watched.peerId && r.label === watched.label && r.consumer.kind === 'video',
    );
  }


  #evaluate(watched: Watched): void {
    if (this.#core.closed) return;
    const records = this.#records(watched);
    const layers = layerCount(records);
    const current = records.find((r) => r.layers?.spatialLayer != null)?.layers?.spatialLayer ?? null;
    const pageVisible = document.visibilityState !== 'hidden';
    const now = Date.now();
    let rendered = 0;
    let shown = false;
    let frameHeight = 0;
    for (const [element, { intersecting }] of watched.elements) {
      frameHeight = Math.max(frameHeight, element.videoHeight);
      const height = element.isConnected ? element.clientHeight : 0;
      if (pageVisible && intersecting && height > 0 && element.clientWidth > 0) {
        shown = true;
        rendered = Math.max(rendered, height * (window.devicePixelRatio || 1));
      }
    }
    this.#learnTopHeight(watched, frameHeight, current, layers, now);
    if (shown) {
      watched.unseenSince = null;
      this.#apply(watched, chooseSpatialLayer(watched.topHeight, rendered, layers), false);
      return;
    }
    watched.unseenSince ??= now;
    const left = HIDE_DELAY_MS - (now - watched.unseenSince);
    if (left > 0) {
      this.#schedule(watched, left);
      return;
    }
    this.#apply(watched, watched.spatial, true);
  }

  #learnTopHeight(watched: Watched, frameHeight: number, current: number | null, layers: number, now: number): void {
    const learned = learnTopHeight(watched.sample, frameHeight, current, layers, now);
    watched.sample = learned.sample;
    if (learned.topHeight !== undefined) watched.topHeight = learned.topHeight;
    if (learned.recheckInMs !== undefined) this.#schedule(watched, learned.recheckInMs);
  }

  /** Ask for `spatial` (`null`: unchanged) and pause or resume the track's consumers, when either changed. */
  #apply(watched: Watched, spatial: number | null, hidden: boolean): void {
    const core = this.#core;
    const { peerId, label } = watched;
    if (spatial !== null && spatial !== watched.spatial) {
      watched.spatial = spatial;
      core.preferredLayers.set(layersKey(peerId, label), { spatial });
      core.queue
        .push(() => applyPreferredLayers(core, peerId, label))
        .catch((error) => core.reportError(`adaptiveStream layers of ${peerId}/${label}`, error));
    }
    if (hidden !== watched.hidden) {
      watched.hidden = hidden;
      core.queue
        .push(() => setTrackHidden(core, peerId, label, hidden))
        .catch((error) => core.reportError(`adaptiveStream ${hidden ? 'pause' : 'resume'} of ${peerId}/${label}`, error));
    }
  }
}
