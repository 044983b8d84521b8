import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

/**
 * Every test file gets its own temporary folder, removed when the file is done: os.tmpdir() reads
 * TMPDIR on each call, so the CDK apps' cloud assemblies (~100 MB each, with the Lambda bundles),
 * the embedded S3 servers' folders and the tests' own mkdtemp folders all land in it, and child
 * processes inherit it. Left in /tmp, a few hundred runs of the suite filled a 250 GB disk.
 */
const root = mkdtempSync(join(tmpdir(), 'vitest-'));
process.env.TMPDIR = root;

afterAll(() => {
  rmSync(root, { recursive: true, force: true, maxRetries: 3 });
});
