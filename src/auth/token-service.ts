import { SignJWT, createRemoteJWKSet, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { AppError } from '../errors.js';
import { BoundedMap } from '../bounded-map.js';

export interface TokenServiceOptions {
  /** HS256 secret for tokens this server issues. */
  secret: Uint8Array;
  ttlSeconds: number;
  /** Accepted clock difference, bounded so an expired token can't live on. */
  clockSkewSeconds: number;
  issuer: string;
  /** An external identity provider whose tokens are also accepted. */
  jwks?: { url: string; issuer: string; audience: string } | undefined;
}

export interface VerifiedToken {
  userId: string;
  email: string | undefined;
  /** The sign-in session a token of this server names (`sid`); undefined for the identity provider's. */
  sessionId: string | undefined;
  /** `local` for tokens this server signed, `jwks` for the external identity provider's. */
  source: 'local' | 'jwks';
}

const LOCAL_AUDIENCE = 'ai-chat-gateway';
const MAX_CACHED_TOKENS = 4096;
const MAX_CACHED_TOKEN_CHARS = 2048;
/** Asymmetric only: a JWKS key must never be usable as an HMAC secret (algorithm confusion). */
const JWKS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

/**
 * Issues and verifies JWTs with jose. Only HS256 is accepted for this server's own tokens
 * and only asymmetric algorithms for the identity provider's; `alg: none`, a wrong key,
 * a wrong issuer or audience, a missing or past `exp` are all refused.
 */
export class TokenService {
  readonly #jwks: JWTVerifyGetKey | undefined;
  /** Imported once: jose would import a raw secret again on every call (≈ 300 µs on Node). */
  readonly #key: Promise<CryptoKey>;
  /**
   * Tokens already verified, until their `exp`: a client sends the same token with every
   * request, and a signature check costs tens of microseconds of Web Crypto. Bounded in
   * entries and in token size; revocation is not cached here (the session registry checks it).
   */
  readonly #verified = new BoundedMap<string, { token: VerifiedToken; exp: number }>(MAX_CACHED_TOKENS);

  constructor(private readonly options: TokenServiceOptions) {
    this.#jwks = options.jwks ? createRemoteJWKSet(new URL(options.jwks.url), { cooldownDuration: 30_000, timeoutDuration: 5_000 }) : undefined;
    this.#key = crypto.subtle.importKey('raw', new Uint8Array(options.secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']);
  }

  get ttlSeconds(): number {
    return this.options.ttlSeconds;
  }

  /** A token for the user, naming the sign-in session that can revoke it. */
  async issue(user: { id: string; email: string }, sessionId: string): Promise<string> {
    return new SignJWT({ email: user.email, sid: sessionId })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(user.id)
      .setIssuer(this.options.issuer)
      .setAudience(LOCAL_AUDIENCE)
      .setIssuedAt()
      .setExpirationTime(`${this.options.ttlSeconds}s`)
      .sign(await this.#key);
  }

  /** Throws UNAUTHORIZED with a reason safe to show. */
  async verify(token: string): Promise<VerifiedToken> {
    const cached = this.#verified.get(token);
    if (cached) {
      if (Date.now() / 1000 <= cached.exp + this.options.clockSkewSeconds) return cached.token;
      this.#verified.delete(token);
      throw invalid('token expired');
    }
    const { verified, exp } = await this.#verify(token);
    if (token.length <= MAX_CACHED_TOKEN_CHARS) this.#verified.set(token, { token: verified, exp });
    return verified;
  }

  async #verify(token: string): Promise<{ verified: VerifiedToken; exp: number }> {
    if (token.length > 8192 || token.split('.').length !== 3) throw invalid('malformed token');
    const alg = headerAlg(token);
    try {
      if (alg === 'HS256') {
        const { payload } = await jwtVerify(token, await this.#key, {
          algorithms: ['HS256'],
          issuer: this.options.issuer,
          audience: LOCAL_AUDIENCE,
          clockTolerance: this.options.clockSkewSeconds,
          requiredClaims: ['exp', 'sub'],
        });
        if (typeof payload.sid !== 'string' || payload.sid.length > 64) throw invalid('token names no sign-in session; sign in again');
        const verified: VerifiedToken = { userId: subject(payload), email: typeof payload.email === 'string' ? payload.email : undefined, sessionId: payload.sid, source: 'local' };
        return { verified, exp: payload.exp! };
      }
      if (this.#jwks && this.options.jwks && JWKS_ALGORITHMS.includes(alg)) {
        const { payload } = await jwtVerify(token, this.#jwks, {
          algorithms: JWKS_ALGORITHMS,
          issuer: this.options.jwks.issuer,
          audience: this.options.jwks.audience,
          clockTolerance: this.options.clockSkewSeconds,
          requiredClaims: ['exp', 'sub'],
        });
        const verified: VerifiedToken = { userId: `ext:${subject(payload)}`, email: typeof payload.email === 'string' ? payload.email : undefined, sessionId: undefined, source: 'jwks' };
        return { verified, exp: payload.exp! };
      }
      throw invalid(`algorithm ${alg} is not accepted`);
    } catch (err) {
      if (err instanceof AppError) throw err;
      if (err instanceof errors.JWTExpired) throw invalid('token expired');
      if (err instanceof errors.JOSEError) throw invalid('token rejected');
      throw new AppError('UNAUTHORIZED', 'Invalid token', { cause: err });
    }
  }
}

function headerAlg(token: string): string {
  try {
    const header = JSON.parse(atob(token.split('.')[0]!.replace(/-/g, '+').replace(/_/g, '/'))) as { alg?: unknown };
    if (typeof header.alg !== 'string') throw new Error('no alg');
    return header.alg;
  } catch {
    throw invalid('malformed token');
  }
}

function subject(payload: JWTPayload): string {
  if (!payload.sub || payload.sub.length > 256) throw invalid('token has no valid subject');
  return payload.sub;
}

function invalid(reason: string): AppError {
  return new AppError('UNAUTHORIZED', `Invalid token: ${reason}`);
}
