/**
 * A voice turn over the realtime proxy on Socket.IO `/` (PROTOCOLS.md 2d): the microphone,
 * resampled to PCM16 mono 24 kHz by an AudioWorklet, goes out as binary `realtime-audio`;
 * finishing commits the buffer and asks for a response; audio deltas come back as binary
 * `realtime-response` and are played in order, transcripts and errors are reported.
 */
import { asGatewayError, GatewayError } from './api.js';
import { connect, connected, type Socket } from './sockets.js';

const RATE = 24_000;
/** 100 ms per `realtime-audio` event. */
const CHUNK_SAMPLES = 2_400;
/** A little lead so the first chunk is not cut by scheduling jitter. */
const PLAYBACK_LEAD_S = 0.05;

export type VoiceState = 'idle' | 'starting' | 'recording' | 'waiting';

export interface VoiceStats {
  sentBytes: number;
  receivedBytes: number;
  /** Audio scheduled for playback, and how much of it has finished playing. */
  scheduledMs: number;
  playedMs: number;
}

export interface VoiceEvents {
  state(state: VoiceState, detail: string): void;
  /** Transcript text: `you` (input transcription) or `assistant` (output audio transcript). */
  transcript(role: 'you' | 'assistant', text: string, final: boolean): void;
  stats(stats: VoiceStats): void;
  error(error: GatewayError): void;
}

/** The GA session shape: PCM at 24 kHz both ways, no server VAD (the button ends a turn). */
const SESSION_UPDATE = {
  type: 'session.update',
  session: {
    type: 'realtime',
    output_modalities: ['audio'],
    audio: {
      input: { format: { type: 'audio/pcm', rate: RATE }, turn_detection: null },
      output: { format: { type: 'audio/pcm', rate: RATE } },
    },
  },
};

export class VoiceSession {
  private socket: Socket | undefined;
  private token: string | null = null;
  private context: AudioContext | undefined;
  private capture: { stream: MediaStream; source: MediaStreamAudioSourceNode; node: AudioWorkletNode; sink: GainNode } | undefined;
  private nextPlayAt = 0;
  private current: VoiceState = 'idle';
  readonly stats: VoiceStats = { sentBytes: 0, receivedBytes: 0, scheduledMs: 0, playedMs: 0 };

  constructor(private readonly events: VoiceEvents) {}

  get state(): VoiceState {
    return this.current;
  }

