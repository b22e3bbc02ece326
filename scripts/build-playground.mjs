// Builds the browser playground into dist/playground/: its TypeScript with the project's own
// compiler (playground/tsconfig.json), then the static files beside it. The Node server reads
// that folder once at start-up (src/node/playground-assets.ts).
// The new build is made beside the old one and swapped in by renames, so a server starting
// meanwhile (tests run in parallel) sees either build whole, or none.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, renameSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'playground');
const fresh = `${out}.new-${process.pid}`;
const stale = `${out}.old-${process.pid}`;
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');

rmSync(fresh, { recursive: true, force: true });
mkdirSync(fresh, { recursive: true });
try {
  execFileSync(process.execPath, [tsc, '-p', join(root, 'playground', 'tsconfig.json'), '--outDir', fresh], { stdio: 'inherit' });
} catch (err) {
  rmSync(fresh, { recursive: true, force: true });
  process.stderr.write('build-playground: tsc failed (see above)\n');
  process.exit(err.status ?? 1);
}
cpSync(join(root, 'playground', 'static'), fresh, { recursive: true });
if (existsSync(out)) renameSync(out, stale);
renameSync(fresh, out);
rmSync(stale, { recursive: true, force: true });
