import { OpenAPIHono } from '@hono/zod-openapi';
import { z } from 'zod';
import type { Config } from '../config.js';
import { conversationIdSchema } from '../chat/chat-request.js';
import { ERROR_CODES } from '../errors.js';
import { aiChatSchema } from './ai-sdk-routes.js';
import { createKeySchema } from './api-key-routes.js';
import { confirmSchema, loginSchema, passwordChangeSchema, registerSchema } from './auth-routes.js';
import { chatStreamSchema } from './chat-stream-route.js';
import { pageQuery, renameSchema } from './conversation-routes.js';
import { settingsSchema } from './memory-routes.js';
import { completionRequestSchema } from './openai-routes.js';

type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';

/** One documented route: the request schemas are the very ones the route validates with. */
interface RouteDoc {
  method: Method;
  /** Hono's path syntax (`:id`); turned into OpenAPI's (`{id}`). */
  path: string;
  tag: string;
  summary: string;
  auth?: 'none' | 'optional' | 'user' | 'metrics';
  body?: z.ZodType;
  query?: z.ZodObject;
  /** Success responses: status → [description, content type, schema?]. */
  ok: Record<number, [string, string, z.ZodType?]>;
}

const errorBody = z.object({ error: z.string(), code: z.enum(ERROR_CODES) }).meta({ id: 'Error' });
const openaiErrorBody = z
  .object({ error: z.object({ message: z.string(), type: z.string(), code: z.enum(ERROR_CODES), param: z.string().nullable() }) })
  .meta({ id: 'OpenAIError' });
const user = z.object({ id: z.string(), email: z.string().nullable(), name: z.string().nullable(), createdAt: z.string().nullable() }).meta({ id: 'User' });
const signedIn = z.object({ user, token: z.string() }).meta({ id: 'SignedIn' });
const conversation = z.object({ id: z.string(), title: z.string(), createdAt: z.string(), updatedAt: z.string() }).meta({ id: 'Conversation' });
const message = z
  .object({
    id: z.string(),
    role: z.enum(['user', 'assistant']),
    content: z.string(),
    createdAt: z.string(),
    model: z.string().optional(),
    finishReason: z.enum(['stop', 'length', 'stopped', 'aborted', 'error']).optional(),
    usage: z.object({ inputTokens: z.number(), outputTokens: z.number() }).optional(),
  })
  .meta({ id: 'Message' });
const json = 'application/json';
const sse = 'text/event-stream';

