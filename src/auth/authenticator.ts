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

  /** Throws UNAUTHORIZED. `message` distinguishes a missing token from a bad one for the socket refusals. */
  async authenticate(sources: TokenSources, ip: string): Promise<Principal> {
    const picked = pickToken(sources);
    if (picked.kind === 'malformed') throw new AppError('UNAUTHORIZED', `Invalid token: malformed ${picked.from}`, { details: { reason: 'invalid' } });
    if (picked.kind === 'none') {
      if (this.authRequired) throw new AppError('UNAUTHORIZED', 'Authentication required', { details: { reason: 'missing' } });
      return { userId: null, ip };
    }
    try {
      const verified = await this.tokens.verify(picked.token);
      return { userId: verified.userId, ip };
    } catch (err) {
      if (err instanceof AppError) throw new AppError('UNAUTHORIZED', err.message, { details: { reason: 'invalid' } });
      throw err;
    }
  }
}
