import { describe, expect, it } from 'vitest';
import { addressKey } from '../../src/ratelimit/address-key.js';

describe('addressKey: the client a per-address limit counts', () => {
  it('an IPv4 address is itself', () => {
    expect(addressKey('203.0.113.10', 56)).toBe('203.0.113.10');
    expect(addressKey('203.0.113.44', 56)).not.toBe(addressKey('203.0.113.10', 56));
  });

  it('an IPv6 address is its /56: every address of one customer network is one client, the next network another', () => {
    expect(addressKey('2001:db8:1:2::10', 56)).toBe('2001:db8:1::/56');
    expect(addressKey('2001:db8:1:ff:ffff:ffff:ffff:ffff', 56)).toBe('2001:db8:1::/56');
    expect(addressKey('2001:db8:1:100::1', 56)).toBe('2001:db8:1:100::/56');
    // The prefix need not fall on a group's edge.
    expect(addressKey('2001:db8:abcd:12ff::1', 60)).toBe('2001:db8:abcd:12f0::/60');
    expect(addressKey('2001:db8:abcd:12ff::1', 64)).toBe('2001:db8:abcd:12ff::/64');
  });

  it('spellings of one address are one client', () => {
    const keys = ['2001:DB8:0:0:1::1', '2001:db8::1:0:0:1', '2001:0db8:0000:0000:0001:0000:0000:0001', 'fe80::1%eth0'].map((a) => addressKey(a, 128));
    expect(keys.slice(0, 3)).toEqual(['2001:db8::1:0:0:1', '2001:db8::1:0:0:1', '2001:db8::1:0:0:1']);
    expect(keys[3]).toBe('fe80::1%eth0');
    expect(addressKey('fe80::1%eth0', 56)).toBe('fe80::/56');
  });

  it('an IPv4-mapped IPv6 address counts as its IPv4 address, never as one network for every IPv4 client', () => {
    expect(addressKey('::ffff:203.0.113.10', 56)).toBe('203.0.113.10');
    expect(addressKey('::ffff:cb00:712c', 56)).toBe('203.0.113.44');
    expect(addressKey('::ffff:203.0.113.10', 56)).not.toBe(addressKey('::ffff:203.0.113.44', 56));
  });

  it('128 counts every IPv6 address alone', () => {
    expect(addressKey('2001:db8:1:2::10', 128)).toBe('2001:db8:1:2::10');
    expect(addressKey('2001:db8:1:2::99', 128)).toBe('2001:db8:1:2::99');
  });

  it('what is not an address is counted as it is', () => {
    for (const odd of ['unknown', 'evil', 'not:an:address', '::g', '']) expect(addressKey(odd, 56)).toBe(odd);
  });
});
