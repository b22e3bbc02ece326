/**
 * Local stand-in for the OpenAI Realtime API, GA shape, over a real WebSocket on 127.0.0.1:
 * `ws://127.0.0.1:PORT/v1/realtime?model=…` with `Authorization: Bearer <key>`. A handshake
 * carrying `OpenAI-Beta` is refused (the beta interface is retired), as are a missing or
 * wrong key and a missing model. Every frame received is recorded, and so are the decoded
 * bytes of every `input_audio_buffer.append`. Responses are scripted with known audio bytes.
 */
import type { WebSocket } from 'ws';
import { isRecord, knownAudio, startWsStandinServer, until, type UpgradeRequest } from './ws-standin-server.js';

type Json = Record<string, unknown>;

export interface RealtimeScript {
  /** Raw PCM bytes, one `response.output_audio.delta` each (base64 on the wire). */
  audioChunks: Buffer[];
  /** One `response.output_audio_transcript.delta` after each audio chunk, while they last. */
  transcript: string[];
  /** Pause before each chunk. */
  delayMs?: number;
  usage?: Json;
}

export const STANDIN_AUDIO: readonly Buffer[] = knownAudio(3, 960);
export const STANDIN_TRANSCRIPT: readonly string[] = ['Hello', ' from', ' the stand-in'];
export const STANDIN_USAGE = {
  total_tokens: 180,
  input_tokens: 120,
  output_tokens: 60,
  input_token_details: { text_tokens: 20, audio_tokens: 100, image_tokens: 0, cached_tokens: 0, cached_tokens_details: { text_tokens: 0, audio_tokens: 0 } },
  output_token_details: { text_tokens: 15, audio_tokens: 45 },
} as const;

export function defaultRealtimeScript(): RealtimeScript {
  return { audioChunks: [...STANDIN_AUDIO], transcript: [...STANDIN_TRANSCRIPT], usage: structuredClone(STANDIN_USAGE) as unknown as Json };
}

export interface RealtimeStandinOptions {
  /** When set, the Bearer token must equal it; otherwise any non-empty token is accepted. */
  apiKey?: string;
  script?: RealtimeScript;
}

export interface RealtimeHandshake {
  path: string;
  query: Record<string, string>;
  headers: Record<string, string | string[] | undefined>;
  /** The HTTP status answered, 101 when upgraded, undefined while hanging. */
  status: number | undefined;
}

export interface RealtimeFrame {
  connection: number;
  /** The parsed event; the raw text when it was not JSON. */
  event: Json | string;
}

export interface RealtimeConnection {
  readonly id: number;
  readonly model: string;
  /** `Date.now()` when the socket closed, undefined while open. */
  closedAt: number | undefined;
  closeCode: number | undefined;
}

