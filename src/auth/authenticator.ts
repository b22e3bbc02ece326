import type { Principal } from '../chat/principal.js';
import { AppError } from '../errors.js';
import type { TokenService } from './token-service.js';
import { pickToken, type TokenSources } from './token-sources.js';

/**
 * Turns the token sources of a request or socket into a principal. One module for HTTP
 * and Socket.IO, so a rule holds on every entry point: a present-but-bad token is an error,
 * never anonymous, and AUTH_REQUIRED refuses anonymous use.
 */
export class Authenticator {
  constructor(
    private readonly tokens: TokenService,
    private readonly authRequired: boolean,
  ) {}

  get required(): boolean {
    return this.authRequired;
  }

  /** Throws UNAUTHORIZED; `details.reason` is `missing` when no token came and one is required (the socket refusals tell the two apart). */
  async authenticate(sources: TokenSources, ip: string): Promise<Principal> {
    const picked = pickToken(sources);
    if (picked.kind === 'malformed') throw new AppError('UNAUTHORIZED', `Invalid token: malformed ${picked.from}`);
    if (picked.kind === 'none') {
      if (this.authRequired) throw new AppError('UNAUTHORIZED', 'Authentication required', { details: { reason: 'missing' } });
      return { userId: null, ip };
    }
    // verify() throws nothing but UNAUTHORIZED AppErrors.
    const verified = await this.tokens.verify(picked.token);
    return { userId: verified.userId, ip };
  }
}
