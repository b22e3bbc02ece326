/**
 * Local stand-in for the Gemini Developer API (generativelanguage.googleapis.com), speaking the
 * real wire format so `@google/genai` can be pointed at it with
 * `new GoogleGenAI({ apiKey, httpOptions: { baseUrl: standin.url } })`. The SDK appends the API
 * version itself (`/v1beta/models/{model}:{method}`) and sends the key as `x-goog-api-key`.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import {
  after,
  asRecord,
  collectText,
  cutConnection,
  deterministicEmbedding,
  resolveUsage,
  runStream,
  sendJson,
  startStandinServer,
  totalDelay,
  type Exchange,
  type RouteContext,
  type Standin,
  type StandinOptions,
} from './standin-script.js';

export type { RecordedRequest, Script, ScriptFn, Standin } from './standin-script.js';

export interface GeminiStandinOptions extends StandinOptions {
  /** Model ids (without `models/`) listed by `GET /v1beta/models`. */
  models?: string[];
}

const DEFAULT_MODELS = ['gemini-2.0-flash', 'gemini-2.5-flash', 'gemini-embedding-001', 'text-embedding-004'];
const DEFAULT_EMBED_DIMS = 768;
const JSON_CT = 'application/json; charset=UTF-8';

const STATUS_NAMES: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  500: 'INTERNAL',
  501: 'NOT_IMPLEMENTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};

const DEFAULT_MESSAGES: Record<number, string> = {
  400: 'Request contains an invalid argument.',
  401: 'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.',
  403: 'Method doesn\'t allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.',
  404: 'Requested entity was not found.',
  429: 'You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.',
  500: 'An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting',
  503: 'The model is overloaded. Please try again later.',
  504: 'Deadline expired before operation could complete.',
};

export interface GeminiErrorBody {
  error: { code: number; message: string; status: string; details?: Array<Record<string, unknown>> };
}

/** The error JSON Google's API sends for a given status. */
export function geminiErrorBody(
  code: number,
  message?: string,
  details?: Array<Record<string, unknown>>,
): GeminiErrorBody {
  const status = STATUS_NAMES[code] ?? (code >= 500 ? 'INTERNAL' : 'FAILED_PRECONDITION');
  const error: GeminiErrorBody['error'] = {
    code,
    message: message ?? DEFAULT_MESSAGES[code] ?? `Request failed with status ${code}.`,
    status,
  };
  if (details) error.details = details;
  else if (code === 429) error.details = [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '1s' }];
  return { error };
}

function sendError(res: ServerResponse, code: number, message?: string, details?: Array<Record<string, unknown>>): void {
  sendJson(res, code, geminiErrorBody(code, message, details), undefined, JSON_CT);
}

const BAD_KEY_MESSAGE = 'API key not valid. Please pass a valid API key.';

/**
 * Same checks as the real endpoint: no key at all → 403 PERMISSION_DENIED; a wrong key →
 * 400 INVALID_ARGUMENT with an ErrorInfo detail whose reason is API_KEY_INVALID (this is what
 * generativelanguage.googleapis.com really answers — not 401).
 */
function checkAuth(ex: Exchange, apiKey: string | undefined): boolean {
  if (apiKey === undefined) return true;
  const header = ex.req.headers['x-goog-api-key'];
  const given = (typeof header === 'string' ? header : undefined) ?? ex.record.query['key'];
  if (given === undefined || given === '') {
    sendError(ex.res, 403);
    return false;
  }
  if (given !== apiKey) {
    sendError(ex.res, 400, BAD_KEY_MESSAGE, [
      {
        '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
        reason: 'API_KEY_INVALID',
        domain: 'googleapis.com',
        metadata: { service: 'generativelanguage.googleapis.com' },
      },
      { '@type': 'type.googleapis.com/google.rpc.LocalizedMessage', locale: 'en-US', message: BAD_KEY_MESSAGE },
    ]);
    return false;
  }
  return true;
}

function responseId(): string {
  return randomBytes(15).toString('base64url');
}

function finishName(reason: 'stop' | 'length' | 'content_filter' | undefined): string {
  return reason === 'length' ? 'MAX_TOKENS' : reason === 'content_filter' ? 'SAFETY' : 'STOP';
}

/** Fields of a `Part`'s `data` oneof (the kinds of content a part can hold). */
const PART_DATA = ['text', 'inlineData', 'fileData', 'functionCall', 'functionResponse', 'executableCode', 'codeExecutionResult'];

/**
 * What generativelanguage.googleapis.com refuses in `contents`, with its own message: a
 * content without parts, and a part whose data is unset. In proto3 JSON an empty string is
 * the default value, so `{"text": ""}` counts as unset: Google answers it with the same
 * "required oneof field 'data'" 400 as a part with no field at all.
 */
