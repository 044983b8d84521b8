import { readFile } from 'node:fs/promises';
import { type ClientSecretSource, ClientSecretValue } from '../core/auth/client-config.js';
import { ConfigurationError } from '../errors.js';

/**
 * The value of a `client_secret_basic` source's secret. Environment and file are read
 * when a token provider is made, so a changed secret needs only a new run.
 */
export async function readClientSecret(
  source: ClientSecretSource,
  options: {
    readonly env?: NodeJS.ProcessEnv;
    readonly readFile?: (path: string) => Promise<string>;
    readonly sourceId?: string;
  } = {},
): Promise<ClientSecretValue> {
  const who = options.sourceId === undefined ? 'the source' : `source ${options.sourceId}`;
  if (source.kind === 'value') return source.value;
  if (source.kind === 'env') {
    const value = (options.env ?? process.env)[source.name];
    if (value === undefined || value.trim() === '')
      throw new ConfigurationError(
        `${who} reads its client secret from the environment variable ${source.name} (clientSecretEnv), which is not set or empty; export it before the run`,
      );
    return new ClientSecretValue(value.trim());
  }
  const read = options.readFile ?? ((path: string) => readFile(path, 'utf8'));
  let text: string;
  try {
    text = await read(source.path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new ConfigurationError(
      `${who} reads its client secret from ${source.path} (clientSecretFile), which cannot be read${typeof code === 'string' ? ` (${code})` : ''}`,
    );
  }
  // A trailing newline is an editor's, not the EHR's.
  const value = text.trim();
  if (value === '' || value.includes('\n'))
    throw new ConfigurationError(
      `${source.path} (clientSecretFile of ${who}) must hold the client secret alone, on one line`,
    );
  return new ClientSecretValue(value);
}
