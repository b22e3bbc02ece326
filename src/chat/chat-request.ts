import { z } from 'zod';

/** Control characters, bidirectional overrides and isolates, zero-width characters and the BOM. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNSHOWN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u200b-\u200f\u202a-\u202e\u2060-\u2069\ufeff]/g;

/**
 * A name a person gave something, as it may be shown and stored: well-formed Unicode (a lone
 * surrogate becomes U+FFFD), without control, bidirectional-override or zero-width characters
 * (which hide or reorder what is shown), whitespace runs as one space, trimmed.
 */
export function cleanLabel(text: string): string {
  return (text as string & { toWellFormed(): string }).toWellFormed().replace(UNSHOWN, '').replace(/\s+/g, ' ').trim();
}

/** A label field: cleaned (cleanLabel), then 1 to `max` characters. */
export function labelSchema(max: number) {
  return z.string().transform(cleanLabel).pipe(z.string().min(1, 'must not be empty').max(max));
}

/** Conversation ids a client may choose (PROTOCOLS.md section 0). */
export const conversationIdSchema = z.string().regex(/^[A-Za-z0-9_-]{1,128}$/, 'must be 1-128 characters of A-Z, a-z, 0-9, _ and -');

/** The fields every chat protocol shares, validated at the edge with the server's size cap. */
export function chatFieldsSchema(maxMessageChars: number) {
  return {
    message: z
      .string({ error: (i) => (i.input === undefined ? 'is required' : 'must be a string') })
      .max(maxMessageChars, `must be at most ${maxMessageChars} characters`)
      .refine((s) => s.trim().length > 0, 'must not be empty'),
    model: z.string().min(1).max(128).optional(),
    temperature: z.number().min(0).max(2).optional(),
    maxTokens: z.number().int().min(1).max(1_000_000).optional(),
  };
}

/** Turns a zod failure into one readable sentence that names the field. */
export function describeIssues(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((i) => (i.path.length ? `${i.path.join('.')} ${i.message}` : i.message))
    .join('; ');
}