/** Every HTTP route the gateway serves, for `/openapi.json` (a test checks none is missing). */
function routes(config: Config): RouteDoc[] {
  return [
    { method: 'get', path: '/healthz', tag: 'operations', summary: 'Liveness', auth: 'none', ok: { 200: ['The process is up', json] } },
    { method: 'get', path: '/readyz', tag: 'operations', summary: 'Readiness of each dependency (stores, limiter, memory)', auth: 'none', ok: { 200: ['Ready or degraded', json] } },
    { method: 'get', path: '/openapi.json', tag: 'operations', summary: 'This document', auth: 'none', ok: { 200: ['OpenAPI 3.1', json] } },
    { method: 'get', path: '/docs', tag: 'operations', summary: 'Interactive API documentation (Swagger UI)', auth: 'none', ok: { 200: ['HTML page', 'text/html'] } },
    { method: 'get', path: '/docs/init.js', tag: 'operations', summary: 'The script that starts Swagger UI on /docs', auth: 'none', ok: { 200: ['JavaScript', 'text/javascript'] } },
    {
      method: 'post',
      path: '/api/v2/ai/chat/stream',
      tag: 'chat',
      summary: 'Streamed chat (seed 002): `data: {"content"}` events, then `data: {"done": true}` or `data: {"error", "code"}`',
      auth: 'optional',
      body: chatStreamSchema(config),
      ok: { 200: ['Server-Sent Events', sse] },
    },
    {
      method: 'get',
      path: '/api/v2/ai/chat/stream',
      tag: 'chat',
      summary: 'Resume a stream (`Last-Event-ID`): the events after that id, then the rest live; 204 when there is nothing to send (nothing kept, or the reply ended and that id is its last event)',
      auth: 'optional',
      query: z.object({ sessionId: conversationIdSchema }),
      ok: { 200: ['Server-Sent Events', sse], 204: ['Nothing to resume', json] },
    },
    { method: 'post', path: '/api/v2/auth/register', tag: 'auth', summary: 'Create an account; sets the httpOnly token cookie', auth: 'none', body: registerSchema, ok: { 201: ['Signed in', json, signedIn] } },
    { method: 'post', path: '/api/v2/auth/login', tag: 'auth', summary: 'Sign in; sets the httpOnly token cookie', auth: 'none', body: loginSchema, ok: { 200: ['Signed in', json, signedIn] } },
    { method: 'post', path: '/api/v2/auth/logout', tag: 'auth', summary: 'Sign out this session and clear the cookie', auth: 'optional', ok: { 200: ['Signed out', json] } },
    { method: 'post', path: '/api/v2/auth/logout-all', tag: 'auth', summary: 'Sign out every session of this user and revoke every API key', auth: 'user', ok: { 200: ['Signed out everywhere', json] } },
    { method: 'post', path: '/api/v2/auth/password', tag: 'auth', summary: 'Change the password (other sessions are signed out)', auth: 'user', body: passwordChangeSchema, ok: { 200: ['Signed in with a new token', json, signedIn] } },
    { method: 'get', path: '/api/v2/auth/me', tag: 'auth', summary: 'The signed-in user', auth: 'user', ok: { 200: ['The user', json, z.object({ user })] } },
    { method: 'delete', path: '/api/v2/auth/me', tag: 'auth', summary: 'Delete the account and everything it owns', auth: 'user', body: confirmSchema, ok: { 200: ['Deleted', json] } },
    {
      method: 'get',
      path: '/api/v2/conversations',
      tag: 'conversations',
      summary: "The caller's conversations, newest first",
      auth: 'user',
      query: pageQuery,
      ok: { 200: ['A page', json, z.object({ conversations: z.array(conversation), nextCursor: z.string().nullable() })] },
    },
    {
      method: 'get',
      path: '/api/v2/conversations/:id/messages',
      tag: 'conversations',
      summary: 'Messages of a conversation, oldest first',
      auth: 'user',
      query: pageQuery,
      ok: { 200: ['A page', json, z.object({ conversation, messages: z.array(message), nextCursor: z.string().nullable() })] },
    },
    { method: 'patch', path: '/api/v2/conversations/:id', tag: 'conversations', summary: 'Rename', auth: 'user', body: renameSchema, ok: { 200: ['Renamed', json, z.object({ conversation })] } },
    { method: 'post', path: '/api/v2/conversations/:id/stop', tag: 'conversations', summary: 'Stop the running reply, on whichever node runs it (stored as stopped)', auth: 'user', ok: { 200: ['Whether a reply was running', json, z.object({ stopped: z.boolean(), id: z.string() })] } },
    { method: 'delete', path: '/api/v2/conversations/:id', tag: 'conversations', summary: 'Delete (stops a running reply; forgets its memories)', auth: 'user', ok: { 200: ['Deleted', json] } },
    { method: 'get', path: '/api/v2/memory', tag: 'memory', summary: "The caller's long-term memories", auth: 'user', query: pageQuery, ok: { 200: ['A page', json] } },
    { method: 'get', path: '/api/v2/memory/settings', tag: 'memory', summary: 'Whether long-term memory is on for the caller', auth: 'user', ok: { 200: ['The setting', json] } },
    { method: 'put', path: '/api/v2/memory/settings', tag: 'memory', summary: 'Turn long-term memory on or off (off: nothing new is remembered or recalled, and queued writes are dropped; DELETE /api/v2/memory erases what is kept)', auth: 'user', body: settingsSchema, ok: { 200: ['The setting', json] } },
    { method: 'delete', path: '/api/v2/memory/:id', tag: 'memory', summary: 'Forget one memory', auth: 'user', ok: { 200: ['Forgotten', json] } },
    { method: 'delete', path: '/api/v2/memory', tag: 'memory', summary: 'Erase every memory of the caller', auth: 'user', ok: { 200: ['Erased', json] } },
    { method: 'post', path: '/api/v2/keys', tag: 'keys', summary: 'Create a gateway API key (the key is shown once)', auth: 'user', body: createKeySchema, ok: { 201: ['The key and its metadata', json] } },
    { method: 'get', path: '/api/v2/keys', tag: 'keys', summary: "The caller's API keys (never the secret)", auth: 'user', ok: { 200: ['The keys', json] } },
    { method: 'delete', path: '/api/v2/keys/:id', tag: 'keys', summary: 'Revoke a key: refused everywhere from the next request', auth: 'user', ok: { 200: ['Revoked', json] } },
    { method: 'get', path: '/api/v2/realtime/sessions', tag: 'realtime', summary: "The caller's ended realtime sessions with token usage, newest first", auth: 'user', query: pageQuery, ok: { 200: ['A page', json] } },
    { method: 'get', path: '/v1/models', tag: 'openai-compatible', summary: 'The models this caller may use', auth: 'user', ok: { 200: ['OpenAI model list', json] } },
    {
      method: 'post',
      path: '/v1/chat/completions',
      tag: 'openai-compatible',
      summary: 'OpenAI chat completions, streaming (`stream: true`) or not; stateless unless `X-Conversation-Id` names a stored conversation',
      auth: 'user',
      body: completionRequestSchema(config.chat.maxMessageChars, config.chat.maxHistoryBodyBytes),
      ok: { 200: ['A chat.completion, or chat.completion.chunk events', json] },
    },
    { method: 'post', path: '/api/chat', tag: 'ai-sdk', summary: 'AI SDK UI message stream v1 (`useChat`); the chat id is the conversation', auth: 'optional', body: aiChatSchema(), ok: { 200: ['UI message stream', sse] } },
    { method: 'get', path: '/api/chat/:id/stream', tag: 'ai-sdk', summary: 'Resume the running reply (`useChat({ resume: true })`): replayed from its start, then live; 204 when none runs', auth: 'optional', ok: { 200: ['UI message stream', sse], 204: ['Nothing streaming', json] } },
    { method: 'get', path: '/api/chat/:id/messages', tag: 'ai-sdk', summary: 'A conversation as UI messages (for `useChat({ messages })`)', auth: 'optional', ok: { 200: ['UI messages', json] } },
  ];
}

