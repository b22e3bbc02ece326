import type * as GenAI from '@google/genai';

let loading: Promise<typeof GenAI> | undefined;
let loaded: typeof GenAI | undefined;

/**
 * `@google/genai`, loaded on first use: a node without a Gemini key never holds its code
 * (~10 MB of resident memory). Providers start loading it when they are built, at start-up.
 */
export function genai(): Promise<typeof GenAI> {
  return (loading ??= import('@google/genai').then((sdk) => (loaded = sdk)));
}

/** Whether `err` is the SDK's `ApiError` (none can exist before the SDK was loaded). */
export function isGenaiApiError(err: unknown): err is GenAI.ApiError {
  return loaded !== undefined && err instanceof loaded.ApiError;
}
