/**
 * The CORS_ORIGIN rule, shared by HTTP and Socket.IO: a listed origin, or any origin when
 * the list holds "*" (reflected, since browsers refuse "*" with credentials).
 */
export function originAllowed(allowed: readonly string[]): (origin: string) => boolean {
  const any = allowed.includes('*');
  const set = new Set(allowed);
  return (origin) => any || set.has(origin);
}
