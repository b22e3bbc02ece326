import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { ConfigError, configSchema, loadConfig } from '../src/config.js';

describe('config', () => {
  it('has working defaults with an empty environment', () => {
    const c = loadConfig({});
    expect(c.port).toBe(3000);
    expect(c.host).toBe('127.0.0.1');
    // Chosen at start-up from the configured providers.
    expect(c.chat.defaultModel).toBeUndefined();
    // Loopback origins on any port.
    expect(c.corsOrigins).toBeUndefined();
    expect(c.rateLimit).toEqual({ userLimit: 100, anonymousLimit: 20, authLimit: 30, accountLimit: 10, windowMs: 900_000, failClosed: false, prefix: 'gateway', ipv6Prefix: 56 });
    expect(c.models).toMatchObject({ firstByteTimeoutMs: 30_000, idleTimeoutMs: 30_000 });
    expect(c.models.openai.apiKey).toBeUndefined();
  });

  it('blank values (spaces, a tab) mean unset too: read as numbers they would be 0, which switches bounds off', () => {
    const defaults = loadConfig({});
    const c = loadConfig({ PORT: ' ', SOCKET_MAX_CONNECTIONS_PER_IP: '  ', SOCKET_MAX_EVENTS_PER_SECOND: '\t', TURN_STARTS_PER_TICK: ' ', STREAM_RESUME_TTL_S: ' ', API_KEYS_MAX_PER_USER: ' ', SHUTDOWN_GRACE_MS: ' ', OPENAI_API_KEY: '   ' });
    expect(c.port).toBe(defaults.port);
    expect(c.socket.maxConnectionsPerIp).toBe(defaults.socket.maxConnectionsPerIp);
    expect(c.socket.maxEventsPerSecond).toBe(defaults.socket.maxEventsPerSecond);
    expect(c.turnStartsPerTick).toBe(defaults.turnStartsPerTick);
    expect(c.shutdownGraceMs).toBe(defaults.shutdownGraceMs);
    expect(c.auth.apiKeysMaxPerUser).toBe(defaults.auth.apiKeysMaxPerUser);
    expect(c.models.openai.apiKey).toBeUndefined();
    expect(defaults.socket.maxConnectionsPerIp).toBeGreaterThan(0);
  });

  it('parses lists, numbers and booleans; empty strings mean unset', () => {
    const c = loadConfig({ CORS_ORIGIN: 'http://a.test, http://b.test', PORT: '8080', TRUST_PROXY: 'true', OPENAI_API_KEY: '' });
    expect(c.corsOrigins).toEqual(['http://a.test', 'http://b.test']);
    expect(c.port).toBe(8080);
    expect(c.trustProxy).toBe(true);
    expect(c.models.openai.apiKey).toBeUndefined();
  });

  it('names the bad variable and never echoes its value', () => {
    let error: unknown;
    try {
      loadConfig({ PORT: 'seventy', OPENAI_BASE_URL: 'not a url sk-secret' });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message).toMatch(/PORT/);
    expect(message).toMatch(/OPENAI_BASE_URL/);
    expect(message).not.toContain('sk-secret');
  });

  it('CORS_ORIGIN holds origins as browsers send them: a trailing slash or upper case is normalised, a path or another scheme refused (unechoed)', () => {
    expect(loadConfig({ CORS_ORIGIN: 'https://App.example.com/, http://localhost:5173, *' }).corsOrigins).toEqual(['https://app.example.com', 'http://localhost:5173', '*']);
    expect(loadConfig({ CORS_ORIGIN: 'https://a.test:443' }).corsOrigins).toEqual(['https://a.test']);
    for (const bad of ['not a url', 'https://a.test/app', 'ftp://a.test', 'https://a.test/?x=1', 'https://user:pw-secret@a.test']) {
      let message = '';
      try {
        loadConfig({ CORS_ORIGIN: `http://ok.test, ${bad}` });
      } catch (err) {
        message = (err as Error).message;
      }
      expect(message, bad).toMatch(/CORS_ORIGIN: entry 2 is not an origin/);
      expect(message).not.toContain('pw-secret');
    }
  });

  it('whole numbers are decimal digits: 1e3, 0x10 and 12.0 are refused, surrounding blanks are not', () => {
    expect(loadConfig({ PORT: ' 8080 ' }).port).toBe(8080);
    for (const bad of ['1e3', '0x10', '12.0', '8080abc']) expect(() => loadConfig({ PORT: bad }), bad).toThrow(/PORT: must be a whole number in decimal digits/);
  });

  it('RATE_LIMIT_IPV6_PREFIX: 16 to 128 bits', () => {
    expect(loadConfig({ RATE_LIMIT_IPV6_PREFIX: '64' }).rateLimit.ipv6Prefix).toBe(64);
    expect(loadConfig({ RATE_LIMIT_IPV6_PREFIX: '128' }).rateLimit.ipv6Prefix).toBe(128);
    for (const bad of ['8', '129', '56.5', 'all']) expect(() => loadConfig({ RATE_LIMIT_IPV6_PREFIX: bad })).toThrow(/RATE_LIMIT_IPV6_PREFIX/);
  });

  it('LOG_PRETTY: true, false, or unset (then the Node entry asks whether stdout is a terminal); nothing else', () => {
    expect(loadConfig({}).logPretty).toBeUndefined();
    expect(loadConfig({ LOG_PRETTY: 'true' }).logPretty).toBe(true);
    expect(loadConfig({ LOG_PRETTY: 'false' }).logPretty).toBe(false);
    expect(() => loadConfig({ LOG_PRETTY: 'sometimes' })).toThrow(/LOG_PRETTY/);
  });

  it('the largest realtime audio chunk must fit in one Socket.IO packet', () => {
    expect(() => loadConfig({ REALTIME_MAX_AUDIO_CHUNK_BYTES: '2000000' })).toThrow(/REALTIME_MAX_AUDIO_CHUNK_BYTES: must be at least 1024 below SOCKET_MAX_BUFFER_BYTES/);
    expect(() => loadConfig({ REALTIME_MAX_AUDIO_CHUNK_BYTES: '999000' })).toThrow(/REALTIME_MAX_AUDIO_CHUNK_BYTES/);
    expect(loadConfig({ REALTIME_MAX_AUDIO_CHUNK_BYTES: '998976' }).realtime.maxAudioChunkBytes).toBe(998_976);
    expect(loadConfig({ REALTIME_MAX_AUDIO_CHUNK_BYTES: '2000000', SOCKET_MAX_BUFFER_BYTES: '3000000' }).realtime.maxAudioChunkBytes).toBe(2_000_000);
    // Only the buffer lowered: the chunk limit (its default) follows it down.
    expect(loadConfig({ SOCKET_MAX_BUFFER_BYTES: '100000' }).realtime.maxAudioChunkBytes).toBe(100_000 - 1024);
    expect(loadConfig({}).realtime.maxAudioChunkBytes).toBe(262_144);
  });

  it('provider base URLs must carry http:// or https://', () => {
    expect(() => loadConfig({ OPENAI_BASE_URL: 'localhost:11434/v1' })).toThrow(/OPENAI_BASE_URL: must be an http:\/\/ or https:\/\/ URL/);
    expect(() => loadConfig({ GEMINI_BASE_URL: 'ftp://example.com' })).toThrow(/GEMINI_BASE_URL/);
    expect(loadConfig({ OPENAI_BASE_URL: 'http://localhost:11434/v1' }).models.openai.baseURL).toBe('http://localhost:11434/v1');
  });

  it('the server refuses to start on bad config with a message naming the variable', () => {
    const result = spawnSync(process.execPath, ['--import', 'tsx', 'src/node/main.ts'], {
      env: { PATH: process.env.PATH, PORT: '99999' },
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(result.status).toBe(78);
    expect(result.stderr).toMatch(/Invalid configuration:\s+PORT:/);
  });

  it('.env.example documents every variable, and nothing else', () => {
    const example = readFileSync('.env.example', 'utf8');
    const documented = [...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]);
    expect(documented.sort()).toEqual(Object.keys(configSchema.shape).sort());
    // Every variable has a comment line somewhere above it.
    expect(example.split('\n').filter((l) => l.startsWith('#')).length).toBeGreaterThan(30);
  });
});
