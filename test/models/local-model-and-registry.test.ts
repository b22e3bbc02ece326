import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { TurnAbort } from '../../src/chat/turn-abort.js';
import { memoryBlock } from '../../src/models/language-model.js';
import { LocalModel } from '../../src/models/local-model.js';
import { createModelRegistry, routeModel } from '../../src/models/model-registry.js';
import { countMessageTokens, countTokens, splitTokens } from '../../src/models/tokenizer.js';
import type { ModelStreamPart } from '../../src/models/language-model.js';
import { modelParts } from '../helpers/turns.js';

const msgs = [
  { role: 'system' as const, content: 'sys' },
  { role: 'user' as const, content: 'Hello there' },
];

async function run(model: LocalModel, opts: { maxTokens?: number; signal?: AbortSignal } = {}) {
  const parts: ModelStreamPart[] = [];
  await modelParts(model, { messages: msgs, signal: opts.signal ?? new AbortController().signal, maxTokens: opts.maxTokens }, (p) => parts.push(p));
  return parts;
}

describe('local model', () => {
  const model = new LocalModel({ tokenDelayMs: 0, contextTokens: 8192 });

  it('is deterministic, says what it is and answers from what it received, token by token', async () => {
    const a = await run(model);
    const b = await run(model);
    expect(a).toEqual(b);
    const text = a.flatMap((p) => (p.type === 'text-delta' ? [p.text] : [])).join('');
    expect(text).toContain('offline development model');
    expect(text).toContain('You said: "Hello there"');
    const deltas = a.filter((p) => p.type === 'text-delta');
    expect(deltas.length).toBe(countTokens(text));
    expect(a.at(-1)).toEqual({ type: 'finish', finishReason: 'stop', usage: { inputTokens: countMessageTokens(msgs), outputTokens: deltas.length } });
  });

  it('mentions recalled memory it was given', async () => {
    const parts = await modelParts(model, { messages: [{ role: 'system', content: memoryBlock(['I like green tea']) }, ...msgs], signal: new AbortController().signal });
    expect(parts.flatMap((p) => (p.type === 'text-delta' ? [p.text] : [])).join('')).toContain('I recall: "I like green tea"');
  });

  it('honours maxTokens with finishReason length', async () => {
    const parts = await run(model, { maxTokens: 4 });
    expect(parts.filter((p) => p.type === 'text-delta')).toHaveLength(4);
    expect(parts.at(-1)).toMatchObject({ finishReason: 'length', usage: { outputTokens: 4 } });
  });

  it('paces tokens and stops on abort with the abort reason', async () => {
    const slow = new LocalModel({ tokenDelayMs: 20, contextTokens: 8192 });
    const controller = new AbortController();
    const reason = new TurnAbort('stop');
    setTimeout(() => controller.abort(reason), 110);
    const started = Date.now();
    const seen: ModelStreamPart[] = [];
    await expect(modelParts(slow, { messages: msgs, signal: controller.signal }, (p) => seen.push(p))).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(400);
    expect(seen.length).toBeGreaterThanOrEqual(2);
    expect(seen.length).toBeLessThanOrEqual(6);
  });

  it('pauses when asked and resumes where it stopped', async () => {
    const paced = new LocalModel({ tokenDelayMs: 5, contextTokens: 8192 });
    const seen: string[] = [];
    const stream = paced.stream({ messages: msgs, signal: new AbortController().signal }, (t) => {
      seen.push(t);
      if (seen.length === 3) stream.pause();
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(seen).toHaveLength(3);
    stream.resume();
    const finish = await stream.done;
    expect(seen.join('')).toContain('You said: "Hello there"');
    expect(finish).toMatchObject({ finishReason: 'stop', usage: { outputTokens: seen.length } });
  });

  it('splitTokens keeps multi-byte characters whole', () => {
    const text = 'naïve 日本語 🙂 done';
    const pieces = splitTokens(text);
    expect(pieces.join('')).toBe(text);
    expect(pieces.every((p) => !p.includes('\uFFFD'))).toBe(true);
  });
});

describe('model routing', () => {
  it('routes names to providers as PROTOCOLS.md section 0 says', () => {
    expect(routeModel('gpt-4o')).toEqual({ provider: 'openai', modelId: 'gpt-4o' });
    expect(routeModel('o3-mini')).toEqual({ provider: 'openai', modelId: 'o3-mini' });
    expect(routeModel('gemini-2.0-flash')).toEqual({ provider: 'gemini', modelId: 'gemini-2.0-flash' });
    expect(routeModel('local')).toEqual({ provider: 'local', modelId: 'local' });
    expect(routeModel('openai:llama3.2')).toEqual({ provider: 'openai', modelId: 'llama3.2' });
    expect(routeModel('anthropic:claude')).toBeUndefined();
    expect(routeModel('llama3.2')).toBeUndefined();
    expect(routeModel('openai:')).toBeUndefined();
  });

  it('refuses unknown, unconfigured, disallowed and malformed models with INVALID_MODEL', () => {
    const registry = createModelRegistry(loadConfig({ ALLOWED_MODELS: 'local,openai:llama3.2,gpt-4o', OPENAI_BASE_URL: 'http://127.0.0.1:9/v1', DEFAULT_MODEL: 'local' }));
    expect(registry.resolve(undefined).provider).toBe('local');
    expect(registry.resolve('openai:llama3.2').modelId).toBe('llama3.2');
    expect(registry.resolve('gpt-4o').provider).toBe('openai');
    expect(() => registry.resolve('gpt-4o-mini')).toThrow(expect.objectContaining({ code: 'INVALID_MODEL' }));
    expect(() => registry.resolve('gemini-2.0-flash')).toThrow(expect.objectContaining({ code: 'INVALID_MODEL' }));
    expect(() => registry.resolve('bad model name!')).toThrow(expect.objectContaining({ code: 'INVALID_MODEL' }));
    expect(() => registry.resolve('x'.repeat(200))).toThrow(expect.objectContaining({ code: 'INVALID_MODEL' }));
  });

  it('refuses at start-up a default model that cannot be served, naming DEFAULT_MODEL and the fix', () => {
    expect(() => createModelRegistry(loadConfig({ DEFAULT_MODEL: 'gpt-4o' }))).toThrow(/DEFAULT_MODEL=gpt-4o: .*needs the openai provider.*set OPENAI_API_KEY/);
    expect(() => createModelRegistry(loadConfig({ DEFAULT_MODEL: 'gemini-2.5-pro', OPENAI_API_KEY: 'k' }))).toThrow(/set GEMINI_API_KEY/);
    expect(() => createModelRegistry(loadConfig({ ALLOWED_MODELS: 'gpt-4o', OPENAI_API_KEY: 'k' }))).toThrow(/DEFAULT_MODEL=gpt-4o-mini: .*not allowed/);
    // Refused by ALLOWED_MODELS, with its key set: the fix is the list, not a key.
    let message = '';
    try {
      createModelRegistry(loadConfig({ ALLOWED_MODELS: 'gpt-4o', OPENAI_API_KEY: 'k' }));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/add it to ALLOWED_MODELS \(now gpt-4o\)/);
    expect(message).not.toMatch(/OPENAI_API_KEY/);
    // An unknown name: the list of prefixes once, not twice.
    let unknown = '';
    try {
      createModelRegistry(loadConfig({ DEFAULT_MODEL: 'claude-3' }));
    } catch (err) {
      unknown = (err as Error).message;
    }
    expect(unknown.match(/use gpt-\*/g)).toHaveLength(1);
  });

  it('without DEFAULT_MODEL, the default comes from the configured providers', () => {
    expect(createModelRegistry(loadConfig({})).defaultModel).toBe('local');
    expect(createModelRegistry(loadConfig({ OPENAI_API_KEY: 'k' })).defaultModel).toBe('gpt-4o-mini');
    expect(createModelRegistry(loadConfig({ GEMINI_API_KEY: 'k' })).defaultModel).toBe('gemini-2.5-flash');
    expect(createModelRegistry(loadConfig({ OPENAI_API_KEY: 'k', GEMINI_API_KEY: 'k' })).defaultModel).toBe('gpt-4o-mini');
    // An OpenAI-compatible server is asked for its models by the Node entry.
    expect(createModelRegistry(loadConfig({ OPENAI_BASE_URL: 'http://127.0.0.1:9/v1' }), undefined, 'openai:llama3.2').defaultModel).toBe('openai:llama3.2');
  });

  it('with no provider configured, any well-formed model name is answered by the local model, which says so', async () => {
    const registry = createModelRegistry(loadConfig({}));
    const model = registry.resolve('gpt-4');
    expect(model).toMatchObject({ provider: 'local', modelId: 'local' });
    const text = (await run(model as LocalModel)).flatMap((p) => (p.type === 'text-delta' ? [p.text] : [])).join('');
    expect(text).toContain('offline development model answering in place of "gpt-4"');
    expect(text).toContain('Set OPENAI_API_KEY');
    expect(registry.resolve('claude-sonnet').provider).toBe('local');
    expect(() => registry.resolve('bad model name!')).toThrow(expect.objectContaining({ code: 'INVALID_MODEL' }));
    // ALLOWED_MODELS still applies to the name asked for.
    expect(() => createModelRegistry(loadConfig({ ALLOWED_MODELS: 'local' })).resolve('gpt-4')).toThrow(expect.objectContaining({ code: 'INVALID_MODEL' }));
  });

  it('with a real provider configured, the local model does not claim that none is', async () => {
    const registry = createModelRegistry(loadConfig({ OPENAI_API_KEY: 'k' }));
    expect(() => registry.resolve('claude-sonnet')).toThrow(expect.objectContaining({ code: 'INVALID_MODEL' }));
    const text = (await run(registry.resolve('local') as LocalModel)).flatMap((p) => (p.type === 'text-delta' ? [p.text] : [])).join('');
    expect(text).toContain('offline development model (you asked for "local")');
    expect(text).not.toContain('no model provider is configured');
    expect(text).not.toContain('Set OPENAI_API_KEY');
  });
});
