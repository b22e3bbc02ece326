import { argon2idAsync } from '@noble/hashes/argon2.js';
import { ARGON2_PARAMS, type PasswordHasher } from './password-hasher.js';

const { memoryKiB: m, passes: t, lanes: p, hashBytes, saltBytes } = ARGON2_PARAMS;
const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

/**
 * Argon2id in pure JS (@noble/hashes), for Workers, where native modules cannot run. On Node
 * the native hasher is used instead: this one holds the event loop for each hash.
 */
export class NoblePasswordHasher implements PasswordHasher {
  async hash(password: string): Promise<string> {
    const salt = crypto.getRandomValues(new Uint8Array(saltBytes));
    const hash = await argon2idAsync(password, salt, { m, t, p, dkLen: hashBytes });
    return `$argon2id$v=19$m=${m},t=${t},p=${p}$${b64(salt)}$${b64(hash)}`;
  }

  async verify(password: string, stored: string): Promise<boolean> {
    const match = PHC.exec(stored);
    if (!match) return false;
    const [, sm, st, sp, salt, hash] = match as unknown as [string, string, string, string, string, string];
    // Refuse parameters that would cost far more than ours: a stored hash is data, not trusted code.
    if (Number(sm) > 4 * m || Number(st) > 8 || Number(sp) > 8) return false;
    const expected = unb64(hash);
    const actual = await argon2idAsync(password, unb64(salt), { m: Number(sm), t: Number(st), p: Number(sp), dkLen: expected.length });
    return constantTimeEqual(actual, expected);
  }
}

export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function b64(bytes: Uint8Array): string {
  let s = '';
  for (const byte of bytes) s += String.fromCharCode(byte);
  return btoa(s).replace(/=+$/, '');
}

function unb64(text: string): Uint8Array {
  const bin = atob(text.padEnd(Math.ceil(text.length / 4) * 4, '='));
  return Uint8Array.from(bin, (c) => c.charCodeAt(0));
}
