import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // The construct deploys prebundled functions (dist/lambdas); build them from the current sources.
    globalSetup: ['test/infra/build-lambdas.setup.ts'],
  },
});
