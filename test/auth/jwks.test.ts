import { createServer, type Server } from 'node:http';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

const REALTIME_KEY = 'sk-realtime-jwks-test-0123456789';

/** An external identity provider: a JWKS endpoint on loopback, with its private key held by the test. */
describe('external identity provider (JWT_JWKS_URL)', () => {
  let jwksServer: Server;
  let gw: TestGateway;
  let privateKey: CryptoKey;
  let publicJwkJson: string;
  let jwksHits = 0;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
    publicJwkJson = JSON.stringify(jwk);
    jwksServer = createServer((_req, res) => {
      jwksHits++;
      res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const addr = jwksServer.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      JWT_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
      JWT_JWKS_ISSUER: 'https://idp.example',
      JWT_JWKS_AUDIENCE: 'chat-app',
    });
  });
  afterAll(async () => {
    await gw.destroy();
    await new Promise((r) => jwksServer.close(r));
  });

  const idpToken = (claims: { iss?: string; aud?: string; exp?: string | number } = {}) =>
    new SignJWT({ email: 'ext@example.com' })
      .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
      .setSubject('idp-user-7')
      .setIssuer(claims.iss ?? 'https://idp.example')
      .setAudience(claims.aud ?? 'chat-app')
      .setIssuedAt()
      .setExpirationTime(claims.exp ?? '10m')
      .sign(privateKey);

  const me = (token: string) => fetch(`${gw.url}/api/v2/auth/me`, { headers: { Authorization: `Bearer ${token}` } });

  it('accepts a token signed by the provider, as a user namespaced apart from local ones', async () => {
    const res = await me(await idpToken());
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ user: { id: 'ext:idp-user-7', email: null, name: null, createdAt: null } });
    expect(jwksHits).toBeGreaterThan(0);
  });

  it('refuses a wrong issuer, a wrong audience, an expired token', async () => {
    for (const token of [await idpToken({ iss: 'https://evil.example' }), await idpToken({ aud: 'other' }), await idpToken({ exp: Math.floor(Date.now() / 1000) - 120 })]) {
      const res = await me(token);
      expect(res.status).toBe(401);
    }
  });

  it('refuses algorithm confusion: an HS256 token keyed with the provider’s public key', async () => {
    const forged = await new SignJWT({})
      .setProtectedHeader({ alg: 'HS256', kid: 'k1' })
      .setSubject('idp-user-7')
      .setIssuer('https://idp.example')
      .setAudience('chat-app')
      .setExpirationTime('10m')
      .sign(new TextEncoder().encode(publicJwkJson));
    expect((await me(forged)).status).toBe(401);
  });
});

/**
 * Engine.IO ends every upgrade it does not serve that has written nothing within a second. A
 * /v1/realtime upgrade still checking its token against a slow identity provider (a cold JWKS
 * cache) must get its answer, not a reset.
 */
describe('a /v1/realtime upgrade whose token takes over a second to check', () => {
  const DELAY_MS = 1500;
  let jwksServer: Server;
  let standin: RealtimeStandin;
  let gw: TestGateway;
  let privateKey: CryptoKey;

  beforeAll(async () => {
    const pair = await generateKeyPair('RS256', { extractable: true });
    privateKey = pair.privateKey;
    const jwk = { ...(await exportJWK(pair.publicKey)), kid: 'slow', alg: 'RS256', use: 'sig' };
    jwksServer = createServer((_req, res) => {
      setTimeout(() => res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ keys: [jwk] })), DELAY_MS);
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    const addr = jwksServer.address();
    const port = typeof addr === 'object' && addr ? addr.port : 0;
    standin = await startRealtimeStandin({ apiKey: REALTIME_KEY });
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      JWT_JWKS_URL: `http://127.0.0.1:${port}/.well-known/jwks.json`,
      JWT_JWKS_ISSUER: 'https://idp.example',
      JWT_JWKS_AUDIENCE: 'chat-app',
      REALTIME_PROVIDER: 'openai',
      REALTIME_API_KEY: REALTIME_KEY,
      REALTIME_URL: standin.url,
    });
  });
  afterAll(async () => {
    await gw.destroy();
    await standin.close();
    await new Promise((r) => jwksServer.close(r));
  });

  it('is answered (101, then session.created) once the identity provider answers, not reset after a second', async () => {
    const token = await new SignJWT({})
      .setProtectedHeader({ alg: 'RS256', kid: 'slow' })
      .setSubject('idp-voice-user')
      .setIssuer('https://idp.example')
      .setAudience('chat-app')
      .setExpirationTime('10m')
      .sign(privateKey);
    const started = Date.now();
    const ws = new WebSocket(`${gw.url.replace('http', 'ws')}/v1/realtime`, { headers: { Authorization: `Bearer ${token}` } });
    const first = new Promise<Record<string, unknown>>((resolve, reject) => {
      ws.once('message', (data) => resolve(JSON.parse(data.toString()) as Record<string, unknown>));
      ws.once('error', reject);
    });
    expect(await first).toMatchObject({ type: 'session.created' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(DELAY_MS - 50);
    const closed = new Promise((r) => ws.once('close', r));
    ws.close();
    await closed;
  });
});
