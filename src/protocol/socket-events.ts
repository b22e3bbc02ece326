/**
 * The Socket.IO wire contract (PROTOCOLS.md sections 2 and 3) as typed event maps, for
 * `Server<ClientToServer, ServerToClient, InterServer, SocketData>` here and for clients:
 * `io(url) as Socket<DefaultServerToClientEvents, DefaultClientToServerEvents>`.
 */
import type { ErrorCode } from '../errors.js';

export interface ProtocolError {
  error: string;
  code: ErrorCode;
}

/** Seed 000: `{prompt}`. Seed 001: `{chatId, content}`. Both use the event name `ai-message`. */
export type AiMessagePayload = { prompt: string; chatId?: string } | { chatId: string; content: string };

/** Seed 002. */
export interface AiChatPayload {
  message: string;
  sessionId?: string;
  /** A per-message JWT, checked on every event. */
  token?: string;
  model?: string;
  maxTokens?: number;
  temperature?: number;
}

/** A realtime client event: OpenAI Realtime GA shape (seed 004's beta `session.create` is translated). */
export interface RealtimeClientMessage {
  type: string;
  event_id?: string;
  [field: string]: unknown;
}

/** A realtime server event as the GA protocol names it (audio deltas arrive as binary instead). */
export interface RealtimeServerMessage {
  type: string;
  event_id?: string;
  [field: string]: unknown;
}

export interface DefaultClientToServerEvents {
  'ai-message': (payload: AiMessagePayload) => void;
  /** Logged at debug level; no reply. */
  message: (data: unknown) => void;
  'ai:chat': (payload: AiChatPayload) => void;
  /** Replays the conversation's running (or just finished) turn from its start, then follows it live. */
  'ai:resume': (payload: { sessionId: string; token?: string }) => void;
  /** Seed 004: a JSON realtime client event. */
  'realtime-message': (event: RealtimeClientMessage) => void;
  /** Seed 004: PCM16 mono 24 kHz audio. */
  'realtime-audio': (chunk: ArrayBuffer | Uint8Array) => void;
}

export interface DefaultServerToClientEvents {
  /** Seed 000's reply. */
  'ai-message-response': (payload: { response: string } | ProtocolError) => void;
  /** Seed 001's reply, once the whole answer is ready. */
  'ai-response': (payload: { chat: string; content: string } | ProtocolError) => void;
  'ai:stream': (payload: { content: string; sessionId: string }) => void;
  'ai:complete': (payload: { response: string; sessionId: string; messageId: string }) => void;
  'ai:error': (payload: ProtocolError) => void;
  /** Seed 004: each realtime server event as JSON, audio deltas as the decoded PCM16 bytes. */
  'realtime-response': (event: RealtimeServerMessage | Uint8Array) => void;
  'realtime-error': (payload: { message: string; code: ErrorCode }) => void;
}

/** Seed 003, namespace `/ai`. */
export interface ChatStartPayload {
  message: string;
  conversationId?: string | null;
  model?: string;
  maxTokens?: number;
  temperature?: number;
  /** Accepted and ignored: identity comes from the token only. */
  userId?: string;
}

export interface AiClientToServerEvents {
  'chat:start': (payload: ChatStartPayload) => void;
  /** With a conversationId: that conversation's running turn, wherever it runs; without: this socket's. */
  'chat:stop': (payload?: { conversationId?: string }) => void;
  /** Replays the conversation's running (or just finished) turn from its start, then follows it live. */
  'chat:resume': (payload: { conversationId: string }) => void;
}

export interface ChatEndPayload {
  messageId: string;
  conversationId: string;
  totalTokens: number;
  model: string;
  finishReason: 'stop' | 'length';
}

export interface AiServerToClientEvents {
  'chat:conversation': (payload: { conversationId: string }) => void;
  'chat:user-message': (payload: { messageId: string; content: string }) => void;
  /** `conversationId` is set on the copies another tab of the same user receives. */
  'chat:message': (payload: { content: string; isComplete: false; conversationId?: string }) => void;
  'chat:end': (payload: ChatEndPayload) => void;
  'chat:error': (payload: { message: string; code: ErrorCode }) => void;
  'chat:stopped': (payload: { conversationId: string; messageId: string | null }) => void;
}

export type InterServerEvents = Record<string, never>;

export interface SocketData {
  /** The principal the connection authenticated as (re-checked on every chat event). */
  userId: string | null;
  ip: string;
  /** The sign-in session of the connection's token, so revoking it disconnects the socket. */
  sessionId: string | null;
  /** The gateway API key the connection authenticated with, so revoking it disconnects the socket. */
  apiKeyId: string | null;
}
