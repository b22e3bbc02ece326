import type { Principal } from '../chat/principal.js';
import type { Logger } from '../logger.js';

/** Typed per-request variables set by middleware. */
export interface AppEnv {
  Variables: {
    requestId: string;
    logger: Logger;
    /** The client address (X-Forwarded-For only when TRUST_PROXY is on). */
    clientIp: string;
    /** Set by the `authenticate` middleware on routes that take a token. */
    principal: Principal;
  };
}
