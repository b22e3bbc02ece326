/**
 * Local stand-in for the OpenAI REST API (chat completions, embeddings, models), speaking the
 * real wire format so the real `openai` SDK can be pointed at it (`baseURL: standin.url`).
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import {
  after,
  asRecord,
  collectText,
  cutConnection,
  deterministicEmbedding,
  estimateTokens,
  resolveUsage,
  runStream,
  sendJson,
  startStandinServer,
  totalDelay,
  type Exchange,
  type RouteContext,
  type Script,
  type Standin,
  type StandinOptions,
} from './standin-script.js';

export type { RecordedRequest, Script, ScriptFn, Standin } from './standin-script.js';

export interface OpenAIStandinOptions extends StandinOptions {
  /** Ids listed by `GET /v1/models`. */
  models?: string[];
}

const DEFAULT_MODELS = ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small', 'text-embedding-3-large'];
const SYSTEM_FINGERPRINT = 'fp_x';

interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The error JSON the real API sends for a given status. */
export function openAIErrorBody(status: number, message?: string): OpenAIErrorBody {
  switch (status) {
    case 400:
      return { error: { message: message ?? 'Invalid request.', type: 'invalid_request_error', param: null, code: null } };
    case 401:
      return {
        error: {
          message:
            message ??
            'Incorrect API key provided: sk-***. You can find your API key at https://platform.openai.com/account/api-keys.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      };
    case 403:
      return {
        error: {
          message: message ?? 'Country, region, or territory not supported',
          type: 'request_forbidden',
          param: null,
          code: 'unsupported_country_region_territory',
        },
      };
    case 404:
      return {
        error: {
          message: message ?? 'The model does not exist or you do not have access to it.',
          type: 'invalid_request_error',
          param: null,
          code: 'model_not_found',
        },
      };
    case 429:
      return {
        error: {
          message:
            message ??
            'Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit https://platform.openai.com/account/rate-limits to learn more.',
          type: 'requests',
          param: null,
          code: 'rate_limit_exceeded',
        },
      };
    case 503:
      return {
        error: {
          message: message ?? 'The engine is currently overloaded, please try again later',
          type: 'server_error',
          param: null,
          code: null,
        },
      };
    default:
      if (status >= 500) {
        return {
          error: {
            message:
              message ??
              'The server had an error while processing your request. Sorry about that! You can retry your request, or contact us through our help center at help.openai.com if the error persists.',
            type: 'server_error',
            param: null,
            code: null,
          },
        };
      }
      return { error: { message: message ?? `Request failed with status ${status}.`, type: 'invalid_request_error', param: null, code: null } };
  }
}

function requestId(): string {
  return `req_${randomBytes(16).toString('hex')}`;
}

function sendError(res: ServerResponse, status: number, message?: string): void {
  const headers: Record<string, string> = { 'x-request-id': requestId(), 'openai-version': '2020-10-01' };
  if (status === 429) headers['retry-after'] = '1';
  sendJson(res, status, openAIErrorBody(status, message), headers);
}

function maskKey(key: string): string {
  if (key.length <= 8) return `${key.slice(0, 3)}***`;
  return `${key.slice(0, 7)}${'*'.repeat(Math.min(20, key.length - 11))}${key.slice(-4)}`;
}

/** Returns true when the request is authorised; otherwise answers 401 and returns false. */
function checkAuth(ex: Exchange, apiKey: string | undefined): boolean {
  if (apiKey === undefined) return true;
  const header = ex.req.headers.authorization;
  if (!header || !header.startsWith('Bearer ')) {
    sendError(
      ex.res,
      401,
      "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (i.e. Authorization: Basic YOUR_KEY), or as the username (i.e. Authorization: Basic YOUR_KEY:). You can obtain an API key from https://platform.openai.com/account/api-keys.",
    );
    return false;
  }
  const given = header.slice('Bearer '.length);
  if (given !== apiKey) {
    sendError(
      ex.res,
      401,
      `Incorrect API key provided: ${maskKey(given)}. You can find your API key at https://platform.openai.com/account/api-keys.`,
    );
    return false;
  }
  return true;
}

function chatCompletions(ex: Exchange, ctx: RouteContext): void {
  const body = asRecord(ex.record.body);
  if (!body) {
    sendError(
      ex.res,
      400,
      "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
    );
    return;
  }
  const model = body['model'];
  if (typeof model !== 'string' || model === '') {
    sendError(ex.res, 400, 'you must provide a model parameter');
    return;
  }
  if (!Array.isArray(body['messages'])) {
    sendError(ex.res, 400, "Missing required parameter: 'messages'.");
    return;
  }
  const script = ctx.script(ex.record);
  if (script.status !== undefined && script.status >= 400) {
    sendError(ex.res, script.status, script.errorMessage);
    return;
  }
  const usage = resolveUsage(script, collectText(body['messages']));
  const usageObj = usage
    ? {
        prompt_tokens: usage.input,
        completion_tokens: usage.output,
        total_tokens: usage.input + usage.output,
        prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
        completion_tokens_details: {
          reasoning_tokens: usage.reasoning ?? 0,
          audio_tokens: 0,
          accepted_prediction_tokens: 0,
          rejected_prediction_tokens: 0,
        },
      }
    : undefined;
  const usageJson = usageObj ? JSON.stringify(usageObj) : undefined;
  const id = `chatcmpl-${randomBytes(15).toString('base64url')}`;
  const created = Math.floor(Date.now() / 1000);
  const finish = script.finishReason ?? 'stop';
  const baseHeaders = { 'x-request-id': requestId(), 'openai-version': '2020-10-01', 'openai-processing-ms': '1' };

  if (body['stream'] !== true) {
    after(ex, totalDelay(script), () => {
      if (script.cutAfter !== undefined) {
        cutConnection(ex);
        return;
      }
      const payload: Record<string, unknown> = {
        id,
        object: 'chat.completion',
        created,
        model,
        choices: [
          {
            index: 0,
            message: { role: 'assistant', content: script.tokens.join(''), refusal: null, annotations: [] },
            logprobs: null,
            finish_reason: finish,
          },
        ],
      };
      if (usageObj) payload['usage'] = usageObj;
      payload['service_tier'] = 'default';
      payload['system_fingerprint'] = SYSTEM_FINGERPRINT;
      sendJson(ex.res, 200, payload, baseHeaders);
    });
    return;
  }

  const streamOptions = asRecord(body['stream_options']);
  const includeUsage = streamOptions?.['include_usage'] === true;
  // Everything around `choices` is constant for the whole stream: build it once.
  const prefix = `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"service_tier":"default","system_fingerprint":"${SYSTEM_FINGERPRINT}","choices":[`;
  const suffix = includeUsage ? `],"usage":null}\n\n` : `]}\n\n`;
  const tokenOpen = `${prefix}{"index":0,"delta":{"content":`;
  const tokenClose = `},"logprobs":null,"finish_reason":null}${suffix}`;

  runStream(ex, script, {
    headers: { ...baseHeaders, 'Content-Type': 'text/event-stream; charset=utf-8', 'Cache-Control': 'no-cache' },
    head: `${prefix}{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}${suffix}`,
    event: (token) => tokenOpen + JSON.stringify(token) + tokenClose,
    tail: () => {
      let out = `${prefix}{"index":0,"delta":{},"logprobs":null,"finish_reason":"${finish}"}${suffix}`;
      if (includeUsage && usageJson !== undefined) out += `${prefix}],"usage":${usageJson}}\n\n`;
      return `${out}data: [DONE]\n\n`;
    },
  });
}

function embeddingInputs(input: unknown): string[] | undefined {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input) || input.length === 0) return undefined;
  if (input.every((x) => typeof x === 'number')) return [JSON.stringify(input)];
  const out: string[] = [];
  for (const item of input) {
    if (typeof item === 'string') out.push(item);
    else if (Array.isArray(item)) out.push(JSON.stringify(item));
    else return undefined;
  }
  return out;
}

