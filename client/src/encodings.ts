/**
 * Encodings presets for `addTrack(track, label, broadcast, encodings)`.
 * mediasoup-client assigns the rids (`r0`, `r1`, ... lowest first).
 */
import type { types } from 'mediasoup-client';

export type Encodings = types.RtpEncodingParameters[];

/** Three simulcast layers (quarter, half and full resolution), VP8. */
export const SIMULCAST: Readonly<Encodings> = Object.freeze([
  { maxBitrate: 150_000, scaleResolutionDownBy: 4 },
  { maxBitrate: 500_000, scaleResolutionDownBy: 2 },
  { maxBitrate: 1_200_000, scaleResolutionDownBy: 1 },
]);

/** Screen share: one sharp layer at a low frame rate. */
export const SCREEN_SHARE: Readonly<Encodings> = Object.freeze([
  { maxBitrate: 1_500_000, maxFramerate: 15 },
]);

/** What a camera gets when no encodings are given. */
export const DEFAULT_VIDEO: Readonly<Encodings> = Object.freeze([{ maxBitrate: 500_000 }]);

/** What a microphone gets when no encodings are given. */
export const DEFAULT_AUDIO: Readonly<Encodings> = Object.freeze([{ maxBitrate: 64_000 }]);

/** The presets by name, also accepted by `addTrack` as a string. */
export const ENCODINGS = Object.freeze({
  simulcast: SIMULCAST,
  screenShare: SCREEN_SHARE,
});

export type EncodingsPreset = keyof typeof ENCODINGS;

/**
 * Resolves `encodings` (an array, a preset name or undefined) to a fresh
 * array for mediasoup-client, which may modify what it is given.
 * Throws TypeError for anything else.
 */
export function resolveEncodings(
  kind: 'audio' | 'video',
  encodings: Encodings | Readonly<Encodings> | EncodingsPreset | undefined,
): Encodings {
  let chosen: Readonly<Encodings>;
  if (encodings === undefined || encodings === null) {
    chosen = kind === 'video' ? DEFAULT_VIDEO : DEFAULT_AUDIO;
  } else if (typeof encodings === 'string') {
    if (!Object.hasOwn(ENCODINGS, encodings)) {
      throw new TypeError(
        `unknown encodings preset "${encodings}" (one of: ${Object.keys(ENCODINGS).join(', ')})`,
      );
    }
    chosen = ENCODINGS[encodings];
  } else if (Array.isArray(encodings) && encodings.length > 0 && encodings.every(isPlainObject)) {
    chosen = encodings;
  } else {
    throw new TypeError('encodings must be a non-empty array of RTCRtpEncodingParameters or a preset name');
  }
  return chosen.map((encoding) => ({ ...encoding }));
}

function isPlainObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
