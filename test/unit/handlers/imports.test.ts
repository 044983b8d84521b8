import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * Handlers are thin: the glue from a Task's event to a service and back.
 * What two handlers share lives in lambdas/services or lambdas/core, never in
 * one handler imported by another. The registry lists the handlers, and
 * every handler uses the AWS entry.
 */
const HANDLERS = fileURLToPath(new URL('../../../lambdas/handlers/', import.meta.url));
const MAY_IMPORT_HANDLERS = new Set(['registry.ts']);
const SHARED_BY_HANDLERS = new Set(['aws-entry.ts']);

/** Every module specifier a file imports or re-exports, static or dynamic. */
function importedModules(source: string): string[] {
  const specifiers = [
    ...source.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s*['"]([^'"]+)['"]/g),
    ...source.matchAll(/(?:^|\n)\s*import\s*['"]([^'"]+)['"]/g),
    ...source.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g),
  ];
  return specifiers.map((match) => match[1]!);
}

function handlerImportsOf(file: string, handlers: ReadonlySet<string>): string[] {
  return importedModules(readFileSync(join(HANDLERS, file), 'utf8'))
    .filter((specifier) => specifier.startsWith('./'))
    .map((specifier) => specifier.slice(2).replace(/\.js$/, '.ts'))
    .filter((imported) => handlers.has(imported) && !SHARED_BY_HANDLERS.has(imported));
}

describe('lambdas/handlers', () => {
  it('no handler imports another handler', () => {
    // Prepare
    const files = readdirSync(HANDLERS).filter((file) => file.endsWith('.ts'));
    const handlers = new Set(files);
    // Act
    const crossImports = files
      .filter((file) => !MAY_IMPORT_HANDLERS.has(file))
      .flatMap((file) => handlerImportsOf(file, handlers).map((imported) => `${file} imports ${imported}`));
    // Assess
    expect(files.length).toBeGreaterThan(5);
    expect(crossImports).toEqual([]);
  });

  it('finds an import of a handler however it is written (the scan can fail)', () => {
    const source = [
      "import { resultKey } from './download-file.js';",
      "import type { Watermark } from './prepare-export.js';",
      "export { x } from './kick-off.js';",
      "import {\n  a,\n  b,\n} from './poll-status.js';",
      "const lazy = await import('./clean-up.js');",
      "import { awsTaskEntry } from './aws-entry.js';",
    ].join('\n');
    expect(importedModules(source)).toEqual([
      './download-file.js',
      './prepare-export.js',
      './kick-off.js',
      './poll-status.js',
      './aws-entry.js',
      './clean-up.js',
    ]);
  });
});