export interface RealtimeStandin {
  /** `ws://127.0.0.1:PORT/v1/realtime` (the client adds `?model=`). */
  readonly url: string;
  readonly handshakes: RealtimeHandshake[];
  readonly connections: RealtimeConnection[];
  readonly frames: RealtimeFrame[];
  /** Decoded bytes of every `input_audio_buffer.append`, in arrival order. */
  readonly audio: Buffer[];
  /** Every event the stand-in sent, in order. */
  readonly sent: Json[];
  setScript(script: RealtimeScript): void;
  /** While on, upgrade requests get no answer at all; turning it off completes the held ones. */
  hang(on: boolean): void;
  /** Sends an `error` event on every open connection. */
  sendError(message: string, code?: string): void;
  /** Sends any event on every open connection. */
  sendEvent(event: Json): void;
  /** Closes every open connection from the server side. */
  closeConnections(code?: number, reason?: string): void;
  /** Resolves with the first recorded frame (from `from` on) whose event matches. */
  waitForFrame(match: (event: Json) => boolean, timeoutMs?: number, from?: number): Promise<Json>;
  waitForClose(connection: number, timeoutMs?: number): Promise<RealtimeConnection>;
  close(): Promise<void>;
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;
/** Flat beta session fields that the GA endpoint rejects as unknown parameters. */
const BETA_SESSION_FIELDS = ['modalities', 'voice', 'input_audio_format', 'output_audio_format', 'input_audio_transcription', 'turn_detection'];

export async function startRealtimeStandin(options: RealtimeStandinOptions = {}): Promise<RealtimeStandin> {
  let script = options.script ?? defaultRealtimeScript();
  let hanging = false;
  let held: Array<() => void> = [];
  let ids = 0;
  const id = (prefix: string): string => `${prefix}_standin${(++ids).toString().padStart(6, '0')}`;
  const handshakes: RealtimeHandshake[] = [];
  const connections: RealtimeConnection[] = [];
  const frames: RealtimeFrame[] = [];
  const audio: Buffer[] = [];
  const sent: Json[] = [];
  const open = new Map<number, WebSocket>();

  const server = await startWsStandinServer((req, control) => {
    const record: RealtimeHandshake = { path: req.path, query: req.query, headers: { ...req.headers }, status: undefined };
    handshakes.push(record);
    const refusal = checkHandshake(req, options.apiKey);
    if (refusal) {
      record.status = refusal.status;
      control.refuse(refusal.status, { error: refusal.error });
      return;
    }
    const accept = (): void => {
      record.status = 101;
      control.accept((ws) => serve(ws, req.query.model as string));
    };
    if (hanging) {
      control.hang();
      held.push(accept);
      return;
    }
    accept();
  });

  function serve(ws: WebSocket, model: string): void {
    const conn: RealtimeConnection = { id: connections.length, model, closedAt: undefined, closeCode: undefined };
    connections.push(conn);
    open.set(conn.id, ws);
    const session: Json = defaultSession(id('sess'), model);
    let buffer: Buffer[] = [];
    let lastItem: string | null = null;
    let active: { id: string; timer: NodeJS.Timeout | undefined } | undefined;

    const send = (event: Json): void => {
      const full = { event_id: id('event'), ...event };
      sent.push(structuredClone(full));
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(full));
    };
    const error = (message: string, code: string, clientEventId: unknown, param: string | null = null): void =>
      send({ type: 'error', error: { type: 'invalid_request_error', code, message, param, event_id: typeof clientEventId === 'string' ? clientEventId : null } });
    const addItem = (item: Json): void => {
      send({ type: 'conversation.item.added', previous_item_id: lastItem, item });
      send({ type: 'conversation.item.done', previous_item_id: lastItem, item });
      lastItem = item.id as string;
    };

    ws.on('close', (code) => {
      conn.closedAt = Date.now();
      conn.closeCode = code;
      open.delete(conn.id);
      if (active?.timer) clearTimeout(active.timer);
    });
    ws.on('error', () => undefined);
    send({ type: 'session.created', session });

    ws.on('message', (data, isBinary) => {
      const text = isBinary ? '' : data.toString();
      let event: unknown;
      try {
        event = isBinary ? undefined : JSON.parse(text);
      } catch {
        event = undefined;
      }
      if (!isRecord(event)) {
        frames.push({ connection: conn.id, event: text });
        error('The server could not parse the message as JSON.', 'invalid_json', null);
        return;
      }
      frames.push({ connection: conn.id, event });
      const eid = event.event_id;
      switch (event.type) {
        case 'session.update': {
          const s = event.session;
          if (!isRecord(s) || s.type === undefined) {
            error("Missing required parameter: 'session.type'.", 'missing_required_parameter', eid, 'session.type');
            return;
          }
          const beta = BETA_SESSION_FIELDS.find((k) => k in s);
          if (beta) {
            error(`Unknown parameter: 'session.${beta}'.`, 'unknown_parameter', eid, `session.${beta}`);
            return;
          }
          mergeSession(session, s);
          send({ type: 'session.updated', session });
          return;
        }
        case 'input_audio_buffer.append': {
          if (typeof event.audio !== 'string' || !BASE64.test(event.audio)) {
            error("Invalid value for 'audio': expected base64-encoded audio.", 'invalid_value', eid, 'audio');
            return;
          }
          const bytes = Buffer.from(event.audio, 'base64');
          audio.push(bytes);
          buffer.push(bytes);
          return;
        }
        case 'input_audio_buffer.commit': {
          const total = buffer.reduce((n, b) => n + b.length, 0);
          if (total === 0) {
            error('Error committing input audio buffer: buffer too small. Expected at least 100ms of audio, but buffer only has 0.00ms of audio.', 'input_audio_buffer_commit_empty', eid);
            return;
          }
          buffer = [];
          const itemId = id('item');
          send({ type: 'input_audio_buffer.committed', previous_item_id: lastItem, item_id: itemId });
          addItem({ id: itemId, object: 'realtime.item', type: 'message', status: 'completed', role: 'user', content: [{ type: 'input_audio', transcript: null }] });
          return;
        }
        case 'input_audio_buffer.clear':
          buffer = [];
          send({ type: 'input_audio_buffer.cleared' });
          return;
        case 'conversation.item.create': {
          if (!isRecord(event.item)) {
            error("Missing required parameter: 'item'.", 'missing_required_parameter', eid, 'item');
            return;
          }
          addItem({ id: id('item'), object: 'realtime.item', status: 'completed', ...event.item });
          return;
        }
        case 'conversation.item.delete':
          send({ type: 'conversation.item.deleted', item_id: event.item_id });
          return;
        case 'conversation.item.truncate':
          send({ type: 'conversation.item.truncated', item_id: event.item_id, content_index: event.content_index ?? 0, audio_end_ms: event.audio_end_ms ?? 0 });
          return;
        case 'conversation.item.retrieve':
          error(`Item with item_id not found: ${String(event.item_id)}`, 'item_not_found', eid);
          return;
        case 'output_audio_buffer.clear':
          error('output_audio_buffer.clear is only supported for WebRTC sessions', 'invalid_value', eid);
          return;
        case 'response.create': {
          if (active) {
            error('Conversation already has an active response in progress.', 'conversation_already_has_active_response', eid);
            return;
          }
          respond();
          return;
        }
        case 'response.cancel': {
          if (!active) {
            error('Cancellation failed: no active response found', 'response_cancel_not_active', eid);
            return;
          }
          if (active.timer) clearTimeout(active.timer);
          send({ type: 'response.done', response: { id: active.id, object: 'realtime.response', status: 'cancelled', status_details: { type: 'cancelled', reason: 'client_cancelled' }, output: [], usage: null } });
          active = undefined;
          return;
        }
        default:
          error(`Invalid value: '${String(event.type)}'. Supported values are: 'session.update', 'input_audio_buffer.append', 'input_audio_buffer.commit', 'input_audio_buffer.clear', 'conversation.item.create', 'conversation.item.retrieve', 'conversation.item.truncate', 'conversation.item.delete', 'response.create', 'response.cancel', and 'output_audio_buffer.clear'.`, 'invalid_value', eid, 'type');
      }
    });

    function respond(): void {
      const s = script;
      const responseId = id('resp');
      const itemId = id('item');
      const where = { response_id: responseId, item_id: itemId, output_index: 0, content_index: 0 };
      const state = { id: responseId, timer: undefined as NodeJS.Timeout | undefined };
      active = state;
      send({ type: 'response.created', response: { id: responseId, object: 'realtime.response', status: 'in_progress', status_details: null, output: [], output_modalities: session.output_modalities, usage: null } });
      const item = { id: itemId, object: 'realtime.item', type: 'message', status: 'in_progress', role: 'assistant', content: [] as Json[] };
      send({ type: 'response.output_item.added', response_id: responseId, output_index: 0, item });
      send({ type: 'conversation.item.added', previous_item_id: lastItem, item });
      lastItem = itemId;
      send({ type: 'response.content_part.added', ...where, part: { type: 'audio', transcript: '' } });
      let i = 0;
      const step = (): void => {
        state.timer = undefined;
        if (active !== state || ws.readyState !== ws.OPEN) return;
        if (i < s.audioChunks.length) {
          send({ type: 'response.output_audio.delta', ...where, delta: (s.audioChunks[i] as Buffer).toString('base64') });
          const t = s.transcript[i];
          if (t !== undefined) send({ type: 'response.output_audio_transcript.delta', ...where, delta: t });
          i++;
          state.timer = setTimeout(step, s.delayMs ?? 0);
          return;
        }
        const transcript = s.transcript.join('');
        send({ type: 'response.output_audio.done', ...where });
        send({ type: 'response.output_audio_transcript.done', ...where, transcript });
        send({ type: 'response.content_part.done', ...where, part: { type: 'audio', transcript } });
        const done = { ...item, status: 'completed', content: [{ type: 'output_audio', transcript }] };
        send({ type: 'response.output_item.done', response_id: responseId, output_index: 0, item: done });
        send({ type: 'conversation.item.done', item: done });
        send({
          type: 'response.done',
          response: { id: responseId, object: 'realtime.response', status: 'completed', status_details: null, output: [done], output_modalities: session.output_modalities, usage: s.usage ?? null },
        });
        active = undefined;
      };
      state.timer = setTimeout(step, s.delayMs ?? 0);
    }
  }

