export interface Account {
  user: { id: string; email: string; name: string | null };
  token: string;
  cookie: string;
}

/** Registers through the real route and returns the token and the cookie the server set. */
export async function register(baseUrl: string, email: string, password = 'correct horse battery', name?: string): Promise<Account> {
  const res = await fetch(`${baseUrl}/api/v2/auth/register`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password, ...(name ? { name } : {}) }),
  });
  if (res.status !== 201) throw new Error(`register ${email}: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { user: Account['user']; token: string };
  const setCookie = res.headers.get('set-cookie') ?? '';
  const cookie = /token=[^;]+/.exec(setCookie)?.[0] ?? '';
  return { ...body, cookie };
}

export const bearer = (a: { token: string }) => ({ Authorization: `Bearer ${a.token}` });

/** Signs in through the real route: a new session, a new token and cookie. */
export async function login(baseUrl: string, email: string, password = 'correct horse battery'): Promise<Account> {
  const res = await fetch(`${baseUrl}/api/v2/auth/login`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ email, password }),
  });
  if (res.status !== 200) throw new Error(`login ${email}: ${res.status} ${await res.text()}`);
  const body = (await res.json()) as { user: Account['user']; token: string };
  const cookie = /token=[^;]+/.exec(res.headers.get('set-cookie') ?? '')?.[0] ?? '';
  return { ...body, cookie };
}
