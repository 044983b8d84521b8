import { KMSClient, ListAliasesCommand, type ListAliasesCommandOutput } from '@aws-sdk/client-kms';
import { getKmsJwks, type KmsClientLike } from '../../lambdas/adapters/kms-public-keys.js';
import { requireEnv } from '../../lambdas/config.js';
import { ConfigurationError } from '../../lambdas/errors.js';
import { createLogger, type Logger, parseLogLevel } from '../../lambdas/logger.js';
import { lazily } from '../../lambdas/middleware.js';

/**
 * The public JWKS an EHR fetches to verify our client assertions (SMART
 * Backend Services `jwks_url`), built from KMS `GetPublicKey`: the private
 * keys never leave KMS. Served from a Lambda Function URL; the EHR caches it
 * for `Cache-Control` max-age, so a key added for rotation shows up within
 * that time.
 *
 * The keys are the targets of the aliases under `JWKS_KEY_ALIAS_PREFIX`
 * (`alias/fhir-bulk-export/`), listed per request: a source's key created
 * outside CDK is published as soon as its alias exists, without a deploy.
 * During a rotation the construct's next and previous keys sit behind
 * `…/<id>/next` and `…/<id>/previous`, so they are published too; brought
 * ones are named in `JWKS_EXTRA_KEY_IDS`.
 *
 * Bundled by esbuild from infra/ (the construct names this file by path and
 * never imports it).
 */

/** The subset of a Function URL event (payload 2.0) this handler reads. */
export interface FunctionUrlEvent {
  readonly rawPath?: string;
  readonly requestContext?: { readonly http?: { readonly method?: string } };
}

export interface FunctionUrlResult {
  readonly statusCode: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

export interface JwksHandlerOptions {
  readonly kms: KmsClientLike;
  /** Key ids or ARNs of the asymmetric signing keys to publish, or how to find them per request. */
  readonly keyIds: readonly string[] | (() => Promise<readonly string[]>);
  /** `Cache-Control: max-age` of a successful answer. */
  readonly maxAgeSeconds: number;
  readonly logger: Logger;
}

/** Where EHR portals look for it, and the bare URL. */
const JWKS_PATHS = new Set(['/', '/jwks.json', '/.well-known/jwks.json']);

const json = (statusCode: number, body: unknown, headers: Record<string, string>): FunctionUrlResult => ({
  statusCode,
  headers: { 'content-type': 'application/json', ...headers },
  body: JSON.stringify(body),
});

export function createJwksHandler(options: JwksHandlerOptions) {
  const { kms, keyIds, maxAgeSeconds, logger } = options;
  return async (event: FunctionUrlEvent): Promise<FunctionUrlResult> => {
    const method = event.requestContext?.http?.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      return json(405, { error: 'method not allowed' }, { allow: 'GET, HEAD', 'cache-control': 'no-store' });
    }
    if (!JWKS_PATHS.has(event.rawPath ?? '/')) {
      return json(
        404,
        { error: 'not found; the JWKS is at /.well-known/jwks.json' },
        { 'cache-control': 'no-store' },
      );
    }
    try {
      const jwks = await getKmsJwks(kms, typeof keyIds === 'function' ? await keyIds() : keyIds);
      const response = json(200, jwks, { 'cache-control': `public, max-age=${maxAgeSeconds}` });
      return method === 'HEAD' ? { ...response, body: '' } : response;
    } catch (error) {
      // An EHR that caches an error would reject our assertions: never let it cache one.
      logger.error('JWKS unavailable', { error: (error as Error).name, detail: (error as Error).message });
      return json(
        503,
        { error: 'JWKS temporarily unavailable' },
        { 'cache-control': 'no-store', 'retry-after': '30' },
      );
    }
  };
}

/** The keys behind the aliases under `aliasPrefix` (`alias/<prefix>/`), all pages. */
export async function keyIdsUnderAliases(kms: KmsClientLike, aliasPrefix: string): Promise<string[]> {
  const keyIds = new Set<string>();
  let marker: string | undefined;
  do {
    const page = (await kms.send(
      new ListAliasesCommand({ Marker: marker, Limit: 100 }),
    )) as ListAliasesCommandOutput;
    for (const alias of page.Aliases ?? [])
      if (alias.AliasName?.startsWith(aliasPrefix) && alias.TargetKeyId) keyIds.add(alias.TargetKeyId);
    marker = page.Truncated ? page.NextMarker : undefined;
  } while (marker);
  return [...keyIds];
}

/**
 * `JWKS_EXTRA_KEY_IDS`: brought next/previous keys of a rotation (comma-separated ARNs). They are
 * untagged so that they cannot sign, hence not found by alias: named here to be published.
 */
export function parseExtraKeyIds(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  const ids = raw.split(',').map((id) => id.trim());
  const bad = ids.find((id) => !/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(id));
  if (bad !== undefined)
    throw new ConfigurationError(
      `environment variable JWKS_EXTRA_KEY_IDS must be comma-separated KMS key ARNs (got ${JSON.stringify(bad.slice(0, 80))})`,
    );
  return ids;
}

const jwksHandler = lazily(() => {
  const env = process.env;
  const maxAgeSeconds = Number(env.JWKS_MAX_AGE_SECONDS ?? '3600');
  if (!Number.isInteger(maxAgeSeconds) || maxAgeSeconds < 0) {
    throw new ConfigurationError('environment variable JWKS_MAX_AGE_SECONDS must be a non-negative integer');
  }
  const aliasPrefix = requireEnv(
    env,
    'JWKS_KEY_ALIAS_PREFIX',
    'the signing key alias prefix, such as alias/fhir-bulk-export/',
  );
  if (!/^alias\/.+\/$/.test(aliasPrefix)) {
    throw new ConfigurationError(
      'environment variable JWKS_KEY_ALIAS_PREFIX must look like alias/<prefix>/ (starting with alias/, ending with /)',
    );
  }
  const kms = new KMSClient({});
  const extraKeyIds = parseExtraKeyIds(env.JWKS_EXTRA_KEY_IDS);
  return createJwksHandler({
    kms,
    keyIds: async () => [...new Set([...(await keyIdsUnderAliases(kms, aliasPrefix)), ...extraKeyIds])],
    maxAgeSeconds,
    logger: createLogger({ level: parseLogLevel(env.LOG_LEVEL) }),
  });
});

/** Lambda entry point (Function URL). */
export const handler = async (event: FunctionUrlEvent): Promise<FunctionUrlResult> => jwksHandler()(event);
