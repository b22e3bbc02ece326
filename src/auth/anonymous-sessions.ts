import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readCookie } from './token-sources.js';
import { BoundedMap } from '../bounded-map.js';

/** The cookie that tells one anonymous client from another on the same IP. */
export const ANONYMOUS_COOKIE = 'anon_session';
/** A year: an anonymous client keeps its conversations as long as it keeps the cookie. */
export const ANONYMOUS_COOKIE_MAX_AGE = 365 * 86_400;

/** The Set-Cookie value that hands a client its anonymous-session cookie (HTTP responses and Socket.IO handshakes alike). */
export function anonymousCookieLine(value: string, options: { secure: boolean; sameSite: 'Strict' | 'Lax' | 'None' }): string {
  return `${ANONYMOUS_COOKIE}=${value}; Max-Age=${ANONYMOUS_COOKIE_MAX_AGE}; Path=/; HttpOnly; SameSite=${options.sameSite}${options.secure ? '; Secure' : ''}`;
}

const ID_BYTES = 16;
const ID_PATTERN = /^[A-Za-z0-9_-]{22}$/;
const SIGNATURE_PATTERN = /^[A-Za-z0-9_-]{43}$/;

/** Cookies issued ahead, and signatures checked, in batches (see {@link AnonymousSessions}). */
const ISSUE_BATCH = 64;
const VERIFIED_MAX = 4096;

/**
 * Signed anonymous-session ids: `<id>.<HMAC-SHA256(id)>`, base64url, keyed by a key derived
 * from the server secret. A forged or altered cookie reads as no cookie at all.
 *
 * `node:crypto`'s HMAC (Workers has it too, under `nodejs_compat`): synchronous, where a Web
 * Crypto `sign` costs 30-130 µs of job scheduling on Node. One HMAC alone costs 4-5 µs in a
 * loop but 40-50 µs in a busy server, whose caches no longer hold OpenSSL's code and tables
 * between two requests; 64 in a row cost ~10 µs each there. So new cookies are made 64 at a
 * time, and a cookie already checked is recognised by its value (the last 4,096 checked).
 */
export class AnonymousSessions {
  readonly #key: Buffer;
  readonly #ready: { id: string; value: string }[] = [];
  /** Cookie values that passed the check, and their ids; in insertion order (the oldest goes first). */
  readonly #verified = new BoundedMap<string, string>(VERIFIED_MAX);

  constructor(secret: Uint8Array) {
    // Domain separation: this key signs nothing but anonymous-session ids.
    this.#key = Buffer.concat([Buffer.from('ai-chat-gateway anonymous session\0'), secret]);
  }

  /** The id in a valid cookie, or null (absent, malformed, or not signed by this server). */
  read(cookieHeader: string | undefined): string | null {
    const value = readCookie(cookieHeader, ANONYMOUS_COOKIE);
    if (!value || value.length > 128) return null;
    const known = this.#verified.get(value);
    if (known !== undefined) return known;
    const dot = value.indexOf('.');
    if (dot <= 0) return null;
    const id = value.slice(0, dot);
    const signature = value.slice(dot + 1);
    if (!ID_PATTERN.test(id) || !SIGNATURE_PATTERN.test(signature)) return null;
    const expected = this.#sign(id);
    const given = Buffer.from(signature, 'base64url');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) return null;
    this.#verified.set(value, id);
    return id;
  }

  /** A new id and the cookie value that carries it. */
  issue(): { id: string; value: string } {
    if (this.#ready.length === 0) {
      for (let i = 0; i < ISSUE_BATCH; i++) {
        const id = randomId();
        this.#ready.push({ id, value: `${id}.${this.#sign(id).toString('base64url')}` });
      }
    }
    return this.#ready.pop()!;
  }

  #sign(id: string): Buffer {
    return createHmac('sha256', this.#key).update(id).digest();
  }
}

/** Random bytes are drawn 4 KiB at a time: one `randomBytes` call per id costs more than the HMAC. */
let pool = Buffer.alloc(0);
let offset = 0;
function randomId(): string {
  if (offset + ID_BYTES > pool.length) {
    pool = randomBytes(4096);
    offset = 0;
  }
  const id = pool.toString('base64url', offset, offset + ID_BYTES);
  pool.fill(0, offset, (offset += ID_BYTES)); // handed out once, then forgotten
  return id;
}
