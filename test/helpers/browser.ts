import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';

/** Where browser tests leave their screenshots (git-ignored). */
export const SCREENSHOT_DIR = join('test-results', 'screenshots');

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/lib/chromium/chromium'];

/**
 * Debian's Chromium (no browser download is possible here). Missing is a failure with the
 * fix, never a skip: CI installs it (.ci/run), and so does `npm test` (scripts/test-deps.sh).
 */
export function chromiumExecutable(): string {
  const configured = process.env.CHROMIUM_PATH;
  if (configured) {
    if (!existsSync(configured)) throw new Error(`CHROMIUM_PATH=${configured} does not exist`);
    return configured;
  }
  const found = CANDIDATES.find((path) => existsSync(path));
  if (!found) {
    throw new Error(
      'Chromium is not installed, and the browser tests need it: install it with `apt-get install -y chromium` ' +
        '(`npm test` does so through scripts/test-deps.sh when run as root; CI installs it in .ci/run), or set CHROMIUM_PATH to a Chromium binary.',
    );
  }
  return found;
}

/** Headless Chromium with a fresh profile (playwright makes a temporary --user-data-dir per launch). */
export async function launchChromium(extraArgs: string[] = []): Promise<Browser> {
  return chromium.launch({
    executablePath: chromiumExecutable(),
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...extraArgs],
  });
}

/** Builds the playground into dist/playground the way `npm run build` does. */
export function buildPlayground(): void {
  const result = spawnSync(process.execPath, ['scripts/build-playground.mjs'], { encoding: 'utf8', timeout: 120_000 });
  if (result.status !== 0) throw new Error(`the playground did not build:\n${result.stdout}\n${result.stderr}`);
}

export function screenshotPath(name: string): string {
  mkdirSync(SCREENSHOT_DIR, { recursive: true });
  return join(SCREENSHOT_DIR, `${name}.png`);
}

/** A mono 16-bit PCM WAV of a sine tone, for Chromium's fake microphone (--use-file-for-fake-audio-capture). */
export function sineWav(options: { hz: number; seconds: number; rate: number; amplitude?: number }): { path: string; cleanup(): void } {
  const { hz, seconds, rate, amplitude = 0.5 } = options;
  const samples = Math.round(seconds * rate);
  const data = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) data.writeInt16LE(Math.round(Math.sin((2 * Math.PI * hz * i) / rate) * amplitude * 0x7fff), i * 2);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(rate, 24);
  header.writeUInt32LE(rate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  const dir = mkdtempSync(join(tmpdir(), 'fake-mic-'));
  const path = join(dir, `sine-${hz}hz.wav`);
  writeFileSync(path, Buffer.concat([header, data]));
  return { path, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/**
 * Frequency of the tone in PCM16 little-endian audio: the sample rate over the median distance
 * between upward zero crossings, counted only inside loud 10 ms windows (a fake microphone may
 * start with silence, and on a busy machine its capture has gaps: a crossing count averaged
 * over windows that are partly silent reads a few per cent low, a median period does not);
 * undefined when nothing is loud. Interpolated crossings keep it exact to well under 1 %.
 */
export function toneFrequency(pcm: Buffer, rate: number, minRms = 1000): number | undefined {
  const samples = Math.floor(pcm.length / 2);
  const window = Math.round(rate / 100);
  const periods: number[] = [];
  for (let start = 0; start + window <= samples; start += window) {
    let energy = 0;
    for (let i = start; i < start + window; i++) energy += pcm.readInt16LE(i * 2) ** 2;
    if (Math.sqrt(energy / window) < minRms) continue;
    let lastCrossing: number | undefined;
    for (let i = start + 1; i < start + window; i++) {
      const a = pcm.readInt16LE((i - 1) * 2);
      const b = pcm.readInt16LE(i * 2);
      if (a >= 0 || b < 0) continue;
      const at = i - 1 + a / (a - b); // where the line from a to b crosses zero
      if (lastCrossing !== undefined) periods.push(at - lastCrossing);
      lastCrossing = at;
    }
  }
  if (periods.length === 0) return undefined;
  periods.sort((x, y) => x - y);
  return rate / periods[Math.floor(periods.length / 2)]!;
}
