import { REDACTED } from '../log-redaction.js';

/**
 * Provider text (error messages, close reasons) may be shown to clients, but some providers
 * echo credentials: OpenAI's "Incorrect API key provided: sk-abc***xyz" names part of the key.
 * Exact secrets are replaced first, then anything shaped like a key or a bearer token.
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

/** Redacts and trims provider text to something a client can be shown. */
export function safeProviderText(text: unknown, secrets: readonly string[] = [], maxLength = 500): string | undefined {
  if (typeof text !== 'string' || text.length === 0) return undefined;
  const clean = redactSecrets(text, secrets);
  return clean.length > maxLength ? `${clean.slice(0, maxLength)}…` : clean;
}
