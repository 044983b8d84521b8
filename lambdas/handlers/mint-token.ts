import { ConfigurationError } from '../errors.js';
import { type Runtime, sealContext } from '../runtime.js';
import type { SealedToken } from '../state.js';
import { awsTaskEntry } from './aws-entry.js';

export interface MintTokenEvent {
  readonly sourceId: string;
  readonly executionName: string;
  /** The token must stay valid at least this long (the next Wait plus the call after it). @default 300 */
  readonly minValiditySeconds?: number;
  /** Set after a 401: the cached token was refused, get a new one. */
  readonly forceRefresh?: boolean;
}

/**
 * The only function allowed to sign client assertions (kms:Sign). It keeps a
 * still-fresh token per source in its container, so the state machine can
 * call it before every poll and every file without flooding the EHR's token
 * endpoint, and hands out the token sealed to this execution.
 */
export function createMintTokenHandler(runtime: Runtime) {
  return async (event: MintTokenEvent): Promise<SealedToken> => {
    const settings = await runtime.sources.get(event.sourceId);
    if (!runtime.accessTokens)
      throw new ConfigurationError('this function has no access token source configured');
    const provider = await runtime.accessTokens(settings.id);
    const token = await provider.getAccessToken({
      minValiditySeconds: event.minValiditySeconds ?? 300,
      forceRefresh: event.forceRefresh === true,
    });
    const sealedToken = await runtime.sealer.seal(
      token.accessToken,
      sealContext(settings.id, event.executionName),
    );
    return { sealedToken, expiresAt: token.expiresAt.toISOString() };
  };
}

/** Lambda entry point (see infra/). */
export const handler = awsTaskEntry('MintToken', createMintTokenHandler);
