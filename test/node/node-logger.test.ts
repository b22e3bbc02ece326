/**
 * The Node entry's logger hides secrets wherever a log entry may carry them: top-level fields,
 * headers, any object directly in the entry, errors (their own fields), child loggers' bindings,
 * the bound loggers the core uses, and the pretty format. The caller's objects stay as they were.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createNodeLogger } from '../../src/node/node-logger.js';
import { withBindings, createConsoleLogger } from '../../src/logger.js';
import { REDACTED, redactLogEntry } from '../../src/log-redaction.js';

function capture() {
  const lines: string[] = [];
  return { lines, stream: { write: (s: string) => void lines.push(s) } };
}

const SECRET = 'sk-live-0123456789abcdef';

describe('the Node logger hides secrets', () => {
  it("in an error's message and stack, its causes' included: a provider's error text that echoes a key", () => {
    const out = capture();
    const log = createNodeLogger({ logLevel: 'info', logPretty: false }, false, out.stream);
    const upstream = new Error('401 Incorrect API key provided: sk-wrong-SECRET-0042. You can find your API key at …');
    const err = new Error('The OpenAI model provider rejected the request (HTTP 401)', { cause: upstream });
    log.error({ err }, 'chat turn failed');
    expect(out.lines).toHaveLength(1);
    expect(out.lines[0]).not.toContain('sk-wrong-SECRET');
    const line = JSON.parse(out.lines[0]!) as { err: { message: string; stack: string } };
    expect(line.err.message).toContain(`Incorrect API key provided: ${REDACTED}`);
    expect(line.err.stack).toContain('caused by');
    expect(line.err.stack).not.toContain('sk-wrong');
  });

  it('in the entry, in its headers, and in any object directly in it', () => {
    const out = capture();
    const log = createNodeLogger({ logLevel: 'info', logPretty: false }, false, out.stream);
    const entry = {
      token: SECRET,
      password: SECRET,
      apiKey: SECRET,
      headers: { authorization: `Bearer ${SECRET}`, cookie: `anon_session=${SECRET}`, accept: 'text/plain' },
      req: { method: 'POST', headers: { authorization: `Bearer ${SECRET}`, Cookie: SECRET, 'user-agent': 'ua' } },
      provider: { name: 'openai', apiKey: SECRET },
      user: { id: 'u1', password: SECRET, token: SECRET },
      usage: { inputTokens: 3, outputTokens: 5 },
      list: [{ token: 'arrays are not searched' }],
    };
    const before = JSON.stringify(entry);
    log.info(entry, 'hello');
    expect(out.lines).toHaveLength(1);
    expect(out.lines[0]).not.toContain(SECRET);
    const line = JSON.parse(out.lines[0]!) as Record<string, unknown>;
    expect(line).toMatchObject({
      msg: 'hello',
      token: REDACTED,
      password: REDACTED,
      apiKey: REDACTED,
      headers: { authorization: REDACTED, cookie: REDACTED, accept: 'text/plain' },
      req: { method: 'POST', headers: { authorization: REDACTED, Cookie: REDACTED, 'user-agent': 'ua' } },
      provider: { name: 'openai', apiKey: REDACTED },
      user: { id: 'u1', password: REDACTED, token: REDACTED },
      usage: { inputTokens: 3, outputTokens: 5 },
    });
    // Nothing of the caller's was changed.
    expect(JSON.stringify(entry)).toBe(before);
  });

  it('in an error, after it is serialized, with its message and stack kept', () => {
    const out = capture();
    const log = createNodeLogger({ logLevel: 'info', logPretty: false }, false, out.stream);
    const err = Object.assign(new Error('upstream refused'), { token: SECRET, headers: { authorization: `Bearer ${SECRET}` }, status: 401 });
    log.error({ err }, 'failed');
    log.error(err as unknown as object, 'as the entry itself');
    expect(out.lines.join('')).not.toContain(SECRET);
    const first = JSON.parse(out.lines[0]!) as { err: { stack: string } };
    expect(first.err).toMatchObject({ type: 'Error', message: 'upstream refused', token: REDACTED, headers: { authorization: REDACTED }, status: 401 });
    expect(first.err.stack).toContain('upstream refused');
    expect((err as unknown as { token: string }).token).toBe(SECRET);
    expect(JSON.parse(out.lines[1]!)).toMatchObject({ err: { message: 'upstream refused', token: REDACTED } });
  });

  it('in bound loggers, child loggers and the pretty format; an entry without secrets is written as given', async () => {
    const out = capture();
    const log = createNodeLogger({ logLevel: 'info', logPretty: false }, false, out.stream);
    withBindings(log, { conversationId: 'c1', token: SECRET }).info({ usage: { inputTokens: 1 } }, 'bound');
    log.child({ component: 'x', apiKey: SECRET }).warn({ ok: true }, 'child');
    log.info({ conversationId: 'c2', model: 'local', usage: { inputTokens: 19, outputTokens: 58 }, ms: 3 }, 'plain');
    expect(out.lines).toHaveLength(3);
    expect(out.lines.join('')).not.toContain(SECRET);
    expect(JSON.parse(out.lines[0]!)).toMatchObject({ conversationId: 'c1', token: REDACTED, usage: { inputTokens: 1 }, msg: 'bound' });
    expect(JSON.parse(out.lines[1]!)).toMatchObject({ component: 'x', apiKey: REDACTED, ok: true, msg: 'child' });
    expect(JSON.parse(out.lines[2]!)).toMatchObject({ conversationId: 'c2', model: 'local', usage: { inputTokens: 19, outputTokens: 58 }, ms: 3, msg: 'plain' });

    let pretty = '';
    const stream = new Writable({
      write(chunk: Buffer, _enc, done) {
        pretty += chunk.toString();
        done();
      },
    });
    const prettyLog = createNodeLogger({ logLevel: 'info', logPretty: true }, false, stream);
    prettyLog.info({ headers: { authorization: `Bearer ${SECRET}` }, user: { password: SECRET } }, 'pretty line');
    await new Promise((r) => setImmediate(r));
    expect(pretty).toContain('pretty line');
    expect(pretty).toContain(REDACTED);
    expect(pretty).not.toContain(SECRET);
  });

  it('the console logger (Workers) hides the same secrets', () => {
    const lines: string[] = [];
    const original = console.log;
    console.log = (line: string) => void lines.push(line);
    try {
      createConsoleLogger('info', { token: SECRET }).info({ req: { headers: { authorization: `Bearer ${SECRET}` } }, apiKey: SECRET }, 'worker');
    } finally {
      console.log = original;
    }
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain(SECRET);
    expect(JSON.parse(lines[0]!)).toMatchObject({ token: REDACTED, apiKey: REDACTED, req: { headers: { authorization: REDACTED } }, msg: 'worker' });
  });

  it('allocates nothing for an entry that holds no secret', () => {
    const entry = { conversationId: 'c', usage: { inputTokens: 1, outputTokens: 2 }, headers: { accept: '*/*' }, ms: 1 };
    expect(redactLogEntry(entry)).toBe(entry);
    const err = { message: 'x' };
    expect(redactLogEntry({ err: { token: SECRET } }, 'err').err).toEqual({ token: SECRET });
    expect(redactLogEntry(err)).toBe(err);
  });
});