function invalidContents(contents: unknown): string | undefined {
  if (!Array.isArray(contents)) return undefined;
  for (const [i, content] of contents.entries()) {
    const parts = asRecord(content)?.['parts'];
    if (!Array.isArray(parts) || parts.length === 0) return `* GenerateContentRequest.contents[${i}].parts: contents.parts must not be empty.\n`;
    for (const [j, part] of parts.entries()) {
      const rec = asRecord(part) ?? {};
      const set = PART_DATA.some((key) => rec[key] !== undefined && rec[key] !== null && rec[key] !== '');
      if (!set) return `* GenerateContentRequest.contents[${i}].parts[${j}].data: required oneof field 'data' must have one initialized field\n`;
    }
  }
  return undefined;
}

/**
 * The generation settings Google refuses, with its messages: the seed is an int32, and the
 * 2.5 models take no presence or frequency penalty (a zero one is accepted).
 */
function invalidGenerationConfig(model: string, config: unknown): string | undefined {
  const g = asRecord(config) ?? {};
  const seed = g['seed'];
  if (typeof seed === 'number' && (seed > 2 ** 31 - 1 || seed < -(2 ** 31))) return `Invalid value at 'generation_config.seed' (TYPE_INT32), ${seed}`;
  if (model.startsWith('gemini-2.5') && (g['presencePenalty'] || g['frequencyPenalty'])) return `Penalty is not enabled for models/${model}`;
  return undefined;
}

