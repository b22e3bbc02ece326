import { redactSecrets } from '../log-redaction.js';

/** Redacts and trims provider text to something a client can be shown. */
export function safeProviderText(text: unknown, secrets: readonly string[] = [], maxLength = 500): string | undefined {
  if (typeof text !== 'string' || text.length === 0) return undefined;
  const clean = redactSecrets(text, secrets);
  return clean.length > maxLength ? `${clean.slice(0, maxLength)}…` : clean;
}
