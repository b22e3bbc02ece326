/**
 * What a memory adapter throws when its backend fails or refuses to start. The message is
 * safe to log: it never carries credentials or upstream bodies beyond a short, scrubbed
 * reason. It is not client-safe; the pipeline decides what a client sees.
 */
/** A page cursor the store does not know (not one it gave out): the client's mistake, not an outage. */
export class InvalidCursorError extends Error {
  constructor() {
    super('cursor: not a cursor this server gave out');
    this.name = 'InvalidCursorError';
  }
}

export class MemoryStoreError extends Error {
  /** The upstream HTTP status when one is known. */
  readonly status: number | undefined;
  /** The backend answered, and refuses this configuration (a dimension or metric mismatch): retrying cannot help. */
  readonly refusal: boolean;

  constructor(message: string, options?: { status?: number | undefined; refusal?: boolean }) {
    super(message);
    this.name = 'MemoryStoreError';
    this.status = options?.status;
    this.refusal = options?.refusal ?? false;
  }
}
