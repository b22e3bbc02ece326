/** What a hidden secret reads as in a log entry. */
export const REDACTED = '[redacted]';

/** Fields that hold a secret wherever they appear (see {@link redactLogEntry}). */
const SECRET_FIELDS = ['token', 'password', 'apiKey'] as const;
/** Headers that carry credentials, as Node names them (lower case) and as a caller may write them. */
const SECRET_HEADERS = ['authorization', 'cookie', 'Authorization', 'Cookie'] as const;

type Entry = Record<string, unknown>;

function isPlainContainer(value: unknown): value is Entry {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/**
 * One object with its own secret fields hidden: `token`, `password`, `apiKey`, and its
 * `headers` object's `authorization` and `cookie`. The object itself when it holds none; a copy
 * (its own enumerable fields, which is what JSON would show of it) otherwise.
 */
export function redactLogFields<T>(value: T): T {
  if (!isPlainContainer(value)) return value;
  let out: Entry = value;
  for (const field of SECRET_FIELDS) {
    if (value[field] !== undefined && Object.hasOwn(value, field)) {
      if (out === value) out = { ...value };
      out[field] = REDACTED;
    }
  }
  const headers = value.headers;
  if (isPlainContainer(headers)) {
    let hidden: Entry = headers;
    for (const name of SECRET_HEADERS) {
      if (headers[name] !== undefined && Object.hasOwn(headers, name)) {
        if (hidden === headers) hidden = { ...headers };
        hidden[name] = REDACTED;
      }
    }
    if (hidden !== headers) {
      if (out === value) out = { ...value };
      out.headers = hidden;
    }
  }
  return out as T;
}

/**
 * A log entry with its secrets hidden: a `token`, `password` or `apiKey` field, or the
 * `authorization` or `cookie` of a `headers` object, in the entry itself or in any object
 * directly in it (an error, a request, a provider's options). Deeper objects are not searched.
 * `skip` names a field left to its serializer (pino's `err`, redacted by the serializer once
 * it has made the error a plain object).
 *
 * The same rule pino's `redact` paths said (`token`, `*.token`, `headers.authorization`,
 * `*.headers.authorization`, ...), at a fraction of the cost: pino runs every object-valued
 * field of every entry through its wildcard redactor (~10 µs a line, two lines a chat turn at
 * the default level), where this reads a few fields and, for the usual entry that holds no
 * secret, copies and allocates nothing. The caller's objects are never changed.
 */
export function redactLogEntry<T extends object>(entry: T, skip?: string): T {
  let out = redactLogFields(entry as Entry);
  for (const key in out) {
    if (key === skip || !Object.hasOwn(out, key)) continue;
    const value = out[key];
    if (!isPlainContainer(value)) continue;
    const hidden = redactLogFields(value);
    if (hidden !== value) {
      if (out === (entry as Entry)) out = { ...out };
      out[key] = hidden;
    }
  }
  return out as T;
}

/**
 * Provider text (error messages, close reasons) may be shown to clients and is logged, but some
 * providers echo credentials: OpenAI's "Incorrect API key provided: sk-abc***xyz" names part of
 * the key. Exact secrets are replaced first, then anything shaped like a key or a bearer token.
 */
const KEY_SHAPES: readonly RegExp[] = [
  /\bsk-[A-Za-z0-9_*.-]{4,}/g, // OpenAI keys, also in their masked form
  /\bAIza[0-9A-Za-z_-]{10,}/g, // Google API keys
  /\bBearer\s+[^\s"']+/gi,
  /([?&](?:key|access_token)=)[^&\s"']+/gi, // keys carried in a URL (Gemini Live)
];

export function redactSecrets(text: string, secrets: readonly string[] = []): string {
  let out = text;
  for (const secret of secrets) {
    if (secret.length > 0 && out.includes(secret)) out = out.split(secret).join(REDACTED);
  }
  for (const shape of KEY_SHAPES) {
    out = out.replace(shape, (match: string, prefix?: unknown) => (typeof prefix === 'string' ? `${prefix}${REDACTED}` : REDACTED));
  }
  return out;
}
