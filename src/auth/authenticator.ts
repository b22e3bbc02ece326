import type { Principal } from '../chat/principal.js';
import { AppError } from '../errors.js';
import type { AnonymousSessions } from './anonymous-sessions.js';
import { isApiKeyToken, type ApiKeys } from './api-keys.js';
import type { SessionRegistry } from './session-registry.js';
import type { TokenService } from './token-service.js';
import { pickToken, type TokenSources } from './token-sources.js';

export interface AuthenticatorOptions {
  tokens: TokenService;
  required: boolean;
  anonymous: AnonymousSessions;
  /** Sign-in sessions; without it (Workers on per-isolate memory) tokens are not revocable. */
  sessions?: SessionRegistry | undefined;
  /** Gateway API keys (`gk_…`), accepted wherever a token is. */
  apiKeys?: ApiKeys | undefined;
}

/**
 * Turns the token sources of a request or socket into a principal. One module for HTTP
 * and Socket.IO, so a rule holds on every entry point: a present-but-bad token is an error,
 * never anonymous; a revoked one (logout, password change, deleted account, revoked API key)
 * is bad; and AUTH_REQUIRED refuses anonymous use. A gateway API key is a token like a JWT:
 * whatever source it comes from, it stands for its user.
 */
export class Authenticator {
  constructor(private readonly options: AuthenticatorOptions) {}

  get required(): boolean {
    return this.options.required;
  }

  get anonymous(): AnonymousSessions {
    return this.options.anonymous;
  }

  /** Throws UNAUTHORIZED; `details.reason` is `missing` when no token came and one is required (the socket refusals tell the two apart). */
  async authenticate(sources: TokenSources, ip: string): Promise<Principal> {
    const picked = pickToken(sources);
    if (picked.kind === 'malformed') throw new AppError('UNAUTHORIZED', `Invalid token: malformed ${picked.from}`);
    if (picked.kind === 'none') {
      if (this.options.required) throw new AppError('UNAUTHORIZED', 'Authentication required', { details: { reason: 'missing' } });
      return { userId: null, ip, anonymousId: this.options.anonymous.read(sources.cookie) };
    }
    // Keys are told apart by their prefix, which no JWT (base64url JSON, `eyJ…`) can start with.
    if (this.options.apiKeys && isApiKeyToken(picked.token)) return this.options.apiKeys.authenticate(picked.token, ip);
    // verify() throws nothing but UNAUTHORIZED AppErrors.
    const verified = await this.options.tokens.verify(picked.token);
    const { sessions } = this.options;
    if (verified.sessionId && sessions && !(await sessions.isActive(verified.sessionId, verified.userId))) {
      throw new AppError('UNAUTHORIZED', 'Invalid token: signed out or account deleted');
    }
    return { userId: verified.userId, ip, anonymousId: null, sessionId: verified.sessionId ?? null };
  }
}