  const forOpen = (fn: (ws: WebSocket) => void): void => {
    for (const ws of open.values()) fn(ws);
  };
  const push = (ws: WebSocket, event: Json): void => {
    const full = { event_id: id('event'), ...event };
    sent.push(structuredClone(full));
    ws.send(JSON.stringify(full));
  };

  return {
    url: `ws://${server.origin}/v1/realtime`,
    handshakes,
    connections,
    frames,
    audio,
    sent,
    setScript(s) {
      script = s;
    },
    hang(on) {
      hanging = on;
      if (on) return;
      const release = held;
      held = [];
      for (const accept of release) accept();
    },
    sendError(message, code = 'server_error') {
      forOpen((ws) => push(ws, { type: 'error', error: { type: 'server_error', code, message, param: null, event_id: null } }));
    },
    sendEvent(event) {
      forOpen((ws) => push(ws, event));
    },
    closeConnections(code = 1011, reason = 'stand-in closing') {
      forOpen((ws) => ws.close(code, reason));
    },
    waitForFrame(match, timeoutMs = 3000, from = 0) {
      return until(() => frames.slice(from).find((f) => isRecord(f.event) && match(f.event))?.event as Json | undefined, 'a matching frame', timeoutMs);
    },
    waitForClose(connection, timeoutMs = 3000) {
      return until(() => (connections[connection]?.closedAt !== undefined ? connections[connection] : undefined), `connection ${connection} to close`, timeoutMs);
    },
    close: () => server.close(),
  };
}

