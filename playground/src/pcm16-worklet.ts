/**
 * AudioWorklet processor `pcm16-capture`: microphone samples at the context's rate in, PCM16
 * mono at `targetRate` (24 kHz, what the realtime protocol takes) out, posted to the main
 * thread as ArrayBuffers of `chunkSamples` samples (little-endian). A `flush` message posts
 * what is left, then the string `flushed`.
 *
 * Resampling: a moving average over about one output period (a crude low-pass against
 * aliasing when the input rate is higher), then linear interpolation at the output instants.
 * Both keep their state across the 128-sample render quanta, so chunk edges leave no seam.
 */

// The AudioWorkletGlobalScope is not in TypeScript's DOM library: what this file uses of it.
declare const sampleRate: number;
declare function registerProcessor(name: string, processor: new (options: AudioWorkletNodeOptions) => AudioWorkletProcessor): void;
declare abstract class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: AudioWorkletNodeOptions);
  abstract process(inputs: Float32Array[][], outputs: Float32Array[][], parameters: Record<string, Float32Array>): boolean;
}

interface CaptureOptions {
  targetRate?: number;
  chunkSamples?: number;
}

class Pcm16Capture extends AudioWorkletProcessor {
  /** Input samples per output sample. */
  private readonly step: number;
  /** Width of the moving average, in input samples. */
  private readonly taps: number;
  /** The last `taps` raw input samples, for the moving average across quanta. */
  private readonly history: Float32Array;
  private historyPos = 0;
  private runningSum = 0;
  /** The previous filtered sample (index -1 of the current quantum). */
  private previous = 0;
  /** Position of the next output sample, in input samples from the start of the current quantum. */
  private position = 0;
  private readonly chunk: DataView;
  private readonly chunkSamples: number;
  private filled = 0;
  private filtered = new Float32Array(128);

  constructor(options: AudioWorkletNodeOptions) {
    super(options);
    const { targetRate = 24_000, chunkSamples = 2_400 } = (options.processorOptions ?? {}) as CaptureOptions;
    this.step = sampleRate / targetRate;
    this.taps = Math.max(1, Math.round(this.step));
    this.history = new Float32Array(this.taps);
    this.chunkSamples = chunkSamples;
    this.chunk = new DataView(new ArrayBuffer(chunkSamples * 2));
    this.port.onmessage = (event: MessageEvent) => {
      if (event.data !== 'flush') return;
      this.post(this.filled);
      this.port.postMessage('flushed');
    };
  }

  process(inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    // Keep the output silent: the node is connected only so the graph keeps pulling it.
    for (const channel of outputs[0] ?? []) channel.fill(0);
    const input = inputs[0]?.[0];
    if (!input || input.length === 0) return true;
    if (this.filtered.length !== input.length) this.filtered = new Float32Array(input.length);
    const x = this.filtered;
    for (let i = 0; i < input.length; i++) {
      const sample = input[i] ?? 0;
      this.runningSum += sample - (this.history[this.historyPos] ?? 0);
      this.history[this.historyPos] = sample;
      this.historyPos = (this.historyPos + 1) % this.taps;
      x[i] = this.runningSum / this.taps;
    }
    // Output instants in [-1, length - 1): index -1 is the previous quantum's last sample.
    while (this.position < x.length - 1) {
      const i = Math.floor(this.position);
      const frac = this.position - i;
      const a = i < 0 ? this.previous : (x[i] ?? 0);
      const b = x[i + 1] ?? 0;
      this.push(a + (b - a) * frac);
      this.position += this.step;
    }
    this.position -= x.length;
    this.previous = x[x.length - 1] ?? 0;
    return true;
  }

  private push(sample: number): void {
    const s = Math.max(-1, Math.min(1, sample));
    this.chunk.setInt16(this.filled * 2, s < 0 ? s * 0x8000 : s * 0x7fff, true);
    if (++this.filled === this.chunkSamples) this.post(this.filled);
  }

  private post(samples: number): void {
    if (samples === 0) return;
    const bytes = this.chunk.buffer.slice(0, samples * 2);
    this.port.postMessage(bytes, [bytes]);
    this.filled = 0;
  }
}

registerProcessor('pcm16-capture', Pcm16Capture);

// A module of its own: these declarations stay out of the page's scripts.
export {};
