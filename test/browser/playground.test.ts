/**
 * The playground in a real browser: Debian's Chromium driven by playwright-core against a real
 * gateway whose model is the OpenAI stand-in (paced, so Stop lands mid-stream) and whose
 * realtime provider is the OpenAI Realtime stand-in, with Chromium's fake microphone playing
 * a 440 Hz tone. Screenshots go to test-results/screenshots/.
 */
import { copyFileSync, mkdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { buildPlayground, chromiumExecutable, launchChromium, screenshotPath, sineWav, toneFrequency } from '../helpers/browser.js';
import { startGateway, type TestGateway } from '../helpers/gateway.js';
import { TEST_JWT_SECRET } from '../helpers/tokens.js';
import { waitFor } from '../helpers/wait.js';
import { startOpenAIStandin, type RecordedRequest, type Standin } from '../standins/openai-standin.js';
import { startRealtimeStandin, type RealtimeStandin } from '../standins/realtime-standin.js';

const OPENAI_KEY = 'sk-playground-standin-0123456789';
const REALTIME_KEY = 'sk-playground-realtime-0123456789';
const PASSWORD = 'correct horse battery';
const EMAIL = 'playground-user@example.com';
const PROTOCOLS = ['sse', 'ai-chat', 'ai-namespace', 'ai-sdk'] as const;
/** The tone of the fake microphone, and the rate it is captured at. */
const MIC_HZ = 440;
/** What the realtime stand-in answers: 3 chunks of 100 ms of a 300 Hz tone at 24 kHz. */
const REPLY_AUDIO = Array.from({ length: 3 }, (_, chunk) => {
  const b = Buffer.alloc(4800);
  for (let i = 0; i < 2400; i++) b.writeInt16LE(Math.round(Math.sin((2 * Math.PI * 300 * (chunk * 2400 + i)) / 24_000) * 8000), i * 2);
  return b;
});

function lastUserText(req: RecordedRequest): string {
  const messages = (req.body as { messages?: { role: string; content: unknown }[] } | undefined)?.messages ?? [];
  const last = [...messages].reverse().find((m) => m.role === 'user');
  return typeof last?.content === 'string' ? last.content : JSON.stringify(last?.content ?? '');
}

/** A slow reply has 150 numbered parts at 40 ms each: six seconds, plenty to stop part-way. */
const SLOW_PARTS = 150;

// One browser session, as a user goes through it: signed in once, then chat, stop, rename,
// memories, keys, voice, a narrow screen, and signing out last (each step needs the ones before).
describe('the playground in Chromium', { shuffle: false }, () => {
  let openai: Standin;
  let realtime: RealtimeStandin;
  let gw: TestGateway;
  let browser: Browser;
  let context: BrowserContext;
  let page: Page;
  let mic: ReturnType<typeof sineWav>;
  const pageErrors: string[] = [];

  beforeAll(async () => {
    chromiumExecutable(); // first: a missing browser fails at once, with the command that installs it
    buildPlayground();
    mic = sineWav({ hz: MIC_HZ, seconds: 4, rate: 48_000 });
    openai = await startOpenAIStandin({
      apiKey: OPENAI_KEY,
      script: (req) => {
        const text = lastUserText(req);
        if (text.includes('slowly')) {
          return { tokens: ['Here is a long answer, streamed so it can be stopped:', ...Array.from({ length: SLOW_PARTS }, (_, i) => ` part${i + 1}`)], delayMs: 40 };
        }
        return { tokens: ['Sure!', ' You', ' said:', ` “${text}”`, ' —', ' streamed', ' by', ' the', ' OpenAI', ' stand-in.'], delayMs: 60, firstTokenDelayMs: 120 };
      },
    });
    realtime = await startRealtimeStandin({ apiKey: REALTIME_KEY, script: { audioChunks: REPLY_AUDIO, transcript: ['Hello', ' from', ' the stand-in'], delayMs: 20 } });
    gw = await startGateway({
      JWT_SECRET: TEST_JWT_SECRET,
      OPENAI_API_KEY: OPENAI_KEY,
      OPENAI_BASE_URL: openai.url,
      DEFAULT_MODEL: 'gpt-4o-mini',
      REALTIME_PROVIDER: 'openai',
      REALTIME_API_KEY: REALTIME_KEY,
      REALTIME_URL: realtime.url,
      RATE_LIMIT_USER: '1000',
      RATE_LIMIT_ANON: '1000',
    });
    browser = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--use-file-for-fake-audio-capture=${mic.path}`]);
    context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
    page = await context.newPage();
    page.on('pageerror', (err) => pageErrors.push(err.message));
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await gw?.destroy();
    await openai?.close();
    await realtime?.close();
    mic?.cleanup();
  });

  const messageBox = () => page.getByRole('textbox', { name: 'Message', exact: true });
  const replies = () => page.getByRole('log', { name: 'Messages' }).locator('article[data-role="assistant"]');
  const pageToken = () => page.evaluate(() => sessionStorage.getItem('playground.token'));
  const api = async (path: string, init: RequestInit = {}) => {
    const token = await pageToken();
    return fetch(`${gw.url}${path}`, { ...init, headers: { ...(init.headers ?? {}), Authorization: `Bearer ${token}` } });
  };

  it('serves the built files from memory: types, ETag revalidation, security headers, nothing outside the build', async () => {
    const index = await fetch(`${gw.url}/`);
    expect(index.status).toBe(200);
    expect(index.headers.get('content-type')).toBe('text/html; charset=utf-8');
    expect(index.headers.get('cache-control')).toBe('no-cache');
    expect(index.headers.get('x-content-type-options')).toBe('nosniff');
    expect(index.headers.get('content-security-policy')).toMatch(/default-src 'self'.*script-src 'self'/);
    // A form sent before the script takes it over (slow network, script blocked) must not put
    // the password in the URL: every form posts.
    const html = await index.clone().text();
    const forms = [...html.matchAll(/<form\b[^>]*>/g)].map((m) => m[0]);
    expect(forms.length).toBeGreaterThanOrEqual(3);
    for (const form of forms) expect(form).toMatch(/\bmethod="post"/);
    const etag = index.headers.get('etag')!;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await fetch(`${gw.url}/`, { headers: { 'If-None-Match': etag } });
    expect(again.status).toBe(304);
    expect(await again.text()).toBe('');

    const types: Record<string, string> = { 'main.js': 'text/javascript', 'pcm16-worklet.js': 'text/javascript', 'playground.css': 'text/css' };
    for (const [file, type] of Object.entries(types)) {
      const res = await fetch(`${gw.url}/playground/${file}`);
      expect(res.status, file).toBe(200);
      expect(res.headers.get('content-type')).toContain(type);
      expect(res.headers.get('etag')).toMatch(/^"/);
    }
    // The Socket.IO browser client comes from the gateway's own Socket.IO server.
    const client = await fetch(`${gw.url}/socket.io/socket.io.min.js`);
    expect(client.status).toBe(200);
    expect(await client.text()).toContain('io');

    // Only the build's own files: no folders, no traversal, no source.
    for (const path of ['/playground/nope.js', '/playground/..%2Fpackage.json', '/playground/%2e%2e/%2e%2e/package.json', '/playground/', '/playground/main.ts', '/playground/index.html/x']) {
      const res = await fetch(`${gw.url}${path}`);
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { code: string }).code).toBe('NOT_FOUND');
    }

    const off = await startGateway({ PLAYGROUND_ENABLED: 'false' });
    try {
      expect((await fetch(`${off.url}/`)).status).toBe(404);
      expect((await fetch(`${off.url}/playground/main.js`)).status).toBe(404);
    } finally {
      await off.destroy();
    }
  });

  it('serves the page with its scripts, and shows a wrong password as words with the code', async () => {
    const res = await page.goto(`${gw.url}/`);
    expect(res?.status()).toBe(200);
    expect(res?.headers()['content-security-policy']).toContain("script-src 'self'");
    await expect.poll(() => page.evaluate(() => typeof (window as { io?: unknown }).io)).toBe('function');

    await page.getByLabel('Email').fill('nobody@example.com');
    await page.getByLabel('Password').fill('wrong password here');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await expect.poll(() => page.getByRole('alert').textContent()).toMatch(/^UNAUTHORIZED: \S/);
  });

  it('signs up, lists the models, and streams a reply on each of the four protocols', async () => {
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign up' }).click();
    await page.getByText(`Signed in as ${EMAIL}`).waitFor();

    // GET /v1/models with the token as Bearer fills the picker.
    await expect.poll(() => page.getByLabel('Model', { exact: true }).locator('option').allTextContents()).toEqual(['Server default', 'gpt-4o-mini (openai)', 'local (ai-chat-gateway)']);
    await page.getByLabel('Model', { exact: true }).selectOption('gpt-4o-mini');

    for (const protocol of PROTOCOLS) {
      const before = openai.requests.length;
      await page.getByLabel('Protocol').selectOption(protocol);
      await messageBox().fill(`hello over ${protocol}`);
      await page.getByRole('button', { name: 'Send' }).click();
      const reply = page.locator(`article[data-protocol="${protocol}"][data-finish-reason]`);
      await reply.waitFor({ timeout: 10_000 });
      expect(await reply.getAttribute('data-finish-reason')).toBe('stop');
      expect(await reply.locator('.text').textContent()).toBe(`Sure! You said: “hello over ${protocol}” — streamed by the OpenAI stand-in.`);
      // Usage (or /ai's total) and the time to the first token, per reply.
      const meta = (await reply.locator('.meta').textContent()) ?? '';
      expect(meta).toMatch(/gpt-4o-mini/);
      expect(meta).toMatch(/\d+ (in \+ \d+ out )?tokens/);
      expect(meta).toMatch(/first token \d+ ms/);
      expect(Number(await reply.getAttribute('data-ttft-ms'))).toBeGreaterThanOrEqual(100);
      const upstream = openai.requests.slice(before).find((r) => r.path === '/v1/chat/completions');
      expect((upstream?.body as { model?: string }).model).toBe('gpt-4o-mini');
    }
    await page.screenshot({ path: screenshotPath('four-protocols') });

    // One conversation, continued by every protocol, listed under its first message.
    await expect.poll(() => page.getByRole('list', { name: 'Conversations' }).locator('li').count()).toBe(1);
    const res = await api(`/api/v2/conversations/${await currentConversation(page)}/messages`);
    const { messages } = (await res.json()) as { messages: { role: string; content: string }[] };
    expect(messages.map((m) => m.role)).toEqual(['user', 'assistant', 'user', 'assistant', 'user', 'assistant', 'user', 'assistant']);
  });

  it('stops mid-stream on each protocol, and the partial reply is still there after a reload', async () => {
    const partials = new Map<string, string>();
    for (const protocol of PROTOCOLS) {
      const aborts = openai.aborts;
      await page.getByLabel('Protocol').selectOption(protocol);
      await messageBox().fill(`please answer slowly (${protocol})`);
      await page.getByRole('button', { name: 'Send' }).click();
      const reply = replies().last();
      await expect.poll(() => reply.locator('.text').textContent(), { timeout: 10_000 }).toContain(' part5');
      if (protocol === 'sse') {
        await page.screenshot({ path: screenshotPath('playground-mid-stream') });
        if (process.env.UPDATE_DOCS_SCREENSHOT) {
          mkdirSync('docs/images', { recursive: true });
          copyFileSync(screenshotPath('playground-mid-stream'), 'docs/images/playground.png');
        }
      }
      await page.getByRole('button', { name: 'Stop' }).click();
      await expect.poll(() => reply.getAttribute('data-finish-reason')).toMatch(/^(stopped|aborted)$/);
      // Socket.IO stops (`/ai`'s chat:stop, by conversation for ai:chat) are `stopped`; an aborted fetch is `aborted`.
      expect(await reply.getAttribute('data-finish-reason')).toBe(protocol === 'sse' || protocol === 'ai-sdk' ? 'aborted' : 'stopped');
      const shown = (await reply.locator('.text').textContent()) ?? '';
      expect(shown).not.toContain(`part${SLOW_PARTS}`);
      expect(await reply.locator('.meta').textContent()).toContain('partial reply kept');
      partials.set(protocol, shown);
      // The stop reached the model: the stand-in saw its stream abandoned.
      await expect.poll(() => openai.aborts, { timeout: 5_000 }).toBeGreaterThan(aborts);
      await expect.poll(() => page.getByRole('button', { name: 'Send' }).isEnabled()).toBe(true);
    }

    // Stored before the reload: every partial reply, with how it ended.
    const id = await currentConversation(page);
    await waitFor(async () => {
      const res = await api(`/api/v2/conversations/${id}/messages`);
      const { messages } = (await res.json()) as { messages: { role: string; finishReason?: string }[] };
      return messages.filter((m) => m.finishReason === 'stopped' || m.finishReason === 'aborted').length === PROTOCOLS.length;
    }, 5_000);

    await page.reload();
    await page.getByText(`Signed in as ${EMAIL}`).waitFor();
    await expect.poll(() => replies().count()).toBe(PROTOCOLS.length * 2);
    const stoppedReplies = replies().filter({ hasText: 'partial reply kept' });
    expect(await stoppedReplies.count()).toBe(PROTOCOLS.length);
    const texts = await stoppedReplies.locator('.text').allTextContents();
    PROTOCOLS.forEach((protocol, i) => {
      // What the page had shown is what was kept (the server may have kept a few parts more that were still on their way).
      expect(texts[i]!.startsWith(partials.get(protocol)!.trimEnd())).toBe(true);
      expect(texts[i]).not.toContain(`part${SLOW_PARTS}`);
    });
    await page.screenshot({ path: screenshotPath('after-reload') });
  });

  it('renames a conversation and deletes another', async () => {
    await page.getByRole('button', { name: 'New chat' }).click();
    await page.getByLabel('Protocol').selectOption('sse');
    await messageBox().fill('a conversation to delete');
    await page.getByRole('button', { name: 'Send' }).click();
    await page.locator('article[data-finish-reason="stop"]').waitFor();
    const list = page.getByRole('list', { name: 'Conversations' });
    await expect.poll(() => list.locator('li').count()).toBe(2);

    await page.getByRole('button', { name: 'Delete a conversation to delete' }).click();
    await page.getByRole('button', { name: 'Confirm delete a conversation to delete' }).click();
    await expect.poll(() => list.locator('li').count()).toBe(1);
    expect(await page.getByRole('log', { name: 'Messages' }).locator('article').count()).toBe(0);

    await list.getByRole('button', { name: /^Rename / }).click();
    await page.getByRole('textbox', { name: 'New title' }).fill('Protocol tour');
    await list.getByRole('button', { name: 'Save' }).click();
    await list.getByRole('button', { name: 'Protocol tour', exact: true }).click();
    await expect.poll(() => page.locator('#conversation-title').textContent()).toBe('Protocol tour');
    await expect.poll(() => replies().count()).toBe(PROTOCOLS.length * 2);
  });

  it("lists the user's memories, forgets one, and opts out", async () => {
    await page.getByText('Memory', { exact: true }).click();
    const memories = page.getByRole('list', { name: 'Memories' });
    const forget = memories.getByRole('button', { name: /^Forget memory: / });
    // Memories are written after each turn through a queue: refresh until they are there.
    await waitFor(async () => {
      await page.getByRole('button', { name: 'Refresh memories' }).click();
      return (await forget.count()) >= 2;
    }, 10_000, 250);
    const before = await forget.count();
    const victim = await memories.locator('li').first().getAttribute('data-memory-id');
    await forget.first().click();
    await expect.poll(() => forget.count()).toBe(before - 1);
    const listed = (await (await api('/api/v2/memory?limit=200')).json()) as { memories: { id: string }[] };
    expect(listed.memories.map((m) => m.id)).not.toContain(victim);

    await page.getByLabel('Remember my conversations').uncheck();
    await expect.poll(async () => ((await (await api('/api/v2/memory/settings')).json()) as { enabled: boolean }).enabled).toBe(false);
    await page.getByLabel('Remember my conversations').check();
    await expect.poll(async () => ((await (await api('/api/v2/memory/settings')).json()) as { enabled: boolean }).enabled).toBe(true);
    await page.screenshot({ path: screenshotPath('memory') });
  });

  it('creates an API key (shown once) that works, lists it, and revokes it', async () => {
    await page.getByText('API keys', { exact: true }).click();
    await page.getByLabel('Key name').fill('playground ci');
    await page.getByLabel('Allowed models').fill('gpt-4o-mini');
    await page.getByRole('button', { name: 'Create key' }).click();
    const shown = page.getByRole('status', { name: 'New API key' });
    await expect.poll(() => shown.textContent()).toMatch(/^gk_/);
    const key = (await shown.textContent())!;
    const keys = page.getByRole('list', { name: 'API keys' });
    await expect.poll(() => keys.locator('li').filter({ hasText: 'playground ci' }).count()).toBe(1);
    await page.screenshot({ path: screenshotPath('api-keys') });

    // The key is a token of its own, limited to its model.
    const models = await fetch(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
    expect(models.status).toBe(200);
    expect(((await models.json()) as { data: { id: string }[] }).data.map((m) => m.id)).toEqual(['gpt-4o-mini']);
    // The list never shows the secret.
    expect(await keys.textContent()).not.toContain(key);

    await page.getByRole('button', { name: 'Revoke key playground ci' }).click();
    await page.getByRole('button', { name: 'Confirm revoke key playground ci' }).click();
    await expect.poll(() => keys.locator('li').filter({ hasText: 'playground ci' }).count()).toBe(0);
    expect(await shown.isVisible()).toBe(false);
    const refused = await fetch(`${gw.url}/v1/models`, { headers: { Authorization: `Bearer ${key}` } });
    expect(refused.status).toBe(401);
  });

  it('runs a voice turn: microphone to PCM16 24 kHz over realtime-audio, the reply played back', async () => {
    const audioBefore = realtime.audio.length;
    const framesBefore = realtime.frames.length;
    await page.getByRole('button', { name: 'Start voice' }).click();
    const status = page.getByRole('status').filter({ hasText: 'Voice:' });
    await expect.poll(() => status.getAttribute('data-state'), { timeout: 10_000 }).toBe('recording');
    // About a second of the fake microphone.
    await expect.poll(async () => Number(await status.getAttribute('data-sent-bytes')), { timeout: 10_000 }).toBeGreaterThanOrEqual(48_000);
    await page.getByRole('button', { name: 'Stop voice and send' }).click();
    await expect.poll(() => status.getAttribute('data-state'), { timeout: 10_000 }).toBe('idle');

    // Upstream: the GA session, PCM16 bytes, then commit and response.create.
    const types = realtime.frames.slice(framesBefore).map((f) => (typeof f.event === 'string' ? f.event : f.event.type));
    expect(types[0]).toBe('session.update');
    expect(types.slice(-2)).toEqual(['input_audio_buffer.commit', 'response.create']);
    const update = realtime.frames[framesBefore]!.event as { session: { audio: { input: { format: unknown } } } };
    expect(update.session.audio.input.format).toEqual({ type: 'audio/pcm', rate: 24_000 });
    const chunks = realtime.audio.slice(audioBefore);
    expect(chunks.length).toBeGreaterThan(0);
    for (const chunk of chunks) expect(chunk.length % 2).toBe(0);
    const pcm = Buffer.concat(chunks);
    expect(pcm.length).toBe(Number(await status.getAttribute('data-sent-bytes')));
    // Resampled, not just relabelled: the 440 Hz tone is still 440 Hz when read at 24 kHz.
    const hz = toneFrequency(pcm, 24_000);
    expect(hz).toBeDefined();
    expect(hz!).toBeGreaterThan(MIC_HZ * 0.95);
    expect(hz!).toBeLessThan(MIC_HZ * 1.05);

    // Back: every audio byte arrived as binary and was played, and the transcript shown.
    const replyBytes = REPLY_AUDIO.reduce((n, b) => n + b.length, 0);
    await expect.poll(async () => Number(await status.getAttribute('data-received-bytes'))).toBe(replyBytes);
    await expect.poll(async () => Number(await status.getAttribute('data-played-ms')), { timeout: 5_000 }).toBeGreaterThanOrEqual(290);
    await expect.poll(() => page.getByLabel('Voice transcript').textContent()).toContain('Assistant: Hello from the stand-in');
    // Every panel open, nothing sticks out sideways.
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    await page.screenshot({ path: screenshotPath('voice') });
  });

  it('shows a voice turn refused by a gateway without a realtime provider as words with the code', async () => {
    const bare = await startGateway({ JWT_SECRET: TEST_JWT_SECRET });
    const other = await context.newPage();
    try {
      await other.goto(`${bare.url}/`);
      await expect.poll(() => other.evaluate(() => typeof (window as { io?: unknown }).io)).toBe('function');
      await other.getByRole('button', { name: 'Start voice' }).click();
      await expect.poll(() => other.getByRole('alert').textContent(), { timeout: 10_000 }).toMatch(/^REALTIME_UNAVAILABLE: \S/);
      const status = other.getByRole('status').filter({ hasText: 'Voice:' });
      await expect.poll(() => status.getAttribute('data-state')).toBe('idle');
      expect(await other.getByRole('button', { name: 'Start voice' }).isEnabled()).toBe(true);
    } finally {
      await other.close();
      await bare.destroy();
    }
  });

  it('fits a narrow screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.reload();
    await page.getByText(`Signed in as ${EMAIL}`).waitFor();
    expect(await horizontalOverflow(page)).toBeLessThanOrEqual(0);
    const send = await page.getByRole('button', { name: 'Send' }).boundingBox();
    expect(send!.x + send!.width).toBeLessThanOrEqual(390);
    await page.screenshot({ path: screenshotPath('narrow'), fullPage: true });
    await page.setViewportSize({ width: 1280, height: 860 });
  });

  it('signs out and back in', async () => {
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    expect(await pageToken()).toBeNull();
    expect(await page.getByRole('list', { name: 'Conversations' }).locator('li').count()).toBe(0);
    await page.getByLabel('Email').fill(EMAIL);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText(`Signed in as ${EMAIL}`).waitFor();
    await expect.poll(() => page.getByRole('list', { name: 'Conversations' }).locator('li').count()).toBe(1);
    expect(pageErrors).toEqual([]);
  });
});

/** Pixels the page is wider than its window (0 or less: no sideways scrolling). */
function horizontalOverflow(page: Page): Promise<number> {
  return page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
}

async function currentConversation(page: Page): Promise<string> {
  const id = /^#\/c\/(.+)$/.exec(await page.evaluate(() => location.hash))?.[1];
  if (!id) throw new Error('no conversation in the URL');
  return id;
}
