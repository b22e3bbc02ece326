import type { Principal } from '../chat/principal.js';
import type { Logger } from '../logger.js';
import type { HeadEntry } from './http-helpers.js';

/** Typed per-request variables set by middleware. */
export interface AppEnv {
  Variables: {
    requestId: string;
    logger: Logger;
    /** The client address (X-Forwarded-For only when TRUST_PROXY is on). */
    clientIp: string;
    /** Set by the `authenticate` middleware on routes that take a token. */
    principal: Principal;
    /** Response headers set so far (see `setHeader`): what a hand-written stream head is made of. */
    head: HeadEntry[];
    /** Set by `inArrivalOrder` (a chat route's first step): the arrival gate's pass the request was let through in. */
    arrivedInPass: number;
    /** Set by the not-found handler: no route matched (metrics label the request `unmatched`). */
    unmatched: boolean;
  };
}
