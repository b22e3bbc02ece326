import { readCookie } from './token-sources.js';

/** The cookie that tells one anonymous client from another on the same IP. */
export const ANONYMOUS_COOKIE = 'anon_session';
/** A year: an anonymous client keeps its conversations as long as it keeps the cookie. */
export const ANONYMOUS_COOKIE_MAX_AGE = 365 * 86_400;

const ID_BYTES = 16;
const POOL_SIZE = 64;
const encoder = new TextEncoder();

/**
 * Signed anonymous-session ids: `<id>.<HMAC-SHA256(id)>`, base64url, keyed by a key derived
 * from the server secret. A forged or altered cookie reads as no cookie at all. Web Crypto
 * only, so it runs on Node and Workers alike.
 */
export class AnonymousSessions {
  readonly #key: Promise<CryptoKey>;
  /** Cookie values signed ahead, for callers that must answer synchronously (Socket.IO handshake headers). */
  readonly #ready: string[] = [];
  #refilling = false;

  constructor(secret: Uint8Array) {
    // Domain separation: this key signs nothing but anonymous-session ids.
    const material = new Uint8Array([...encoder.encode('ai-chat-gateway anonymous session\0'), ...secret]);
    this.#key = crypto.subtle.importKey('raw', material, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  }

  /**
   * A fresh signed cookie value right now, or undefined when the pre-signed pool is empty
   * (a burst of new clients: those stay IP-identified until their next connection).
   */
  issueNow(): string | undefined {
    const value = this.#ready.pop();
    if (this.#ready.length < POOL_SIZE / 2) this.#refill();
    return value;
  }

  /** Starts filling the pool of pre-signed values (the Node entry calls this once). */
  warmUp(): void {
    this.#refill();
  }

  #refill(): void {
    if (this.#refilling) return;
    this.#refilling = true;
    void (async () => {
      try {
        while (this.#ready.length < POOL_SIZE) this.#ready.push((await this.issue()).value);
      } finally {
        this.#refilling = false;
      }
    })();
  }

  /** The id in a valid cookie, or null (absent, malformed, or not signed by this server). */
  async read(cookieHeader: string | undefined): Promise<string | null> {
    const value = readCookie(cookieHeader, ANONYMOUS_COOKIE);
    if (!value || value.length > 128) return null;
    const dot = value.indexOf('.');
    if (dot <= 0) return null;
    const id = value.slice(0, dot);
    const signature = fromBase64Url(value.slice(dot + 1));
    if (!/^[A-Za-z0-9_-]{22}$/.test(id) || !signature) return null;
    const ok = await crypto.subtle.verify('HMAC', await this.#key, signature, encoder.encode(id));
    return ok ? id : null;
  }

  /** A new id and the cookie value that carries it. */
  async issue(): Promise<{ id: string; value: string }> {
    const id = toBase64Url(crypto.getRandomValues(new Uint8Array(ID_BYTES)));
    const signature = new Uint8Array(await crypto.subtle.sign('HMAC', await this.#key, encoder.encode(id)));
    return { id, value: `${id}.${toBase64Url(signature)}` };
  }
}

function toBase64Url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function fromBase64Url(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9_-]{43}$/.test(text)) return undefined;
  const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/') + '=');
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
