/**
 * Helpers for driving the gateway with the real `socket.io-client`, the way the seeds' own
 * client code does. Every client made here is tracked, so a suite can close them all.
 */
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client';
import { afterAll, afterEach } from 'vitest';
import type { Env } from '../../src/config.js';
import { gatewayForSuite, type TestGateway } from '../helpers/gateway.js';
import type {
  AiClientToServerEvents,
  AiServerToClientEvents,
  DefaultClientToServerEvents,
  DefaultServerToClientEvents,
} from '../../src/protocol/socket-events.js';

export type Transport = 'websocket' | 'polling';
/** Every flow runs once per transport. */
export const TRANSPORTS: readonly Transport[] = ['websocket', 'polling'];

export type DefaultClient = Socket<DefaultServerToClientEvents, DefaultClientToServerEvents>;
export type AiClient = Socket<AiServerToClientEvents, AiClientToServerEvents>;
/** For garbage payloads the typed maps would refuse. */
export type LooseClient = Socket;
export type ClientOptions = Partial<ManagerOptions & SocketOptions>;

const opened = new Set<Socket>();

/**
 * `io(url, options)` plus what a test needs: a fresh Manager per client and no reconnection
 * unless the options ask for it.
 */
export function client<S = LooseClient>(url: string, options: ClientOptions = {}): S {
  const socket = io(url, { forceNew: true, reconnection: false, ...options });
  opened.add(socket);
  return socket as unknown as S;
}

export function closeAllClients(): void {
  for (const s of opened) s.close();
  opened.clear();
}

/**
 * gatewayForSuite (test/helpers/gateway.ts) for a suite whose tests open Socket.IO clients: the
 * clients a test opened are closed after it, and any left before the gateway stops.
 */
export function socketGatewayForSuite(env: Env | (() => Env) = {}): () => TestGateway {
  const gw = gatewayForSuite(env);
  afterEach(closeAllClients);
  // Registered after the gateway's own afterAll, so it runs first (vitest runs after-hooks as a stack).
  afterAll(closeAllClients);
  return gw;
}

/** Any client socket, whatever its event maps. */
export type SomeSocket = Pick<Socket, 'connected' | 'id'>;
const untyped = (s: SomeSocket): LooseClient => s as unknown as LooseClient;

/** Resolves on `connect`, rejects on `connect_error` or after `timeoutMs`. */
export function connected(socket: SomeSocket, timeoutMs = 3000): Promise<void> {
  const s = untyped(socket);
  if (s.connected) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no connect within ${timeoutMs} ms`)), timeoutMs);
    const onConnect = () => done();
    const onError = (err: Error) => done(err);
    function done(err?: Error) {
      clearTimeout(timer);
      s.off('connect', onConnect);
      s.off('connect_error', onError);
      if (err) reject(err);
      else resolve();
    }
    s.on('connect', onConnect);
    s.on('connect_error', onError);
  });
}

/** Resolves with the `connect_error`; rejects if the socket connects instead. */
export function connectError(socket: SomeSocket, timeoutMs = 3000): Promise<Error> {
  const s = untyped(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(new Error(`no connect_error within ${timeoutMs} ms`)), timeoutMs);
    const onConnect = () => done(new Error('connected, but a refusal was expected'));
    const onError = (err: Error) => done(undefined, err);
    function done(fail?: Error, err?: Error) {
      clearTimeout(timer);
      s.off('connect', onConnect);
      s.off('connect_error', onError);
      if (fail) reject(fail);
      else resolve(err!);
    }
    s.on('connect', onConnect);
    s.on('connect_error', onError);
  });
}

/** Resolves with the disconnect reason. */
export function disconnected(socket: SomeSocket, timeoutMs = 3000): Promise<string> {
  const s = untyped(socket);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no disconnect within ${timeoutMs} ms`)), timeoutMs);
    s.once('disconnect', (reason: string) => {
      clearTimeout(timer);
      resolve(reason);
    });
  });
}

type PayloadOf<E, K extends keyof E> = E[K] extends (payload: infer P) => void ? P : never;

export interface LoggedEvent {
  name: string;
  payload: unknown;
  /** performance.now() at arrival. */
  at: number;
}

/**
 * Records every server event a socket receives, in arrival order (through `onAny`, so the
 * seed-shaped `socket.on(...)` listeners a test adds are untouched). `next(name)` hands out
 * each event once, waiting for it if it has not arrived yet.
 */
export class EventLog<E extends object> {
  readonly events: LoggedEvent[] = [];
  readonly #consumed = new Set<number>();
  readonly #waiters: { name: string; resolve: (i: number) => void }[] = [];

  constructor(socket: SomeSocket) {
    untyped(socket).onAny((name: string, ...args: unknown[]) => {
      const index = this.events.push({ name, payload: args[0], at: performance.now() }) - 1;
      const w = this.#waiters.findIndex((x) => x.name === name);
      if (w >= 0) {
        const [waiter] = this.#waiters.splice(w, 1);
        this.#consumed.add(index);
        waiter!.resolve(index);
      }
    });
  }

  /** Event names in arrival order. */
  get names(): string[] {
    return this.events.map((e) => e.name);
  }

  /** Every payload of one event, in order. */
  all<K extends keyof E & string>(name: K): PayloadOf<E, K>[] {
    return this.events.filter((e) => e.name === name).map((e) => e.payload as PayloadOf<E, K>);
  }

  /** The next not-yet-taken `name` event. */
  next<K extends keyof E & string>(name: K, timeoutMs = 5000): Promise<PayloadOf<E, K>> {
    const ready = this.events.findIndex((e, i) => e.name === name && !this.#consumed.has(i));
    if (ready >= 0) {
      this.#consumed.add(ready);
      return Promise.resolve(this.events[ready]!.payload as PayloadOf<E, K>);
    }
    return new Promise((resolve, reject) => {
      const waiter = {
        name,
        resolve: (i: number) => {
          clearTimeout(timer);
          resolve(this.events[i]!.payload as PayloadOf<E, K>);
        },
      };
      const timer = setTimeout(() => {
        const at = this.#waiters.indexOf(waiter);
        if (at >= 0) this.#waiters.splice(at, 1);
        reject(new Error(`no "${name}" within ${timeoutMs} ms; got: ${this.names.join(', ') || 'nothing'}`));
      }, timeoutMs);
      this.#waiters.push(waiter);
    });
  }

  /**
   * The first not-yet-taken event among `names`, as `{name, payload}`: for asserting which of
   * several outcomes (say `chat:end` or `chat:error`) happened, with a readable failure.
   */
  async first<K extends keyof E & string>(names: readonly K[], timeoutMs = 5000): Promise<{ name: K; payload: PayloadOf<E, K> }> {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const i = this.events.findIndex((e, at) => (names as readonly string[]).includes(e.name) && !this.#consumed.has(at));
      if (i >= 0) {
        this.#consumed.add(i);
        return { name: this.events[i]!.name as K, payload: this.events[i]!.payload as PayloadOf<E, K> };
      }
      if (performance.now() > deadline) throw new Error(`none of ${names.join(', ')} within ${timeoutMs} ms; got: ${this.names.join(', ') || 'nothing'}`);
      await sleep(5);
    }
  }

  /** Forget everything received so far. */
  clear(): void {
    this.events.length = 0;
    this.#consumed.clear();
  }
}

export type DefaultLog = EventLog<DefaultServerToClientEvents>;
export type AiLog = EventLog<AiServerToClientEvents>;

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** The `data: {"content"...}` text of the local model's deterministic reply for `message`. */
export const localEcho = (message: string) => `You said: "${message}".`;
