/**
 * Local stand-in for Gemini Live (BidiGenerateContent over a WebSocket), for `@google/genai`'s
 * `ai.live.connect` with `httpOptions.baseUrl: standin.url`. The SDK connects to
 * `ws://HOST//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=…`
 * (the double slash comes from the base URL's trailing slash), sends `{setup}` first and waits
 * for `{setupComplete:{}}`. Like the real service, messages go out as binary JSON frames.
 *
 * A turn (closed by `clientContent.turnComplete`, `realtimeInput.audioStreamEnd` or
 * `realtimeInput.activityEnd`) is answered with `modelTurn` audio parts of known bytes,
 * `outputTranscription`, `generationComplete`, then `turnComplete` with `usageMetadata`
 * (a TEXT-modality setup gets the transcript as text parts instead).
 */
import type { WebSocket } from 'ws';
import { isRecord, knownAudio, startWsStandinServer, until } from './ws-standin-server.js';

type Json = Record<string, unknown>;

export const GEMINI_LIVE_PATH = '//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent';

export interface GeminiLiveScript {
  /** Raw PCM bytes, one `inlineData` part each. */
  audioChunks: Buffer[];
  /** MIME type of the audio parts. Default `audio/pcm;rate=24000`. */
  mimeType?: string;
  /** One `outputTranscription` message after each audio chunk, while they last. */
  transcript: string[];
  /** Sent as `inputTranscription` before the answer to an audio turn. */
  inputTranscript?: string[];
  /** Pause before each chunk. */
  delayMs?: number;
  usageMetadata?: Json;
}

export const GEMINI_STANDIN_AUDIO: readonly Buffer[] = knownAudio(3, 1200, 7);
export const GEMINI_STANDIN_TRANSCRIPT: readonly string[] = ['Hi', ' from', ' Gemini'];
export const GEMINI_STANDIN_USAGE = {
  promptTokenCount: 90,
  responseTokenCount: 70,
  totalTokenCount: 160,
  promptTokensDetails: [
    { modality: 'TEXT', tokenCount: 30 },
    { modality: 'AUDIO', tokenCount: 60 },
  ],
  responseTokensDetails: [
    { modality: 'TEXT', tokenCount: 10 },
    { modality: 'AUDIO', tokenCount: 60 },
  ],
} as const;

export function defaultGeminiLiveScript(): GeminiLiveScript {
  return {
    audioChunks: [...GEMINI_STANDIN_AUDIO],
    transcript: [...GEMINI_STANDIN_TRANSCRIPT],
    inputTranscript: ['what is', ' the weather'],
    usageMetadata: structuredClone(GEMINI_STANDIN_USAGE) as unknown as Json,
  };
}

export interface GeminiLiveStandinOptions {
  /** When set, the `key` query parameter must equal it (else the socket is closed with 1008). */
  apiKey?: string;
  script?: GeminiLiveScript;
}

export interface GeminiLiveConnection {
  readonly id: number;
  readonly query: Record<string, string>;
  setup: Json | undefined;
  closedAt: number | undefined;
  closeCode: number | undefined;
}

export interface GeminiLiveFrame {
  connection: number;
  message: Json | string;
}

export interface GeminiLiveStandin {
  /** Origin to use as `httpOptions.baseUrl`. */
  readonly url: string;
  /** Paths of every upgrade request, as sent. */
  readonly paths: string[];
  readonly connections: GeminiLiveConnection[];
  readonly frames: GeminiLiveFrame[];
  /** Every `realtimeInput.audio` blob: its MIME type and decoded bytes. */
  readonly audio: Array<{ connection: number; mimeType: string; bytes: Buffer }>;
  readonly sent: Json[];
  setScript(script: GeminiLiveScript): void;
  /** While on, `setup` is not answered; turning it off answers the held ones. */
  holdSetup(on: boolean): void;
  /** Sends `serverContent.interrupted` (ending a turn in progress with `turnComplete`). */
  interrupt(): void;
  goAway(timeLeft?: string): void;
  sendMessage(message: Json): void;
  closeConnections(code?: number, reason?: string): void;
  waitForFrame(match: (message: Json) => boolean, timeoutMs?: number, from?: number): Promise<Json>;
  waitForClose(connection: number, timeoutMs?: number): Promise<GeminiLiveConnection>;
  close(): Promise<void>;
}

