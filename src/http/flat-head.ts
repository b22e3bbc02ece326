/**
 * Node builds the head of an HTTP message (`_header`) by appending each header line to a
 * string: a V8 cons string of a few pieces per header, held as long as the request or response
 * lives (for a model stream, its whole reply). Writing it to the socket reads it without joining
 * it. Reading a character joins it in place (V8 flattens a cons string on indexed access): the
 * head then costs one flat string instead of ~100 small objects (≈3 KB a response, ≈2 KB a
 * provider request, measured with 20-header heads) that every young-generation GC copies while
 * the stream runs, and then promotes. Nothing happens if Node stops keeping its head this way.
 */
export function flattenHead(message: object): void {
  const head = (message as { _header?: unknown })._header;
  // Stored, so that an optimising compiler cannot drop the read as unused.
  if (typeof head === 'string' && head.length > 0) lastHeadByte = head.charCodeAt(0);
}

let lastHeadByte = 0;

/** The first byte of the last head flattened (read by tests; keeps the read above observable). */
export function lastFlattenedHeadByte(): number {
  return lastHeadByte;
}
