/**
 * One chat turn over each of the gateway's four streaming chat protocols, behind one small
 * interface: text deltas, then exactly one end or error. Stop does what each protocol offers
 * (PROTOCOLS.md): SSE and the AI SDK stream abort the fetch (stored as `aborted`); `/ai` sends
 * `chat:stop`; seed 002's `ai:chat` has no stop event of its own, so the page sends `/ai`'s
 * `chat:stop {conversationId}`, which stops a conversation's turn wherever it runs (stored as
 * `stopped`; leaving would not stop it under STREAM_ON_DISCONNECT=continue).
 */
import { asGatewayError, errorFromBody, GatewayError, jsonHeaders } from './api.js';
import { sseData } from './sse.js';
import { connect, connected, type Socket } from './sockets.js';

export type Protocol = 'sse' | 'ai-chat' | 'ai-namespace' | 'ai-sdk';

export const PROTOCOLS: readonly Protocol[] = ['sse', 'ai-chat', 'ai-namespace', 'ai-sdk'];

export interface TurnRequest {
  message: string;
  conversationId: string;
  /** Undefined: the server's default model. */
  model: string | undefined;
  token: string | null;
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
}

/** How a reply ended, with whatever the protocol reports about it. */
export interface TurnEnd {
  /** `stop`, `length`, `stopped` (asked to), `aborted` (connection cut). */
  finishReason: string;
  messageId?: string | undefined;
  usage?: Usage | undefined;
  /** `/ai` reports only a total. */
  totalTokens?: number | undefined;
  model?: string | undefined;
}

export interface TurnEvents {
  delta(text: string): void;
  end(end: TurnEnd): void;
  error(error: GatewayError): void;
}

export interface RunningTurn {
  stop(): void;
  /** Settles after the end or error event. */
  readonly done: Promise<void>;
}

export interface ChatTransport {
  run(request: TurnRequest, events: TurnEvents): RunningTurn;
  /** Closes the transport's connections (sign-in changes, page leaves). */
  close(): void;
}

export function createTransport(protocol: Protocol): ChatTransport {
  switch (protocol) {
    case 'sse':
      return { run: sseTurn, close: () => undefined };
    case 'ai-sdk':
      return { run: aiSdkTurn, close: () => undefined };
    case 'ai-chat':
      return new AiChatTransport();
    case 'ai-namespace':
      return new AiNamespaceTransport();
  }
}

/** Passes on the first end or error only; whatever comes after is ignored. */
function once(events: TurnEvents): TurnEvents & { readonly settled: boolean } {
  let settled = false;
  return {
    get settled() {
      return settled;
    },
    delta: (text) => {
      if (!settled) events.delta(text);
    },
    end: (e) => {
      if (settled) return;
      settled = true;
      events.end(e);
    },
    error: (e) => {
      if (settled) return;
      settled = true;
      events.error(e);
    },
  };
}

/** A POSTed streaming turn read from fetch (SSE and the AI SDK stream). */
function fetchTurn(path: string, body: unknown, token: string | null, raw: TurnEvents, onData: (data: string, ev: TurnEvents) => void): RunningTurn {
  const ev = once(raw);
  const abort = new AbortController();
  let stopped = false;
  const done = (async () => {
    const res = await fetch(path, { method: 'POST', headers: jsonHeaders(token, true), body: JSON.stringify(body), credentials: 'same-origin', signal: abort.signal });
    if (!res.ok || !res.body) throw errorFromBody(await res.json().catch(() => undefined), res.status);
    for await (const data of sseData(res.body)) {
      onData(data, ev);
      if (ev.settled) return;
    }
    if (!stopped) throw new GatewayError('NETWORK', 'The stream ended before the reply did');
  })().catch((err: unknown) => {
    // The fetch was aborted by Stop: the server stores what had streamed as `aborted`.
    if (stopped) ev.end({ finishReason: 'aborted' });
    else ev.error(asGatewayError(err));
  });
  return {
    stop: () => {
      stopped = true;
      abort.abort();
    },
    done: done.then(() => {
      if (stopped) ev.end({ finishReason: 'aborted' });
    }),
  };
}