export async function startGeminiLiveStandin(options: GeminiLiveStandinOptions = {}): Promise<GeminiLiveStandin> {
  let script = options.script ?? defaultGeminiLiveScript();
  let holdingSetup = false;
  const paths: string[] = [];
  const connections: GeminiLiveConnection[] = [];
  const frames: GeminiLiveFrame[] = [];
  const audio: Array<{ connection: number; mimeType: string; bytes: Buffer }> = [];
  const sent: Json[] = [];
  const open = new Map<number, { ws: WebSocket; interrupt(): void }>();
  let held: Array<() => void> = [];

  const server = await startWsStandinServer((req, control) => {
    paths.push(req.path);
    if (req.path !== GEMINI_LIVE_PATH) {
      control.refuse(404, { error: { code: 404, message: 'Not Found', status: 'NOT_FOUND' } });
      return;
    }
    control.accept((ws) => serve(ws, req.query));
  });

  function serve(ws: WebSocket, query: Record<string, string>): void {
    const conn: GeminiLiveConnection = { id: connections.length, query, setup: undefined, closedAt: undefined, closeCode: undefined };
    connections.push(conn);
    let turn: { timer: NodeJS.Timeout | undefined } | undefined;
    const send = (message: Json): void => {
      sent.push(structuredClone(message));
      if (ws.readyState === ws.OPEN) ws.send(Buffer.from(JSON.stringify(message)), { binary: true });
    };
    const usage = (): Json => ({ usageMetadata: script.usageMetadata ?? {} });
    const interrupt = (): void => {
      const wasActive = turn !== undefined;
      if (turn?.timer) clearTimeout(turn.timer);
      turn = undefined;
      send({ serverContent: { interrupted: true } });
      if (wasActive) send({ serverContent: { turnComplete: true }, ...usage() });
    };
    open.set(conn.id, { ws, interrupt });
    ws.on('error', () => undefined);
    ws.on('close', (code) => {
      conn.closedAt = Date.now();
      conn.closeCode = code;
      open.delete(conn.id);
      if (turn?.timer) clearTimeout(turn.timer);
    });

    if (options.apiKey !== undefined && query.key !== options.apiKey) {
      // The real service accepts the socket and then closes it with the reason.
      ws.close(1008, 'API key not valid. Please pass a valid API key.');
      return;
    }

    ws.on('message', (data) => {
      const text = data.toString();
      let message: unknown;
      try {
        message = JSON.parse(text);
      } catch {
        message = undefined;
      }
      if (!isRecord(message)) {
        frames.push({ connection: conn.id, message: text });
        ws.close(1007, 'Invalid JSON payload received.');
        return;
      }
      frames.push({ connection: conn.id, message });
      if (!conn.setup) {
        if (!isRecord(message.setup) || typeof message.setup.model !== 'string' || !message.setup.model.startsWith('models/')) {
          ws.close(1007, 'Request contains an invalid argument: setup must be the first message.');
          return;
        }
        conn.setup = message.setup;
        if (holdingSetup) held.push(() => send({ setupComplete: {} }));
        else send({ setupComplete: {} });
        return;
      }
      const input = message.realtimeInput;
      if (isRecord(input)) {
        if (isRecord(input.audio)) {
          const mimeType = String(input.audio.mimeType ?? '');
          if (!mimeType.startsWith('audio/')) {
            ws.close(1007, `Unsupported mime type: ${mimeType}`);
            return;
          }
          audio.push({ connection: conn.id, mimeType, bytes: Buffer.from(String(input.audio.data ?? ''), 'base64') });
        }
        if (input.audioStreamEnd === true || isRecord(input.activityEnd)) answer(true);
        return;
      }
      const content = message.clientContent;
      if (isRecord(content)) {
        if (content.turnComplete === true) answer(false);
        return;
      }
      ws.close(1007, 'Request contains an invalid argument.');
    });

    function textOnly(): boolean {
      const modalities = isRecord(conn.setup?.generationConfig) ? conn.setup.generationConfig.responseModalities : undefined;
      return Array.isArray(modalities) && modalities.includes('TEXT') && !modalities.includes('AUDIO');
    }

    function answer(audioTurn: boolean): void {
      if (turn) return;
      const s = script;
      const state: { timer: NodeJS.Timeout | undefined } = { timer: undefined };
      turn = state;
      if (audioTurn) for (const text of s.inputTranscript ?? []) send({ serverContent: { inputTranscription: { text } } });
      let i = 0;
      const step = (): void => {
        state.timer = undefined;
        if (turn !== state) return;
        if (textOnly()) {
          // A TEXT-modality session gets the transcript as text parts, and no audio.
          for (const text of s.transcript) send({ serverContent: { modelTurn: { parts: [{ text }] } } });
          i = s.audioChunks.length;
        }
        if (i < s.audioChunks.length) {
          const data = (s.audioChunks[i] as Buffer).toString('base64');
          send({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: s.mimeType ?? 'audio/pcm;rate=24000', data } }] } } });
          const t = s.transcript[i];
          if (t !== undefined) send({ serverContent: { outputTranscription: { text: t } } });
          i++;
          state.timer = setTimeout(step, s.delayMs ?? 0);
          return;
        }
        send({ serverContent: { generationComplete: true } });
        send({ serverContent: { turnComplete: true }, ...usage() });
        turn = undefined;
      };
      state.timer = setTimeout(step, s.delayMs ?? 0);
    }
  }

  return {
    url: `http://${server.origin}`,
    paths,
    connections,
    frames,
    audio,
    sent,
    setScript(s) {
      script = s;
    },
    holdSetup(on) {
      holdingSetup = on;
      if (on) return;
      const release = held;
      held = [];
      for (const answer of release) answer();
    },
    interrupt() {
      for (const c of open.values()) c.interrupt();
    },
    goAway(timeLeft = '10s') {
      for (const { ws } of open.values()) {
        const message = { goAway: { timeLeft } };
        sent.push(structuredClone(message));
        ws.send(Buffer.from(JSON.stringify(message)), { binary: true });
      }
    },
    sendMessage(message) {
      for (const { ws } of open.values()) {
        sent.push(structuredClone(message));
        ws.send(Buffer.from(JSON.stringify(message)), { binary: true });
      }
    },
    closeConnections(code = 1011, reason = 'stand-in closing') {
      for (const { ws } of open.values()) ws.close(code, reason);
    },
    waitForFrame(match, timeoutMs = 3000, from = 0) {
      return until(() => frames.slice(from).find((f) => isRecord(f.message) && match(f.message))?.message as Json | undefined, 'a matching frame', timeoutMs);
    },
    waitForClose(connection, timeoutMs = 3000) {
      return until(() => (connections[connection]?.closedAt !== undefined ? connections[connection] : undefined), `connection ${connection} to close`, timeoutMs);
    },
    close: () => server.close(),
  };
}