function checkHandshake(req: UpgradeRequest, apiKey: string | undefined): { status: number; error: Json } | undefined {
  if (req.path !== '/v1/realtime') {
    return { status: 404, error: { message: `Invalid URL (GET ${req.path})`, type: 'invalid_request_error', code: null, param: null } };
  }
  if (req.headers['openai-beta'] !== undefined) {
    return {
      status: 400,
      error: { message: 'The Realtime API beta has been retired; connect without the OpenAI-Beta header.', type: 'invalid_request_error', code: 'beta_api_retired', param: null },
    };
  }
  const auth = req.headers.authorization;
  const token = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice('Bearer '.length) : '';
  if (!token || (apiKey !== undefined && token !== apiKey)) {
    // Like the real API, the message echoes a masked key: the gateway must never pass it on.
    const masked = token ? `${token.slice(0, 6)}***${token.slice(-4)}` : '';
    return {
      status: 401,
      error: {
        message: token ? `Incorrect API key provided: ${masked}. You can find your API key at https://platform.openai.com/account/api-keys.` : "You didn't provide an API key.",
        type: 'invalid_request_error',
        code: token ? 'invalid_api_key' : null,
        param: null,
      },
    };
  }
  if (!req.query.model) {
    return { status: 400, error: { message: "Missing required parameter: 'model'.", type: 'invalid_request_error', code: 'missing_required_parameter', param: 'model' } };
  }
  return undefined;
}

function defaultSession(id: string, model: string): Json {
  return {
    type: 'realtime',
    object: 'realtime.session',
    id,
    model,
    output_modalities: ['audio'],
    instructions: '',
    tools: [],
    tool_choice: 'auto',
    max_output_tokens: 'inf',
    tracing: null,
    truncation: 'auto',
    prompt: null,
    expires_at: Math.floor(Date.now() / 1000) + 3600,
    audio: {
      input: {
        format: { type: 'audio/pcm', rate: 24000 },
        transcription: null,
        noise_reduction: null,
        turn_detection: { type: 'server_vad', threshold: 0.5, prefix_padding_ms: 300, silence_duration_ms: 200, idle_timeout_ms: null, create_response: true, interrupt_response: true },
      },
      output: { format: { type: 'audio/pcm', rate: 24000 }, voice: 'alloy', speed: 1 },
    },
    include: null,
  };
}

/** GA `session.update` semantics: fields replace, `audio.input` / `audio.output` merge field by field. */
function mergeSession(session: Json, update: Json): void {
  for (const [k, v] of Object.entries(update)) {
    if (k === 'audio' && isRecord(v) && isRecord(session.audio)) {
      const audio = session.audio;
      for (const side of ['input', 'output'] as const) {
        const upd = v[side];
        if (isRecord(upd)) audio[side] = { ...(isRecord(audio[side]) ? audio[side] : {}), ...upd };
      }
    } else {
      session[k] = v;
    }
  }
}