  /** Opens the connection if needed and starts streaming the microphone. Call from a click (audio needs a user gesture). */
  async start(token: string | null): Promise<void> {
    if (this.current !== 'idle') return;
    this.setState('starting', 'asking for the microphone…');
    // Created before any await, while the click still counts as a user gesture.
    this.context ??= new AudioContext();
    try {
      void this.context.resume();
      const socket = await this.open(token);
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: true, noiseSuppression: false, autoGainControl: false } });
      await this.context.audioWorklet.addModule('/playground/pcm16-worklet.js');
      // Refused meanwhile (a realtime-error: no provider, a limit): no microphone after all.
      if (!this.stillStarting()) {
        for (const track of stream.getTracks()) track.stop();
        return;
      }
      const source = this.context.createMediaStreamSource(stream);
      const node = new AudioWorkletNode(this.context, 'pcm16-capture', {
        numberOfInputs: 1,
        numberOfOutputs: 1,
        channelCount: 1,
        channelCountMode: 'explicit',
        channelInterpretation: 'speakers',
        processorOptions: { targetRate: RATE, chunkSamples: CHUNK_SAMPLES },
      });
      node.port.onmessage = (event: MessageEvent<ArrayBuffer | string>) => {
        if (!(event.data instanceof ArrayBuffer)) return;
        this.stats.sentBytes += event.data.byteLength;
        socket.emit('realtime-audio', event.data);
        this.events.stats(this.stats);
      };
      // A silent path to the speakers keeps the graph pulling the worklet.
      const sink = this.context.createGain();
      sink.gain.value = 0;
      source.connect(node).connect(sink).connect(this.context.destination);
      this.capture = { stream, source, node, sink };
      this.setState('recording', `listening (${Math.round(this.context.sampleRate / 100) / 10} kHz microphone → PCM16 24 kHz)`);
    } catch (err) {
      this.stopCapture();
      this.setState('idle', 'could not start');
      this.events.error(err instanceof DOMException ? new GatewayError('MICROPHONE', `${err.name}: ${err.message}`) : asGatewayError(err));
    }
  }

  /** Stops the microphone, sends what is left, commits the turn and asks for the reply. */
  async finish(): Promise<void> {
    if (this.current !== 'recording' || !this.capture || !this.socket) return;
    const { node } = this.capture;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, 1_000);
      node.port.addEventListener('message', (event: MessageEvent) => {
        if (event.data !== 'flushed') return;
        clearTimeout(timer);
        resolve();
      });
      node.port.postMessage('flush');
    });
    this.stopCapture();
    if (this.stats.sentBytes === 0) {
      this.setState('idle', 'no audio was captured');
      this.events.error(new GatewayError('MICROPHONE', 'No audio was captured from the microphone'));
      return;
    }
    this.socket.emit('realtime-message', { type: 'input_audio_buffer.commit' });
    this.socket.emit('realtime-message', { type: 'response.create' });
    this.setState('waiting', 'waiting for the reply…');
  }

  /** Ends everything: microphone, connection (which closes the upstream session), playback. */
  close(): void {
    this.stopCapture();
    this.socket?.disconnect();
    this.socket = undefined;
    void this.context?.close();
    this.context = undefined;
    this.nextPlayAt = 0;
    if (this.current !== 'idle') this.setState('idle', 'closed');
  }

  private async open(token: string | null): Promise<Socket> {
    if (this.socket && this.token !== token) {
      this.socket.disconnect();
      this.socket = undefined;
    }
    this.token = token;
    if (!this.socket) {
      const socket = connect('/', token, true);
      socket.on('realtime-response', (data: unknown) => this.onResponse(data));
      socket.on('realtime-error', (p: { message: string; code: string }) => {
        this.events.error(new GatewayError(p.code, p.message));
        // No provider, a limit, an upstream failure: this turn is over (the next one opens a new session).
        if (this.current === 'idle') return;
        this.stopCapture();
        this.setState('idle', `failed (${p.code})`);
      });
      socket.on('disconnect', () => {
        this.socket = undefined;
        if (this.current !== 'idle') {
          this.stopCapture();
          this.setState('idle', 'the connection closed');
        }
      });
      this.socket = socket;
      await connected(socket);
      // The upstream session opens on this first event; audio sent meanwhile is queued by the gateway.
      socket.emit('realtime-message', SESSION_UPDATE);
    }
    await connected(this.socket);
    return this.socket;
  }

  private onResponse(data: unknown): void {
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
      this.play(data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      return;
    }
    const event = data as { type?: string; delta?: string; transcript?: string; response?: { status?: string; usage?: { total_tokens?: number } } };
    switch (event.type) {
      case 'response.output_audio_transcript.delta':
        if (event.delta) this.events.transcript('assistant', event.delta, false);
        return;
      case 'response.output_audio_transcript.done':
        this.events.transcript('assistant', '', true);
        return;
      case 'conversation.item.input_audio_transcription.completed':
        if (event.transcript) this.events.transcript('you', event.transcript, true);
        return;
      case 'response.done': {
        const tokens = event.response?.usage?.total_tokens;
        const status = event.response?.status ?? 'completed';
        this.setState('idle', `reply ${status}${tokens !== undefined ? `, ${tokens} tokens` : ''}`);
        return;
      }
    }
  }

  /** Schedules one PCM16 chunk right after the previous one. */
  private play(bytes: Uint8Array): void {
    this.stats.receivedBytes += bytes.byteLength;
    const ctx = this.context;
    const samples = Math.floor(bytes.byteLength / 2);
    if (!ctx || samples === 0) return this.events.stats(this.stats);
    const view = new DataView(bytes.buffer, bytes.byteOffset, samples * 2);
    const buffer = ctx.createBuffer(1, samples, RATE);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < samples; i++) channel[i] = view.getInt16(i * 2, true) / 0x8000;
    const source = ctx.createBufferSource();
    source.buffer = buffer;
    source.connect(ctx.destination);
    const at = Math.max(ctx.currentTime + PLAYBACK_LEAD_S, this.nextPlayAt);
    source.start(at);
    this.nextPlayAt = at + buffer.duration;
    const ms = buffer.duration * 1000;
    this.stats.scheduledMs += ms;
    source.onended = () => {
      this.stats.playedMs += ms;
      this.events.stats(this.stats);
    };
    this.events.stats(this.stats);
  }

  private stopCapture(): void {
    const capture = this.capture;
    this.capture = undefined;
    if (!capture) return;
    for (const track of capture.stream.getTracks()) track.stop();
    capture.source.disconnect();
    capture.node.disconnect();
    capture.node.port.onmessage = null;
    capture.sink.disconnect();
  }

  /** Read through a call: an await may have changed it, which TypeScript's narrowing cannot see. */
  private stillStarting(): boolean {
    return this.current === 'starting';
  }

  private setState(state: VoiceState, detail: string): void {
    this.current = state;
    this.events.state(state, detail);
  }
}
