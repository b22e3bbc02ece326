import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Every test file starts its own servers on ephemeral loopback ports, so files can run in parallel.
    fileParallelism: true,
    maxWorkers: 2,
  },
});
