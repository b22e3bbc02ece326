/**
 * The realtime voice port (PROTOCOLS.md sections 2d and 4). A provider opens one upstream
 * conversation per client session; the upstream speaks the OpenAI Realtime GA protocol in
 * both directions, whatever the provider really is: the OpenAI adapter passes events
 * through, the Gemini adapter maps them onto Gemini Live.
 *
 * Node-only (the adapters use `ws` and Node buffers): imported from the Node entry, never
 * from the Hono app that also runs on Workers.
 */
import type { ErrorCode } from '../errors.js';
import type { Logger } from '../logger.js';

export type RealtimeProviderKind = 'openai' | 'gemini';

/**
 * The GA client event types the gateway forwards. Anything else (including beta-only names
 * such as `transcription_session.update`) is refused before it reaches a provider.
 */
export const REALTIME_CLIENT_EVENT_TYPES = [
  'session.update',
  'input_audio_buffer.append',
  'input_audio_buffer.commit',
  'input_audio_buffer.clear',
  'conversation.item.create',
  'conversation.item.retrieve',
  'conversation.item.truncate',
  'conversation.item.delete',
  'response.create',
  'response.cancel',
  'output_audio_buffer.clear',
] as const;

export type RealtimeClientEventType = (typeof REALTIME_CLIENT_EVENT_TYPES)[number];

const CLIENT_EVENT_TYPES: ReadonlySet<string> = new Set(REALTIME_CLIENT_EVENT_TYPES);

export function isRealtimeClientEventType(type: string): type is RealtimeClientEventType {
  return CLIENT_EVENT_TYPES.has(type);
}

/**
 * A GA client event. Only `type` is checked by the gateway; the other fields are the
 * protocol's own (`session`, `audio`, `item`, `response`, ...) and are the provider's to judge.
 */
export interface RealtimeClientEvent {
  type: RealtimeClientEventType;
  event_id?: string;
  [field: string]: unknown;
}

/** A GA server event (`session.created`, `response.output_audio.delta`, `error`, ...). */
export interface RealtimeServerEvent {
  type: string;
  event_id?: string;
  [field: string]: unknown;
}

/** Why an upstream ended without being asked to. The message is safe to show a client. */
export interface RealtimeUpstreamClose {
  code: ErrorCode;
  message: string;
}

export interface RealtimeConnectOptions {
  logger: Logger;
  /** Aborts a connection attempt still in progress (the client went away). */
  signal?: AbortSignal;
  /**
   * The client's `session.update` (GA shape) when it asked for one before the upstream was
   * open. Providers configured only at connect time (Gemini's `setup`) build their setup from
   * it; OpenAI sends it as the first event. Either way it is acknowledged by `session.updated`.
   */
  initialUpdate?: RealtimeClientEvent;
  /**
   * Every server event, in order. Called from the moment the connection is usable, which can
   * be before `connect` resolves (Gemini delivers `setupComplete` during the connect call), so
   * the sink is part of the call rather than a listener attached afterwards.
   */
  onEvent(event: RealtimeServerEvent): void;
  /**
   * A `response.done` whose usage the provider billed but that is not for the client: it was
   * told the response was done before the usage was known (Gemini, a response the client
   * cancelled, counted at the end of its turn). Only its usage is read.
   */
  onUnreportedUsage?(event: RealtimeServerEvent): void;
  /** The upstream ended on its own (provider closed, network loss). Not called after `close()`. */
  onClose(reason: RealtimeUpstreamClose): void;
}

export interface RealtimeUpstream {
  /** Sends one GA client event. Ignored once the upstream is closed. */
  send(event: RealtimeClientEvent): void;
  /** Bytes accepted by `send` and not yet written to the network. */
  readonly bufferedAmount: number;
  /**
   * Stops reading from the provider (TCP backpressure) until `resume()`. Returns false when
   * this upstream cannot pause; the caller must then shed load itself.
   */
  pause(): boolean;
  resume(): void;
  /** Closes the provider connection (forcibly if it does not close within a second). */
  close(): void;
}

export interface RealtimeProvider {
  readonly kind: RealtimeProviderKind;
  /**
   * Opens an upstream conversation. Rejects with an AppError whose message is safe for the
   * client (PROVIDER_ERROR), or with the signal's reason when aborted.
   */
  connect(options: RealtimeConnectOptions): Promise<RealtimeUpstream>;
}
