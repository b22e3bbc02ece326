import { createServer, type Server } from 'node:http';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';

/**
 * docs/errors.md, BAD_REQUEST: "403: creating API keys while API_KEYS_MAX_PER_USER=0; changing the
 * password, deleting the account or creating keys as a user of an external identity provider".
 */
describe('a user of the external identity provider on the account routes', () => {
  let jwks: Server;
  let gw: TestGateway;
  let token: string;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    jwks = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })));
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const port = (jwks.address() as { port: number }).port;
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      JWT_JWKS_URL: `http://127.0.0.1:${port}/jwks.json`,
      JWT_JWKS_ISSUER: 'https://idp.example',
      JWT_JWKS_AUDIENCE: 'chat-app',
    });
    token = await new SignJWT({ email: 'ext@example.com' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setSubject('idp-user-1')
      .setIssuer('https://idp.example')
      .setAudience('chat-app')
      .setIssuedAt()
      .setExpirationTime('10m')
      .sign(pair.privateKey);
  });
  afterAll(async () => {
    await gw.destroy();
    await new Promise((r) => jwks.close(r));
  });

  const call = (method: string, path: string, body?: unknown) =>
    fetch(`${gw.url}${path}`, {
      method,
      headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it('changing the password: 403 as documented', async () => {
    const res = await call('POST', '/api/v2/auth/password', { currentPassword: 'whatever1', newPassword: 'whatever2' });
    expect(res.status).toBe(403);
  });

  it('deleting the account: 403 as documented', async () => {
    const res = await call('DELETE', '/api/v2/auth/me', { password: 'whatever1' });
    expect(res.status).toBe(403);
  });
});
