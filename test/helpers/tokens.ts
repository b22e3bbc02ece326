import { SignJWT, UnsecuredJWT } from 'jose';

export const TEST_JWT_SECRET = 'test-secret-for-the-gateway-suite-0123456789';
const key = (secret: string) => new TextEncoder().encode(secret);

/** Tokens of every bad kind, for a user id that exists, so only the token's flaw can refuse them. */
export async function badTokens(userId: string): Promise<Record<string, string>> {
  const base = () => new SignJWT({}).setSubject(userId).setIssuer('ai-chat-gateway').setAudience('ai-chat-gateway').setIssuedAt();
  const good = await base().setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key(TEST_JWT_SECRET));
  const [h, p, s] = good.split('.') as [string, string, string];
  const flipped = s.slice(0, -2) + (s.at(-2) === 'A' ? 'B' : 'A') + s.at(-1);
  const otherSub = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), sub: 'someone-else' })).toString('base64url');
  return {
    expired: await base().setProtectedHeader({ alg: 'HS256' }).setIssuedAt(Math.floor(Date.now() / 1000) - 7200).setExpirationTime(Math.floor(Date.now() / 1000) - 3600).sign(key(TEST_JWT_SECRET)),
    tampered: `${h}.${otherSub}.${s}`,
    badSignature: `${h}.${p}.${flipped}`,
    wrongKey: await base().setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key('another-secret-that-is-long-enough-123456')),
    algNone: new UnsecuredJWT({ sub: userId, iss: 'ai-chat-gateway', aud: 'ai-chat-gateway' }).setExpirationTime('1h').encode(),
    noExpiry: await base().setProtectedHeader({ alg: 'HS256' }).sign(key(TEST_JWT_SECRET)),
    wrongAudience: await base().setAudience('other-app').setProtectedHeader({ alg: 'HS256' }).setExpirationTime('1h').sign(key(TEST_JWT_SECRET)),
    malformed: 'not.a.jwt',
    garbage: 'abc',
  };
}
