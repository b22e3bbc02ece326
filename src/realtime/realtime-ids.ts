import { randomUUID } from 'node:crypto';

/** An id in the style of the Realtime protocol's (`event_…`, `resp_…`, `item_…`). */
export function newId(prefix: string): string {
  return `${prefix}_${randomUUID().replace(/-/g, '').slice(0, 22)}`;
}
