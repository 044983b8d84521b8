import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // vitest's default is one worker less than the cores: on CI's two cores that is one, and the suite ran
    // file after file. The tests wait on sockets and child processes much of the time, so two overlap well.
    maxWorkers: 2,
    // The construct deploys prebundled functions (dist/lambdas); build them from the current sources.
    globalSetup: ['test/infra/build-lambdas.setup.ts'],
    setupFiles: ['test/support/temp-root.ts'],
  },
});
