import { z } from 'zod';

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