/** `POST /api/v2/ai/chat/stream` (seed 002 over HTTP). */
function sseTurn(req: TurnRequest, events: TurnEvents): RunningTurn {
  const body = { message: req.message, sessionId: req.conversationId, ...(req.model ? { model: req.model } : {}) };
  return fetchTurn('/api/v2/ai/chat/stream', body, req.token, events, (data, ev) => {
    const e = JSON.parse(data) as { content?: string; done?: boolean; error?: string; code?: string; messageId?: string; finishReason?: string; usage?: Usage };
    if (typeof e.content === 'string') ev.delta(e.content);
    else if (e.done) ev.end({ finishReason: e.finishReason ?? 'stop', messageId: e.messageId, usage: e.usage });
    else if (e.error !== undefined) ev.error(new GatewayError(e.code ?? 'INTERNAL', e.error));
  });
}

/** `POST /api/chat`: the AI SDK UI message stream protocol v1, as `useChat` sends it. */
function aiSdkTurn(req: TurnRequest, events: TurnEvents): RunningTurn {
  const body = {
    id: req.conversationId,
    trigger: 'submit-message',
    messages: [{ id: crypto.randomUUID(), role: 'user', parts: [{ type: 'text', text: req.message }] }],
    ...(req.model ? { model: req.model } : {}),
  };
  return fetchTurn('/api/chat', body, req.token, events, (data, ev) => {
    if (data === '[DONE]') return;
    const part = JSON.parse(data) as {
      type: string;
      delta?: string;
      errorText?: string;
      code?: string;
      messageMetadata?: { messageId?: string; model?: string; finishReason?: string; usage?: Usage };
    };
    if (part.type === 'text-delta' && typeof part.delta === 'string') ev.delta(part.delta);
    else if (part.type === 'finish') {
      const m = part.messageMetadata ?? {};
      ev.end({ finishReason: m.finishReason ?? 'stop', messageId: m.messageId, usage: m.usage, model: m.model });
    } else if (part.type === 'error') ev.error(new GatewayError(part.code ?? 'INTERNAL', (part.errorText ?? 'Error').replace(/ \([A-Z_]+\)$/, '')));
  });
}

/** A transport over one Socket.IO connection of its own, opened on first use. */
abstract class SocketTransport implements ChatTransport {
  protected socket: Socket | undefined;
  protected token: string | null = null;

  protected constructor(private readonly namespace: '/' | '/ai') {}

  protected async open(token: string | null): Promise<Socket> {
    if (this.socket && this.token !== token) this.close();
    this.token = token;
    this.socket ??= connect(this.namespace, token, true);
    await connected(this.socket);
    return this.socket;
  }

  close(): void {
    this.socket?.disconnect();
    this.socket = undefined;
  }

  abstract run(request: TurnRequest, events: TurnEvents): RunningTurn;

  /** Runs `start` on the open socket with `handlers` on, takes them off when the turn settles. */
  protected turn(req: TurnRequest, raw: TurnEvents, wire: (socket: Socket, ev: TurnEvents) => Wiring): RunningTurn {
    let cleanup = (): void => undefined;
    let resolveDone = (): void => undefined;
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    const ev = once({
      delta: raw.delta,
      end: (e) => {
        cleanup();
        raw.end(e);
        resolveDone();
      },
      error: (e) => {
        cleanup();
        raw.error(e);
        resolveDone();
      },
    });
    let stop: (() => void) | undefined;
    let stopRequested = false;
    this.open(req.token).then(
      (socket) => {
        // Stopped before the connection was up: nothing was sent.
        if (stopRequested) return ev.end({ finishReason: 'aborted' });
        const onDisconnect = (reason: string) => {
          if (reason !== 'io client disconnect') ev.error(new GatewayError('NETWORK', `The Socket.IO connection was lost (${reason})`));
        };
        const wired = wire(socket, ev);
        const entries = Object.entries(wired.handlers) as unknown as [string, (...args: unknown[]) => void][];
        for (const [name, fn] of entries) socket.on(name, fn);
        socket.on('disconnect', onDisconnect);
        cleanup = () => {
          for (const [name, fn] of entries) socket.off(name, fn);
          socket.off('disconnect', onDisconnect);
        };
        stop = wired.stop;
        wired.start();
      },
      (err: unknown) => ev.error(asGatewayError(err)),
    );
    return {
      stop: () => {
        stopRequested = true;
        stop?.();
      },
      done,
    };
  }
}

