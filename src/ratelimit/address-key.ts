import ipaddr from 'ipaddr.js';

/**
 * The client a per-address limit counts, from its address: an IPv4 address is itself; an IPv6
 * address is its network of `ipv6Prefix` bits (`2001:db8:12:3400::/56`). One IPv6 customer is
 * given a whole network (a /64 at least, most often a /56 or /48) and can send from any address
 * in it, so a limit per IPv6 address limits nothing: 2^64 addresses are one client. 56, the
 * default, is the size most providers give a home (RIPE-690) and what express-rate-limit
 * keys by; 128 counts every address alone. An IPv4-mapped address (`::ffff:192.0.2.1`, what a
 * dual-stack socket or a proxy may report) counts as its IPv4 address, never as a network: its
 * first 80 bits are the same for every IPv4 client, and a /56 of them would be one bucket for all.
 * Anything that does not parse as an address (a trusted proxy's odd X-Forwarded-For entry,
 * `unknown`) is counted as it is.
 */
export function addressKey(address: string, ipv6Prefix: number): string {
  if (!address.includes(':')) return address;
  let parsed: ipaddr.IPv6;
  try {
    parsed = ipaddr.IPv6.parse(address);
  } catch {
    return address;
  }
  if (parsed.isIPv4MappedAddress()) return parsed.toIPv4Address().toString();
  if (ipv6Prefix >= 128) return parsed.toString();
  const bytes = parsed.toByteArray();
  for (let bit = ipv6Prefix; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return `${ipaddr.fromByteArray(bytes).toString()}/${ipv6Prefix}`;
}
