/** Opaque bearer tokens: random strings the sandbox remembers, never JWTs a client could read. */
import { randomBytes } from 'node:crypto';
import { parseScope, type SmartScope } from './scopes.js';

export interface AccessGrant {
  readonly clientId: string;
  /** 1 for the client's first token, 2 for the next: what the request log shows instead of the token. */
  readonly serial: number;
  readonly scopes: readonly SmartScope[];
  readonly expiresAtMs: number;
  /** Set by `revoke`: the token is refused from then on, though not expired. */
  revoked?: boolean;
}

export type TokenLookup =
  | { readonly ok: true; readonly grant: AccessGrant }
  | { readonly ok: false; readonly reason: 'unknown' }
  | { readonly ok: false; readonly reason: 'expired' | 'revoked'; readonly grant: AccessGrant };

export class AccessTokenStore {
  readonly #tokens = new Map<string, AccessGrant>();
  /** Every credential a client ever presented or received, so leak tests know what to search for. */
  readonly #secretsByClient = new Map<string, string[]>();
  readonly #issuedByClient = new Map<string, number>();

  remember(clientId: string, secret: string): void {
    const list = this.#secretsByClient.get(clientId) ?? [];
    list.push(secret);
    this.#secretsByClient.set(clientId, list);
  }

  secretsOf(clientId: string): readonly string[] {
    return [...(this.#secretsByClient.get(clientId) ?? [])];
  }

  issue(
    clientId: string,
    scopes: readonly string[],
    lifetimeSeconds: number,
    nowMs: number,
  ): { token: string; grant: AccessGrant } {
    if (this.#tokens.size > 10_000) {
      for (const [token, grant] of this.#tokens) if (grant.expiresAtMs <= nowMs) this.#tokens.delete(token);
    }
    const token = randomBytes(32).toString('base64url');
    this.remember(clientId, token);
    const serial = (this.#issuedByClient.get(clientId) ?? 0) + 1;
    this.#issuedByClient.set(clientId, serial);
    const grant: AccessGrant = {
      clientId,
      serial,
      // The token endpoint let through only the forms this client's EHR speaks; Epic's
      // capital-R `system/Patient.Read` is the v1 `read` it means.
      scopes: scopes
        .map((scope) => parseScope(scope.replace(/\.Read$/, '.read')))
        .filter((s): s is SmartScope => s !== undefined),
      expiresAtMs: nowMs + lifetimeSeconds * 1000,
    };
    this.#tokens.set(token, grant);
    return { token, grant };
  }

  lookup(token: string, nowMs: number): TokenLookup {
    const grant = this.#tokens.get(token);
    if (!grant) return { ok: false, reason: 'unknown' };
    if (grant.revoked) return { ok: false, reason: 'revoked', grant };
    if (grant.expiresAtMs <= nowMs) return { ok: false, reason: 'expired', grant };
    return { ok: true, grant };
  }

  /**
   * Refuses every token issued to the client so far, as an EHR does when an administrator
   * revokes them or when it restarts and forgets them; tokens issued later work. Returns how
   * many live tokens were revoked.
   */
  revoke(clientId: string, nowMs: number): number {
    let revoked = 0;
    for (const grant of this.#tokens.values()) {
      if (grant.clientId !== clientId || grant.revoked || grant.expiresAtMs <= nowMs) continue;
      grant.revoked = true;
      revoked += 1;
    }
    return revoked;
  }
}