function generate(ex: Exchange, ctx: RouteContext, model: string, stream: boolean): void {
  const body = asRecord(ex.record.body);
  if (!body) {
    sendError(ex.res, 400, 'Invalid JSON payload received. Unexpected token.');
    return;
  }
  if (body['contents'] === undefined) {
    sendError(ex.res, 400, '* GenerateContentRequest.contents: contents is not specified\n');
    return;
  }
  const invalid = invalidContents(body['contents']) ?? invalidGenerationConfig(model, body['generationConfig']);
  if (invalid) {
    sendError(ex.res, 400, invalid);
    return;
  }
  const script = ctx.script(ex.record);
  if (script.status !== undefined && script.status >= 400) {
    sendError(ex.res, script.status, script.errorMessage);
    return;
  }
  const usage = resolveUsage(script, collectText(body['systemInstruction']) + collectText(body['contents']));
  const promptDetails = usage ? [{ modality: 'TEXT', tokenCount: usage.input }] : undefined;
  const fullUsage = usage
    ? {
        promptTokenCount: usage.input,
        // As Gemini counts a thinking model's: the reply's own, and its thoughts apart.
        candidatesTokenCount: usage.output - (usage.reasoning ?? 0),
        ...(usage.reasoning ? { thoughtsTokenCount: usage.reasoning } : {}),
        totalTokenCount: usage.input + usage.output,
        promptTokensDetails: promptDetails,
      }
    : undefined;
  const finish = finishName(script.finishReason);
  const id = responseId();

  if (script.blockedPrompt !== undefined) {
    const blocked = {
      promptFeedback: { blockReason: script.blockedPrompt, safetyRatings: [{ category: 'HARM_CATEGORY_DANGEROUS_CONTENT', probability: 'HIGH' }] },
      ...(usage ? { usageMetadata: { promptTokenCount: usage.input, totalTokenCount: usage.input } } : {}),
      modelVersion: model,
      responseId: id,
    };
    after(ex, totalDelay(script), () => {
      if (!stream) return sendJson(ex.res, 200, blocked, undefined, JSON_CT);
      ex.res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
      ex.res.end(`data: ${JSON.stringify(blocked)}\r\n\r\n`);
    });
    return;
  }

  if (!stream) {
    after(ex, totalDelay(script), () => {
      if (script.cutAfter !== undefined) {
        cutConnection(ex);
        return;
      }
      const payload: Record<string, unknown> = {
        candidates: [
          {
            content: { parts: [{ text: script.tokens.join('') }], role: 'model' },
            finishReason: finish,
            index: 0,
          },
        ],
      };
      if (fullUsage) payload['usageMetadata'] = fullUsage;
      payload['modelVersion'] = model;
      payload['responseId'] = id;
      sendJson(ex.res, 200, payload, undefined, JSON_CT);
    });
    return;
  }

  // Constant pieces of every event, built once per stream.
  const partialUsageJson = usage
    ? JSON.stringify({ promptTokenCount: usage.input, totalTokenCount: usage.input, promptTokensDetails: promptDetails })
    : undefined;
  const fullUsageJson = fullUsage ? JSON.stringify(fullUsage) : undefined;
  const open = 'data: {"candidates":[{"content":{"parts":[{"text":';
  const closeMid =
    `}],"role":"model"},"index":0}]` +
    (partialUsageJson ? `,"usageMetadata":${partialUsageJson}` : '') +
    `,"modelVersion":${JSON.stringify(model)},"responseId":"${id}"}\r\n\r\n`;
  const closeLast =
    `}],"role":"model"},"finishReason":"${finish}","index":0}]` +
    (fullUsageJson ? `,"usageMetadata":${fullUsageJson}` : '') +
    `,"modelVersion":${JSON.stringify(model)},"responseId":"${id}"}\r\n\r\n`;

  runStream(ex, script, {
    headers: { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' },
    event: (token, _index, isLast) => open + JSON.stringify(token) + (isLast ? closeLast : closeMid),
    // The finish reason rides on the last token's chunk; only an empty answer needs its own chunk.
    tail: () => (script.tokens.length === 0 ? `${open}""${closeLast}` : ''),
  });
}

/** Text of a Gemini `Content` ({parts:[{text}]}) or a bare string. */
function contentText(content: unknown): string {
  return collectText(content);
}

function dimsOf(req: Record<string, unknown>): number | undefined {
  const d = req['outputDimensionality'];
  if (d === undefined) return DEFAULT_EMBED_DIMS;
  return typeof d === 'number' && Number.isInteger(d) && d >= 1 ? d : undefined;
}

/** `batchEmbedContents` takes at most this many requests. */
export const GEMINI_EMBEDDING_BATCH_LIMIT = 100;

function embed(ex: Exchange, ctx: RouteContext, batch: boolean): void {
  const body = asRecord(ex.record.body);
  if (!body) {
    sendError(ex.res, 400, 'Invalid JSON payload received. Unexpected token.');
    return;
  }
  const requests = batch ? body['requests'] : [body];
  if (!Array.isArray(requests) || requests.length === 0) {
    sendError(ex.res, 400, '* BatchEmbedContentsRequest.requests: at least one request is required\n');
    return;
  }
  if (requests.length > GEMINI_EMBEDDING_BATCH_LIMIT) {
    sendError(ex.res, 400, `* BatchEmbedContentsRequest.requests: at most ${GEMINI_EMBEDDING_BATCH_LIMIT} requests can be in one batch\n`);
    return;
  }
  const script = ctx.script(ex.record);
  if (script.status !== undefined && script.status >= 400) {
    sendError(ex.res, script.status, script.errorMessage);
    return;
  }
  const out: Array<{ values: number[] }> = [];
  for (const r of requests) {
    const rec = asRecord(r);
    if (!rec || rec['content'] === undefined) {
      sendError(ex.res, 400, '* EmbedContentRequest.content: content is not specified\n');
      return;
    }
    const dims = dimsOf(rec);
    if (dims === undefined) {
      sendError(ex.res, 400, 'Invalid value for outputDimensionality.');
      return;
    }
    out.push({ values: Array.from(deterministicEmbedding(contentText(rec['content']), script.embeddingDimensions ?? dims, script.embeddingScale)) });
  }
  const payload = batch ? { embeddings: out } : { embedding: out[0] };
  after(ex, totalDelay(script), () => {
    if (script.cutAfter !== undefined) {
      cutConnection(ex);
      return;
    }
    sendJson(ex.res, 200, payload, undefined, JSON_CT);
  });
}

const METHOD_RE = /^\/(v1(?:alpha|beta)?\d*)\/models\/([^/:]+):([A-Za-z]+)$/;

/** Starts the Gemini stand-in. `url` is the origin, meant for `httpOptions.baseUrl`. */
export function startGeminiStandin(opts?: GeminiStandinOptions): Promise<Standin> {
  const models = opts?.models ?? DEFAULT_MODELS;
  return startStandinServer(opts, '', (ex, ctx) => {
    const { method, path } = ex.record;
    if (!checkAuth(ex, ctx.apiKey)) return;
    const m = method === 'POST' ? METHOD_RE.exec(path) : null;
    if (m) {
      const model = decodeURIComponent(m[2] ?? '');
      switch (m[3]) {
        case 'streamGenerateContent':
          return generate(ex, ctx, model, true);
        case 'generateContent':
          return generate(ex, ctx, model, false);
        case 'embedContent':
          return embed(ex, ctx, false);
        case 'batchEmbedContents':
          return embed(ex, ctx, true);
        default:
          break;
      }
    }
    if (method === 'GET' && /^\/v1(?:alpha|beta)?\d*\/models$/.test(path)) {
      sendJson(
        ex.res,
        200,
        {
          models: models.map((id) => ({
            name: `models/${id}`,
            version: '001',
            displayName: id,
            supportedGenerationMethods: id.includes('embedding')
              ? ['embedContent', 'batchEmbedContents']
              : ['generateContent', 'streamGenerateContent', 'countTokens'],
          })),
        },
        undefined,
        JSON_CT,
      );
      return;
    }
    sendError(ex.res, 404, `Method ${method} ${path} is not found for this stand-in.`);
  });
}
