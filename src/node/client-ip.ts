/** `::ffff:127.0.0.1` and `127.0.0.1` are one client. */
export function normaliseIp(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}
