import { AppError } from '../errors.js';

/**
 * Argon2id password hashing in the standard PHC string format (so parameters travel with
 * each hash). Node uses a native implementation on libuv's thread pool; Workers the pure-JS
 * one. Both produce and accept the same strings.
 */
export interface PasswordHasher {
  hash(password: string): Promise<string>;
  /** False for a wrong password or a malformed stored hash; never throws for either. */
  verify(password: string, stored: string): Promise<boolean>;
}

/** OWASP's recommended minimum for Argon2id: 19 MiB, 2 passes, 1 lane. */
export const ARGON2_PARAMS = { memoryKiB: 19_456, passes: 2, lanes: 1, hashBytes: 32, saltBytes: 16 } as const;

export interface HashLimits {
  /** Hashes computed at once (each holds 19 MiB and a CPU core for tens of milliseconds). */
  concurrency: number;
  /** Hashes that may wait for a slot; past this, sign-ins are refused at once with RATE_LIMIT. */
  queue: number;
  /** A sign-in that waited this long for a slot is refused rather than left hanging. */
  maxWaitMs: number;
}

/**
 * Bounds the work sign-ins can cause: at most `concurrency` hashes run, at most `queue` wait,
 * and a full queue refuses with RATE_LIMIT instead of growing memory and latency for everyone.
 */
export class BoundedPasswordHasher implements PasswordHasher {
  #running = 0;
  readonly #waiting: { start: () => void; timer: ReturnType<typeof setTimeout> }[] = [];

  constructor(
    private readonly inner: PasswordHasher,
    private readonly limits: HashLimits,
  ) {}

  /** Hashes running and waiting, for metrics and tests. */
  get load(): { running: number; waiting: number } {
    return { running: this.#running, waiting: this.#waiting.length };
  }

  hash(password: string): Promise<string> {
    return this.#run(() => this.inner.hash(password));
  }

  verify(password: string, stored: string): Promise<boolean> {
    return this.#run(() => this.inner.verify(password, stored));
  }

  async #run<T>(work: () => Promise<T>): Promise<T> {
    await this.#slot();
    try {
      return await work();
    } finally {
      this.#running--;
      this.#waiting.shift()?.start();
    }
  }

  #slot(): Promise<void> {
    if (this.#running < this.limits.concurrency) {
      this.#running++;
      return Promise.resolve();
    }
    if (this.#waiting.length >= this.limits.queue) return Promise.reject(busy());
    return new Promise<void>((resolve, reject) => {
      const entry = {
        start: () => {
          clearTimeout(entry.timer);
          this.#running++;
          resolve();
        },
        timer: setTimeout(() => {
          const i = this.#waiting.indexOf(entry);
          if (i >= 0) this.#waiting.splice(i, 1);
          reject(busy());
        }, this.limits.maxWaitMs),
      };
      this.#waiting.push(entry);
    });
  }
}

function busy(): AppError {
  return new AppError('RATE_LIMIT', 'Too many sign-ins are in progress; retry in a few seconds', {
    details: { retryAfterSeconds: 2 },
  });
}
