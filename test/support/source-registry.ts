import {
  createSourceRegistry,
  registrationRecord,
  type SourceRegistry,
} from '../../lambdas/adapters/source-registry.js';
import { AUTH_KEYS } from '../../lambdas/config.js';
import { registrationKey } from '../../lambdas/core/layout.js';

/**
 * The real registry over an in-memory bucket, for unit tests that run a
 * handler without an S3 server: the sources are registered as `npm run
 * sources -- put` would, and read back through the registry's parser.
 */
export function registryOf(...sources: readonly Record<string, unknown>[]): SourceRegistry {
  const objects = new Map<string, unknown>();
  for (const raw of sources) {
    const settings = Object.fromEntries(
      Object.entries(raw).filter(([key]) => !(AUTH_KEYS as readonly string[]).includes(key)),
    );
    const id = String(raw.id);
    objects.set(
      registrationKey('', id),
      JSON.parse(JSON.stringify(registrationRecord({ id, clientSecret: `secret-of-${id}`, settings }))),
    );
  }
  return createSourceRegistry({
    store: {
      bucket: 'in-memory',
      getJson: async <T>(key: string) => objects.get(key) as T | undefined,
    },
    prefix: '',
  });
}