export type { RouteDoc };

/** Prometheus metrics, on the public port unless METRICS_PORT moves them (Node only). */
export const METRICS_ROUTE_DOC: RouteDoc = {
  method: 'get',
  path: '/metrics',
  tag: 'operations',
  summary: 'Prometheus metrics (text format); Bearer METRICS_TOKEN when set',
  auth: 'metrics',
  ok: { 200: ['Prometheus text exposition format 0.0.4', 'text/plain'] },
};

/** The native WebSocket relay, served by the Node entry only. */
export const REALTIME_ROUTE_DOC: RouteDoc = {
  method: 'get',
  path: '/v1/realtime',
  tag: 'realtime',
  summary: 'WebSocket upgrade: the OpenAI Realtime protocol (GA), relayed to the configured provider (Node only); signed-in users only, as all of /v1',
  auth: 'user',
  ok: { 101: ['Switching protocols', 'application/octet-stream'] },
};

/** The browser playground, served by the Node entry when it is built (PLAYGROUND_ENABLED). */
export const PLAYGROUND_ROUTE_DOCS: readonly RouteDoc[] = [
  { method: 'get', path: '/', tag: 'playground', summary: 'The browser playground (Node only, when built)', auth: 'none', ok: { 200: ['HTML page', 'text/html'] } },
  {
    method: 'get',
    path: '/playground/:file',
    tag: 'playground',
    summary: "The playground's scripts, styles and audio worklet (ETag, revalidated)",
    auth: 'none',
    ok: { 200: ['The file', 'application/octet-stream'] },
  },
];

/** The OpenAPI 3.1 document of every HTTP route, generated from the zod schemas the routes validate with. */
export function openApiDocument(config: Config, extra: readonly RouteDoc[] = []): Record<string, unknown> {
  const doc = new OpenAPIHono();
  const registry = doc.openAPIRegistry;
  registry.registerComponent('securitySchemes', 'bearer', {
    type: 'http',
    scheme: 'bearer',
    description: 'A gateway JWT (from /api/v2/auth/login) or a gateway API key (gk_...)',
  });
  registry.registerComponent('securitySchemes', 'cookie', { type: 'apiKey', in: 'cookie', name: 'token' });
  for (const r of [...routes(config), ...extra]) {
    const openai = r.path.startsWith('/v1/');
    const params = [...r.path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]!);
    const responses: Record<string, unknown> = {};
    for (const [status, [description, type, schema]] of Object.entries(r.ok)) responses[status] = { description, content: { [type]: { schema: schema ?? z.unknown() } } };
    const failure = { content: { [json]: { schema: openai ? openaiErrorBody : errorBody } } };
    responses['4XX'] = { description: 'Refused, with a stable code (PROTOCOLS: BAD_REQUEST, UNAUTHORIZED, NOT_FOUND, RATE_LIMIT, INVALID_MODEL, BUSY)', ...failure };
    responses['5XX'] = { description: 'PROVIDER_ERROR, REALTIME_UNAVAILABLE or INTERNAL', ...failure };
    registry.registerPath({
      method: r.method,
      path: r.path.replace(/:([A-Za-z]+)/g, '{$1}'),
      tags: [r.tag],
      summary: r.summary,
      ...(r.auth === 'none' ? { security: [] } : r.auth === 'user' ? { security: [{ bearer: [] }, { cookie: [] }] } : r.auth === 'metrics' ? { security: [{ bearer: [] }, {}] } : { security: [{ bearer: [] }, { cookie: [] }, {}] }),
      request: {
        ...(params.length ? { params: z.object(Object.fromEntries(params.map((p) => [p, p === 'id' && /conversations|chat/.test(r.path) ? conversationIdSchema : z.string().max(128)]))) } : {}),
        ...(r.query ? { query: r.query } : {}),
        ...(r.body ? { body: { required: true, content: { [json]: { schema: r.body } } } } : {}),
      },
      responses: responses as never,
    });
  }
  return doc.getOpenAPI31Document({
    openapi: '3.1.0',
    info: {
      title: 'AI chat gateway',
      version: '0.1.0',
      description: 'Streamed LLM chat over SSE, Socket.IO and WebSocket, over one pipeline. Socket.IO events are described in docs/, not here.',
    },
  }) as unknown as Record<string, unknown>;
}
