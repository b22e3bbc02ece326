import { hash, verify } from '@node-rs/argon2';
import { ARGON2_PARAMS, type PasswordHasher } from '../auth/password-hasher.js';

const OPTIONS = {
  memoryCost: ARGON2_PARAMS.memoryKiB,
  timeCost: ARGON2_PARAMS.passes,
  parallelism: ARGON2_PARAMS.lanes,
  outputLen: ARGON2_PARAMS.hashBytes,
};

/**
 * Native Argon2id (@node-rs/argon2, prebuilt binaries from the npm registry). Each hash runs
 * on libuv's thread pool, so the event loop keeps serving while it works; the same PHC
 * strings as the pure-JS hasher.
 */
export class NativePasswordHasher implements PasswordHasher {
  hash(password: string): Promise<string> {
    return hash(password, OPTIONS);
  }

  async verify(password: string, stored: string): Promise<boolean> {
    try {
      return await verify(stored, password);
    } catch {
      return false; // a malformed stored hash is a failed sign-in, not a server error
    }
  }
}