/** A protocol's events for one turn on a socket. */
interface Wiring {
  /** Payload types differ per event; each handler names its own. */
  handlers: Record<string, (payload: never) => void>;
  start(): void;
  stop(): void;
}

/** Seed 002 on `/`: `ai:chat` in; `ai:stream`, `ai:complete`, `ai:error` out. */
class AiChatTransport extends SocketTransport {
  /** A `/ai` connection that only ever sends `chat:stop {conversationId}`. */
  private stopper: Socket | undefined;

  constructor() {
    super('/');
  }

  override close(): void {
    super.close();
    this.stopper?.disconnect();
    this.stopper = undefined;
  }

  run(req: TurnRequest, events: TurnEvents): RunningTurn {
    return this.turn(req, events, (socket, ev) => {
      let stopping: ReturnType<typeof setTimeout> | undefined;
      return {
        handlers: {
          'ai:stream': (p: { content: string; sessionId: string }) => {
            if (p.sessionId === req.conversationId) ev.delta(p.content);
          },
          // A stopped turn completes too, with the partial reply.
          'ai:complete': (p: { sessionId: string; messageId: string }) => {
            if (p.sessionId !== req.conversationId) return;
            clearTimeout(stopping);
            ev.end({ finishReason: stopping === undefined ? 'stop' : 'stopped', messageId: p.messageId });
          },
          'ai:error': (p: { error: string; code: string }) => {
            clearTimeout(stopping);
            ev.error(new GatewayError(p.code, p.error));
          },
        },
        start: () => socket.emit('ai:chat', { message: req.message, sessionId: req.conversationId, ...(req.model ? { model: req.model } : {}) }),
        stop: () => {
          // If the stop cannot be delivered, leaving is the seed's own way out (stored as `aborted`).
          stopping = setTimeout(() => {
            this.close();
            ev.end({ finishReason: 'aborted' });
          }, 5_000);
          this.stopper ??= connect('/ai', this.token, true);
          this.stopper.emit('chat:stop', { conversationId: req.conversationId });
        },
      };
    });
  }
}

/** Seed 003 on `/ai`: `chat:start` / `chat:stop` in; `chat:message`, `chat:end`, `chat:stopped`, `chat:error` out. */
class AiNamespaceTransport extends SocketTransport {
  constructor() {
    super('/ai');
  }

  run(req: TurnRequest, events: TurnEvents): RunningTurn {
    return this.turn(req, events, (socket, ev) => {
      let fallback: ReturnType<typeof setTimeout> | undefined;
      // The user's other tabs' turns arrive here too, named by their conversation.
      const mine = (p: { conversationId?: string }) => p.conversationId === undefined || p.conversationId === req.conversationId;
      const end = (e: TurnEnd) => {
        clearTimeout(fallback);
        ev.end(e);
      };
      return {
        handlers: {
          'chat:message': (p: { content: string; conversationId?: string }) => {
            if (mine(p)) ev.delta(p.content);
          },
          'chat:end': (p: { conversationId: string; messageId: string; totalTokens: number; model: string; finishReason: string }) => {
            if (mine(p)) end({ finishReason: p.finishReason, messageId: p.messageId, totalTokens: p.totalTokens, model: p.model });
          },
          'chat:stopped': (p: { conversationId: string; messageId: string | null }) => {
            if (mine(p)) end({ finishReason: 'stopped', messageId: p.messageId ?? undefined });
          },
          'chat:error': (p: { message: string; code: string }) => {
            clearTimeout(fallback);
            ev.error(new GatewayError(p.code, p.message));
          },
        },
        start: () =>
          socket.emit('chat:start', { message: req.message, conversationId: req.conversationId, ...(req.model ? { model: req.model } : {}) }),
        stop: () => {
          socket.emit('chat:stop');
          // chat:stopped normally follows at once; a server that never answers is left.
          fallback = setTimeout(() => {
            this.close();
            ev.end({ finishReason: 'aborted' });
          }, 5_000);
        },
      };
    });
  }
}
