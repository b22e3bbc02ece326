/** 16-bit little-endian mono PCM helpers for providers whose audio rate differs from GA's 24 kHz. */

export const GA_PCM_RATE = 24000;

/**
 * Sample rates accepted from a provider, telephone to studio. A rate outside them is a
 * malformed MIME type, and resampling from it could cost any amount of memory and time
 * (from `rate=1`, each input sample becomes 24,000).
 */
const MIN_PCM_RATE = 8000;
const MAX_PCM_RATE = 48000;

/**
 * The `rate` of an `audio/pcm;rate=N` MIME type; `audio/pcm` without a rate is 24 kHz here.
 * Undefined when it is not PCM, or when the rate is outside 8-48 kHz.
 */
export function pcmRateOf(mimeType: string | undefined): number | undefined {
  if (!mimeType) return undefined;
  const [base, ...params] = mimeType.split(';').map((p) => p.trim().toLowerCase());
  if (base !== 'audio/pcm' && base !== 'audio/l16') return undefined;
  for (const param of params) {
    const [name, value] = param.split('=');
    if (name !== 'rate' || !value || !/^\d+$/.test(value)) continue;
    const rate = Number(value);
    return rate >= MIN_PCM_RATE && rate <= MAX_PCM_RATE ? rate : undefined;
  }
  return GA_PCM_RATE;
}

/**
 * Linear-interpolation resampling of one chunk. Each chunk is resampled on its own, so a
 * boundary sample may be off by one interpolation step; inaudible for speech, and it keeps
 * the mapper stateless per chunk. An odd trailing byte is dropped.
 */
export function resamplePcm16(input: Buffer, fromRate: number, toRate: number): Buffer {
  const inSamples = input.length >> 1;
  if (fromRate === toRate || inSamples === 0) return input.subarray(0, inSamples << 1);
  const outSamples = Math.max(1, Math.round((inSamples * toRate) / fromRate));
  const out = Buffer.allocUnsafe(outSamples << 1);
  const step = fromRate / toRate;
  for (let i = 0; i < outSamples; i++) {
    const pos = i * step;
    const j = Math.min(Math.floor(pos), inSamples - 1);
    const k = Math.min(j + 1, inSamples - 1);
    const frac = pos - j;
    const a = input.readInt16LE(j << 1);
    const b = input.readInt16LE(k << 1);
    out.writeInt16LE(Math.round(a + (b - a) * frac), i << 1);
  }
  return out;
}