/** The documented limits of `POST /v1/embeddings`. */
export const OPENAI_EMBEDDING_LIMITS = { maxInputs: 2048, maxInputTokens: 8192, maxRequestTokens: 300_000 } as const;

const INVALID_INPUT = "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference.";

function embeddings(ex: Exchange, ctx: RouteContext): void {
  const body = asRecord(ex.record.body);
  const model = body?.['model'];
  if (!body || typeof model !== 'string') {
    sendError(ex.res, 400, 'you must provide a model parameter');
    return;
  }
  const inputs = embeddingInputs(body['input']);
  // The API reference: input "cannot be an empty string, and any array must be 2048 dimensions or less".
  if (!inputs || inputs.length > OPENAI_EMBEDDING_LIMITS.maxInputs || inputs.some((t) => t === '')) {
    sendError(ex.res, 400, INVALID_INPUT);
    return;
  }
  const tokens = inputs.map(estimateTokens);
  const longest = Math.max(...tokens);
  if (longest > OPENAI_EMBEDDING_LIMITS.maxInputTokens) {
    sendError(
      ex.res,
      400,
      `This model's maximum context length is ${OPENAI_EMBEDDING_LIMITS.maxInputTokens} tokens, however you requested ${longest} tokens in your prompt. Please reduce your prompt.`,
    );
    return;
  }
  const promptTokens = tokens.reduce((a, b) => a + b, 0);
  if (promptTokens > OPENAI_EMBEDDING_LIMITS.maxRequestTokens) {
    sendError(ex.res, 400, `Requested ${promptTokens} tokens, max ${OPENAI_EMBEDDING_LIMITS.maxRequestTokens} tokens per request`);
    return;
  }
  const dimsRaw = body['dimensions'];
  const dims = dimsRaw === undefined ? 1536 : dimsRaw;
  if (typeof dims !== 'number' || !Number.isInteger(dims) || dims < 1) {
    sendError(ex.res, 400, 'Invalid value for dimensions.');
    return;
  }
  const script: Script = ctx.script(ex.record);
  if (script.status !== undefined && script.status >= 400) {
    sendError(ex.res, script.status, script.errorMessage);
    return;
  }
  const size = script.embeddingDimensions ?? dims;
  const base64 = body['encoding_format'] === 'base64';
  const data = inputs.map((text, index) => {
    const vec = deterministicEmbedding(text, size, script.embeddingScale);
    const embedding = base64
      ? Buffer.from(vec.buffer, vec.byteOffset, vec.byteLength).toString('base64')
      : Array.from(vec);
    return { object: 'embedding', index, embedding };
  });
  if (script.reverseEmbeddings) data.reverse();
  after(ex, totalDelay(script), () => {
    if (script.cutAfter !== undefined) {
      cutConnection(ex);
      return;
    }
    sendJson(
      ex.res,
      200,
      { object: 'list', data, model, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } },
      { 'x-request-id': requestId(), 'openai-version': '2020-10-01' },
    );
  });
}

