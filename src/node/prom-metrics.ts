import { collectDefaultMetrics, Registry } from 'prom-client';
import type { ErrorCode } from '../errors.js';
import type { Metrics, TurnObservation, TurnOutcome } from '../metrics/metrics.js';
import type { FinishReason } from '../stores/conversation-store.js';
import { CounterCells, GaugeCells, HistogramCells, type HistogramCell, type ValueCell } from './metric-cells.js';

/** What the Node entry reads at scrape time (nothing is counted for these on the hot path). */
export interface GaugeSources {
  /** Open Socket.IO connections by namespace. */
  socketConnections(): Readonly<Record<string, number>>;
  /** Realtime voice sessions open, both protocols. */
  realtimeSessions(): number;
  /** Chat requests and turn starts waiting for their pass of the event loop (TURN_STARTS_PER_TICK). */
  turnStartsWaiting(): number;
  /** Model streams whose reads wait for their share of a pass of the event loop (STREAM_SLICE_MS). */
  streamReadsWaiting(): number;
  /** Pages in each SQLite file's WAL at its last checkpoint on the worker thread (SQLITE_CHECKPOINTS=worker), by database. */
  sqliteWalPages?(): Readonly<Record<string, number>>;
}

/** Seconds. Model replies: tens of ms to minutes. */
const TTFT_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
const TURN_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const RECALL_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];
/**
 * Distinct model label values per provider. Where a provider is configured, a client may name
 * any `gpt-*` model (the provider refuses unknown ones); past this many, turns count as `other`.
 */
const MAX_MODELS_PER_PROVIDER = 50;
/** Protocols, routes and limit kinds come from code, but a bound costs nothing. */
const MAX_LABEL_VALUES = 200;
const OTHER = 'other';
const FINISH_REASONS: readonly FinishReason[] = ['stop', 'length', 'stopped', 'aborted', 'error'];
const METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

/** The cells of one (provider, model): what a turn touches, bound once. */
interface ModelSeries {
  ttft: HistogramCell;
  duration: HistogramCell;
  inputTokens: ValueCell;
  outputTokens: ValueCell;
  turns: Record<FinishReason, ValueCell>;
}

/**
 * The Prometheus implementation of the Metrics port, on its own prom-client Registry (several
 * gateways in one process keep theirs apart), with prom-client's default Node metrics (event
 * loop lag and utilisation, GC, heap, CPU, handles). Label-bound cells are looked up in small
 * maps keyed by the label values themselves, so an update allocates nothing.
 */
export class PromMetrics implements Metrics {
  readonly enabled = true;
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;

  readonly #http: CounterCells;
  readonly #httpCells = new Map<string, Map<string, Map<number, ValueCell>>>();
  readonly #activeStreams: GaugeCells;
  readonly #activeByProtocol = new Map<string, ValueCell>();
  readonly #ttft: HistogramCells;
  readonly #turnDuration: HistogramCells;
  readonly #tokens: CounterCells;
  readonly #turns: CounterCells;
  readonly #models = new Map<string, Map<string, ModelSeries>>();
  readonly #errors: CounterCells;
  readonly #errorCells = new Map<string, Map<string, ValueCell>>();
  /** Errors already counted: a layer that passes on an error another layer reported does not count it twice. */
  readonly #counted = new WeakSet<{ readonly code: ErrorCode }>();
  readonly #rateLimited: CounterCells;
  readonly #rateLimitCells = new Map<string, ValueCell>();
  readonly #upstream: HistogramCells;
  readonly #upstreamCells = new Map<string, HistogramCell>();
  readonly #recall: HistogramCells;
  readonly #recallCells = new Map<string, HistogramCell>();
  #sources: GaugeSources | undefined;

