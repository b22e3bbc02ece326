import type { Principal } from '../chat/principal.js';
import type { Logger } from '../logger.js';

/** Typed per-request variables set by middleware. */
export interface AppEnv {
  Variables: {
    requestId: string;
    logger: Logger;
    principal: Principal;
  };
}
