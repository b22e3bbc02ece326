import type { MiddlewareHandler } from 'hono';
import type { Services } from '../services.js';
import type { AppEnv } from './app-env.js';

/**
 * A chat route's first step: the request waits for its pass in the arrival gate (see
 * StartGate), then runs its token check, body, admission and turn start together. In a burst
 * the first requests reach their model while later ones still wait, instead of every request
 * being checked before any starts. The route hands the pass to `prepare` (`arrivedInPass`),
 * which otherwise waits for one itself.
 */
export function inArrivalOrder(services: Services): MiddlewareHandler<AppEnv> {
  const gate = services.arrivalGate;
  return async (c, next) => {
    const wait = gate.admit();
    if (wait) await wait;
    c.set('arrivedInPass', gate.pass);
    await next();
  };
}