  constructor(options: { defaultMetrics?: boolean } = {}) {
    const r = this.registry;
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: r });
    this.#http = new CounterCells(r, 'gateway_http_requests_total', 'HTTP requests answered, by method, matched route pattern ("unmatched" when none) and status.', ['method', 'route', 'status']);
    new GaugeCells(r, 'gateway_socketio_connections', 'Open Socket.IO connections, by namespace.', ['namespace'], (g) => {
      for (const [namespace, n] of Object.entries(this.#sources?.socketConnections() ?? {})) g.cell({ namespace }).value = n;
    });
    this.#activeStreams = new GaugeCells(r, 'gateway_active_streams', 'Chat turns streaming right now, by protocol.', ['protocol']);
    new GaugeCells(r, 'gateway_realtime_sessions', 'Realtime voice sessions open (Socket.IO and /v1/realtime).', [], (g) => {
      g.cell({}).value = this.#sources?.realtimeSessions() ?? 0;
    });
    new GaugeCells(r, 'gateway_turn_starts_waiting', 'Chat requests and turn starts waiting for their pass of the event loop (TURN_STARTS_PER_TICK): a burst not yet through.', [], (g) => {
      g.cell({}).value = this.#sources?.turnStartsWaiting() ?? 0;
    });
    new GaugeCells(r, 'gateway_stream_reads_waiting', 'Model streams whose reads wait for their share of a pass of the event loop (STREAM_SLICE_MS): above zero most of the time means the process is saturated.', [], (g) => {
      g.cell({}).value = this.#sources?.streamReadsWaiting() ?? 0;
    });
    new GaugeCells(
      r,
      'gateway_sqlite_wal_pages',
      "Pages in an embedded SQLite file's write-ahead log at its last checkpoint (run off the event loop): it starts over past 4,096; staying higher means checkpoints do not keep up.",
      ['database'],
      (g) => {
        for (const [database, pages] of Object.entries(this.#sources?.sqliteWalPages?.() ?? {})) g.cell({ database }).value = pages;
      },
    );
    this.#ttft = new HistogramCells(r, 'gateway_time_to_first_token_seconds', 'From the start of a chat turn (after admission) to the first reply text handed to the client.', ['provider', 'model'], TTFT_BUCKETS);
    this.#turnDuration = new HistogramCells(r, 'gateway_turn_duration_seconds', 'From the start of a chat turn (after admission) to its end, reply stored, however it ended.', ['provider', 'model'], TURN_BUCKETS);
    this.#tokens = new CounterCells(r, 'gateway_tokens_total', 'Tokens by direction (input: prompt, output: reply), as the provider reported them in its usage.', ['provider', 'model', 'direction']);
    this.#turns = new CounterCells(r, 'gateway_chat_turns_total', 'Chat turns ended, by how they ended.', ['provider', 'model', 'finish_reason']);
    this.#errors = new CounterCells(r, 'gateway_errors_total', 'Coded errors sent to clients, by code and protocol ("http" for HTTP error responses).', ['code', 'protocol']);
    this.#rateLimited = new CounterCells(r, 'gateway_rate_limit_refusals_total', 'Requests refused by a rate limit, by limit ("limiter_unavailable": a fail-closed limiter was down).', ['limit']);
    this.#upstream = new HistogramCells(r, 'gateway_upstream_response_seconds', 'From sending a request to a model provider to its response head.', ['provider'], TTFT_BUCKETS);
    this.#recall = new HistogramCells(r, 'gateway_memory_recall_seconds', 'Long-term memory recall (embed the message, query the store), by outcome.', ['outcome'], RECALL_BUCKETS);
  }

  /** Where scrape-time gauges read from; the Node entry sets it once the servers exist. */
  watch(sources: GaugeSources): void {
    this.#sources = sources;
  }

  /** The exposition text (Prometheus text format 0.0.4). */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  turnStarted(protocol: string, provider: string, model: string): TurnObservation {
    let active = this.#activeByProtocol.get(protocol);
    if (!active) {
      active = this.#activeStreams.cell({ protocol: this.#activeByProtocol.size < MAX_LABEL_VALUES ? protocol : OTHER });
      this.#activeByProtocol.set(protocol, active);
    }
    active.value++;
    return new Turn(this, this.#series(provider, model), active, protocol);
  }

  #series(provider: string, model: string): ModelSeries {
    let byModel = this.#models.get(provider);
    if (!byModel) this.#models.set(provider, (byModel = new Map()));
    let series = byModel.get(model);
    if (series) return series;
    const shown = byModel.size < MAX_MODELS_PER_PROVIDER ? model : OTHER;
    series = byModel.get(shown);
    if (!series) {
      const labels = { provider, model: shown };
      const turns = {} as Record<FinishReason, ValueCell>;
      for (const finish_reason of FINISH_REASONS) turns[finish_reason] = this.#turns.cell({ ...labels, finish_reason });
      series = {
        ttft: this.#ttft.cell(labels),
        duration: this.#turnDuration.cell(labels),
        inputTokens: this.#tokens.cell({ ...labels, direction: 'input' }),
        outputTokens: this.#tokens.cell({ ...labels, direction: 'output' }),
        turns,
      };
      byModel.set(shown, series);
    }
    // Past the bound, a new name is not remembered: the map stays bounded too.
    return series;
  }

  httpRequest(method: string, route: string, status: number): void {
    if (!METHODS.has(method)) method = OTHER;
    let byMethod = this.#httpCells.get(route);
    if (!byMethod) {
      if (this.#httpCells.size >= MAX_LABEL_VALUES) route = OTHER;
      byMethod = this.#httpCells.get(route);
      if (!byMethod) this.#httpCells.set(route, (byMethod = new Map()));
    }
    let byStatus = byMethod.get(method);
    if (!byStatus) byMethod.set(method, (byStatus = new Map()));
    let cell = byStatus.get(status);
    if (!cell) {
      cell = this.#http.cell({ method, route, status: String(status) });
      byStatus.set(status, cell);
    }
    cell.value++;
  }

  error(error: { readonly code: ErrorCode }, protocol: string): void {
    if (this.#counted.has(error)) return;
    this.#counted.add(error);
    let byProtocol = this.#errorCells.get(error.code);
    if (!byProtocol) this.#errorCells.set(error.code, (byProtocol = new Map()));
    let cell = byProtocol.get(protocol);
    if (!cell) {
      cell = this.#errors.cell({ code: error.code, protocol: byProtocol.size < MAX_LABEL_VALUES ? protocol : OTHER });
      byProtocol.set(protocol, cell);
    }
    cell.value++;
  }

  rateLimited(kind: string): void {
    let cell = this.#rateLimitCells.get(kind);
    if (!cell) {
      cell = this.#rateLimited.cell({ limit: this.#rateLimitCells.size < MAX_LABEL_VALUES ? kind : OTHER });
      this.#rateLimitCells.set(kind, cell);
    }
    cell.value++;
  }

  upstreamResponse(provider: string, seconds: number): void {
    let cell = this.#upstreamCells.get(provider);
    if (!cell) this.#upstreamCells.set(provider, (cell = this.#upstream.cell({ provider })));
    cell.observe(seconds);
  }

  memoryRecall(seconds: number, outcome: 'ok' | 'timeout' | 'error'): void {
    let cell = this.#recallCells.get(outcome);
    if (!cell) this.#recallCells.set(outcome, (cell = this.#recall.cell({ outcome })));
    cell.observe(seconds);
  }
}

class Turn implements TurnObservation {
  readonly #startedAt = performance.now();
  #ended = false;
  #sawText = false;

  constructor(
    private readonly metrics: PromMetrics,
    private readonly series: ModelSeries,
    private readonly active: ValueCell,
    private readonly protocol: string,
  ) {}

  firstToken(): void {
    if (this.#sawText) return;
    this.#sawText = true;
    this.series.ttft.observe((performance.now() - this.#startedAt) / 1000);
  }

  end(outcome: TurnOutcome): void {
    if (this.#ended) return;
    this.#ended = true;
    this.active.value--;
    const { series } = this;
    series.duration.observe((performance.now() - this.#startedAt) / 1000);
    series.turns[outcome.finishReason].value++;
    if (outcome.usage) {
      series.inputTokens.value += outcome.usage.inputTokens;
      series.outputTokens.value += outcome.usage.outputTokens;
    }
    if (outcome.error) this.metrics.error(outcome.error, this.protocol);
  }
}
