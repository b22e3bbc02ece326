import { describe, expect, it } from 'vitest';
import { gatewayForSuite } from '../helpers/gateway.js';
import { register } from '../helpers/accounts.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';

/**
 * A cross-site HTML form (`<form method=POST action=".../logout-all">`) is a CORS "simple request":
 * the browser sends it without a preflight, with the victim's cookie whenever the cookie's
 * SameSite lets it (COOKIE_SAMESITE=None, or any same-site origin under Lax). Such a request from
 * an origin the origin rule does not allow is refused before any route runs, as the WebSocket
 * upgrades are; the gateway's own page and the allowed origins are not.
 */
describe('CSRF: body-less cookie-authenticated POST routes from a foreign origin', () => {
  const gw = gatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, COOKIE_SAMESITE: 'None', COOKIE_SECURE: 'true', CORS_ORIGIN: 'https://app.example' });

  it('POST /api/v2/auth/logout-all from https://evil.example (form post, cookie only) must not sign the victim out everywhere nor revoke their API keys', async () => {
    const victim = await register(gw().url, 'victim@example.com');
    // The victim has an API key for a tool.
    const created = await fetch(`${gw().url}/api/v2/keys`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${victim.token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'ci' }),
    });
    expect(created.status).toBe(201);
    const { key } = (await created.json()) as { key: string };

    // What a browser sends for a cross-site <form method=POST enctype=application/x-www-form-urlencoded>.
    const forged = await fetch(`${gw().url}/api/v2/auth/logout-all`, {
      method: 'POST',
      headers: { Origin: 'https://evil.example', 'Content-Type': 'application/x-www-form-urlencoded', Cookie: victim.cookie },
      body: '',
    });
    // The victim's session and API key still work, and the forged request was refused.
    const me = await fetch(`${gw().url}/api/v2/auth/me`, { headers: { Authorization: `Bearer ${victim.token}` } });
    expect(me.status).toBe(200);
    const models = await fetch(`${gw().url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
    expect(models.status).toBe(200);
    expect(forged.status).toBe(403);
  });

  it('the allowed origin, and the gateway\'s own page behind a proxy that changed its Host (Sec-Fetch-Site: same-origin), still sign out', async () => {
    const cases: Record<string, string>[] = [{ Origin: 'https://app.example' }, { Origin: 'https://chat.example', 'Sec-Fetch-Site': 'same-origin' }];
    for (const headers of cases) {
      const user = await register(gw().url, `ok-${cases.indexOf(headers)}-${Date.now()}@example.com`);
      const res = await fetch(`${gw().url}/api/v2/auth/logout-all`, { method: 'POST', headers: { ...headers, Cookie: user.cookie } });
      expect(res.status).toBe(200);
      const me = await fetch(`${gw().url}/api/v2/auth/me`, { headers: { Authorization: `Bearer ${user.token}` } });
      expect(me.status).toBe(401);
    }
  });

  it('a forged anonymous chat from a foreign origin is refused with the coded 403 before anything is stored', async () => {
    const res = await fetch(`${gw().url}/api/v2/ai/chat/stream`, {
      method: 'POST',
      headers: { Origin: 'https://evil.example', 'Sec-Fetch-Site': 'cross-site', 'Content-Type': 'text/plain' },
      body: JSON.stringify({ message: 'hi', sessionId: 'forged' }),
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({ error: 'Origin not allowed', code: 'UNAUTHORIZED' });
    expect(res.headers.get('x-request-id')).toBeTruthy();
  });
});
