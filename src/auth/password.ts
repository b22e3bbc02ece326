import { argon2idAsync } from '@noble/hashes/argon2.js';

/**
 * Argon2id with OWASP's recommended minimum (19 MiB, 2 passes, 1 lane), from
 * @noble/hashes: pure JS, so the same code runs on Node and on Workers. Hashes are stored
 * in the standard PHC string format, so their parameters travel with them.
 */
const PARAMS = { m: 19_456, t: 2, p: 1 } as const;
const SALT_BYTES = 16;
const HASH_BYTES = 32;

export async function hashPassword(password: string): Promise<string> {
  const salt = crypto.getRandomValues(new Uint8Array(SALT_BYTES));
  const hash = await argon2idAsync(password, salt, { ...PARAMS, dkLen: HASH_BYTES });
  return `$argon2id$v=19$m=${PARAMS.m},t=${PARAMS.t},p=${PARAMS.p}$${b64(salt)}$${b64(hash)}`;
}

const PHC = /^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const match = PHC.exec(stored);
  if (!match) return false;
  const [, m, t, p, salt, hash] = match as unknown as [string, string, string, string, string, string];
  const expected = unb64(hash);
  const actual = await argon2idAsync(password, unb64(salt), { m: Number(m), t: Number(t), p: Number(p), dkLen: expected.length });
  return constantTimeEqual(actual, expected);
}

/** A hash of nothing in particular, verified against when the email is unknown so both paths cost the same. */
let decoy: Promise<string> | undefined;
export function decoyHash(): Promise<string> {
  decoy ??= hashPassword(crypto.randomUUID());
  return decoy;
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