/** Starts the OpenAI stand-in. `url` ends in `/v1` and is meant for `new OpenAI({ baseURL })`. */
export function startOpenAIStandin(opts?: OpenAIStandinOptions): Promise<Standin> {
  const models = opts?.models ?? DEFAULT_MODELS;
  return startStandinServer(opts, '/v1', (ex, ctx) => {
    const { method, path } = ex.record;
    if (!checkAuth(ex, ctx.apiKey)) return;
    if (method === 'POST' && path === '/v1/chat/completions') return chatCompletions(ex, ctx);
    if (method === 'POST' && path === '/v1/embeddings') return embeddings(ex, ctx);
    if (method === 'GET' && path === '/v1/models') {
      sendJson(ex.res, 200, {
        object: 'list',
        data: models.map((id) => ({ id, object: 'model', created: 1715367049, owned_by: 'system' })),
      });
      return;
    }
    const modelMatch = method === 'GET' ? /^\/v1\/models\/([^/]+)$/.exec(path) : null;
    if (modelMatch) {
      const id = decodeURIComponent(modelMatch[1] ?? '');
      if (models.includes(id)) {
        sendJson(ex.res, 200, { id, object: 'model', created: 1715367049, owned_by: 'system' });
      } else {
        sendError(ex.res, 404, `The model \`${id}\` does not exist or you do not have access to it.`);
      }
      return;
    }
    sendJson(ex.res, 404, {
      error: { message: `Invalid URL (${method} ${path})`, type: 'invalid_request_error', param: null, code: null },
    });
  });
}
