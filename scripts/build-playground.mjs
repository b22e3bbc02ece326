// Builds the browser playground into dist/playground/: its TypeScript with the project's own
// compiler (playground/tsconfig.json), then the static files beside it. The Node server reads
// that folder at start-up (src/node/playground-assets.ts).
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'playground');
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'playground', 'tsconfig.json')], { stdio: 'inherit' });
} catch (err) {
  process.stderr.write('build-playground: tsc failed (see above)\n');
  process.exit(err.status ?? 1);
}
cpSync(join(root, 'playground', 'static'), out, { recursive: true });
