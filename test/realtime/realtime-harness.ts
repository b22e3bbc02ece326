/**
 * A realtime session driven as a client connection would drive it, with everything it emitted
 * through its callbacks kept for the test to look at.
 */
import type { Logger } from '../../src/logger.js';
import type { RealtimeProvider, RealtimeServerEvent } from '../../src/realtime/realtime-provider.js';
import {
  RealtimeSession,
  type RealtimeSessionCloseReason,
  type RealtimeSessionError,
  type RealtimeSessionLimits,
} from '../../src/realtime/realtime-session.js';
import type { RealtimeUsage } from '../../src/realtime/realtime-usage.js';
import { until } from '../standins/ws-standin-server.js';

type Json = Record<string, unknown>;

/** A logger that keeps every line, so logs can be scanned for keys too. */
export function recordingLogger(lines: string[], bindings: Json = {}): Logger {
  const write = (level: string) => (obj: object, msg?: string) => {
    lines.push(JSON.stringify({ level, ...bindings, ...obj, msg }, (_k, v: unknown) => (v instanceof Error ? { message: v.message } : v)));
  };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error'), child: (b) => recordingLogger(lines, { ...bindings, ...b }) };
}

/** One client connection's view: everything the session emitted through its callbacks. */
export class Harness {
  readonly events: RealtimeServerEvent[] = [];
  readonly audio: Buffer[] = [];
  readonly errors: RealtimeSessionError[] = [];
  readonly closes: RealtimeSessionCloseReason[] = [];
  readonly usages: Array<{ usage: RealtimeUsage; total: RealtimeUsage }> = [];
  readonly logs: string[] = [];
  backlog = 0;
  readonly session: RealtimeSession;

  constructor(provider: RealtimeProvider | null, opts: { limits?: Partial<RealtimeSessionLimits>; binaryAudio?: boolean } = {}) {
    this.session = new RealtimeSession({
      provider,
      logger: recordingLogger(this.logs),
      onServerEvent: (e) => this.events.push(e),
      ...(opts.binaryAudio === false ? {} : { onAudio: (chunk: Buffer) => this.audio.push(chunk) }),
      onError: (e) => this.errors.push(e),
      onClose: (r) => this.closes.push(r),
      onUsage: (usage, total) => this.usages.push({ usage, total }),
      clientBacklogBytes: () => this.backlog,
      ...(opts.limits ? { limits: opts.limits } : {}),
    });
  }

  of(type: string): RealtimeServerEvent[] {
    return this.events.filter((e) => e.type === type);
  }

  next(type: string, timeoutMs = 3000): Promise<RealtimeServerEvent> {
    return until(() => this.events.find((e) => e.type === type), `server event ${type}`, timeoutMs);
  }

  nth(type: string, n: number, timeoutMs = 3000): Promise<RealtimeServerEvent> {
    return until(() => this.of(type)[n], `server event ${type} #${n}`, timeoutMs);
  }

  error(code: string, timeoutMs = 3000): Promise<RealtimeSessionError> {
    return until(() => this.errors.find((e) => e.code === code), `error ${code}`, timeoutMs);
  }

  closed(timeoutMs = 3000): Promise<RealtimeSessionCloseReason> {
    return until(() => this.closes[0], 'session close', timeoutMs);
  }

  /** Everything that reached (or was logged on the way to) the client, as text. */
  everything(): string {
    return [
      JSON.stringify(this.events),
      JSON.stringify(this.errors),
      JSON.stringify(this.closes),
      ...this.audio.map((b) => b.toString('latin1')),
      ...this.logs,
    ].join('\n');
  }
}
