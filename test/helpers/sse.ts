/** Reads an SSE response into its parsed `data:` payloads, the way seed 002's client does (but frame-safe). */
export async function readSse(res: Response): Promise<Record<string, unknown>[]> {
  const events: Record<string, unknown>[] = [];
  const text = await res.text();
  for (const frame of text.split('\n\n')) {
    for (const line of frame.split('\n')) {
      if (line.startsWith('data: ')) events.push(JSON.parse(line.slice(6)) as Record<string, unknown>);
    }
  }
  return events;
}

export function postChat(baseUrl: string, body: unknown, headers: Record<string, string> = {}, signal?: AbortSignal): Promise<Response> {
  return fetch(`${baseUrl}/api/v2/ai/chat/stream`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

export function contentOf(events: Record<string, unknown>[]): string {
  return events
    .filter((e) => typeof e.content === 'string')
    .map((e) => e.content as string)
    .join('');
}
