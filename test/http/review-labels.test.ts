import { describe, expect, it } from 'vitest';
import { gatewayForSuite } from '../helpers/gateway.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';

describe('labels a client gives', () => {
  const gw = gatewayForSuite({ JWT_SECRET: TEST_JWT_SECRET, MEMORY_ENABLED: 'false' });

  it('a registered display name is cleaned like every other label (no bidi override or control character)', async () => {
    const res = await fetch(`${gw().url}/api/v2/auth/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ email: 'name@example.com', password: 'correct horse battery', name: 'Ada\u202Egnp.exe\u0007\ud800' }),
    });
    expect(res.status).toBe(201);
    const { user } = (await res.json()) as { user: { name: string } };
    expect(user.name.includes("\u202E") || user.name.includes("\u0007")).toBe(false);
  });
});
