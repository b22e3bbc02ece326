import { rmSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { silentLogger } from '../../src/logger.js';
import { createNodeServer } from '../../src/node/server.js';
import type { AiServerToClientEvents, DefaultServerToClientEvents } from '../../src/protocol/socket-events.js';
import { limitKind } from '../../src/ratelimit/counting-refusals.js';
import { bearer, register } from '../helpers/accounts.js';
import { startGateway, tempDataDir, type TestGateway } from '../helpers/gateway.js';
import { parseExposition, scrape, type Exposition } from '../helpers/prometheus.js';
import { postChat, readSse } from '../helpers/sse.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { client, closeAllClients, connected, EventLog, type AiClient, type DefaultClient } from '../socket/socket-harness.js';
import { startOpenAIStandin, type Standin } from '../standins/openai-standin.js';

const OPENAI_KEY = 'sk-metrics-test';
const CHAT = '/api/v2/ai/chat/stream';
const GPT = { provider: 'openai', model: 'gpt-4o-mini' };
const LOCAL = { provider: 'local', model: 'local' };

/** What changed between two scrapes. */
function delta(before: Exposition, after: Exposition) {
  return {
    value: (name: string, labels: Record<string, string> = {}) => after.value(name, labels) - before.value(name, labels),
    histogram: (name: string, labels: Record<string, string> = {}) => {
      const a = after.histogram(name, labels);
      const b = before.histogram(name, labels);
      return { count: a.count - b.count, sum: a.sum - b.sum };
    },
  };
}

describe('GET /metrics on a gateway with the local model and an OpenAI stand-in', () => {
  let gw: TestGateway;
  let openai: Standin;
  /** A reply slow enough to be seen streaming. */
  const slowReply = () => openai.setScript(() => ({ tokens: ['one', ' two', ' three'], delayMs: 120, usage: { inputTokens: 12, outputTokens: 3 } }));

  beforeAll(async () => {
    openai = await startOpenAIStandin({ apiKey: OPENAI_KEY });
    gw = await startGateway({ OPENAI_API_KEY: OPENAI_KEY, OPENAI_BASE_URL: openai.url, DEFAULT_MODEL: 'local', PROVIDER_MAX_RETRIES: '0', JWT_SECRET: TEST_JWT_SECRET });
  });
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
    await openai.close();
  });

  it('is Prometheus text format 0.0.4 with the Node default metrics (event-loop lag) and every gateway family', async () => {
    const m = await scrape(gw.url);
    for (const name of ['nodejs_eventloop_lag_seconds', 'nodejs_eventloop_lag_p99_seconds', 'process_cpu_seconds_total', 'nodejs_heap_size_used_bytes']) expect(m.family(name), name).toBeDefined();
    const families: Record<string, string> = {
      gateway_http_requests_total: 'counter',
      gateway_socketio_connections: 'gauge',
      gateway_active_streams: 'gauge',
      gateway_realtime_sessions: 'gauge',
      gateway_turn_starts_waiting: 'gauge',
      gateway_stream_reads_waiting: 'gauge',
      gateway_sqlite_wal_pages: 'gauge',
      gateway_time_to_first_token_seconds: 'histogram',
      gateway_turn_duration_seconds: 'histogram',
      gateway_tokens_total: 'counter',
      gateway_chat_turns_total: 'counter',
      gateway_errors_total: 'counter',
      gateway_rate_limit_refusals_total: 'counter',
      gateway_upstream_response_seconds: 'histogram',
      gateway_memory_recall_seconds: 'histogram',
    };
    for (const [name, type] of Object.entries(families)) expect(m.family(name)?.type, name).toBe(type);
    expect(m.value('gateway_realtime_sessions')).toBe(0);
    expect(m.value('gateway_turn_starts_waiting')).toBe(0);
    expect(m.value('gateway_stream_reads_waiting')).toBe(0);
  });

  it('an SSE turn: one request by route pattern, one turn, its first token and duration, the tokens of its usage', async () => {
    const before = await scrape(gw.url);
    const events = await readSse(await postChat(gw.url, { message: 'Hello metrics' }));
    const done = events.at(-1) as { done: boolean; usage: { inputTokens: number; outputTokens: number } };
    expect(done.done).toBe(true);
    const after = await scrape(gw.url);
    const d = delta(before, after);

    expect(d.value('gateway_http_requests_total', { method: 'POST', route: CHAT, status: '200' })).toBe(1);
    expect(d.value('gateway_chat_turns_total', { ...LOCAL, finish_reason: 'stop' })).toBe(1);
    expect(d.histogram('gateway_time_to_first_token_seconds', LOCAL).count).toBe(1);
    const duration = d.histogram('gateway_turn_duration_seconds', LOCAL);
    expect(duration.count).toBe(1);
    expect(duration.sum).toBeGreaterThan(0);
    expect(done.usage.outputTokens).toBeGreaterThan(10);
    expect(d.value('gateway_tokens_total', { ...LOCAL, direction: 'input' })).toBe(done.usage.inputTokens);
    expect(d.value('gateway_tokens_total', { ...LOCAL, direction: 'output' })).toBe(done.usage.outputTokens);
    expect(after.value('gateway_active_streams', { protocol: 'sse' })).toBe(0);
    // Scrapes do not count themselves.
    expect(after.text).not.toContain('route="/metrics"');
  });

  it('an SSE turn through the OpenAI stand-in: active while it streams, upstream latency, first token after the paced first chunk', async () => {
    slowReply();
    const before = await scrape(gw.url);
    const reply = postChat(gw.url, { message: 'slowly', model: 'gpt-4o-mini' }).then(readSse);
    await waitFor(async () => (await scrape(gw.url)).value('gateway_active_streams', { protocol: 'sse' }) === 1, 3000);
    const events = await reply;
    expect(events.at(-1)).toMatchObject({ done: true, usage: { inputTokens: 12, outputTokens: 3 } });
    const after = await scrape(gw.url);
    const d = delta(before, after);

    expect(after.value('gateway_active_streams', { protocol: 'sse' })).toBe(0);
    expect(d.value('gateway_chat_turns_total', { ...GPT, finish_reason: 'stop' })).toBe(1);
    expect(d.value('gateway_tokens_total', { ...GPT, direction: 'input' })).toBe(12);
    expect(d.value('gateway_tokens_total', { ...GPT, direction: 'output' })).toBe(3);
    const upstream = d.histogram('gateway_upstream_response_seconds', { provider: 'openai' });
    expect(upstream.count).toBe(1);
    expect(upstream.sum).toBeGreaterThan(0);
    const ttft = d.histogram('gateway_time_to_first_token_seconds', GPT);
    const turn = d.histogram('gateway_turn_duration_seconds', GPT);
    expect(ttft.count).toBe(1);
    expect(ttft.sum).toBeGreaterThanOrEqual(0.1); // the stand-in waits 120 ms before the first chunk
    expect(turn.sum).toBeGreaterThanOrEqual(0.3); // and before each of the three
    expect(turn.sum).toBeGreaterThan(ttft.sum);
  });

  it('Socket.IO turns count by protocol (ai:chat and ai-message on "/", chat:start on "/ai"), connections by namespace', async () => {
    const before = await scrape(gw.url);
    const root = client<DefaultClient>(gw.url, { transports: ['websocket'] });
    const ai = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'] });
    await Promise.all([connected(root), connected(ai)]);
    const rootLog = new EventLog<DefaultServerToClientEvents>(root);
    const aiLog = new EventLog<AiServerToClientEvents>(ai);
    let m = await scrape(gw.url);
    expect(m.value('gateway_socketio_connections', { namespace: '/' })).toBe(1);
    expect(m.value('gateway_socketio_connections', { namespace: '/ai' })).toBe(1);

    const streaming = async (protocol: string) => {
      await waitFor(async () => (await scrape(gw.url)).value('gateway_active_streams', { protocol }) === 1, 3000);
    };
    slowReply();
    root.emit('ai:chat', { message: 'over ai:chat', model: 'gpt-4o-mini' });
    await streaming('ai:chat');
    await rootLog.next('ai:complete');

    ai.emit('chat:start', { message: 'over chat:start', model: 'gpt-4o-mini' });
    await streaming('chat:start');
    await aiLog.next('chat:end');

    // Seed 000's payload takes a model too (the typed map lists the seed's own fields only).
    root.emit('ai-message', { prompt: 'over seed 000', model: 'gpt-4o-mini' } as { prompt: string });
    await streaming('ai-message:prompt');
    expect(await rootLog.next('ai-message-response')).toEqual({ response: 'one two three' });

    m = await scrape(gw.url);
    const d = delta(before, m);
    for (const protocol of ['ai:chat', 'chat:start', 'ai-message:prompt']) expect(m.value('gateway_active_streams', { protocol }), protocol).toBe(0);
    expect(d.value('gateway_chat_turns_total', { ...GPT, finish_reason: 'stop' })).toBe(3);
    expect(d.value('gateway_tokens_total', { ...GPT, direction: 'output' })).toBe(9);
    expect(d.histogram('gateway_time_to_first_token_seconds', GPT).count).toBe(3);

    root.close();
    ai.close();
    await waitFor(async () => {
      const now = await scrape(gw.url);
      return now.value('gateway_socketio_connections', { namespace: '/' }) === 0 && now.value('gateway_socketio_connections', { namespace: '/ai' }) === 0;
    });
  });

  it('coded errors by code and protocol: bad requests, unknown routes, provider failures (each counted once), realtime refusals', async () => {
    const before = await scrape(gw.url);

    expect((await postChat(gw.url, {})).status).toBe(400);
    expect((await fetch(`${gw.url}/no/such/route/1`)).status).toBe(404);
    expect((await fetch(`${gw.url}/no/such/route/2`)).status).toBe(404);
    const preflight = await fetch(`${gw.url}${CHAT}`, { method: 'OPTIONS', headers: { Origin: 'http://localhost:5173', 'Access-Control-Request-Method': 'POST' } });
    expect(preflight.status).toBe(204);

    openai.setScript(() => ({ tokens: [], status: 500 }));
    expect(await readSse(await postChat(gw.url, { message: 'fail', model: 'gpt-4o-mini' }))).toEqual([expect.objectContaining({ code: 'PROVIDER_ERROR' })]);

    const root = client<DefaultClient>(gw.url, { transports: ['websocket'] });
    const ai = client<AiClient>(`${gw.url}/ai`, { transports: ['websocket'] });
    const rootLog = new EventLog<DefaultServerToClientEvents>(root);
    const aiLog = new EventLog<AiServerToClientEvents>(ai);
    await Promise.all([connected(root), connected(ai)]);
    // Seed 000's failure travels from the pipeline's error ending through the adapter's catch: one error.
    root.emit('ai-message', { prompt: 'fail too', model: 'gpt-4o-mini' } as { prompt: string });
    expect(await rootLog.next('ai-message-response')).toMatchObject({ code: 'PROVIDER_ERROR' });
    ai.emit('chat:start', {} as never);
    expect(await aiLog.next('chat:error')).toMatchObject({ code: 'BAD_REQUEST' });
    root.emit('realtime-message', { type: 'session.update', session: {} });
    expect(await rootLog.next('realtime-error')).toMatchObject({ code: 'REALTIME_UNAVAILABLE' });

    const after = await scrape(gw.url);
    const d = delta(before, after);
    expect(d.value('gateway_errors_total', { code: 'BAD_REQUEST', protocol: 'http' })).toBe(1);
    expect(d.value('gateway_http_requests_total', { method: 'POST', route: CHAT, status: '400' })).toBe(1);
    expect(d.value('gateway_errors_total', { code: 'NOT_FOUND', protocol: 'http' })).toBe(2);
    expect(d.value('gateway_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(2);
    expect(after.text).not.toContain('/no/such/route');
    expect(d.value('gateway_http_requests_total', { method: 'OPTIONS', route: 'preflight', status: '204' })).toBe(1);
    expect(d.value('gateway_errors_total', { code: 'PROVIDER_ERROR', protocol: 'sse' })).toBe(1);
    expect(d.value('gateway_errors_total', { code: 'PROVIDER_ERROR', protocol: 'ai-message:prompt' })).toBe(1);
    expect(d.value('gateway_chat_turns_total', { ...GPT, finish_reason: 'error' })).toBe(2);
    expect(d.value('gateway_errors_total', { code: 'BAD_REQUEST', protocol: 'chat:start' })).toBe(1);
    expect(d.value('gateway_errors_total', { code: 'REALTIME_UNAVAILABLE', protocol: 'realtime:socket.io' })).toBe(1);
    // The provider's 500 still answered with a head.
    expect(d.histogram('gateway_upstream_response_seconds', { provider: 'openai' }).count).toBe(2);
  });

  it('a signed-in turn times its long-term memory recall', async () => {
    const user = await register(gw.url, 'metrics-memory@example.com');
    const before = await scrape(gw.url);
    await readSse(await postChat(gw.url, { message: 'I keep bees on the roof' }, bearer(user)));
    const after = await scrape(gw.url);
    const recall = delta(before, after).histogram('gateway_memory_recall_seconds', { outcome: 'ok' });
    expect(recall.count).toBe(1);
    expect(recall.sum).toBeGreaterThan(0);
  });
});

describe('GET /metrics with METRICS_TOKEN, and rate-limit refusals', () => {
  const TOKEN = 'metrics-token-0123456789abcdef';
  let gw: TestGateway;
  const auth = { Authorization: `Bearer ${TOKEN}` };

  beforeAll(async () => {
    gw = await startGateway({ RATE_LIMIT_ANON: '1', METRICS_TOKEN: TOKEN });
  });
  afterEach(closeAllClients);
  afterAll(async () => {
    closeAllClients();
    await gw.destroy();
  });

  it('refuses a scrape without the token, or with another, with the coded 401 body', async () => {
    const tries: Record<string, string>[] = [{}, { Authorization: 'Bearer not-the-metrics-token-000' }, { Authorization: TOKEN }];
    for (const headers of tries) {
      const res = await fetch(`${gw.url}/metrics`, { headers });
      expect(res.status).toBe(401);
      expect(res.headers.get('www-authenticate')).toMatch(/^Bearer/);
      expect(res.headers.get('set-cookie')).toBeNull();
      expect(await res.json()).toEqual({ error: expect.stringContaining('METRICS_TOKEN'), code: 'UNAUTHORIZED' });
    }
    const m = await scrape(gw.url, auth);
    expect(m.value('gateway_errors_total', { code: 'UNAUTHORIZED', protocol: 'http' })).toBe(3);
    expect(m.text).not.toContain(TOKEN);
  });

  it('counts chat refusals by limit on every protocol, and is itself never rate limited', async () => {
    const before = await scrape(gw.url, auth);
    expect((await postChat(gw.url, { message: 'the one allowed turn' })).status).toBe(200);
    const refused = await postChat(gw.url, { message: 'one too many' });
    expect(refused.status).toBe(429);
    expect(await refused.json()).toMatchObject({ code: 'RATE_LIMIT' });
    const socket = client<DefaultClient>(gw.url, { transports: ['websocket'] });
    const log = new EventLog<DefaultServerToClientEvents>(socket);
    socket.emit('ai:chat', { message: 'and over Socket.IO' });
    expect(await log.next('ai:error')).toMatchObject({ code: 'RATE_LIMIT' });

    // Far past RATE_LIMIT_ANON: scrapes are not chat requests and take no limit.
    for (let i = 0; i < 5; i++) await scrape(gw.url, auth);
    const after = await scrape(gw.url, auth);
    const d = delta(before, after);
    expect(d.value('gateway_rate_limit_refusals_total', { limit: 'chat:ip' })).toBe(2);
    expect(d.value('gateway_errors_total', { code: 'RATE_LIMIT', protocol: 'http' })).toBe(1);
    expect(d.value('gateway_errors_total', { code: 'RATE_LIMIT', protocol: 'ai:chat' })).toBe(1);
    expect(d.value('gateway_http_requests_total', { method: 'POST', route: CHAT, status: '429' })).toBe(1);
  });
});

describe('METRICS_PORT: /metrics on a listener of its own', () => {
  const TOKEN = 'another-metrics-token-987654321';
  let gw: TestGateway;
  let metricsUrl: string;

  beforeAll(async () => {
    gw = await startGateway({ METRICS_PORT: '0', METRICS_HOST: '127.0.0.1', METRICS_TOKEN: TOKEN });
    const address = gw.server.metricsAddress();
    expect(address).toBeDefined();
    expect(address!.port).not.toBe(gw.port);
    metricsUrl = `http://127.0.0.1:${address!.port}`;
  });
  afterAll(async () => {
    await gw.destroy();
  });

  it('is not on the public port (404 there), is on the metrics port, token and all', async () => {
    const publicTry = await fetch(`${gw.url}/metrics`, { headers: { Authorization: `Bearer ${TOKEN}` } });
    expect(publicTry.status).toBe(404);
    expect(await publicTry.json()).toMatchObject({ code: 'NOT_FOUND' });

    expect((await fetch(`${metricsUrl}/metrics`)).status).toBe(401);
    const other = await fetch(`${metricsUrl}/healthz`);
    expect(other.status).toBe(404);
    expect(await other.json()).toMatchObject({ code: 'NOT_FOUND' });

    await readSse(await postChat(gw.url, { message: 'counted on the public port' }));
    const m = await scrape(metricsUrl, { Authorization: `Bearer ${TOKEN}` });
    expect(m.value('gateway_http_requests_total', { method: 'POST', route: CHAT, status: '200' })).toBe(1);
    expect(m.value('gateway_http_requests_total', { method: 'GET', route: 'unmatched', status: '404' })).toBe(1);
  });
});

describe('METRICS_PORT in use', () => {
  it('refuses to start, naming METRICS_PORT', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as AddressInfo).port;
    const dataDir = tempDataDir();
    const server = await createNodeServer(loadConfig({ HOST: '127.0.0.1', PORT: '0', LOG_LEVEL: 'silent', DATA_DIR: dataDir, METRICS_PORT: String(port) }), { logger: silentLogger });
    try {
      await expect(server.listen()).rejects.toThrow(/METRICS_PORT: 127\.0\.0\.1:\d+ is already in use/);
      expect(server.httpServer.listening).toBe(false);
    } finally {
      await server.close();
      taken.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('METRICS_ENABLED=false', () => {
  it('serves no /metrics and builds no Prometheus registry', async () => {
    const gw = await startGateway({ METRICS_ENABLED: 'false' });
    try {
      expect(gw.server.metrics).toBeUndefined();
      expect((await fetch(`${gw.url}/metrics`)).status).toBe(404);
      await readSse(await postChat(gw.url, { message: 'still chats' }));
    } finally {
      await gw.destroy();
    }
  });
});

describe('metrics configuration and helpers', () => {
  const configError = (env: Record<string, string>) => {
    try {
      loadConfig(env);
    } catch (err) {
      if (err instanceof ConfigError) return err.message;
      throw err;
    }
    return undefined;
  };

  it('validates the METRICS_* variables, naming them', () => {
    expect(loadConfig({}).metrics).toEqual({ enabled: true, token: undefined, listener: undefined });
    expect(loadConfig({ METRICS_PORT: '9464' }).metrics.listener).toEqual({ port: 9464, host: '127.0.0.1' });
    expect(configError({ METRICS_TOKEN: 'short' })).toMatch(/METRICS_TOKEN: must be 16 to 512/);
    expect(configError({ METRICS_TOKEN: 'has a space in it, sixteen+' })).toMatch(/METRICS_TOKEN/);
    expect(configError({ METRICS_PORT: '70000' })).toMatch(/METRICS_PORT/);
    expect(configError({ METRICS_HOST: '0.0.0.0' })).toMatch(/METRICS_HOST: set METRICS_PORT too/);
    expect(configError({ PORT: '3000', METRICS_PORT: '3000' })).toMatch(/METRICS_PORT: must differ from PORT/);
    expect(configError({ METRICS_ENABLED: 'false', METRICS_PORT: '9464' })).toMatch(/METRICS_ENABLED=false/);
    expect(configError({ METRICS_ENABLED: 'maybe' })).toMatch(/METRICS_ENABLED/);
  });

  it('labels a refusal with the kind of limit, never with whom it limits', () => {
    expect(limitKind('chat:user:3f0c')).toBe('chat:user');
    expect(limitKind('chat:ip:2001:db8::1')).toBe('chat:ip');
    expect(limitKind('auth:account-user:u1')).toBe('auth:account-user');
    expect(limitKind('apikey:k1')).toBe('apikey');
  });

  it('the strict reader refuses what Prometheus would refuse', () => {
    const refused: [string, RegExp][] = [
      ['a_total{x="1"} 1\na_total{x="1"} 2\n', /twice/],
      ['# TYPE a gauge\na{x="1"} abc\n', /not a number/],
      ['a{x="1" 3\n', /label/],
      ['a{x=1} 3\n', /="value"/],
      ['a{x="1"} 3 4 5\n', /at most a timestamp/],
      ['a{x="\\q"} 3\n', /escape/],
      ['# TYPE a counter\na -1\n', /below zero/],
      ['a 1\nb 1\na{x="2"} 1\n', /one group/],
      ['# TYPE a gauge\n# TYPE a gauge\na 1\n', /TYPE twice/],
      ['# TYPE a gauge\na 1\n# TYPE a counter\n', /after the samples|TYPE twice/],
      ['# TYPE h histogram\nh_bucket{le="0.1"} 1\nh_sum 1\nh_count 1\n', /\+Inf/],
      ['# TYPE h histogram\nh_bucket{le="0.1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /decrease/],
      ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 1\n', /_count/],
      ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 2\n', /_sum/],
      ['# TYPE h histogram\nh_bucket 2\n', /without le/],
    ];
    for (const [text, why] of refused) expect(() => parseExposition(text), text).toThrow(why);
    const ok = parseExposition(
      '# HELP h A \\\\ help\\nline\n# TYPE h histogram\nh_bucket{m="a",le="1"} 1\nh_bucket{m="a",le="+Inf"} 2\nh_sum{m="a"} 3.5\nh_count{m="a"} 2\n' +
        'h_bucket{m="b\\"q",le="1"} 0\nh_bucket{m="b\\"q",le="+Inf"} 0\nh_sum{m="b\\"q"} 0\nh_count{m="b\\"q"} 0\ng Nan\n',
    );
    expect(ok.family('h')?.help).toBe('A \\ help\nline');
    expect(ok.histogram('h', { m: 'a' })).toEqual({ count: 2, sum: 3.5, buckets: new Map([[1, 1], [Infinity, 2]]) });
    expect(ok.histogram('h', { m: 'b"q' }).count).toBe(0);
    expect(ok.value('g')).toBeNaN();
  });
});

describe('a burst of scrapes', () => {
  it('shares one render: scrapes that arrive while one is rendered get its text, a later one renders anew', async () => {
    const { createMetricsApp } = await import('../../src/http/metrics-route.js');
    let renders = 0;
    const app = createMetricsApp({
      exposition: { contentType: 'text/plain; version=0.0.4; charset=utf-8', render: async () => (await new Promise((r) => setTimeout(r, 20)), `renders ${++renders}\n`) },
      token: undefined,
      metrics: { error: () => undefined },
    });
    const texts = await Promise.all(Array.from({ length: 20 }, async () => (await app.request('/metrics')).text()));
    expect(new Set(texts)).toEqual(new Set(['renders 1\n']));
    expect(await (await app.request('/metrics')).text()).toBe('renders 2\n');
  });
});
